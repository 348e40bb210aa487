//! Rate limiting for tower services: keyed GCRA on governor, keys a client
//! cannot spoof, memory bounded by `max_keys`, and a Redis backend for
//! limits shared by many replicas.
//!
//! - [`RateLimitPolicy`]: "`burst` requests at once, refilling at `rate` per
//!   `period`", with a name, a [`key`] and optional route/method scope.
//!   Several policies can apply to one request; the strictest decides.
//! - [`RateLimitLayer`]: answers over-limit requests with a 429
//!   problem+json carrying `Retry-After` (whole seconds, rounded up) and the
//!   IETF draft headers `RateLimit-Policy: "name";q=…;w=…` and
//!   `RateLimit: "name";r=…;t=…` — also on allowed responses.
//! - [`RedisBackend`]: one server-side script per decision; on failure the
//!   layer decides locally, allows or denies ([`OnRedisError`]).
//!
//! In the headers `q` is the burst, `w` the seconds an empty bucket takes to
//! refill, `r` the requests left now and `t` the seconds until the bucket is
//! full again (rounded up: never earlier than true).
//!
//! Allowed responses keep their body: the layer's response type is the
//! inner service's, with no body wrapper (this layer runs on every request;
//! only the rate-limit headers are added). A 429 is written into that body
//! type, so it must implement [`guardrail_core::RejectionBody`]: axum's
//! `Body` (with guardrail-core's default `axum` feature), `Full<Bytes>`, the
//! boxed bodies of `http-body-util`, `String`, and the other guardrail
//! layers' `GuardBody` do.
//!
//! Every 429 is a `security.rate_limited` event (policy, key type, masked
//! key) and a `guardrails_ratelimit_decisions_total{policy,outcome}` count;
//! `guardrails_ratelimit_keys{policy}` tracks keys held.
//!
//! # Example
//!
//! ```
//! use guardrail_core::ClientIp;
//! use http::{Request, Response, StatusCode};
//! use ratelimit_layer::{RateLimitLayer, RateLimitPolicy};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = RateLimitLayer::builder()
//!     .policy(RateLimitPolicy::per_minute(60).burst(2).name("per_ip"))
//!     .build()
//!     .unwrap();
//! let mut svc = ServiceBuilder::new().layer(layer).service(service_fn(|_req: Request<()>| async {
//!     Ok::<_, std::convert::Infallible>(Response::new(String::from("hello")))
//! }));
//!
//! let req = || {
//!     let mut r = Request::new(());
//!     r.extensions_mut().insert(ClientIp::new("203.0.113.9".parse().unwrap()));
//!     r
//! };
//! let ok = svc.ready().await.unwrap().call(req()).await.unwrap();
//! assert_eq!(ok.status(), StatusCode::OK);
//! assert_eq!(ok.headers()["ratelimit"], "\"per_ip\";r=1;t=1");
//! svc.ready().await.unwrap().call(req()).await.unwrap();
//!
//! let limited = svc.ready().await.unwrap().call(req()).await.unwrap();
//! assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert!(limited.body().contains("urn:guardrails:problem:rate-limited"));
//! assert_eq!(limited.headers()["retry-after"], "1");
//! assert_eq!(limited.headers()["ratelimit-policy"], "\"per_ip\";q=2;w=2");
//! # }
//! ```

mod config;
mod decision;
mod error;
pub mod key;
mod layer;
mod memory;
pub use memory::LimiterClock;
mod policy;
#[cfg(feature = "redis")]
mod redis;

pub use config::{Backend, KeyKind, PolicyConfig, RateLimitConfig, RateLimitStages, Stage};
pub use decision::{Decision, RATELIMIT, RATELIMIT_POLICY};
pub use error::{PolicyError, RateLimitError};
pub use layer::{
    DEFAULT_MAX_KEYS, Deciding, OnRedisError, RateLimit, RateLimitLayer, RateLimitLayerBuilder,
    ResponseFuture,
};
pub use policy::{PolicyMode, RateLimitPolicy};
#[cfg(feature = "redis")]
pub use redis::RedisBackend;

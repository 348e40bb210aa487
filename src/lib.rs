//! Production guardrails for any tower-based service (axum, hyper, tonic),
//! added with `.layer(...)`.
//!
//! This umbrella crate re-exports each layer crate behind a cargo feature of
//! the same name (all on by default), owns the one configuration file for
//! every layer ([`GuardrailsConfig`]), and stacks the configured layers in
//! the recommended order ([`GuardrailsLayer`]).
//!
//! | feature / crate | guardrail |
//! |---|---|
//! | [`guardrail_core`] (always) | problem+json, client IP, request id, principal, events |
//! | `auth-layer` | authentication and authorization levels |
//! | `ratelimit-layer` | rate limiting |
//! | `pii-trace-layer` | PII scrubbing and request tracing |
//! | `timeout-retry-layer` | deadlines, retries, circuit breaking |
//! | `flag-layer` | feature flags |
//! | `monitor-layer` | metrics, health, alerts |
//!
//! # Example
//!
//! ```
//! use guardrails::{GuardrailsConfig, GuardrailsLayer, Profile};
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! // The handler; behind the stack its request body is the body limit's
//! // `LimitedBody` around the server's body type.
//! async fn hello<B>(_req: Request<B>) -> Result<Response<String>, std::convert::Infallible> {
//!     Ok(Response::new(String::from("hello")))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let config = GuardrailsConfig::from_toml_str(r#"
//!     profile = "development"
//!     [client_ip]
//!     trusted_proxies = ["10.0.0.0/8"]
//!     [auth]
//!     hs256_secret = { env = "MY_SERVICE_JWT_SECRET" }
//!     public = ["/api/health"]
//! "#).unwrap();
//! let config = config.validate().unwrap();
//!
//! let guardrails = GuardrailsLayer::from_config(&config).unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(guardrails.layer)
//!     .service(service_fn(hello));
//! let health = Request::get("/api/health").body(String::new()).unwrap();
//! let res = svc.clone().oneshot(health).await.unwrap();
//! assert_eq!(res.status(), 200);
//! assert!(res.headers().contains_key("x-request-id"));
//!
//! // Every other route needs a bearer token.
//! let me = Request::get("/api/me").body(String::new()).unwrap();
//! assert_eq!(svc.oneshot(me).await.unwrap().status(), 401);
//! # }
//! ```

pub mod config;
mod stack;

pub use config::{
    ConfigError, GuardrailsConfig, InvalidKey, Profile, SecretRef, ValidConfig, ValidationErrors,
};
pub use stack::{Guardrails, GuardrailsLayer, StackError};

pub use guardrail_core;

#[cfg(feature = "auth-layer")]
pub use auth_layer;
#[cfg(feature = "flag-layer")]
pub use flag_layer;
#[cfg(feature = "monitor-layer")]
pub use monitor_layer;
#[cfg(feature = "pii-trace-layer")]
pub use pii_trace_layer;
#[cfg(feature = "ratelimit-layer")]
pub use ratelimit_layer;
#[cfg(feature = "timeout-retry-layer")]
pub use timeout_retry_layer;

// The README's code blocks are compiled as doc-tests, so it stays true.
#[cfg(all(
    doctest,
    feature = "auth-layer",
    feature = "ratelimit-layer",
    feature = "pii-trace-layer"
))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

//! The shared vocabulary of the guardrail crates. No policy lives here: only
//! the types and conventions that let independent layers work together.
//!
//! - [`Problem`]: the RFC 9457 `application/problem+json` body of every
//!   rejection, written into the inner service's body type
//!   ([`RejectionBody`]) by the one response future of every guard,
//!   [`GuardFuture`].
//! - [`ClientIp`]: the client address, resolved by [`ResolveClientIpLayer`]
//!   with trusted proxies, never chosen by the client.
//! - [`RequestId`]: generated or validated by [`SetRequestIdLayer`], echoed
//!   on the response.
//! - [`Principal`]: who the caller is, inserted by authentication.
//! - [`event`]: the event taxonomy and the [`emit!`] macro.
//! - [`config`], [`SecretRef`]: what every layer's config section shares.
//! - [`health`]: the state each layer exposes for the health report;
//!   [`metric`]: every metric name.
//! - [`BackgroundTasks`]: work a layer needs done besides requests, run and
//!   stopped by the service.
//! - [`Deadline`] and [`BodyLimit`]: the request's deadline and body limit,
//!   set by the inbound guards and read by whatever needs them.
//! - [`Scrub`]: what a layer needs to scrub text it logs.
//!
//! # Example
//!
//! ```
//! use std::net::SocketAddr;
//! use guardrail_core::{ClientIp, ClientIpConfig, RequestId, ResolveClientIpLayer, SetRequestIdLayer};
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(SetRequestIdLayer::new())
//!     .layer(ResolveClientIpLayer::new(ClientIpConfig::default()))
//!     .service(service_fn(|req: Request<()>| async move {
//!         let ip = req.extensions().get::<ClientIp>().unwrap();
//!         let id = req.extensions().get::<RequestId>().unwrap();
//!         Ok::<_, std::convert::Infallible>(Response::new(format!("{} {}", ip.masked(), id.as_str().len())))
//!     }));
//!
//! let mut req = Request::new(());
//! req.extensions_mut().insert(SocketAddr::from(([203, 0, 113, 9], 4000)));
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.body(), "203.0.113.0/24 36");
//! assert!(res.headers().contains_key("x-request-id"));
//! # }
//! ```

mod background;
mod body;
pub mod client_ip;
pub mod config;
mod deadline;
pub mod event;
mod future;
mod header;
pub mod health;
pub mod metric;
mod principal;
pub mod problem;
mod pseudonym;
pub mod redis;
pub mod request_id;
mod scrub;
mod secret;
pub mod semconv;
pub mod trace_context;

pub use background::{BackgroundTasks, RunningTasks};
pub use body::{BodyLimit, GuardBody, RejectionBody};
pub use client_ip::{
    ClientIp, ClientIpConfig, ForwardedHeader, ResolveClientIp, ResolveClientIpLayer,
};
pub use deadline::Deadline;
pub use event::EventName;
pub use future::{BoxDecision, Decided, GuardFuture, Pass, PassHeaders, PendingDecision};
pub use header::{RepeatedHeader, single_header};
pub use principal::{AssuranceLevel, CallerSlot, Principal};
pub use problem::Problem;
pub use pseudonym::Pseudonymizer;
#[cfg(feature = "redis")]
pub use redis::RedisHandle;
pub use redis::{RedisConfig, RedisConnection, RedisError};
pub use request_id::{RequestId, RequestIdConfig, SetRequestId, SetRequestIdLayer};
pub use scrub::Scrub;
pub use secret::{Secret, SecretError, SecretRef};
pub use trace_context::TraceContext;

#[doc(hidden)]
pub mod __private {
    pub use tracing;
}

/// Writes the inner-service accessors of a middleware whose inner service
/// is the field `inner`: `get_ref`, `get_mut` and `into_inner`, as every
/// tower-http middleware has them.
///
/// ```
/// struct Noop<S> {
///     inner: S,
/// }
///
/// impl<S> Noop<S> {
///     guardrail_core::inner_service_accessors!();
/// }
///
/// let mut svc = Noop { inner: 7 };
/// *svc.get_mut() += 1;
/// assert_eq!(*svc.get_ref(), 8);
/// assert_eq!(svc.into_inner(), 8);
/// ```
#[macro_export]
macro_rules! inner_service_accessors {
    () => {
        /// Gets a reference to the inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// Gets a mutable reference to the inner service.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Consumes `self`, returning the inner service.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

//! Inbound protection for tower services — request deadlines, an error
//! boundary, body limits and load shedding — each a layer that answers
//! problem+json on core's one rejection path, so axum takes it without a
//! `HandleErrorLayer`; and outbound resilience for the calls a service
//! makes to others — a status check, a bulkhead, retry, circuit breaking —
//! which return
//! one error, [`OutboundError`], for the handler to map (see below).
//!
//! | layer | refuses with | config section |
//! |---|---|---|
//! | [`ErrorBoundaryLayer`] | 500 for a handler's panic; bare 5xx bodies replaced | `[error_boundary]` |
//! | [`LoadShedLayer`] | 503 + `Retry-After: 1` beyond `max_in_flight`, at once | `[load_shed]` |
//! | [`RequestDeadlineLayer`] | 504 (or 503) at the deadline, handler future dropped | `[timeout]` |
//! | [`RequestBodyLimitLayer`] | 413 for a body over the limit, before it is read | `[body_limit]` |
//!
//! The umbrella crate's `GuardrailsLayer` stacks them in this order,
//! outermost first, inside the request id, client IP and trace layers
//! and outside the rate limits and authentication.
//!
//! For calls to an upstream, over any `Service<http::Request<B>>` (e.g.
//! `hyper_util`'s client), outermost first — [`UpstreamConfig::layers`]
//! stacks them from `[upstreams.<name>]`:
//!
//! | layer | does | fails with |
//! |---|---|---|
//! | [`CheckStatusLayer`] | a 4xx/5xx answer becomes an error; failed calls reported (`integration.backend_failed`) | [`OutboundError::Status`] → 502, 503 for a 429, or the status forwarded |
//! | [`BulkheadLayer`] | at most N calls at once, never queued | [`OutboundError::BulkheadFull`] → 503 + `Retry-After: 1` |
//! | [`RetryLayer`] | per-try timeout, deadline, full-jitter backoff, budget, `Retry-After` | [`OutboundError::Timeout`] → 504, or the last failure |
//! | [`CircuitBreakerLayer`] | closed / open / half-open over a count or time window | [`OutboundError::CircuitOpen`] → 503 + the remaining open time |
//!
//! # Example
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//! use http::{Request, Response};
//! use timeout_retry_layer::{
//!     ErrorBoundaryLayer, LimitedBody, LoadShedLayer, RequestBodyLimitLayer, RequestDeadlineLayer,
//! };
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(ErrorBoundaryLayer::new())
//!     .layer(LoadShedLayer::new(512))
//!     .layer(RequestDeadlineLayer::new(Duration::from_secs(10)))
//!     .layer(RequestBodyLimitLayer::new(1024 * 1024))
//!     .service(service_fn(|_req: Request<LimitedBody<String>>| async {
//!         Ok::<_, Infallible>(Response::new(String::from("hello")))
//!     }));
//! let res = svc.oneshot(Request::new(String::new())).await.unwrap();
//! assert_eq!(res.status(), 200);
//! assert_eq!(res.body(), "hello");
//! # }
//! ```

mod body_limit;
mod boundary;
mod config;
mod deadline;
mod load_shed;
mod outbound;
mod routes;
mod slots;

pub use body_limit::{
    BodyTooLarge, LimitedBody, RequestBodyLimit, RequestBodyLimitLayer, Tripwire,
};
pub use boundary::{Caught, ErrorBoundary, ErrorBoundaryLayer, install_panic_hook};
pub use config::{
    BodyLimitConfig, BodyLimitRoute, DEFAULT_MAX_BODY_BYTES, DEFAULT_REQUEST_TIMEOUT,
    ErrorBoundaryConfig, LoadShedConfig, TimeoutConfig, TimeoutRoute,
};
pub use deadline::{RequestDeadline, RequestDeadlineLayer, Timed};
pub use load_shed::{InFlight, LoadShed, LoadShedLayer};
pub use outbound::{
    BoxError, Bulkhead, BulkheadFuture, BulkheadLayer, CheckStatus, CheckStatusFuture,
    CheckStatusLayer, CircuitBreaker, CircuitBreakerFuture, CircuitBreakerLayer, CircuitState,
    CircuitWindow, ClientErrors, Idempotent, OutboundError, PropagateTraceContext,
    PropagateTraceContextLayer, ReplayBody, Retry, RetryLayer, UpstreamCircuit, UpstreamConfig,
    UpstreamLayers, UpstreamRetry, UpstreamStatus,
};

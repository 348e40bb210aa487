//! Outbound resilience for calls to other services: the one error type,
//! a status check, a bulkhead, retries and a circuit breaker. Unlike the
//! inbound guards, these don't answer for the service: they return
//! [`OutboundError`], which the handler maps to its answer with
//! [`OutboundError::to_problem`] (504, 502, 503 with `Retry-After`, or a
//! client error the upstream forwards) — the documented exception to
//! "rejections are responses".

use std::sync::Arc;

use http::StatusCode;

/// Decides about a call's outcome: `Some(status)` for an answer, `None`
/// for an error or a timeout (the breaker's `failure_when`, the retry's
/// `retry_when`).
pub(crate) type Classify = Arc<dyn Fn(Option<StatusCode>) -> bool + Send + Sync>;

mod breaker;
mod bulkhead;
mod config;
mod error;
mod propagate;
mod retry;
mod status;

pub use breaker::{
    CircuitBreaker, CircuitBreakerLayer, CircuitState, ResponseFuture as CircuitBreakerFuture,
};
pub use bulkhead::{Bulkhead, BulkheadLayer, ResponseFuture as BulkheadFuture};
pub use config::{CircuitWindow, UpstreamCircuit, UpstreamConfig, UpstreamLayers, UpstreamRetry};
pub use error::{BoxError, OutboundError};
pub use propagate::{PropagateTraceContext, PropagateTraceContextLayer};
pub use retry::{Idempotent, ReplayBody, Retry, RetryLayer};
pub use status::{
    CheckStatus, CheckStatusLayer, ClientErrors, ResponseFuture as CheckStatusFuture,
    UpstreamStatus,
};

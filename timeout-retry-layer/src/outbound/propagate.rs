//! W3C Trace Context on outbound calls: each call carries the trace of
//! the request being handled (`traceparent` naming the request's span as
//! the parent — the span the trace layer logs and, with OpenTelemetry
//! export, exports — and the caller's `tracestate`), so an upstream's
//! spans and logs join the same trace under it.
//! Without a current request (a background job), the request goes as it
//! was built.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use guardrail_core::TraceContext;
//! use http::Request;
//! use timeout_retry_layer::PropagateTraceContextLayer;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let client = PropagateTraceContextLayer::new().layer(service_fn(|req: Request<()>| async move {
//!     Ok::<_, Infallible>(req.headers().get("traceparent").cloned())
//! }));
//! let request = TraceContext::new_root();
//! let _entered = request.enter(); // the trace layer does this per request
//! let sent = client.oneshot(Request::new(())).await.unwrap().unwrap();
//! assert_eq!(sent, request.traceparent());
//! # }
//! ```

use std::task::{Context, Poll};

use guardrail_core::TraceContext;
use http::Request;
use tower_layer::Layer;
use tower_service::Service;

/// Layer that applies [`PropagateTraceContext`].
#[derive(Clone, Copy, Debug)]
pub struct PropagateTraceContextLayer {
    enabled: bool,
}

impl Default for PropagateTraceContextLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl PropagateTraceContextLayer {
    /// Propagates the current request's trace context.
    pub fn new() -> Self {
        Self { enabled: true }
    }

    /// `false`: requests go as they were built (`[upstreams.<name>]
    /// propagate_trace = false`, for a third party).
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }
}

impl<S> Layer<S> for PropagateTraceContextLayer {
    type Service = PropagateTraceContext<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateTraceContext {
            inner,
            enabled: self.enabled,
        }
    }
}

/// Sets `traceparent` / `tracestate` on each outbound request from
/// [`TraceContext::current`], replacing any the request had.
#[derive(Clone, Debug)]
pub struct PropagateTraceContext<S> {
    inner: S,
    enabled: bool,
}

impl<S> PropagateTraceContext<S> {
    guardrail_core::inner_service_accessors!();
}

impl<S, B> Service<Request<B>> for PropagateTraceContext<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // Read when the call is made, in the handler: the future may be
        // polled elsewhere.
        if let Some(current) = self.enabled.then(TraceContext::current).flatten() {
            // The request's span is the parent: no client span is made, so
            // a span id of the call's own would name a span nobody reports.
            current.inject(req.headers_mut());
        }
        self.inner.call(req)
    }
}

//! The outermost outbound layer: an upstream's failure status becomes an
//! [`OutboundError`], and every call that failed is reported once.
//!
//! [`CheckStatusLayer`] lets answers below 400 through and turns a 4xx or
//! 5xx (after the retries further in) into
//! [`OutboundError::Status`], so the handler has one error to map with
//! [`OutboundError::to_problem`]: a 429 becomes 503 with the upstream's
//! `Retry-After` (capped), a 5xx 502, and another 4xx 502 — the caller's
//! request was fine, the integration failed — unless the upstream forwards
//! client errors ([`ClientErrors::Forward`]), for lookups where a 404 or a
//! 409 means something to the caller. Only 400, 404, 409, 410, 412 and 422
//! are forwarded: the others (401, 403, 405, 408, 413, …) are about the
//! service's own request or credentials, not the caller's.
//!
//! A call that failed at the upstream — a failure status, a timeout, an
//! error — is reported once, after the retries, as
//! `integration.backend_failed` (WARN) and counted in
//! `guardrails_outbound_failures_total`; a refusal of the breaker or the
//! bulkhead is not (the breaker reports its state changes itself).
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use timeout_retry_layer::{CheckStatusLayer, ClientErrors, OutboundError};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let upstream = service_fn(|req: Request<()>| async move {
//!     let status = if req.uri().path() == "/missing" { 404 } else { 200 };
//!     let mut res = Response::new(());
//!     *res.status_mut() = StatusCode::from_u16(status).unwrap();
//!     Ok::<_, Infallible>(res)
//! });
//! let client = CheckStatusLayer::new("catalog").layer(upstream);
//! let get = |path: &str| Request::get(path).body(()).unwrap();
//! assert_eq!(client.clone().oneshot(get("/items/1")).await.unwrap().status(), 200);
//!
//! let err = client.clone().oneshot(get("/missing")).await.unwrap_err();
//! assert!(matches!(&err, OutboundError::Status(s) if s.status() == 404));
//! assert_eq!(err.to_problem().status(), 502); // by default
//!
//! let forwarding = CheckStatusLayer::new("catalog")
//!     .client_errors(ClientErrors::Forward)
//!     .layer(client.into_inner());
//! let err = forwarding.oneshot(get("/missing")).await.unwrap_err();
//! assert_eq!(err.to_problem().status(), 404);
//! # }
//! ```

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use guardrail_core::{EventName, emit, metric};
use http::{Response, StatusCode};
use pin_project_lite::pin_project;
use serde::Deserialize;
use tower_layer::Layer;
use tower_service::Service;

use super::{BoxError, OutboundError, retry::retry_after};

/// What the caller gets when the upstream answers a 4xx other than 429.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClientErrors {
    /// 502: the caller's request was fine, the integration failed
    /// (default).
    #[default]
    BadGateway,
    /// The upstream's status (as a problem, never its body) for 400, 404,
    /// 409, 410, 412 and 422; any other 4xx stays 502.
    Forward,
}

/// An upstream's failure status, kept by [`OutboundError::Status`].
#[derive(Clone, Debug)]
pub struct UpstreamStatus {
    status: StatusCode,
    retry_after: Option<Duration>,
    forward: bool,
}

impl UpstreamStatus {
    /// The upstream's status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The upstream's `Retry-After` on a 429, capped.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether the caller gets this status (a client error forwarded).
    pub(super) fn forwarded(&self) -> bool {
        self.forward
    }
}

#[derive(Clone, Debug)]
struct Settings {
    name: Arc<str>,
    client_errors: ClientErrors,
    retry_after_cap: Duration,
}

/// Layer that applies [`CheckStatus`].
#[derive(Clone, Debug)]
pub struct CheckStatusLayer {
    settings: Arc<Settings>,
}

impl CheckStatusLayer {
    /// For the upstream `name` (in events and metrics): client errors
    /// become 502, a 429's `Retry-After` is capped at 5 minutes.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            settings: Arc::new(Settings {
                name: name.into(),
                client_errors: ClientErrors::default(),
                retry_after_cap: Duration::from_secs(300),
            }),
        }
    }

    /// What the caller gets for a 4xx other than 429.
    pub fn client_errors(mut self, client_errors: ClientErrors) -> Self {
        Arc::make_mut(&mut self.settings).client_errors = client_errors;
        self
    }

    /// The longest `Retry-After` passed on to the caller from a 429 (not
    /// [`RetryLayer::retry_after_cap`](super::RetryLayer::retry_after_cap),
    /// the longest the retries wait for).
    pub fn retry_after_cap(mut self, cap: Duration) -> Self {
        Arc::make_mut(&mut self.settings).retry_after_cap = cap;
        self
    }
}

impl CheckStatusLayer {
    /// Reports a failure found after the answer's head — a body that broke
    /// off or could not be read — as the layer reports the others
    /// (`integration.backend_failed`, the failure count). A refusal of the
    /// breaker or the bulkhead is not reported.
    pub fn report_failure(&self, error: &OutboundError) {
        self.settings.report(error);
    }
}

impl<S> Layer<S> for CheckStatusLayer {
    type Service = CheckStatus<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CheckStatus {
            inner,
            settings: Arc::clone(&self.settings),
        }
    }
}

/// Middleware that turns an upstream's failure status into an
/// [`OutboundError`] and reports failed calls; see [`CheckStatusLayer`].
#[derive(Clone)]
pub struct CheckStatus<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> CheckStatus<S> {
    guardrail_core::inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for CheckStatus<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckStatus")
            .field("inner", &self.inner)
            .field("settings", &self.settings)
            .finish()
    }
}

impl<S, R, ResB> Service<R> for CheckStatus<S>
where
    S: Service<R, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<ResB>;
    type Error = OutboundError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(OutboundError::from_inner)
    }

    fn call(&mut self, req: R) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(req),
            settings: Arc::clone(&self.settings),
        }
    }
}

pin_project! {
    /// Response future for [`CheckStatus`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        settings: Arc<Settings>,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("upstream", &&*self.settings.name)
            .finish_non_exhaustive()
    }
}

impl<F, ResB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<ResB>, OutboundError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let settings = &**this.settings;
        let out = match ready!(this.inner.poll(cx)) {
            Ok(res) if res.status().as_u16() < 400 => return Poll::Ready(Ok(res)),
            Ok(res) => OutboundError::Status(settings.judge(&res)),
            Err(e) => OutboundError::from_inner(e),
        };
        settings.report(&out);
        Poll::Ready(Err(out))
    }
}

impl Settings {
    fn judge<B>(&self, res: &Response<B>) -> UpstreamStatus {
        let status = res.status();
        let forward = self.client_errors == ClientErrors::Forward
            && matches!(status.as_u16(), 400 | 404 | 409 | 410 | 412 | 422);
        let retry_after = (status == StatusCode::TOO_MANY_REQUESTS)
            .then(|| retry_after(res.headers()))
            .flatten()
            .map(|wait| wait.min(self.retry_after_cap));
        UpstreamStatus {
            status,
            retry_after,
            forward,
        }
    }

    /// `integration.backend_failed` and the failure count, for a failure
    /// of the upstream's (not a refusal of ours, not a forwarded status).
    fn report(&self, error: &OutboundError) {
        let upstream = &*self.name;
        let (reason, status, cause) = match error {
            OutboundError::Timeout => ("timeout", None, None),
            OutboundError::Upstream(e) => ("error", None, Some(e)),
            OutboundError::Status(s) if !s.forwarded() => {
                ("status", Some(s.status().as_u16()), None)
            }
            _ => return,
        };
        emit!(
            WARN,
            EventName::INTEGRATION_BACKEND_FAILED,
            backend = upstream,
            upstream = upstream,
            purpose = "upstream",
            reason = reason,
            status = status,
            error = cause.map(tracing::field::display),
        );
        metrics::counter!(
            metric::OUTBOUND_FAILURES_TOTAL,
            "upstream" => upstream.to_owned(),
            "reason" => reason,
        )
        .increment(1);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use guardrails_testkit::capture;
    use http::Request;
    use tower::{ServiceExt, service_fn};

    use super::*;

    fn answering(
        status: u16,
        retry_after: Option<&'static str>,
    ) -> impl Service<Request<()>, Response = Response<()>, Error = std::io::Error> + Clone {
        service_fn(move |_req: Request<()>| async move {
            let mut res = Response::new(());
            *res.status_mut() = StatusCode::from_u16(status).unwrap();
            if let Some(wait) = retry_after {
                res.headers_mut()
                    .insert(http::header::RETRY_AFTER, wait.parse().unwrap());
            }
            Ok(res)
        })
    }

    async fn problem_for(
        layer: &CheckStatusLayer,
        status: u16,
        wait: Option<&'static str>,
    ) -> (u16, Option<String>) {
        let client = layer.layer(answering(status, wait));
        match client.oneshot(Request::new(())).await {
            Ok(res) => (res.status().as_u16(), None),
            Err(e) => {
                let problem = e.to_problem();
                let ra = problem
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned());
                (problem.status().as_u16(), ra)
            }
        }
    }

    #[tokio::test]
    async fn each_upstream_status_maps_as_documented() {
        let (_guard, _logs) = capture::json();
        let default = CheckStatusLayer::new("x");
        let forward = CheckStatusLayer::new("x").client_errors(ClientErrors::Forward);
        assert_eq!(problem_for(&default, 200, None).await, (200, None));
        assert_eq!(problem_for(&default, 304, None).await, (304, None));
        assert_eq!(problem_for(&default, 500, None).await, (502, None));
        assert_eq!(problem_for(&default, 503, Some("9")).await, (502, None));
        assert_eq!(problem_for(&default, 404, None).await, (502, None));
        assert_eq!(problem_for(&forward, 404, None).await, (404, None));
        assert_eq!(problem_for(&forward, 422, None).await, (422, None));
        assert_eq!(problem_for(&forward, 503, None).await, (502, None));
        // The upstream's view of our credentials or request is not the caller's.
        for status in [401, 403, 405, 407, 408, 413, 415, 431] {
            assert_eq!(problem_for(&forward, status, None).await, (502, None));
        }
        // 429: 503 with the upstream's wait, capped; 30 s without one.
        let ra = |s: &str| Some(s.to_owned());
        assert_eq!(
            problem_for(&default, 429, Some("12")).await,
            (503, ra("12"))
        );
        assert_eq!(
            problem_for(&default, 429, Some("86400")).await,
            (503, ra("300"))
        );
        assert_eq!(problem_for(&forward, 429, None).await, (503, ra("30")));
        let capped = CheckStatusLayer::new("x").retry_after_cap(Duration::from_secs(5));
        assert_eq!(problem_for(&capped, 429, Some("12")).await, (503, ra("5")));
    }

    #[tokio::test]
    async fn failures_of_the_upstream_are_reported_once_refusals_and_forwards_not() {
        let (_guard, logs) = capture::json();
        let failed = |logs: &capture::Capture| {
            logs.lines()
                .into_iter()
                .filter(|l| l["event"] == "integration.backend_failed")
                .collect::<Vec<_>>()
        };
        let layer = CheckStatusLayer::new("weather").client_errors(ClientErrors::Forward);
        layer
            .layer(answering(503, None))
            .oneshot(Request::new(()))
            .await
            .unwrap_err();
        let events = failed(&logs);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0]["backend"], "weather");
        assert_eq!(events[0]["reason"], "status");
        assert_eq!(events[0]["status"], 503);
        assert_eq!(events[0]["level"], "WARN");

        // A forwarded 404 is an answer, not a failure.
        layer
            .layer(answering(404, None))
            .oneshot(Request::new(()))
            .await
            .unwrap_err();
        assert_eq!(failed(&logs).len(), 1);

        // Errors of the call are; refusals of the guards further in are not.
        let timing_out = service_fn(|_req: Request<()>| async {
            Err::<Response<()>, _>(OutboundError::Timeout)
        });
        layer
            .layer(timing_out)
            .oneshot(Request::new(()))
            .await
            .unwrap_err();
        let refused = service_fn(|_req: Request<()>| async {
            Err::<Response<()>, _>(OutboundError::BulkheadFull)
        });
        let err = layer
            .layer(refused)
            .oneshot(Request::new(()))
            .await
            .unwrap_err();
        assert!(matches!(err, OutboundError::BulkheadFull), "{err:?}");
        let events = failed(&logs);
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[1]["reason"], "timeout");
    }
}

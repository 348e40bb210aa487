//! Request deadlines: a request not answered in time gets a 504 problem
//! and its handler's future is dropped.
//!
//! [`RequestDeadlineLayer`] gives every request a deadline (10 s unless
//! told otherwise, per path prefix with [`RequestDeadlineLayer::route`])
//! and puts it in the request's extensions as a [`Deadline`], so calls the
//! handler makes can use what is left of it. At the deadline the handler's
//! future is dropped — whatever it was waiting on is cancelled — and the
//! client gets `504 Gateway Timeout` (or 503, configurable) as
//! problem+json with the request id. Unlike tower's `Timeout`, the error
//! type stays the inner service's, so axum takes it without a
//! `HandleErrorLayer`; unlike tower-http's `TimeoutLayer`, the answer has a
//! body that says what happened.
//!
//! Needs a tokio runtime with its time driver.
//!
//! # Example
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//! use guardrail_core::Deadline;
//! use http::{Request, Response};
//! use timeout_retry_layer::RequestDeadlineLayer;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! tokio::time::pause();
//! let svc = ServiceBuilder::new()
//!     .layer(RequestDeadlineLayer::new(Duration::from_secs(2)).route("/reports/", Duration::from_secs(30)))
//!     .service(service_fn(|req: Request<()>| async move {
//!         let left = req.extensions().get::<Deadline>().unwrap().remaining();
//!         tokio::time::sleep(Duration::from_secs(5)).await;
//!         Ok::<_, Infallible>(Response::new(format!("{}s were left", left.as_secs())))
//!     }));
//!
//! let res = svc.clone().oneshot(Request::get("/api/me").body(()).unwrap()).await.unwrap();
//! assert_eq!(res.status(), 504);
//! assert_eq!(res.headers()["content-type"], "application/problem+json");
//!
//! let res = svc.oneshot(Request::get("/reports/q3").body(()).unwrap()).await.unwrap();
//! assert_eq!(res.status(), 200);
//! assert_eq!(res.body(), "30s were left");
//! # }
//! ```

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use guardrail_core::{
    Deadline, EventName, GuardFuture, Problem, RejectionBody, RequestId, emit, problem::types,
};
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_layer::Layer;
use tower_service::Service;

use crate::{TimeoutConfig, config::DEFAULT_REQUEST_TIMEOUT, routes::RouteOverrides};

/// Layer that applies [`RequestDeadline`]: a deadline per request.
#[derive(Clone)]
pub struct RequestDeadlineLayer {
    settings: Arc<Settings>,
}

#[derive(Clone, Debug)]
struct Settings {
    timeouts: RouteOverrides<Duration>,
    status: StatusCode,
    metric: metrics::Counter,
}

impl fmt::Debug for RequestDeadlineLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestDeadlineLayer")
            .field("timeouts", &self.settings.timeouts)
            .field("status", &self.settings.status)
            .finish()
    }
}

impl Default for RequestDeadlineLayer {
    fn default() -> Self {
        Self::new(DEFAULT_REQUEST_TIMEOUT)
    }
}

impl RequestDeadlineLayer {
    /// Requests must be answered within `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            settings: Arc::new(Settings {
                timeouts: RouteOverrides::new(timeout),
                status: StatusCode::GATEWAY_TIMEOUT,
                metric: metrics::counter!(guardrail_core::metric::DEADLINE_EXCEEDED_TOTAL),
            }),
        }
    }

    /// The layer of a validated `[timeout]` section.
    pub fn from_config(config: &TimeoutConfig) -> Self {
        let mut layer = Self::new(config.request);
        if config.status == 503 {
            layer = layer.status(StatusCode::SERVICE_UNAVAILABLE);
        }
        for route in &config.routes {
            layer = layer.route(route.prefix.clone(), route.request);
        }
        layer
    }

    /// Requests whose path starts with `prefix` must be answered within
    /// `timeout` (the longest matching prefix wins).
    pub fn route(mut self, prefix: impl Into<String>, timeout: Duration) -> Self {
        self.settings_mut().timeouts.insert(prefix.into(), timeout);
        self
    }

    /// The deadline of paths no route matches.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings_mut().timeouts.set_default(timeout);
        self
    }

    /// Answer 503 Service Unavailable (with `Retry-After: 1`) at the
    /// deadline instead of 504 Gateway Timeout. Any status other than 503
    /// means 504.
    pub fn status(mut self, status: StatusCode) -> Self {
        self.settings_mut().status = if status == StatusCode::SERVICE_UNAVAILABLE {
            status
        } else {
            StatusCode::GATEWAY_TIMEOUT
        };
        self
    }

    fn settings_mut(&mut self) -> &mut Settings {
        // Builders run before the layer is shared; a clone is copied.
        Arc::make_mut(&mut self.settings)
    }
}

impl<S> Layer<S> for RequestDeadlineLayer {
    type Service = RequestDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestDeadline {
            inner,
            settings: Arc::clone(&self.settings),
        }
    }
}

/// Middleware that answers 504 (or 503) problem+json when the inner
/// service has not answered by the request's deadline; see the
/// [`RequestDeadlineLayer`].
#[derive(Clone)]
pub struct RequestDeadline<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> RequestDeadline<S> {
    /// Wraps `inner` with `layer`'s deadlines.
    pub fn new(inner: S, layer: &RequestDeadlineLayer) -> Self {
        layer.layer(inner)
    }

    guardrail_core::inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for RequestDeadline<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestDeadline")
            .field("inner", &self.inner)
            .field("settings", &self.settings)
            .finish()
    }
}

impl<S, B, ResB> Service<Request<B>> for RequestDeadline<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: RejectionBody,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = GuardFuture<Timed<S::Future>>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let timeout = self.settings.timeouts.get(req.uri().path());
        let mut deadline = Deadline::after(timeout);
        // An earlier deadline set further out (or by a caller) stays.
        if let Some(outer) = req.extensions().get::<Deadline>() {
            deadline = deadline.min(*outer);
        }
        // What the request really has (an earlier deadline may have won).
        let timeout = deadline.remaining().min(timeout);
        req.extensions_mut().insert(deadline);
        let request_id = req.extensions().get::<RequestId>().cloned();
        if timeout.is_zero() {
            // Already past: the handler is not started at all.
            return GuardFuture::pass(Timed {
                inner: None,
                deadline,
                sleep: None,
                timeout,
                request_id,
                settings: Arc::clone(&self.settings),
            });
        }
        GuardFuture::pass(Timed {
            inner: Some(self.inner.call(req)),
            deadline,
            sleep: None,
            timeout,
            request_id,
            settings: Arc::clone(&self.settings),
        })
    }
}

pin_project! {
    /// Response future for [`RequestDeadline`]: the inner future, raced
    /// against the deadline.
    pub struct Timed<F> {
        #[pin]
        inner: Option<F>,
        deadline: Deadline,
        // Made when the handler first has to wait: one that answers at
        // once never touches the timer.
        #[pin]
        sleep: Option<Sleep>,
        timeout: Duration,
        request_id: Option<RequestId>,
        settings: Arc<Settings>,
    }
}

impl<F> fmt::Debug for Timed<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timed")
            .field("timeout", &self.timeout)
            .field("expired", &self.inner.is_none())
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for Timed<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: RejectionBody,
{
    type Output = Result<Response<B>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(inner) = this.inner.as_mut().as_pin_mut() {
            // An answer that is ready wins over a deadline that just passed.
            if let Poll::Ready(out) = inner.poll(cx) {
                return Poll::Ready(out);
            }
            if this.sleep.is_none() {
                this.sleep
                    .set(Some(tokio::time::sleep_until(this.deadline.instant())));
            }
            if let Some(sleep) = this.sleep.as_mut().as_pin_mut()
                && sleep.poll(cx).is_pending()
            {
                return Poll::Pending;
            }
            // Dropping the handler's future cancels what it waits on.
            this.inner.set(None);
        }
        Poll::Ready(Ok(expired(
            this.settings,
            *this.timeout,
            this.request_id.take(),
        )))
    }
}

#[cold]
fn expired<B: RejectionBody>(
    settings: &Settings,
    timeout: Duration,
    request_id: Option<RequestId>,
) -> Response<B> {
    settings.metric.increment(1);
    let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    emit!(
        WARN,
        EventName::API_DEADLINE_EXCEEDED,
        timeout_ms = timeout_ms,
        status = settings.status.as_u16(),
        request_id = request_id.as_ref().map(tracing::field::display),
    );
    let problem = if settings.status == StatusCode::SERVICE_UNAVAILABLE {
        Problem::service_unavailable(1).with_type(types::DEADLINE_EXCEEDED)
    } else {
        Problem::gateway_timeout()
    };
    let mut problem = problem
        .title("Request took too long")
        .detail("The request was not completed in time. Please try again later.");
    if let Some(id) = request_id {
        problem = problem.request_id(id);
    }
    problem.into_response()
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        sync::atomic::{AtomicBool, Ordering},
    };

    use guardrails_testkit::capture;
    use http_body_util::BodyExt;
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    use super::*;

    /// Sleeps `secs` (paused clock) and sets `dropped` if its future is
    /// dropped before it finishes.
    fn slow_service(
        secs: u64,
        dropped: Arc<AtomicBool>,
    ) -> impl Service<Request<()>, Response = Response<String>, Error = Infallible, Future: Send> + Clone
    {
        service_fn(move |req: Request<()>| {
            let dropped = Arc::clone(&dropped);
            async move {
                struct SetOnDrop(Arc<AtomicBool>, bool);
                impl Drop for SetOnDrop {
                    fn drop(&mut self) {
                        if !self.1 {
                            self.0.store(true, Ordering::SeqCst);
                        }
                    }
                }
                let mut guard = SetOnDrop(dropped, false);
                let left = req.extensions().get::<Deadline>().map(Deadline::remaining);
                tokio::time::sleep(Duration::from_secs(secs)).await;
                guard.1 = true;
                Ok::<_, Infallible>(Response::new(format!("{left:?}")))
            }
        })
    }

    async fn json(res: Response<String>) -> serde_json::Value {
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_handler_gets_504_at_the_deadline_and_its_future_is_dropped() {
        let (_guard, logs) = capture::json();
        let dropped = Arc::new(AtomicBool::new(false));
        let svc = ServiceBuilder::new()
            .layer(RequestDeadlineLayer::new(Duration::from_secs(2)))
            .service(slow_service(5, Arc::clone(&dropped)));
        let mut req = Request::get("/api/slow").body(()).unwrap();
        req.extensions_mut()
            .insert(RequestId::parse("req-1").unwrap());
        let start = tokio::time::Instant::now();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert_eq!(res.status(), 504);
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        assert!(
            dropped.load(Ordering::SeqCst),
            "the handler's future was dropped"
        );
        let body = json(res).await;
        assert_eq!(body["status"], 504);
        assert_eq!(body["request_id"], "req-1");
        assert_eq!(body["type"], types::DEADLINE_EXCEEDED);
        let logged = logs.lines();
        let event = logged
            .iter()
            .find(|e| e["event"] == "api.deadline_exceeded")
            .expect("the deadline is logged");
        assert_eq!(event["timeout_ms"], 2000);
        assert_eq!(event["request_id"], "req-1");
    }

    #[tokio::test(start_paused = true)]
    async fn a_handler_within_its_deadline_is_answered_and_sees_the_time_left() {
        // Every test that reaches an event's callsite has a subscriber, so no
        // thread caches the callsite as disabled for the others.
        let (_guard, _logs) = capture::json();
        let dropped = Arc::new(AtomicBool::new(false));
        let svc = ServiceBuilder::new()
            .layer(RequestDeadlineLayer::new(Duration::from_secs(10)))
            .service(slow_service(3, Arc::clone(&dropped)));
        let res = svc
            .oneshot(Request::get("/").body(()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.body(), "Some(10s)");
        assert!(!dropped.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn route_overrides_apply_by_longest_prefix() {
        // Every test that reaches an event's callsite has a subscriber, so no
        // thread caches the callsite as disabled for the others.
        let (_guard, _logs) = capture::json();
        let dropped = Arc::new(AtomicBool::new(false));
        let svc = ServiceBuilder::new()
            .layer(
                RequestDeadlineLayer::new(Duration::from_secs(1))
                    .route("/api/reports/", Duration::from_secs(60))
                    .route("/api/reports/quick", Duration::from_millis(500)),
            )
            .service(slow_service(30, Arc::clone(&dropped)));
        let status = |path: &'static str| {
            let svc = svc.clone();
            async move {
                let start = tokio::time::Instant::now();
                let res = svc
                    .oneshot(Request::get(path).body(()).unwrap())
                    .await
                    .unwrap();
                (res.status().as_u16(), start.elapsed())
            }
        };
        assert_eq!(status("/api/me").await, (504, Duration::from_secs(1)));
        assert_eq!(
            status("/api/reports/q3").await,
            (200, Duration::from_secs(30))
        );
        assert_eq!(
            status("/api/reports/quick").await,
            (504, Duration::from_millis(500))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_outer_deadline_is_kept_and_503_can_be_chosen() {
        // Every test that reaches an event's callsite has a subscriber, so no
        // thread caches the callsite as disabled for the others.
        let (_guard, _logs) = capture::json();
        let dropped = Arc::new(AtomicBool::new(false));
        let svc = ServiceBuilder::new()
            .layer(
                RequestDeadlineLayer::new(Duration::from_secs(60))
                    .status(StatusCode::SERVICE_UNAVAILABLE),
            )
            .service(slow_service(30, Arc::clone(&dropped)));
        let mut req = Request::get("/").body(()).unwrap();
        req.extensions_mut()
            .insert(Deadline::after(Duration::from_secs(3)));
        let start = tokio::time::Instant::now();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()["retry-after"], "1");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_whose_deadline_has_passed_never_reaches_the_handler() {
        let (_guard, logs) = capture::json();
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let svc = ServiceBuilder::new()
            .layer(RequestDeadlineLayer::new(Duration::from_secs(10)))
            .service(service_fn(move |_req: Request<()>| {
                counted.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, Infallible>(Response::new(String::new())) }
            }));
        let mut req = Request::get("/").body(()).unwrap();
        req.extensions_mut()
            .insert(Deadline::after(Duration::from_secs(1)));
        tokio::time::advance(Duration::from_secs(2)).await;
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.status(), 504);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        let lines = logs.lines();
        let event = lines
            .iter()
            .find(|e| e["event"] == "api.deadline_exceeded")
            .unwrap();
        assert_eq!(event["timeout_ms"], 0, "the effective deadline is logged");
    }

    #[test]
    fn from_config_reads_routes_and_status() {
        let config = TimeoutConfig {
            request: Duration::from_secs(4),
            status: 503,
            routes: vec![crate::config::TimeoutRoute {
                prefix: "/slow/".into(),
                request: Duration::from_secs(40),
            }],
        };
        let layer = RequestDeadlineLayer::from_config(&config);
        assert_eq!(layer.settings.timeouts.get("/x"), Duration::from_secs(4));
        assert_eq!(
            layer.settings.timeouts.get("/slow/y"),
            Duration::from_secs(40)
        );
        assert_eq!(layer.settings.status, StatusCode::SERVICE_UNAVAILABLE);
    }
}

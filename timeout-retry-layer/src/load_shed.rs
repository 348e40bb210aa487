//! Load shedding: beyond a number of requests in flight, answer 503 at
//! once instead of queueing.
//!
//! [`LoadShedLayer`] counts the requests inside it; one more than
//! `max_in_flight` is answered `503` problem+json with `Retry-After: 1`
//! straight away — never queued, so an overloaded service sheds work
//! instead of building latency. Unlike tower's `LoadShed`, it decides on
//! its own count rather than on the inner service's readiness (so it works
//! behind axum's router, which is always ready) and answers a response,
//! not an `Overloaded` error axum can't take without `HandleErrorLayer`.
//! The count and the number shed are in the health report
//! ([`LoadShedLayer::health_source`]) and the metrics
//! `guardrails_in_flight_requests` and `guardrails_load_shed_total`.
//!
//! # Example
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//! use http::{Request, Response};
//! use timeout_retry_layer::LoadShedLayer;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let shed = LoadShedLayer::new(1);
//! let mut svc = ServiceBuilder::new()
//!     .layer(shed.clone())
//!     .service(service_fn(|_req: Request<()>| async {
//!         tokio::time::sleep(Duration::from_millis(10)).await;
//!         Ok::<_, Infallible>(Response::new(String::from("done")))
//!     }));
//!
//! let first = svc.ready().await.unwrap().call(Request::new(()));
//! let second = svc.ready().await.unwrap().call(Request::new(()));
//! let (first, second) = tokio::join!(first, second);
//! assert_eq!(first.unwrap().status(), 200);
//! let second = second.unwrap();
//! assert_eq!(second.status(), 503);
//! assert_eq!(second.headers()["retry-after"], "1");
//! assert_eq!(shed.shed_total(), 1);
//! assert_eq!(shed.in_flight(), 0);
//! # }
//! ```

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use guardrail_core::{
    EventName, GuardFuture, Problem, RejectionBody, RequestId, emit,
    health::{ComponentHealth, HealthSource},
};
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    LoadShedConfig,
    slots::{Slot, Slots},
};

/// Layer that applies [`LoadShed`]. Clones share one count.
#[derive(Clone)]
pub struct LoadShedLayer {
    state: Arc<State>,
}

struct State {
    /// `max() == usize::MAX`: off.
    slots: Arc<Slots>,
    /// Paths never counted nor shed: exact, or `/prefix/*`.
    exempt: Vec<String>,
    shed: AtomicU64,
    shed_counter: metrics::Counter,
}

impl fmt::Debug for LoadShedLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadShedLayer")
            .field("max_in_flight", &self.max_in_flight())
            .field("in_flight", &self.in_flight())
            .field("shed_total", &self.shed_total())
            .finish()
    }
}

impl LoadShedLayer {
    /// Sheds requests beyond `max_in_flight` at once (at least 1).
    pub fn new(max_in_flight: usize) -> Self {
        Self::with_max(max_in_flight.max(1))
    }

    /// Never sheds (what an unset `load_shed.max_in_flight` means): the
    /// layer passes every request through without counting.
    pub fn disabled() -> Self {
        Self::with_max(usize::MAX)
    }

    /// The layer of a validated `[load_shed]` section.
    pub fn from_config(config: &LoadShedConfig) -> Self {
        config
            .max_in_flight
            .map_or_else(Self::disabled, Self::new)
            .exempt(config.exempt.iter().cloned())
    }

    /// Paths never counted nor shed — health probes, say, so an orchestrator
    /// doesn't restart a replica for being busy: exact paths, or
    /// `/prefix/*` for a path and everything under it.
    pub fn exempt<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        let exempt: Vec<String> = paths.into_iter().map(Into::into).collect();
        let state = &self.state;
        self.state = Arc::new(State {
            slots: Slots::new(
                state.slots.max(),
                metrics::gauge!(guardrail_core::metric::IN_FLIGHT_REQUESTS),
            ),
            exempt,
            shed: AtomicU64::new(0),
            shed_counter: state.shed_counter.clone(),
        });
        self
    }

    fn with_max(max_in_flight: usize) -> Self {
        Self {
            state: Arc::new(State {
                slots: Slots::new(
                    max_in_flight,
                    metrics::gauge!(guardrail_core::metric::IN_FLIGHT_REQUESTS),
                ),
                exempt: Vec::new(),
                shed: AtomicU64::new(0),
                shed_counter: metrics::counter!(guardrail_core::metric::LOAD_SHED_TOTAL),
            }),
        }
    }

    /// The most requests in flight, `None` when shedding is off.
    pub fn max_in_flight(&self) -> Option<usize> {
        let max = self.state.slots.max();
        (max != usize::MAX).then_some(max)
    }

    /// Requests in flight now (0 while shedding is off: nothing counts).
    pub fn in_flight(&self) -> usize {
        self.state.slots.in_flight()
    }

    /// Requests shed since start.
    pub fn shed_total(&self) -> u64 {
        self.state.shed.load(Ordering::Relaxed)
    }

    /// The `load_shed` component of the health report: `warn` while the
    /// limit is reached, with the count, the limit and the number shed.
    pub fn health_source(&self) -> Arc<dyn HealthSource> {
        Arc::new(self.clone())
    }
}

impl HealthSource for LoadShedLayer {
    fn name(&self) -> &str {
        "load_shed"
    }

    fn check(&self) -> ComponentHealth {
        let in_flight = self.in_flight();
        let details = serde_json::json!({
            "in_flight": in_flight,
            "max_in_flight": self.max_in_flight(),
            "shed_total": self.shed_total(),
        });
        match self.max_in_flight() {
            Some(max) if in_flight >= max => ComponentHealth::warn(details),
            _ => ComponentHealth::pass(details),
        }
    }
}

impl<S> Layer<S> for LoadShedLayer {
    type Service = LoadShed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LoadShed {
            inner,
            state: Arc::clone(&self.state),
        }
    }
}

/// Middleware that answers 503 when too many requests are in flight; see
/// [`LoadShedLayer`].
#[derive(Clone)]
pub struct LoadShed<S> {
    inner: S,
    state: Arc<State>,
}

impl<S> LoadShed<S> {
    /// Wraps `inner`, counting with `layer` (and its other services).
    pub fn new(inner: S, layer: &LoadShedLayer) -> Self {
        layer.layer(inner)
    }

    guardrail_core::inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for LoadShed<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadShed")
            .field("inner", &self.inner)
            .field("max_in_flight", &self.state.slots.max())
            .finish()
    }
}

impl<S, B, ResB> Service<Request<B>> for LoadShed<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: RejectionBody,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = GuardFuture<InFlight<S::Future>>;

    /// The inner service's readiness: the count is taken in `call`, so a
    /// request is never held waiting for a slot.
    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let state = &self.state;
        if state.slots.max() == usize::MAX || state.is_exempt(req.uri().path()) {
            return GuardFuture::pass(InFlight {
                inner: self.inner.call(req),
                slot: None,
            });
        }
        // Taken before the inner call, so a panic in it (caught further
        // out) still gives the place back.
        let Some(slot) = state.slots.try_take() else {
            return GuardFuture::reject(shed(state, req.extensions().get::<RequestId>()));
        };
        GuardFuture::pass(InFlight {
            inner: self.inner.call(req),
            slot: Some(slot),
        })
    }
}

#[cold]
fn shed(state: &State, request_id: Option<&RequestId>) -> Problem {
    state.shed.fetch_add(1, Ordering::Relaxed);
    state.shed_counter.increment(1);
    emit!(
        WARN,
        EventName::API_LOAD_SHED,
        max_in_flight = state.slots.max(),
        request_id = request_id.map(tracing::field::display),
    );
    let problem = Problem::service_unavailable(1)
        .title("Service overloaded")
        .detail("The service is handling too many requests. Please retry shortly.");
    match request_id {
        Some(id) => problem.request_id(id.clone()),
        None => problem,
    }
}

impl State {
    fn is_exempt(&self, path: &str) -> bool {
        self.exempt
            .iter()
            .any(|pattern| match pattern.strip_suffix("/*") {
                Some(prefix) => path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
                None => path == pattern,
            })
    }
}

pin_project! {
    /// Response future for [`LoadShed`]: the inner future, holding the
    /// request's place in the count until it completes or is dropped.
    pub struct InFlight<F> {
        #[pin]
        inner: F,
        slot: Option<Slot>,
    }
}

impl<F> fmt::Debug for InFlight<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlight")
            .field("counted", &self.slot.is_some())
            .finish_non_exhaustive()
    }
}

impl<F: Future> Future for InFlight<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        // The answer is ready: the place is free for the next request.
        drop(this.slot.take());
        Poll::Ready(out)
    }
}

#[cfg(test)]
mod tests {
    use std::{convert::Infallible, time::Duration};

    use guardrail_core::health::HealthStatus;
    use guardrails_testkit::capture;
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    use super::*;

    fn slow(
        shed: LoadShedLayer,
    ) -> impl Service<Request<()>, Response = Response<String>, Error = Infallible, Future: Send> + Clone
    {
        ServiceBuilder::new()
            .layer(shed)
            .service(service_fn(|_req: Request<()>| async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok::<_, Infallible>(Response::new(String::from("done")))
            }))
    }

    #[tokio::test(start_paused = true)]
    async fn the_request_beyond_max_in_flight_gets_503_at_once_and_slots_come_back() {
        let (_guard, logs) = capture::json();
        let shed = LoadShedLayer::new(2);
        let svc = slow(shed.clone());
        let a = tokio::spawn(svc.clone().oneshot(Request::new(())));
        let b = tokio::spawn(svc.clone().oneshot(Request::new(())));
        tokio::task::yield_now().await;
        assert_eq!(shed.in_flight(), 2);
        assert_eq!(shed.check().status, HealthStatus::Warn);

        let start = tokio::time::Instant::now();
        let mut req = Request::new(());
        req.extensions_mut()
            .insert(RequestId::parse("req-3").unwrap());
        let third = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO, "answered without waiting");
        assert_eq!(third.status(), 503);
        assert_eq!(third.headers()["retry-after"], "1");
        assert!(third.body().contains("\"request_id\":\"req-3\""));

        assert_eq!(a.await.unwrap().unwrap().status(), 200);
        assert_eq!(b.await.unwrap().unwrap().status(), 200);
        assert_eq!(shed.in_flight(), 0);
        assert_eq!(shed.shed_total(), 1);
        let health = shed.check();
        assert_eq!(health.status, HealthStatus::Pass);
        assert_eq!(health.details["shed_total"], 1);
        // Room again.
        assert_eq!(svc.oneshot(Request::new(())).await.unwrap().status(), 200);
        assert!(logs.lines().iter().any(|l| l["event"] == "api.load_shed"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_request_gives_its_slot_back() {
        let shed = LoadShedLayer::new(1);
        let svc = slow(shed.clone());
        let pending = tokio::spawn(svc.clone().oneshot(Request::new(())));
        tokio::task::yield_now().await;
        assert_eq!(shed.in_flight(), 1);
        pending.abort();
        let _ = pending.await;
        assert_eq!(shed.in_flight(), 0);
        assert_eq!(svc.oneshot(Request::new(())).await.unwrap().status(), 200);
    }

    #[tokio::test(start_paused = true)]
    async fn exempt_paths_are_never_counted_nor_shed() {
        let shed = LoadShedLayer::new(1).exempt(["/api/health", "/internal/*"]);
        let svc = slow(shed.clone());
        let busy = tokio::spawn(
            svc.clone()
                .oneshot(Request::get("/api/me").body(()).unwrap()),
        );
        tokio::task::yield_now().await;
        assert_eq!(shed.in_flight(), 1);
        // Shed at once while the one place is taken...
        for path in ["/api/healthz", "/internals"] {
            let res = svc
                .clone()
                .oneshot(Request::get(path).body(()).unwrap())
                .await
                .unwrap();
            assert_eq!(res.status(), 503, "{path}");
        }
        // ...while exempt paths run beside it.
        let exempt: Vec<_> = ["/api/health", "/internal", "/internal/metrics"]
            .into_iter()
            .map(|path| tokio::spawn(svc.clone().oneshot(Request::get(path).body(()).unwrap())))
            .collect();
        tokio::task::yield_now().await;
        assert_eq!(shed.in_flight(), 1, "exempt requests are not counted");
        for task in exempt {
            assert_eq!(task.await.unwrap().unwrap().status(), 200);
        }
        assert_eq!(busy.await.unwrap().unwrap().status(), 200);
    }

    #[tokio::test]
    async fn a_panic_in_the_inner_call_gives_the_place_back() {
        #[derive(Clone)]
        struct PanicsInCall;
        impl Service<Request<()>> for PanicsInCall {
            type Response = Response<String>;
            type Error = Infallible;
            type Future = std::future::Ready<Result<Response<String>, Infallible>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, _: Request<()>) -> Self::Future {
                panic!("in call")
            }
        }
        let shed = LoadShedLayer::new(1);
        let mut svc = shed.layer(PanicsInCall);
        for _ in 0..3 {
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                drop(svc.call(Request::new(())));
            }));
            assert!(caught.is_err());
            assert_eq!(shed.in_flight(), 0);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn disabled_never_sheds() {
        let shed = LoadShedLayer::from_config(&LoadShedConfig::default());
        assert_eq!(shed.max_in_flight(), None);
        let svc = slow(shed.clone());
        let all: Vec<_> = (0..50)
            .map(|_| tokio::spawn(svc.clone().oneshot(Request::new(()))))
            .collect();
        for task in all {
            assert_eq!(task.await.unwrap().unwrap().status(), 200);
        }
        assert_eq!(shed.shed_total(), 0);
    }
}

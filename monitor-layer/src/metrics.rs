//! Request metrics through the `metrics` facade (the service picks the
//! exporter), named as OpenTelemetry's HTTP semantic conventions name them.
//!
//! Per request, once it is answered:
//!
//! - `http_server_request_duration_seconds` — a histogram (OTel's
//!   `http.server.request.duration`); give the exporter
//!   [`DURATION_BUCKETS`] (OTel's advisory buckets plus 2 s, the P1
//!   latency threshold) for real buckets;
//! - `http_server_requests_total` — a counter;
//! - `http_server_active_requests` — requests in flight (a gauge).
//!
//! Labels: `http_request_method` (the nine standard methods, anything else
//! `_OTHER`), `http_route` (axum's `MatchedPath` — the route template, such
//! as `/api/users/{user_id}` — and `unmatched` for everything else, never
//! the raw path: a flood of random paths adds no series) and
//! `http_response_status_code`. With [`RequestStats`], each answer is
//! recorded there too.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use monitor_layer::{MetricsLayer, RequestStats, Window};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let stats = RequestStats::new();
//! let svc = ServiceBuilder::new()
//!     .layer(MetricsLayer::new().stats(stats.clone()))
//!     .service(service_fn(|_req: Request<()>| async {
//!         Ok::<_, Infallible>(Response::new(String::from("hi")))
//!     }));
//! let res = svc.oneshot(Request::new(())).await.unwrap();
//! assert_eq!(res.status(), 200);
//! assert_eq!(stats.window(Window::Minute).requests, 1);
//! # }
//! ```

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, PoisonError, RwLock},
    task::{Context, Poll, ready},
    time::Instant,
};

use http::{Request, Response};
use metrics::{Counter, Gauge, Histogram, SharedString};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::RequestStats;

/// `http_server_request_duration_seconds`.
pub const REQUEST_DURATION: &str = "http_server_request_duration_seconds";
/// `http_server_requests_total`.
pub const REQUESTS_TOTAL: &str = "http_server_requests_total";
/// `http_server_active_requests`.
pub const ACTIVE_REQUESTS: &str = "http_server_active_requests";
/// Describes every metric of the stack to the installed recorder — the
/// three request metrics (the duration in seconds) and every guardrail's
/// ([`guardrail_core::metric::ALL`]) — so an exporter writes their help
/// (`# HELP`, which `promtool check metrics` asks for). Call it once after
/// installing the recorder ([`prometheus::install`](crate::prometheus::install)
/// does).
pub fn describe() {
    use guardrail_core::metric::{ALL, Kind};
    metrics::describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Duration of HTTP server requests, to the response head."
    );
    metrics::describe_counter!(REQUESTS_TOTAL, "HTTP server requests answered.");
    metrics::describe_gauge!(ACTIVE_REQUESTS, "HTTP server requests in flight.");
    for metric in ALL {
        match metric.kind {
            Kind::Counter => metrics::describe_counter!(metric.name, metric.help),
            Kind::Gauge => metrics::describe_gauge!(metric.name, metric.help),
        }
    }
}

/// Sets `guardrails_events_total{event}` to how many of each event alert
/// rules watch ([`guardrail_core::event::COUNTED`]) this process has
/// emitted, for the Prometheus rules that read them
/// ([`prometheus::metrics_response`](crate::prometheus::metrics_response)
/// calls it before each scrape; call it yourself with another exporter).
pub fn publish_event_counts() {
    use guardrail_core::event::{COUNTED, counts};
    for (name, count) in COUNTED.iter().zip(counts()) {
        metrics::counter!(guardrail_core::metric::EVENTS_TOTAL, "event" => name.as_str())
            .absolute(count);
    }
}

/// The route label of a request no route matched.
pub const UNMATCHED: &str = guardrail_core::semconv::UNMATCHED_ROUTE;

/// The duration histogram's buckets, in seconds: OpenTelemetry's advisory
/// buckets for `http.server.request.duration`, plus 2 s (the P1 "P95 >
/// 2 s" threshold). For Prometheus:
/// `PrometheusBuilder::new().set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), DURATION_BUCKETS)`.
pub const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 2.5, 5.0, 7.5, 10.0,
];

/// Layer that applies [`Metrics`]. Clones share their metric handles.
#[derive(Clone, Debug)]
pub struct MetricsLayer {
    stats: Option<RequestStats>,
    handles: Arc<Handles>,
}

impl Default for MetricsLayer {
    fn default() -> Self {
        Self::new()
    }
}

/// One series' handles: its method and status, its histogram and counter.
type Series = (&'static str, u16, Histogram, Counter);

/// The metric handles, registered once per (route, method, status) rather
/// than looked up by name and labels on every request. Bounded: routes are
/// templates (and `unmatched`), methods ten, statuses what the service
/// answers.
struct Handles {
    active: Gauge,
    by_route: RwLock<HashMap<Box<str>, Vec<Series>>>,
}

impl fmt::Debug for Handles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handles").finish_non_exhaustive()
    }
}

impl Handles {
    fn record(&self, method: &'static str, route: &str, status: u16, seconds: f64) {
        let found = self
            .by_route
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(route)
            .and_then(|series| {
                series
                    .iter()
                    .find(|(m, s, _, _)| *m == method && *s == status)
                    .map(|(_, _, histogram, counter)| (histogram.clone(), counter.clone()))
            });
        let (histogram, counter) = match found {
            Some(handles) => handles,
            None => self.register(method, route, status),
        };
        histogram.record(seconds);
        counter.increment(1);
    }

    #[cold]
    fn register(&self, method: &'static str, route: &str, status: u16) -> (Histogram, Counter) {
        let labels = [
            ("http_request_method", SharedString::const_str(method)),
            ("http_route", SharedString::from(route.to_owned())),
            (
                "http_response_status_code",
                SharedString::from(status.to_string()),
            ),
        ];
        let mut by_route = self
            .by_route
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let series = by_route.entry(route.into()).or_default();
        // Another request may have registered it meanwhile.
        if let Some((_, _, histogram, counter)) = series
            .iter()
            .find(|(m, s, _, _)| *m == method && *s == status)
        {
            return (histogram.clone(), counter.clone());
        }
        let histogram = metrics::histogram!(REQUEST_DURATION, &labels);
        let counter = metrics::counter!(REQUESTS_TOTAL, &labels);
        series.push((method, status, histogram.clone(), counter.clone()));
        (histogram, counter)
    }
}

impl MetricsLayer {
    /// Request metrics, and no in-process statistics. Its metrics go to
    /// the recorder installed when it is built (install it first).
    pub fn new() -> Self {
        Self {
            stats: None,
            handles: Arc::new(Handles {
                active: metrics::gauge!(ACTIVE_REQUESTS),
                by_route: RwLock::default(),
            }),
        }
    }

    /// Records every answer in `stats` too (for the health report and the
    /// alert rules).
    pub fn stats(mut self, stats: RequestStats) -> Self {
        self.stats = Some(stats);
        self
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Metrics {
            inner,
            stats: self.stats.clone(),
            handles: Arc::clone(&self.handles),
        }
    }
}

/// Middleware that records request metrics; see [`MetricsLayer`].
#[derive(Clone)]
pub struct Metrics<S> {
    inner: S,
    stats: Option<RequestStats>,
    handles: Arc<Handles>,
}

impl<S> Metrics<S> {
    guardrail_core::inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for Metrics<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("inner", &self.inner)
            .field("stats", &self.stats.is_some())
            .finish()
    }
}

/// The matched route template (a cheap clone of axum's `Arc<str>`), or
/// none: `unmatched`.
#[cfg(feature = "axum")]
type Route = Option<axum::extract::MatchedPath>;
#[cfg(not(feature = "axum"))]
type Route = Option<std::convert::Infallible>;

#[cfg(feature = "axum")]
fn route_of<B>(req: &Request<B>) -> Route {
    req.extensions()
        .get::<axum::extract::MatchedPath>()
        .cloned()
}

#[cfg(not(feature = "axum"))]
fn route_of<B>(_req: &Request<B>) -> Route {
    None
}

#[cfg(feature = "axum")]
fn route_str(route: &Route) -> &str {
    route.as_ref().map_or(UNMATCHED, |m| m.as_str())
}

#[cfg(not(feature = "axum"))]
fn route_str(route: &Route) -> &str {
    match route {
        Some(never) => match *never {},
        None => UNMATCHED,
    }
}

/// In flight until dropped (answered, failed or cancelled).
struct Active(Gauge);

impl Active {
    fn start(gauge: &Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Metrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let method = guardrail_core::semconv::method_name(req.method());
        let route = route_of(&req);
        ResponseFuture {
            inner: self.inner.call(req),
            start: Instant::now(),
            method,
            route,
            stats: self.stats.clone(),
            active: Active::start(&self.handles.active),
            handles: Arc::clone(&self.handles),
        }
    }
}

pin_project! {
    /// Response future for [`Metrics`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        start: Instant,
        method: &'static str,
        route: Route,
        stats: Option<RequestStats>,
        handles: Arc<Handles>,
        active: Active,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("method", &self.method)
            .field("route", &route_str(&self.route))
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = ready!(this.inner.poll(cx));
        let latency = this.start.elapsed();
        // An error reaching here never became an answer: counted as 500,
        // as the server will answer it.
        let status = out.as_ref().map_or(500, |res| res.status().as_u16());
        this.handles.record(
            this.method,
            route_str(this.route),
            status,
            latency.as_secs_f64(),
        );
        if let Some(stats) = this.stats {
            stats.record(status, latency);
        }
        Poll::Ready(out)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::{Router, routing::get};
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    use tower::ServiceExt;

    use super::*;
    use crate::Window;

    #[test]
    fn every_metric_is_described() {
        let recorder = PrometheusBuilder::new().build_recorder();
        metrics::with_local_recorder(&recorder, || {
            describe();
            metrics::histogram!(REQUEST_DURATION).record(0.1);
            metrics::counter!(REQUESTS_TOTAL).increment(1);
            metrics::gauge!(ACTIVE_REQUESTS).set(1.0);
            for metric in guardrail_core::metric::ALL {
                match metric.kind {
                    guardrail_core::metric::Kind::Counter => {
                        metrics::counter!(metric.name).increment(1)
                    }
                    guardrail_core::metric::Kind::Gauge => metrics::gauge!(metric.name).set(1.0),
                }
            }
        });
        let text = recorder.handle().render();
        let names = [REQUEST_DURATION, REQUESTS_TOTAL, ACTIVE_REQUESTS]
            .into_iter()
            .chain(guardrail_core::metric::ALL.iter().map(|m| m.name));
        for name in names {
            assert!(text.contains(&format!("# HELP {name} ")), "{name}: {text}");
        }
    }

    #[tokio::test]
    async fn a_flood_of_random_paths_adds_no_series_and_histograms_have_buckets() {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), DURATION_BUCKETS)
            .unwrap()
            .build_recorder();
        let prometheus = recorder.handle();
        let _local = metrics::set_default_local_recorder(&recorder);
        let stats = RequestStats::new();
        let app = Router::new()
            .route("/api/users/{user_id}", get(|| async { "profile" }))
            .route("/api/health", get(|| async { "ok" }))
            .layer(MetricsLayer::new().stats(stats.clone()));
        let send = |method: &str, path: String| {
            let req = Request::builder()
                .method(method)
                .uri(path)
                .body(axum::body::Body::empty())
                .unwrap();
            app.clone().oneshot(req)
        };
        for i in 0..10_000u32 {
            let path = match i % 3 {
                0 => format!("/api/users/user-{i}"),
                1 => format!("/random/{i}/{}", i.wrapping_mul(2_654_435_761)),
                _ => "/api/health".to_owned(),
            };
            send("GET", path).await.unwrap();
        }
        send("BREW", "/api/health".into()).await.unwrap();

        let text = prometheus.render();
        let routes: BTreeSet<&str> = text
            .lines()
            .filter_map(|l| l.split("http_route=\"").nth(1))
            .filter_map(|rest| rest.split('"').next())
            .collect();
        assert_eq!(
            routes,
            ["/api/health", "/api/users/{user_id}", UNMATCHED].into(),
            "route templates only"
        );
        let methods: BTreeSet<&str> = text
            .lines()
            .filter_map(|l| l.split("http_request_method=\"").nth(1))
            .filter_map(|rest| rest.split('"').next())
            .collect();
        assert_eq!(methods, ["GET", "_OTHER"].into());
        assert!(
            text.contains(&format!("# TYPE {REQUEST_DURATION} histogram")),
            "{text}"
        );
        assert!(text.contains("le=\"+Inf\""), "{text}");
        assert!(text.contains("le=\"2\""), "the 2 s bucket: {text}");
        let users = text
            .lines()
            .find(|l| {
                l.starts_with(REQUESTS_TOTAL)
                    && l.contains("http_route=\"/api/users/{user_id}\"")
                    && l.contains("http_response_status_code=\"200\"")
            })
            .expect("a counter for the users route");
        assert!(users.ends_with(" 3334"), "{users}");
        let unmatched = text
            .lines()
            .find(|l| {
                l.starts_with(REQUESTS_TOTAL) && l.contains("http_response_status_code=\"404\"")
            })
            .expect("the unmatched 404s");
        assert!(
            unmatched.contains("http_route=\"unmatched\""),
            "{unmatched}"
        );
        assert!(
            text.contains(&format!("{ACTIVE_REQUESTS} 0")),
            "none left in flight: {text}"
        );
        assert_eq!(stats.window(Window::Minute).requests, 10_001);
        assert_eq!(stats.window(Window::Minute).client_errors, 3333 + 1);
    }
}

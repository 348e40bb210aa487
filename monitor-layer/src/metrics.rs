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
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Instant,
};

use http::{Method, Request, Response};
use metrics::SharedString;
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
/// The route label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// The duration histogram's buckets, in seconds: OpenTelemetry's advisory
/// buckets for `http.server.request.duration`, plus 2 s (the P1 "P95 >
/// 2 s" threshold). For Prometheus:
/// `PrometheusBuilder::new().set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), DURATION_BUCKETS)`.
pub const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 2.5, 5.0, 7.5, 10.0,
];

/// Layer that applies [`Metrics`].
#[derive(Clone, Debug, Default)]
pub struct MetricsLayer {
    stats: Option<RequestStats>,
}

impl MetricsLayer {
    /// Request metrics, and no in-process statistics.
    pub fn new() -> Self {
        Self::default()
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
        }
    }
}

/// Middleware that records request metrics; see [`MetricsLayer`].
#[derive(Clone)]
pub struct Metrics<S> {
    inner: S,
    stats: Option<RequestStats>,
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

/// OTel's method attribute: a standard method, or `_OTHER` (so made-up
/// methods add no series).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

fn route_label<B>(req: &Request<B>) -> SharedString {
    #[cfg(feature = "axum")]
    if let Some(matched) = req.extensions().get::<axum::extract::MatchedPath>() {
        return SharedString::from(matched.as_str().to_owned());
    }
    let _ = req;
    SharedString::const_str(UNMATCHED)
}

/// In flight until dropped (answered, failed or cancelled).
struct Active;

impl Active {
    fn start() -> Self {
        metrics::gauge!(ACTIVE_REQUESTS).increment(1.0);
        Self
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        metrics::gauge!(ACTIVE_REQUESTS).decrement(1.0);
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
        let method = method_label(req.method());
        let route = route_label(&req);
        ResponseFuture {
            inner: self.inner.call(req),
            start: Instant::now(),
            method,
            route: Some(route),
            stats: self.stats.clone(),
            active: Active::start(),
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
        route: Option<SharedString>,
        stats: Option<RequestStats>,
        active: Active,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("method", &self.method)
            .field("route", &self.route)
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
        let route = this
            .route
            .take()
            .unwrap_or(SharedString::const_str(UNMATCHED));
        let labels = [
            ("http_request_method", SharedString::const_str(this.method)),
            ("http_route", route),
            ("http_response_status_code", status_label(status)),
        ];
        metrics::histogram!(REQUEST_DURATION, &labels).record(latency.as_secs_f64());
        metrics::counter!(REQUESTS_TOTAL, &labels).increment(1);
        if let Some(stats) = this.stats {
            stats.record(status, latency);
        }
        Poll::Ready(out)
    }
}

/// The status as a label, without formatting the common ones.
fn status_label(status: u16) -> SharedString {
    let common = match status {
        200 => "200",
        201 => "201",
        204 => "204",
        301 => "301",
        302 => "302",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        409 => "409",
        413 => "413",
        422 => "422",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => return SharedString::from(status.to_string()),
    };
    SharedString::const_str(common)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::{Router, routing::get};
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    use tower::ServiceExt;

    use super::*;
    use crate::Window;

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

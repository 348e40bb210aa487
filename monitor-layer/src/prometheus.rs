//! The Prometheus endpoint (cargo feature `prometheus`): the recorder,
//! with real histogram buckets, and `/metrics` served on a listener of its
//! own — `[monitor] metrics_listen`, `127.0.0.1:9464` by default (OTel's
//! Prometheus port) — so metrics never sit on the public port.
//!
//! # Example
//!
//! ```
//! use monitor_layer::prometheus::{metrics_response, recorder};
//!
//! let (recorder, handle) = recorder();
//! metrics::with_local_recorder(&recorder, || {
//!     metrics::counter!("http_server_requests_total").increment(1);
//! });
//! let res = metrics_response::<String>(&handle);
//! assert_eq!(res.status(), 200);
//! assert!(res.body().contains("http_server_requests_total 1"));
//! ```

use std::net::SocketAddr;

use http::{HeaderValue, Response, header};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::{DURATION_BUCKETS, REQUEST_DURATION};

/// A Prometheus recorder whose request-duration histogram has
/// [`DURATION_BUCKETS`], and the handle that renders it. Install it with
/// `metrics::set_global_recorder(recorder)`, and run [`upkeep`] beside it:
/// histogram samples are only drained by a scrape or the upkeep, so
/// without it memory grows while nobody scrapes.
pub fn recorder() -> (PrometheusRecorder, PrometheusHandle) {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), DURATION_BUCKETS)
        .map(PrometheusBuilder::build_recorder)
        .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
    let handle = recorder.handle();
    (recorder, handle)
}

/// Installs [`recorder`] as the process's global recorder, describes every
/// metric of the stack to it ([`describe`](crate::describe)) and returns
/// the handle that renders it. Install it before building the layers:
/// they register their metrics when built. Fails if a recorder is already
/// installed.
pub fn install() -> Result<PrometheusHandle, String> {
    let (recorder, handle) = recorder();
    metrics::set_global_recorder(recorder)
        .map_err(|_| "a metrics recorder is already installed".to_owned())?;
    crate::describe();
    Ok(handle)
}

/// The exposition of everything recorded, as `text/plain; version=0.0.4`
/// (the event counts published first: [`publish_event_counts`](crate::publish_event_counts)).
pub fn metrics_response<B: From<String>>(handle: &PrometheusHandle) -> Response<B> {
    crate::publish_event_counts();
    let mut res = Response::new(B::from(handle.render()));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}

/// Serves `GET /metrics` (and nothing else: 404) on `listener` until the
/// task is dropped; run it beside the service (e.g. as a background task).
pub async fn serve_metrics(listener: tokio::net::TcpListener, handle: PrometheusHandle) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move { metrics_response::<axum::body::Body>(&handle) }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the metrics listener failed");
    }
}

/// Drains the recorder's histogram samples every 5 s, whether or not
/// anyone scrapes; run it for as long as the recorder is installed.
pub async fn upkeep(handle: PrometheusHandle) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        handle.run_upkeep();
    }
}

/// The address `[monitor] metrics_listen` names, or `None` for `""` (then
/// the service serves `/metrics` on its main router, a public route).
pub fn listen_addr(metrics_listen: &str) -> Result<Option<SocketAddr>, String> {
    if metrics_listen.is_empty() {
        return Ok(None);
    }
    metrics_listen
        .parse()
        .map(Some)
        .map_err(|_| format!("{metrics_listen:?} is not an address such as 127.0.0.1:9464"))
}

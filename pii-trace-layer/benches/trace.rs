//! Per-request cost of [`TraceLayer`] against tower-http's `TraceLayer`,
//! in one run, with the same output: a JSON subscriber (to a sink), one
//! span and one event per request with method, path, status and latency.
//!
//! `cargo bench -p floyo-pii-trace-layer --bench trace`
//!
//! `tower_http_trace_same_fields` writes the same fields (raw); ours also
//! scrubs path, query and user agent and masks the client address.
//! `tower_http_trace_default` is tower-http's default output (fewer fields).
//! `baseline` is the bare service under the same subscriber.

#![allow(missing_docs)]

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use guardrail_core::{ClientIp, Pseudonymizer, RequestId};
use guardrails_testkit::bench::{respond_with, status};
use http::{Request, Response};
use pii_trace_layer::{Scrubber, TraceLayer};
use tower::Layer;

type Body = http_body_util::Empty<bytes::Bytes>;

fn request() -> Request<Body> {
    let mut req = Request::get("/api/orders/7781/items?page=2&sort=desc")
        .header("user-agent", "okhttp/4.12.0")
        .body(Body::new())
        .unwrap();
    req.extensions_mut()
        .insert(ClientIp::new("203.0.113.9".parse().unwrap()));
    req.extensions_mut().insert(RequestId::generate());
    req
}

fn bench(c: &mut Criterion) {
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let inner = || respond_with(Body::new);

    let mut group = c.benchmark_group("trace");
    let mut bare = inner();
    group.bench_function("baseline_no_trace", |b| {
        b.iter(|| status(&mut bare, request()))
    });

    let scrubber = Arc::new(Scrubber::new(Pseudonymizer::new(b"bench")));
    let mut ours = TraceLayer::new(scrubber).layer(inner());
    group.bench_function("guardrails_trace", |b| {
        b.iter(|| status(&mut ours, request()))
    });

    // tower-http configured for the same fields: the request's in its span
    // (which the JSON formatter writes with the event), status and latency
    // in its response event. Raw, not scrubbed.
    let tower_http = tower_http::trace::TraceLayer::new_for_http()
        .make_span_with(|req: &Request<Body>| {
            tracing::info_span!(
                "api.request",
                request_id = req.extensions().get::<RequestId>().map(tracing::field::display),
                "http.request.method" = %req.method(),
                "url.path" = req.uri().path(),
                "url.query" = req.uri().query(),
                "client.address" = req.extensions().get::<ClientIp>().map(|c| tracing::field::display(c.addr())),
                "user_agent.original" = req.headers().get("user-agent").and_then(|v| v.to_str().ok()),
            )
        })
        .on_request(())
        .on_response(|res: &Response<Body>, latency: std::time::Duration, _span: &tracing::Span| {
            tracing::info!(
                event = "api.request",
                "http.response.status_code" = res.status().as_u16(),
                latency_ms = latency.as_micros() as f64 / 1000.0,
            );
        });
    let mut theirs = tower_http.layer(inner());
    group.bench_function("tower_http_trace_same_fields", |b| {
        b.iter(|| status(&mut theirs, request()))
    });

    let mut theirs_default = tower_http::trace::TraceLayer::new_for_http()
        .on_response(tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO))
        .layer(inner());
    group.bench_function("tower_http_trace_default", |b| {
        b.iter(|| status(&mut theirs_default, request()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

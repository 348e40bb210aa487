//! What request monitoring costs per request: the metrics layer (with the
//! Prometheus recorder installed, real histogram buckets) against the
//! route alone, and one in-process statistics update.
//!
//! `cargo bench --bench monitor`

#![allow(missing_docs)]

use std::{hint::black_box, time::Duration};

use criterion::{BatchSize, Criterion};
use guardrails::monitor_layer::{MetricsLayer, RequestStats, prometheus};
use guardrails_testkit::bench::{respond_with, status};
use http::Request;
use tower::Layer;

fn main() {
    let (recorder, _handle) = prometheus::recorder();
    metrics::set_global_recorder(recorder).unwrap();
    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("monitor");
    let route = || respond_with(|| String::from("answer"));
    let request = || Request::new(());
    let mut direct = route();
    let mut measured = MetricsLayer::new().layer(route());
    let stats = RequestStats::new();
    let mut with_stats = MetricsLayer::new().stats(stats.clone()).layer(route());
    group.bench_function("route_direct", |b| {
        b.iter_batched(
            request,
            |req| status(&mut direct, req),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("route_with_metrics", |b| {
        b.iter_batched(
            request,
            |req| status(&mut measured, req),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("route_with_metrics_and_stats", |b| {
        b.iter_batched(
            request,
            |req| status(&mut with_stats, req),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("stats_record", |b| {
        b.iter(|| stats.record(black_box(200), black_box(Duration::from_micros(1234))))
    });
    group.finish();
    criterion.final_summary();
}

//! The outbound guardrails' own cost per call: the circuit breaker's
//! bookkeeping in the closed state (the budget is ≤ 100 ns) and the
//! bulkhead, each against calling the inner service directly, with the
//! Prometheus recorder installed (as production pays for metrics).
//!
//! `cargo bench --bench outbound`
//!
//! The inner service answers `200` at once; each call is polled to
//! completion with a no-op waker. Subtract `direct` for a layer's cost.

#![allow(missing_docs)]

use std::{
    fmt::Debug,
    pin::pin,
    task::{Context, Poll, Waker},
    time::Duration,
};

use bytes::Bytes;
use criterion::{BatchSize, BenchmarkGroup, Criterion, measurement::WallTime};
use guardrails::timeout_retry_layer::{
    BulkheadLayer, CircuitBreakerLayer, ReplayBody, UpstreamConfig,
};
use guardrails_testkit::{bench::respond_with, bench::runtime, ratelimit::install_prometheus};
use http::{Request, Response};
use http_body_util::Full;
use tower::{Layer, Service};

fn status<S, Req, B, E>(svc: &mut S, req: Req) -> u16
where
    S: Service<Req, Response = Response<B>, Error = E>,
    E: Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    let mut fut = pin!(svc.call(req));
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(res)) => res.status().as_u16(),
        Poll::Ready(Err(e)) => panic!("the call failed: {e:?}"),
        Poll::Pending => unreachable!("the inner service never waits"),
    }
}

fn measure<S, B, E>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, svc: S)
where
    S: Service<Request<()>, Response = Response<B>, Error = E>,
    E: Debug,
{
    measure_with(group, name, svc, || Request::new(()));
}

fn measure_with<S, Req, B, E>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    mut svc: S,
    request: impl Fn() -> Req,
) where
    S: Service<Req, Response = Response<B>, Error = E>,
    E: Debug,
{
    assert_eq!(status(&mut svc, request()), 200, "{name} lets it through");
    group.bench_function(name, |b| {
        b.iter_batched(&request, |req| status(&mut svc, req), BatchSize::SmallInput)
    });
}

fn main() {
    let _recorder = install_prometheus();
    let rt = runtime();
    let _guard = rt.enter();
    let inner = || respond_with(|| ());
    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("outbound");
    measure(&mut group, "direct", inner());
    measure(
        &mut group,
        "circuit_breaker_closed_count_window",
        CircuitBreakerLayer::new("bench")
            .window_calls(100)
            .layer(inner()),
    );
    measure(
        &mut group,
        "circuit_breaker_closed_time_window",
        CircuitBreakerLayer::new("bench")
            .window_duration(Duration::from_secs(60))
            .layer(inner()),
    );
    measure(
        &mut group,
        "bulkhead",
        BulkheadLayer::new(1024).layer(inner()),
    );
    measure(
        &mut group,
        "bulkhead_and_breaker",
        BulkheadLayer::new(1024).layer(CircuitBreakerLayer::new("bench").layer(inner())),
    );
    // The whole stack of one upstream from its config (status check →
    // bulkhead → retry with a per-try timeout and an overall deadline →
    // breaker) against
    // the same inner client called directly; the retry layer's future is
    // boxed and reads the body to keep it (empty here).
    let get = || {
        Request::get("http://upstream.test/")
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    measure_with(&mut group, "direct_with_body", respond_with(|| ()), get);
    let upstream: UpstreamConfig =
        serde_json::from_value(serde_json::json!({ "url": "http://upstream.test/" })).unwrap();
    measure_with(
        &mut group,
        "upstream_stack",
        upstream
            .layers("bench")
            .layer(respond_with::<Request<ReplayBody<Full<Bytes>>>, _, _>(
                || (),
            )),
        get,
    );
    // The breaker reads tokio's clock twice per call. This package's
    // dev-dependencies turn on tokio's `test-util` (for paused-clock
    // tests), which makes `tokio::time::Instant::now` look up a mockable
    // clock first; production builds read the OS clock directly. These two
    // show how much of the breaker's figure that is.
    group.bench_function("clock_tokio_now_as_benched", |b| {
        b.iter(|| std::hint::black_box(tokio::time::Instant::now()))
    });
    group.bench_function("clock_std_now_as_in_production", |b| {
        b.iter(|| std::hint::black_box(std::time::Instant::now()))
    });
    group.finish();
    criterion.final_summary();
}

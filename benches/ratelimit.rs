//! In-memory rate-limit decision per request through the layer, against
//! tower_governor with the same quota, in the same run.
//!
//! `cargo bench --bench ratelimit`
//!
//! Both see the same requests: the peer address as axum's `ConnectInfo`
//! and the resolved `ClientIp` (as ResolveClientIpLayer leaves it),
//! cycling through 1 000 client IPs, under a quota that never limits (so
//! every iteration is a full decision and a pass). `baseline` is the bare
//! service. Our layer is measured with and without the RateLimit headers
//! (tower_governor adds none by default; `use_headers()` adds its
//! `x-ratelimit-*` headers, measured too).

#![allow(missing_docs)]

use std::convert::Infallible;

use axum::body::Body;
use criterion::{
    BatchSize, BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use guardrails_testkit::bench::{respond_with, runtime, status};
use guardrails_testkit::ratelimit::{self, request};
use http::{Request, Response};
use tower::{Layer, Service};

/// Times `svc` on fresh requests; building each request is left out of the
/// timing (it costs several times what any layer does), so what differs
/// between variants is the layer.
fn measure<S, B>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, mut svc: S)
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible>,
{
    assert_eq!(
        status(&mut svc, request(0)),
        200,
        "{name}: every request passes"
    );
    let mut i = 0u32;
    group.bench_function(name, |b| {
        b.iter_batched(
            || {
                i = i.wrapping_add(1);
                request(i)
            },
            |req| status(&mut svc, req),
            BatchSize::SmallInput,
        )
    });
}

fn bench(c: &mut Criterion) {
    // The limiter's counters as production pays for them.
    let prometheus = ratelimit::install_prometheus();
    let rt = runtime();
    let _guard = rt.enter();
    let inner = || respond_with(Body::empty);

    let mut group = c.benchmark_group("ratelimit");
    measure(&mut group, "baseline_no_limit", inner());
    let ours = ratelimit::guardrails_no_headers();
    measure(&mut group, "guardrails_no_headers", ours.layer(inner()));
    measure(
        &mut group,
        "tower_governor",
        ratelimit::tower_governor().layer(inner()),
    );
    let ours = ratelimit::guardrails();
    measure(&mut group, "guardrails_with_headers", ours.layer(inner()));
    measure(
        &mut group,
        "tower_governor_with_headers",
        ratelimit::tower_governor_with_headers().layer(inner()),
    );
    group.finish();
    ratelimit::assert_decisions_recorded(prometheus.as_ref());
}

criterion_group!(benches, bench);
criterion_main!(benches);

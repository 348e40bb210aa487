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

use std::{
    convert::Infallible,
    future::{Ready, ready},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    pin::pin,
    task::{Context, Poll, Waker},
};

use axum::{body::Body, extract::ConnectInfo};
use criterion::{
    BatchSize, BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use guardrails::guardrail_core::ClientIp;
use guardrails::ratelimit_layer::{RateLimitLayer, RateLimitPolicy};
use http::{Request, Response};
use tower::{Layer, Service, service_fn};

fn run<S, B>(svc: &mut S, req: Request<Body>) -> u16
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible>,
{
    let mut cx = Context::from_waker(Waker::noop());
    let mut fut = pin!(svc.call(req));
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(res)) => res.status().as_u16(),
        Poll::Ready(Err(e)) => match e {},
        Poll::Pending => unreachable!("in-memory decisions never wait"),
    }
}

fn inner() -> impl Service<
    Request<Body>,
    Response = Response<Body>,
    Error = Infallible,
    Future = Ready<Result<Response<Body>, Infallible>>,
> + Clone {
    service_fn(|_req: Request<Body>| ready(Ok::<_, Infallible>(Response::new(Body::empty()))))
}

/// The i-th request: one of 1 000 clients.
fn request(i: u32) -> Request<Body> {
    let mut req = Request::get("/api/items").body(Body::empty()).unwrap();
    let ip = IpAddr::V4(Ipv4Addr::from(0xCB00_7100 + (i % 1000)));
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(ip, 40000)));
    // In a guardrails stack ResolveClientIpLayer has put this here; both
    // variants get identical requests (tower_governor ignores it).
    req.extensions_mut().insert(ClientIp::new(ip));
    req
}

/// Times `svc` on fresh requests; building each request is left out of the
/// timing (it costs several times what any layer does), so what differs
/// between variants is the layer.
fn measure<S, B>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, mut svc: S)
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible>,
{
    assert_eq!(
        run(&mut svc, request(0)),
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
            |req| run(&mut svc, req),
            BatchSize::SmallInput,
        )
    });
}

fn bench(c: &mut Criterion) {
    let quota = || {
        RateLimitPolicy::per_second(1_000_000_000)
            .burst(1_000_000_000)
            .name("per_ip")
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let governor = || {
        tower_governor::governor::GovernorConfigBuilder::default()
            .per_nanosecond(1)
            .burst_size(1_000_000_000)
            .finish()
            .unwrap()
    };
    let governor_headers = || {
        tower_governor::governor::GovernorConfigBuilder::default()
            .per_nanosecond(1)
            .burst_size(1_000_000_000)
            .use_headers()
            .finish()
            .unwrap()
    };

    let mut group = c.benchmark_group("ratelimit");
    measure(&mut group, "baseline_no_limit", inner());
    let ours = RateLimitLayer::builder()
        .policy(quota())
        .headers(false)
        .build()
        .unwrap();
    measure(&mut group, "guardrails_no_headers", ours.layer(inner()));
    measure(
        &mut group,
        "tower_governor",
        tower_governor::GovernorLayer::new(governor()).layer(inner()),
    );
    let ours = RateLimitLayer::builder().policy(quota()).build().unwrap();
    measure(&mut group, "guardrails_with_headers", ours.layer(inner()));
    measure(
        &mut group,
        "tower_governor_with_headers",
        tower_governor::GovernorLayer::new(governor_headers()).layer(inner()),
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

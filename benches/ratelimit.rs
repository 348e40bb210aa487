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
use criterion::{Criterion, criterion_group, criterion_main};
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

    let mut group = c.benchmark_group("ratelimit");
    let mut i = 0u32;

    let mut bare = inner();
    group.bench_function("baseline_no_limit", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            run(&mut bare, request(i))
        })
    });

    let ours = RateLimitLayer::builder()
        .policy(quota())
        .headers(false)
        .build()
        .unwrap();
    let mut ours = ours.layer(inner());
    assert_eq!(run(&mut ours, request(0)), 200);
    group.bench_function("guardrails_no_headers", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            run(&mut ours, request(i))
        })
    });

    let with_headers = RateLimitLayer::new(quota()).unwrap();
    let mut with_headers = with_headers.layer(inner());
    group.bench_function("guardrails_with_headers", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            run(&mut with_headers, request(i))
        })
    });

    let config = tower_governor::governor::GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(1_000_000_000)
        .finish()
        .unwrap();
    let mut governor = tower_governor::GovernorLayer::new(config).layer(inner());
    assert_eq!(run(&mut governor, request(0)), 200);
    group.bench_function("tower_governor", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            run(&mut governor, request(i))
        })
    });

    let config = tower_governor::governor::GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(1_000_000_000)
        .use_headers()
        .finish()
        .unwrap();
    let mut governor_headers = tower_governor::GovernorLayer::new(config).layer(inner());
    assert_eq!(run(&mut governor_headers, request(0)), 200);
    group.bench_function("tower_governor_with_headers", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            run(&mut governor_headers, request(i))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

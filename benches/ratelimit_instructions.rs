//! Fixed-iteration runner for counting instructions per request, which
//! (unlike wall time on a shared 2-core VM) is repeatable:
//!
//! ```text
//! cargo bench --bench ratelimit_instructions --no-run
//! for v in baseline guardrails guardrails_headers tower_governor tower_governor_headers; do
//!   valgrind --tool=callgrind --toggle-collect='*drive*' --callgrind-out-file=/dev/null \
//!     target/release/deps/ratelimit_instructions-* $v 200000 2>&1 | grep refs
//! done
//! ```
//!
//! Instructions per request through a layer = (variant − baseline) / N.
//! Same requests, quota and inner service as `benches/ratelimit.rs`.

#![allow(missing_docs)]

use std::{
    convert::Infallible,
    future::{Ready, ready},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    pin::pin,
    task::{Context, Poll, Waker},
};

use axum::{body::Body, extract::ConnectInfo};
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

// Not inlined: the count is taken inside this function only
// (`--toggle-collect`), so one-time set-up such as quanta's clock
// calibration, whose length varies from run to run, is left out.
#[inline(never)]
fn drive<S, B>(mut svc: S, n: u32) -> u64
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible>,
{
    (0..n).map(|i| u64::from(run(&mut svc, request(i)))).sum()
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let variant = args.next().unwrap_or_else(|| "baseline".into());
    let n: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let quota = || {
        RateLimitPolicy::per_second(1_000_000_000)
            .burst(1_000_000_000)
            .name("per_ip")
    };
    let total = match variant.as_str() {
        "baseline" => drive(inner(), n),
        "guardrails" => drive(
            RateLimitLayer::builder()
                .policy(quota())
                .headers(false)
                .build()
                .unwrap()
                .layer(inner()),
            n,
        ),
        "guardrails_headers" => drive(
            RateLimitLayer::builder()
                .policy(quota())
                .build()
                .unwrap()
                .layer(inner()),
            n,
        ),
        "tower_governor" => {
            let config = tower_governor::governor::GovernorConfigBuilder::default()
                .per_nanosecond(1)
                .burst_size(1_000_000_000)
                .finish()
                .unwrap();
            drive(tower_governor::GovernorLayer::new(config).layer(inner()), n)
        }
        "tower_governor_headers" => {
            let config = tower_governor::governor::GovernorConfigBuilder::default()
                .per_nanosecond(1)
                .burst_size(1_000_000_000)
                .use_headers()
                .finish()
                .unwrap();
            drive(tower_governor::GovernorLayer::new(config).layer(inner()), n)
        }
        other => panic!("unknown variant {other}"),
    };
    println!("{variant}: {n} requests, status sum {total}");
}

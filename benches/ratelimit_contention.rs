//! The in-memory limiter under contention: several threads deciding at once
//! through one layer, against tower_governor with the same quota:
//!
//! ```text
//! cargo bench --bench ratelimit_contention
//! ```
//!
//! Each case runs 1, 2 and 4 threads (the last oversubscribes a 2-core
//! machine, the worst case for short locks: a thread can be preempted while
//! holding one), each sending its share of requests through a clone of the
//! same service, either from distinct client addresses (a typical server) or
//! all from one (every decision on one key, so one lock). Variants alternate
//! round by round; reported is the median wall time per request over all
//! threads, and each variant's median over the rounds.

#![allow(missing_docs)]

use std::{
    convert::Infallible,
    future::{Ready, ready},
    hint::black_box,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    pin::pin,
    sync::{Arc, Barrier},
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use axum::{body::Body, extract::ConnectInfo};
use guardrails::guardrail_core::ClientIp;
use guardrails::ratelimit_layer::{RateLimitLayer, RateLimitPolicy};
use http::{Request, Response};
use tower::{Layer, Service, service_fn};

const ROUNDS: usize = 40;
const PER_THREAD: u32 = 50_000;

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
> + Clone
+ Send
+ 'static {
    service_fn(|_req: Request<Body>| ready(Ok::<_, Infallible>(Response::new(Body::empty()))))
}

fn request(thread: u32, i: u32, one_key: bool) -> Request<Body> {
    let mut req = Request::get("/api/items").body(Body::empty()).unwrap();
    let host = if one_key { 7 } else { thread * 1000 + i % 1000 };
    let ip = IpAddr::V4(Ipv4Addr::from(0xCB00_0000 + host));
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(ip, 40000)));
    req.extensions_mut().insert(ClientIp::new(ip));
    req
}

/// Times `threads` threads sending `PER_THREAD` requests each through
/// clones of `svc`; each thread builds its requests before the clock
/// starts.
fn timed<S, B>(svc: &S, threads: u32, one_key: bool) -> Duration
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
{
    let start = Arc::new(Barrier::new(threads as usize + 1));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let mut svc = svc.clone();
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                // Built on the thread that frees them (no cross-thread
                // frees contending for the allocator's arenas).
                let requests: Vec<_> = (0..PER_THREAD).map(|i| request(t, i, one_key)).collect();
                start.wait();
                let began = Instant::now();
                let mut passed = 0u32;
                for req in requests {
                    passed += u32::from(black_box(run(&mut svc, req)) == 200);
                }
                assert_eq!(passed, PER_THREAD, "every request passes");
                began.elapsed()
            })
        })
        .collect();
    start.wait();
    workers
        .into_iter()
        .map(|w| w.join().unwrap())
        .max()
        .unwrap_or_default()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

type Case = Box<dyn Fn(u32, bool) -> Duration>;

fn case<S, B>(svc: S) -> Case
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
{
    Box::new(move |threads, one_key| timed(&svc, threads, one_key))
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let ours = RateLimitLayer::builder()
        .policy(
            RateLimitPolicy::per_second(1_000_000_000)
                .burst(1_000_000_000)
                .name("per_ip"),
        )
        .headers(false)
        .build()
        .unwrap();
    let governor = tower_governor::governor::GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(1_000_000_000)
        .finish()
        .unwrap();
    let variants: Vec<(&str, Case)> = vec![
        ("guardrails", case(ours.layer(inner()))),
        (
            "tower_governor",
            case(tower_governor::GovernorLayer::new(governor).layer(inner())),
        ),
    ];
    println!(
        "{ROUNDS} rounds, {PER_THREAD} requests per thread, variants alternating; \
         wall ns per request over all threads (median)"
    );
    println!(
        "{:<10} {:<15} {:>12} {:>16}",
        "threads", "keys", "guardrails", "tower_governor"
    );
    for threads in [1u32, 2, 4] {
        for one_key in [false, true] {
            let mut per_request = vec![Vec::with_capacity(ROUNDS); variants.len()];
            for round in 0..ROUNDS {
                for k in 0..variants.len() {
                    let v = (round + k) % variants.len();
                    let took = (variants[v].1)(threads, one_key);
                    per_request[v].push(took.as_nanos() as f64 / f64::from(PER_THREAD * threads));
                }
            }
            let keys = if one_key { "one" } else { "distinct" };
            let [ours, theirs] = [0, 1].map(|v| median(per_request[v].clone()));
            println!("{threads:<10} {keys:<15} {ours:>12.1} {theirs:>16.1}");
        }
    }
}

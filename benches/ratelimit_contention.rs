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
    hint::black_box,
    net::{IpAddr, Ipv4Addr},
    sync::{Arc, Barrier},
    time::{Duration, Instant},
};

use axum::body::Body;
use guardrails_testkit::bench::{median, respond_with, runtime, status};
use guardrails_testkit::ratelimit::{self, request_from};
use http::{Request, Response};
use tower::{Layer, Service};

const ROUNDS: usize = 40;
const PER_THREAD: u32 = 50_000;

fn request(thread: u32, i: u32, one_key: bool) -> Request<Body> {
    let host = if one_key { 7 } else { thread * 1000 + i % 1000 };
    request_from(IpAddr::V4(Ipv4Addr::from(0xCB00_0000 + host)))
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
                    passed += u32::from(black_box(status(&mut svc, req)) == 200);
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

type Case = Box<dyn Fn(u32, bool) -> Duration>;

fn case<S, B>(svc: S) -> Case
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
{
    Box::new(move |threads, one_key| timed(&svc, threads, one_key))
}

fn main() {
    // The limiter's counters as production pays for them.
    let prometheus = ratelimit::install_prometheus();
    let rt = runtime();
    let _guard = rt.enter();
    let inner = || respond_with(Body::empty);
    let variants: Vec<(&str, Case)> = vec![
        (
            "guardrails",
            case(ratelimit::guardrails_no_headers().layer(inner())),
        ),
        (
            "tower_governor",
            case(ratelimit::tower_governor().layer(inner())),
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
    ratelimit::assert_decisions_recorded(prometheus.as_ref());
}

//! Interleaved A/B timing of the in-memory decision through the layer
//! against tower_governor, in one process:
//!
//! ```text
//! cargo bench --bench ratelimit_ab
//! AB_ROUNDS=3000 cargo bench --bench ratelimit_ab   # finer
//! ```
//!
//! On a shared 2-core VM wall time drifts by more than the difference being
//! measured, so separate criterion runs (or even separate criterion groups)
//! can't rank two layers a few nanoseconds apart. Here every round times a
//! chunk of requests through each variant in turn (order rotated each
//! round), so drift hits all variants alike; the result is each variant's
//! median added time per request over the bare service *of the same round*.
//! Requests are built outside the timed part. Same requests, quota and inner
//! service as `benches/ratelimit.rs`.

#![allow(missing_docs)]

use std::{
    convert::Infallible,
    hint::black_box,
    time::{Duration, Instant},
};

use axum::body::Body;
use guardrails_testkit::bench::{median, respond_with, runtime, status};
use guardrails_testkit::ratelimit::{self, request};
use http::{Request, Response};
use tower::{Layer, Service};

/// Rounds by default; `AB_ROUNDS=3000` for a finer comparison.
const ROUNDS: usize = 300;
const CHUNK: u32 = 2_000;

type Timed = Box<dyn FnMut(Vec<Request<Body>>) -> Duration>;

fn timed<S, B>(mut svc: S) -> Timed
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible> + 'static,
{
    assert_eq!(status(&mut svc, request(0)), 200, "every request passes");
    Box::new(move |requests| {
        let start = Instant::now();
        for req in requests {
            black_box(status(&mut svc, req));
        }
        start.elapsed()
    })
}

fn main() {
    // The limiter's counters as production pays for them.
    let prometheus = ratelimit::install_prometheus();
    let rt = runtime();
    let _guard = rt.enter();
    let inner = || respond_with(Body::empty);
    let mut variants: Vec<(&str, Timed)> = vec![
        ("baseline", timed(inner())),
        (
            "guardrails_no_headers",
            timed(ratelimit::guardrails_no_headers().layer(inner())),
        ),
        (
            "tower_governor",
            timed(ratelimit::tower_governor().layer(inner())),
        ),
        (
            "guardrails_with_headers",
            timed(ratelimit::guardrails().layer(inner())),
        ),
        (
            "tower_governor_with_headers",
            timed(ratelimit::tower_governor_with_headers().layer(inner())),
        ),
    ];
    let n = variants.len();
    let rounds: usize = std::env::var("AB_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|r| *r > 0)
        .unwrap_or(ROUNDS);
    let mut per_request = vec![Vec::with_capacity(rounds); n];
    let mut next = 0u32;
    for round in 0..rounds {
        for k in 0..n {
            let v = (round + k) % n;
            let requests: Vec<_> = (0..CHUNK).map(|i| request(next.wrapping_add(i))).collect();
            next = next.wrapping_add(CHUNK);
            let took = (variants[v].1)(requests);
            per_request[v].push(took.as_nanos() as f64 / f64::from(CHUNK));
        }
    }
    println!("{rounds} rounds × {CHUNK} requests per variant, interleaved; ns per request");
    println!("{:<30} {:>8} {:>16}", "variant", "median", "added (median)");
    for (v, (name, _)) in variants.iter().enumerate() {
        let added: Vec<f64> = per_request[v]
            .iter()
            .zip(&per_request[0])
            .map(|(x, base)| x - base)
            .collect();
        println!(
            "{name:<30} {:>8.1} {:>+16.1}",
            median(per_request[v].clone()),
            median(added)
        );
    }
    // Head to head, round by round (same round = same machine state).
    for (ours, theirs) in [(1, 2), (3, 4)] {
        let diff: Vec<f64> = per_request[ours]
            .iter()
            .zip(&per_request[theirs])
            .map(|(a, b)| a - b)
            .collect();
        let faster = diff.iter().filter(|d| **d < 0.0).count();
        println!(
            "{} − {}: median {:+.1} ns per request; ours faster in {faster} of {rounds} rounds",
            variants[ours].0,
            variants[theirs].0,
            median(diff)
        );
    }
    ratelimit::assert_decisions_recorded(prometheus.as_ref());
}

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
//! Same requests, quota and inner service as `benches/ratelimit.rs`, with
//! the Prometheus recorder installed as there (`BENCH_RECORDER=none`
//! leaves it out).

#![allow(missing_docs)]

use std::convert::Infallible;

use axum::body::Body;
use guardrails_testkit::bench::{respond_with, status};
use guardrails_testkit::ratelimit::{self, request};
use http::{Request, Response};
use tower::{Layer, Service};

// Not inlined: the count is taken inside this function only
// (`--toggle-collect`), so one-time set-up such as quanta's clock
// calibration, whose length varies from run to run, is left out.
#[inline(never)]
fn drive<S, B>(mut svc: S, n: u32) -> u64
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible>,
{
    (0..n)
        .map(|i| u64::from(status(&mut svc, request(i))))
        .sum()
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let variant = args.next().unwrap_or_else(|| "baseline".into());
    let n: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let _prometheus = ratelimit::install_prometheus();
    let inner = || respond_with(Body::empty);
    let total = match variant.as_str() {
        "baseline" => drive(inner(), n),
        "guardrails" => drive(ratelimit::guardrails_no_headers().layer(inner()), n),
        "guardrails_headers" => drive(ratelimit::guardrails().layer(inner()), n),
        "tower_governor" => drive(ratelimit::tower_governor().layer(inner()), n),
        "tower_governor_headers" => {
            drive(ratelimit::tower_governor_with_headers().layer(inner()), n)
        }
        other => panic!("unknown variant {other}"),
    };
    println!("{variant}: {n} requests, status sum {total}");
}

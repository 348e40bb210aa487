//! Redis-backed decisions on loopback: latency of one decision through the
//! layer (one policy, and three policies in one stage: still one script
//! call), and decisions per second with many in flight.
//!
//! `cargo bench --bench ratelimit_redis` (needs Redis at `REDIS_URL`,
//! default `redis://127.0.0.1:6379`; `scripts/test.sh` starts one).

#![allow(missing_docs)]

use std::{
    convert::Infallible,
    time::{Duration, Instant},
};

use criterion::{Criterion, criterion_group, criterion_main};
use guardrails::guardrail_core::Pseudonymizer;
use guardrails::ratelimit_layer::{OnRedisError, RateLimitLayer, RateLimitPolicy, RedisBackend};
use guardrails_testkit::bench::{client, with_client_ip};
use http::{Request, Response};
use tower::{Layer, Service, ServiceExt, service_fn};

/// The i-th request: one of 1 000 clients.
fn request(i: u32) -> Request<()> {
    with_client_ip(Request::new(()), client(i))
}

fn bench(c: &mut Criterion) {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let build = |policies: u32| {
        rt.block_on(async {
            let backend = RedisBackend::new(
                connect(&url),
                Pseudonymizer::new(b"the bench's rate-limit key, 32 bytes+"),
            )
            .prefix("guardrails-bench")
            .timeout(Duration::from_secs(1));
            let mut builder = RateLimitLayer::builder()
                .redis(backend)
                .on_redis_error(OnRedisError::Deny);
            for p in 0..policies {
                builder = builder.policy(
                    RateLimitPolicy::per_second(1_000_000)
                        .burst(1_000_000)
                        .name(format!("per_ip_{p}")),
                );
            }
            let svc = builder
                .build()
                .unwrap()
                .layer(service_fn(|_req: Request<()>| async {
                    Ok::<_, Infallible>(Response::new(String::new()))
                }));
            let res = svc.clone().oneshot(request(0)).await.unwrap();
            assert_eq!(
                res.status(),
                200,
                "Redis must be reachable at {url} (scripts/test.sh starts one)"
            );
            svc
        })
    };
    let svc = build(1);
    let three = build(3);

    let mut i = 0u32;
    c.bench_function("redis_decision_latency", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let svc = svc.clone();
            rt.block_on(async move { svc.oneshot(request(i)).await.unwrap().status() })
        })
    });
    c.bench_function("redis_decision_latency_three_policies", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let svc = three.clone();
            rt.block_on(async move { svc.oneshot(request(i)).await.unwrap().status() })
        })
    });

    // Throughput: 64 decisions in flight for 3 seconds.
    let (decisions, elapsed) = rt.block_on(async {
        let start = Instant::now();
        let deadline = start + Duration::from_secs(3);
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..64u32 {
            let mut svc = svc.clone();
            tasks.spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let req = request(t * 7919 + n as u32);
                    let res = svc.ready().await.unwrap().call(req).await.unwrap();
                    assert_eq!(res.status(), 200);
                    n += 1;
                }
                n
            });
        }
        let mut total = 0;
        while let Some(n) = tasks.join_next().await {
            total += n.unwrap();
        }
        (total, start.elapsed())
    });
    println!(
        "redis_decisions_per_second (64 in flight, 3 s): {:.0}",
        decisions as f64 / elapsed.as_secs_f64()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);

/// The shared connection a service would prepare from `[redis]`, with room
/// for the slowest decision these runs allow.
fn connect(url: &str) -> guardrails::guardrail_core::RedisConnection {
    let mut config = guardrails::guardrail_core::RedisConfig::default();
    config.timeout = std::time::Duration::from_millis(500);
    guardrails::guardrail_core::RedisConnection::open(url, &config).unwrap()
}

//! What a feature flag costs: one evaluation (the budget is ≤ 100 ns) for
//! each way it can come out, and the gate on a route against the route
//! called directly, with the Prometheus recorder installed (evaluations
//! are counted, as in production).
//!
//! `cargo bench --bench flags`

#![allow(missing_docs)]

use std::hint::black_box;

use criterion::Criterion;
use guardrails::{
    flag_layer::{Flag, FlagContext, FlagLayer, FlagStore},
    guardrail_core::Principal,
};
use guardrails_testkit::{
    bench::{respond_with, status},
    ratelimit::install_prometheus,
};
use http::Request;
use tower::Layer;

fn main() {
    let _recorder = install_prometheus();
    let flags = FlagStore::builder(vec![
        Flag::new("ai_recommendations")
            .enabled(true)
            .rollout(50)
            .target(["staff-1", "staff-2", "staff-3"])
            .deny(["banned-1"]),
        Flag::new("ai_everyone").enabled(true).rollout(100),
        Flag::new("ai_killed").enabled(false).rollout(100),
    ])
    .build()
    .unwrap();
    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("flags");

    let user = FlagContext::user("user-8c1f2a");
    let staff = FlagContext::user("staff-2");
    let principal = Principal::new("user-8c1f2a").with_org_id("org-7");
    for (name, flag, ctx) in [
        ("evaluate_split", "ai_recommendations", &user),
        ("evaluate_targeted", "ai_recommendations", &staff),
        ("evaluate_full_rollout", "ai_everyone", &user),
        ("evaluate_killed", "ai_killed", &user),
        ("evaluate_unknown", "ai_unknown", &user),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| flags.evaluate(black_box(flag), black_box(ctx)))
        });
    }
    group.bench_function("evaluate_split_principal", |b| {
        b.iter(|| flags.evaluate(black_box("ai_recommendations"), black_box(&principal)))
    });

    // The gate: a request with its principal, through the gate (on for
    // this user: a split of 50 %) against the route alone.
    let on_user = (0..)
        .map(|i| format!("user-{i}"))
        .find(|u| guardrails::flag_layer::bucket("ai_recommendations", u) <= 50)
        .unwrap();
    let request = || {
        let mut req = Request::new(());
        req.extensions_mut().insert(Principal::new(on_user.clone()));
        req
    };
    let route = || respond_with(|| String::from("recommendations"));
    let mut direct = route();
    let mut gated = FlagLayer::new(flags.clone(), "ai_recommendations").layer(route());
    assert_eq!(status(&mut gated, request()), 200);
    group.bench_function("route_direct", |b| {
        b.iter_batched(
            request,
            |req| status(&mut direct, req),
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("route_gated", |b| {
        b.iter_batched(
            request,
            |req| status(&mut gated, req),
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
    criterion.final_summary();
}

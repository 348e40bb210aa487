//! The rate-limit comparison: guardrails' limiter and tower_governor see the
//! same requests under the same quota, one that never limits, so every
//! request is a full decision and a pass.
//!
//! Each side keeps its own default for headers: guardrails writes the
//! RateLimit headers unless told not to, tower_governor writes its
//! `x-ratelimit-*` ones only when asked.
//!
//! # Example
//!
//! ```
//! use axum::body::Body;
//! use guardrails_testkit::{bench, ratelimit};
//! use tower::Layer;
//!
//! let rt = bench::runtime();
//! let _guard = rt.enter();
//! let mut ours = ratelimit::guardrails_no_headers().layer(bench::respond_with(Body::empty));
//! let mut theirs = ratelimit::tower_governor().layer(bench::respond_with(Body::empty));
//! for i in 0..3 {
//!     assert_eq!(bench::status(&mut ours, ratelimit::request(i)), 200);
//!     assert_eq!(bench::status(&mut theirs, ratelimit::request(i)), 200);
//! }
//! ```

use std::net::{IpAddr, SocketAddr};

use ::tower_governor::{
    GovernorLayer, governor::GovernorConfigBuilder, key_extractor::PeerIpKeyExtractor,
};
use axum::{body::Body, extract::ConnectInfo};
use governor::middleware::{NoOpMiddleware, StateInformationMiddleware};
use guardrail_core::ClientIp;
use http::Request;
use ratelimit_layer::{RateLimitLayer, RateLimitPolicy};

/// Installs the Prometheus recorder as the global `metrics` recorder (once
/// per process), so the limiter's counters cost what they cost in
/// production; call it before building the layers. Returns the handle
/// that renders the exposition, or `None` when `BENCH_RECORDER=none` asks
/// for a run without a recorder (to see what the metrics cost).
pub fn install_prometheus() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            if std::env::var("BENCH_RECORDER").is_ok_and(|v| v == "none") {
                println!("BENCH_RECORDER=none: no metrics recorder installed");
                return None;
            }
            Some(
                metrics_exporter_prometheus::PrometheusBuilder::new()
                    .install_recorder()
                    .expect("no other metrics recorder is installed in a bench"),
            )
        })
        .clone()
}

/// Asserts the recorder of [`install_prometheus`] (if one was installed)
/// saw the limiter's decisions: the bench measured with real counters.
pub fn assert_decisions_recorded(
    prometheus: Option<&metrics_exporter_prometheus::PrometheusHandle>,
) {
    if let Some(prometheus) = prometheus {
        assert!(
            prometheus
                .render()
                .contains(guardrail_core::metric::RATELIMIT_DECISIONS_TOTAL),
            "the recorder saw the decisions"
        );
    }
}

/// Requests per second and burst of the quota: more than any run sends.
const NEVER: u32 = 1_000_000_000;

/// `GET /api/items` from the `i`-th of 1 000 clients ([`bench::client`]).
///
/// [`bench::client`]: crate::bench::client
pub fn request(i: u32) -> Request<Body> {
    request_from(crate::bench::client(i))
}

/// `GET /api/items` from `ip`: the peer address as axum's `ConnectInfo`
/// (port 40000) and the resolved [`ClientIp`], as `ResolveClientIpLayer`
/// leaves it in a guardrails stack. Both sides get identical requests;
/// each reads its own extension.
pub fn request_from(ip: IpAddr) -> Request<Body> {
    let mut req = Request::get("/api/items").body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(ip, 40000)));
    req.extensions_mut().insert(ClientIp::new(ip));
    req
}

/// The quota on guardrails' side: a per-client policy named `per_ip`.
pub fn never_limiting() -> RateLimitPolicy {
    RateLimitPolicy::per_second(NEVER)
        .burst(NEVER)
        .name("per_ip")
}

/// guardrails' limiter under [`never_limiting`], with its RateLimit headers.
pub fn guardrails() -> RateLimitLayer {
    RateLimitLayer::builder()
        .policy(never_limiting())
        .build()
        .expect("one policy is a valid limiter")
}

/// guardrails' limiter under [`never_limiting`], writing no headers.
pub fn guardrails_no_headers() -> RateLimitLayer {
    RateLimitLayer::builder()
        .policy(never_limiting())
        .headers(false)
        .build()
        .expect("one policy is a valid limiter")
}

/// tower_governor keyed on the peer address, under the same quota (one
/// cell a nanosecond), writing no headers.
pub fn tower_governor<B>() -> GovernorLayer<PeerIpKeyExtractor, NoOpMiddleware, B> {
    GovernorLayer::new(governor_builder().finish().expect("a valid quota"))
}

/// [`mod@tower_governor`] with its `x-ratelimit-*` headers.
pub fn tower_governor_with_headers<B>()
-> GovernorLayer<PeerIpKeyExtractor, StateInformationMiddleware, B> {
    GovernorLayer::new(
        governor_builder()
            .use_headers()
            .finish()
            .expect("a valid quota"),
    )
}

fn governor_builder() -> GovernorConfigBuilder<PeerIpKeyExtractor, NoOpMiddleware> {
    let mut builder = GovernorConfigBuilder::default();
    builder.per_nanosecond(1).burst_size(NEVER);
    builder
}

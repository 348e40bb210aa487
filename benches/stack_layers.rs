//! What each layer of the example's stack costs per request on its own,
//! and the whole stack built from the example's config, in one run — so a
//! change to one layer shows up here even when the end-to-end comparison
//! (`scripts/compare.sh`) is too noisy to see it.
//!
//! `cargo bench --bench stack_layers`
//!
//! Every variant gets the same fresh request (`GET /api/me` with an HS256
//! bearer token, a user agent and the peer address), driven to completion
//! with a no-op waker, and writes its log lines as the example does: the
//! JSON lines of `init_json_logging` with the scrubbing writer, to a sink
//! (`BENCH_LOG_FORMAT=tracing-json` uses tracing-subscriber's own JSON
//! format instead, for comparison). Metrics go to the Prometheus recorder
//! the example installs. Subtract `baseline` for a layer's own cost.

#![allow(missing_docs)]

use std::{net::SocketAddr, sync::Arc};

use axum::{body::Body, extract::ConnectInfo};
use criterion::{BatchSize, BenchmarkGroup, Criterion, measurement::WallTime};
use guardrails::{
    Guardrails, GuardrailsConfig, GuardrailsLayer,
    auth_layer::{AuthenticateLayer, JwtVerifier, KeySource},
    guardrail_core::{ClientIpConfig, ResolveClientIpLayer, SetRequestIdLayer},
    monitor_layer::{MetricsLayer, RequestStats, prometheus},
    pii_trace_layer::{JsonFields, JsonLines, ScrubbingMakeWriter, TraceLayer},
    ratelimit_layer::{RateLimitLayer, RateLimitPolicy},
    timeout_retry_layer::{
        ErrorBoundaryLayer, LoadShedLayer, RequestBodyLimitLayer, RequestDeadlineLayer,
    },
};
use guardrails_testkit::bench::{respond_with, runtime, status};
use http::{Request, Response};
use jsonwebtoken::{EncodingKey, Header, encode};
use tower::{Layer, Service};

const SECRET: &str = "bench-secret-0123456789-abcdefghijklmnopqrstuv";

fn token() -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = serde_json::json!({
        "sub": "user-1", "aud": "authenticated", "iat": now, "exp": now + 3600,
        "role": "authenticated", "aal": "aal1",
        "amr": [{"method": "password", "timestamp": now}],
        "session_id": "bench",
    });
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn request(token: &str) -> Request<Body> {
    let mut req = Request::get("/api/me")
        .header("authorization", format!("Bearer {token}"))
        .header("user-agent", "okhttp/4.12.0")
        .body(Body::empty())
        .unwrap();
    let peer: SocketAddr = "203.0.113.9:40000".parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(peer));
    req
}

fn measure<S, B>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, token: &str, mut svc: S)
where
    S: Service<Request<Body>, Response = Response<B>, Error = std::convert::Infallible>,
{
    assert_eq!(
        status(&mut svc, request(token)),
        200,
        "{name} lets it through"
    );
    group.bench_function(name, |b| {
        b.iter_batched(
            || request(token),
            |req| status(&mut svc, req),
            BatchSize::SmallInput,
        )
    });
}

/// The example's config with its secret in a file and limits that never
/// trip.
fn example_stack() -> Guardrails {
    let secret = std::env::temp_dir().join(format!("guardrails-bench-{}", std::process::id()));
    std::fs::write(&secret, SECRET).unwrap();
    let text = include_str!("../examples/guardrails.toml")
        .replace(
            "{ env = \"GUARDRAILS_JWT_SECRET\" }",
            &format!("{{ file = \"{}\" }}", secret.display()),
        )
        .lines()
        .map(|l| {
            if l.starts_with("rate = ") || l.starts_with("burst = ") {
                l.split('=').next().unwrap().to_owned() + "= 1000000000"
            } else if l.starts_with("period = ") {
                "period = \"1s\"".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let config = GuardrailsConfig::from_toml_str(&text)
        .unwrap()
        .validate()
        .unwrap();
    let stack = GuardrailsLayer::from_config(&config).unwrap();
    std::fs::remove_file(secret).unwrap();
    stack
}

fn main() {
    let rt = runtime();
    let _guard = rt.enter();
    // As the example: the recorder first, so every layer's metrics are
    // recorded for real (not by the no-op recorder).
    let _prometheus = prometheus::install().unwrap();
    // The stack's scrubber is the log writer's, as in the example (the
    // writer trusts only lines scrubbed by its own scrubber).
    let stack = example_stack();
    let scrubber = Arc::clone(&stack.scrubber);
    // As init_json_logging, to a sink.
    let writer = ScrubbingMakeWriter::new(Arc::clone(&scrubber), std::io::sink);
    let builder = tracing_subscriber::fmt().with_max_level(tracing::Level::INFO);
    if std::env::var("BENCH_LOG_FORMAT").is_ok_and(|f| f == "tracing-json") {
        println!("BENCH_LOG_FORMAT=tracing-json: tracing-subscriber's JSON format");
        let subscriber = builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(writer)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    } else {
        let subscriber = builder
            .event_format(JsonLines::default())
            .fmt_fields(JsonFields)
            .with_writer(writer)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    }

    let token = token();
    let inner = || respond_with(Body::empty);
    let verifier =
        || JwtVerifier::new(KeySource::hs256(SECRET.as_bytes())).audience("authenticated");
    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("stack");
    measure(&mut group, "baseline", &token, inner());
    measure(
        &mut group,
        "request_id",
        &token,
        SetRequestIdLayer::new().layer(inner()),
    );
    measure(
        &mut group,
        "client_ip",
        &token,
        ResolveClientIpLayer::new(ClientIpConfig::default()).layer(inner()),
    );
    measure(
        &mut group,
        "trace",
        &token,
        TraceLayer::new(Arc::clone(&scrubber)).layer(inner()),
    );
    measure(
        &mut group,
        "rate_limit_per_ip_with_headers",
        &token,
        RateLimitLayer::builder()
            .policy(
                RateLimitPolicy::per_second(1_000_000_000)
                    .burst(1_000_000_000)
                    .name("per_ip"),
            )
            .build()
            .unwrap()
            .layer(inner()),
    );
    measure(
        &mut group,
        "auth_hs256_verified",
        &token,
        AuthenticateLayer::new(verifier().token_cache(0)).layer(inner()),
    );
    measure(
        &mut group,
        "auth_hs256_cached",
        &token,
        AuthenticateLayer::new(verifier()).layer(inner()),
    );
    measure(
        &mut group,
        "metrics_with_stats",
        &token,
        MetricsLayer::new()
            .stats(RequestStats::new())
            .layer(inner()),
    );
    measure(
        &mut group,
        "error_boundary",
        &token,
        ErrorBoundaryLayer::new()
            .scrubber(scrubber.clone())
            .layer(inner()),
    );
    measure(
        &mut group,
        "load_shed",
        &token,
        LoadShedLayer::new(10_000).layer(inner()),
    );
    measure(
        &mut group,
        "deadline",
        &token,
        RequestDeadlineLayer::default().layer(inner()),
    );
    measure(
        &mut group,
        "body_limit",
        &token,
        RequestBodyLimitLayer::default().layer(respond_with(Body::empty)),
    );
    measure(
        &mut group,
        "example_stack",
        &token,
        stack.layer.layer(respond_with(Body::empty)),
    );
    group.finish();
    criterion.final_summary();
}

//! What `scripts/compare.sh` runs beside the example service: the same
//! route shape (`GET /api/me` with a bearer token, a small JSON answer)
//! with nothing around it, and with the naive stack a service author would
//! assemble from single-purpose crates today.
//!
//! ```text
//! loadcmp serve bare     # axum alone
//! loadcmp serve naive    # tower_governor + tower-http TraceLayer (one INFO
//!                        # JSON line per request) + a jsonwebtoken HS256
//!                        # from_fn middleware + axum-prometheus (request
//!                        # metrics, /metrics)
//! loadcmp tokens N       # a wrk Lua script sending N distinct tokens from
//!                        # N distinct client addresses (X-Forwarded-For)
//! ```
//!
//! Servers listen on `GUARDRAILS_LISTEN` (default `127.0.0.1:3000`) and
//! verify tokens with `GUARDRAILS_JWT_SECRET`, as the example does.

use std::{net::SocketAddr, sync::Arc, time::SystemTime};

use axum::{
    Json, Router,
    extract::{Request, State},
    http::StatusCode,
    middleware::{Next, from_fn_with_state},
    response::{IntoResponse, Response},
    routing::get,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tower_governor::{
    GovernorLayer, governor::GovernorConfigBuilder, key_extractor::SmartIpKeyExtractor,
};
use tower_http::trace::{DefaultMakeSpan, DefaultOnResponse, TraceLayer};
use tracing::Level;

const USAGE: &str = "usage: loadcmp serve bare|naive | loadcmp tokens N [PATH]";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["serve", "bare"] => serve(bare),
        ["serve", "naive"] => secret().and_then(|s| serve(move || naive(&s))),
        ["tokens", n, rest @ ..] if rest.len() <= 1 => {
            let path = rest.first().copied().unwrap_or("/api/me");
            n.parse()
                .map_err(|_| format!("`{n}` is not a number\n{USAGE}"))
                .and_then(|n| secret().map(|s| print!("{}", wrk_script(&s, n, path))))
        }
        _ => Err(USAGE.to_owned()),
    };
    if let Err(e) = result {
        eprintln!("loadcmp: {e}");
        std::process::exit(2);
    }
}

fn secret() -> Result<Vec<u8>, String> {
    std::env::var("GUARDRAILS_JWT_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
        .map(String::into_bytes)
        .ok_or_else(|| "set GUARDRAILS_JWT_SECRET (the example's HS256 secret)".to_owned())
}

/// Serves the router `app` builds, built inside the runtime
/// (axum-prometheus spawns its upkeep task when made).
fn serve(app: impl FnOnce() -> Router) -> Result<(), String> {
    let addr = std::env::var("GUARDRAILS_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let app = app();
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        eprintln!("listening on {addr}");
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .map_err(|e| e.to_string())
    })
}

/// The claims the example's tokens carry (Supabase-shaped).
#[derive(Clone, Debug, Deserialize, Serialize)]
struct Claims {
    sub: String,
    aud: String,
    iat: u64,
    exp: u64,
    role: String,
    aal: String,
}

/// axum alone: the answer `/api/me` gives, without checking anything.
fn bare() -> Router {
    Router::new()
        .route(
            "/api/me",
            get(|| async {
                Json(json!({"subject": "user-1", "assurance_level": "aal1", "roles": []}))
            }),
        )
        .route("/api/recommendations", get(recommendations))
}

async fn recommendations() -> impl IntoResponse {
    Json(json!({ "recommendations": ["guardrails", "tower", "axum"] }))
}

/// The flag check a service would write by hand: a percentage per flag
/// in a shared map, the user's hash against it.
async fn naive_recommendations(
    axum::Extension(claims): axum::Extension<Claims>,
) -> axum::response::Response {
    use std::hash::{Hash, Hasher};
    static ROLLOUT: std::sync::LazyLock<std::sync::RwLock<std::collections::HashMap<&str, u64>>> =
        std::sync::LazyLock::new(|| {
            std::sync::RwLock::new([("ai_recommendations", 100)].into_iter().collect())
        });
    let percentage = ROLLOUT
        .read()
        .map(|flags| flags.get("ai_recommendations").copied().unwrap_or(0))
        .unwrap_or(0);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    claims.sub.hash(&mut hasher);
    if hasher.finish() % 100 < percentage {
        recommendations().await.into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

/// The naive stack: rate limits per IP (never tripping), one INFO log line
/// per request, HS256 tokens checked by a hand-written middleware, request
/// metrics by axum-prometheus.
fn naive(secret: &[u8]) -> Router {
    tracing_subscriber::fmt()
        .json()
        .with_max_level(Level::INFO)
        .init();
    let mut governor = GovernorConfigBuilder::default().key_extractor(SmartIpKeyExtractor);
    governor.per_nanosecond(1).burst_size(1_000_000_000);
    let governor = governor.finish().expect("a valid quota");
    let key = Arc::new(DecodingKey::from_secret(secret));
    let (metrics, prometheus) = axum_prometheus::PrometheusMetricLayer::pair();
    Router::new()
        .route("/api/me", get(me))
        .route("/api/recommendations", get(naive_recommendations))
        .layer(from_fn_with_state(key, authenticate))
        .layer(GovernorLayer::new(governor))
        .route("/metrics", get(move || async move { prometheus.render() }))
        .layer(metrics)
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(DefaultMakeSpan::new().level(Level::INFO))
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
}

async fn authenticate(
    State(key): State<Arc<DecodingKey>>,
    mut req: Request,
    next: Next,
) -> Response {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&["authenticated"]);
    match token.map(|t| jsonwebtoken::decode::<Claims>(t, &key, &validation)) {
        Some(Ok(data)) => {
            req.extensions_mut().insert(data.claims);
            next.run(req).await
        }
        _ => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn me(axum::Extension(claims): axum::Extension<Claims>) -> impl IntoResponse {
    Json(json!({"subject": claims.sub, "assurance_level": claims.aal, "roles": []}))
}

/// A wrk script sending `n` distinct tokens, each from its own client
/// address, in turn.
fn wrk_script(secret: &[u8], n: u32, path: &str) -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let key = EncodingKey::from_secret(secret);
    let mut tokens = String::new();
    let mut ips = String::new();
    for i in 0..n {
        let claims = Claims {
            sub: format!("user-{i}"),
            aud: "authenticated".into(),
            iat: now,
            exp: now + 3600,
            role: "authenticated".into(),
            aal: "aal1".into(),
        };
        let token = jsonwebtoken::encode(&Header::default(), &claims, &key)
            .expect("HS256 signing does not fail");
        tokens.push_str(&format!("\"{token}\",\n"));
        // Distinct addresses in 10.0.0.0/8: every client is its own bucket.
        ips.push_str(&format!(
            "\"10.{}.{}.{}\",\n",
            i >> 16 & 255,
            i >> 8 & 255,
            i & 255
        ));
    }
    format!(
        "-- {n} tokens from {n} client addresses, sent in turn.\n\
         local tokens = {{\n{tokens}}}\nlocal ips = {{\n{ips}}}\nlocal i = 0\n\
         request = function()\n  i = i % #tokens + 1\n  \
         return wrk.format(\"GET\", \"{path}\", {{[\"Authorization\"] = \"Bearer \" .. tokens[i], [\"X-Forwarded-For\"] = ips[i]}})\n\
         end\n"
    )
}

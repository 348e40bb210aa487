//! The example service: the template service authors copy, and the contract
//! the black-box tests run against.
//!
//! ```text
//! cargo run --release --example guarded_service
//! ```
//!
//! - listens on `GUARDRAILS_LISTEN` (default `127.0.0.1:3000`);
//! - reads `GUARDRAILS_CONFIG` (default `examples/guardrails.toml`, or the
//!   same file embedded in the binary when run from elsewhere), with
//!   `GUARDRAILS__<SECTION>__<KEY>` overrides;
//! - writes one JSON object per log line to stdout, every line scrubbed;
//! - refuses to start on an invalid config, with a clear message on stderr
//!   and exit code 2;
//! - shuts down gracefully on SIGINT/SIGTERM, giving in-flight requests
//!   `server.shutdown_grace` to finish, then stops the layers' background
//!   tasks (a JWKS refresh).

use std::{net::SocketAddr, process::ExitCode, sync::Arc};

use axum::{
    Extension, Json, Router,
    extract::Path,
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post, put},
};
use guardrails::{
    Guardrails, GuardrailsConfig, GuardrailsLayer, ValidConfig,
    auth_layer::VerifyWebhookLayer,
    flag_layer::{FlagError, FlagLayer, FlagStore, FlagUpdate},
    guardrail_core::{
        Deadline, Principal, Problem, Pseudonymizer, RedisConnection, RequestId,
        health::HealthRegistry,
    },
    monitor_layer::{health_report, prometheus, readiness, sqlx::PoolHealth},
    pii_trace_layer::{Scrubber, init_json_logging_with},
    timeout_retry_layer::{OutboundError, ReplayBody, UpstreamLayers},
};
use serde_json::json;

const DEFAULT_CONFIG_PATH: &str = "examples/guardrails.toml";
const EMBEDDED_CONFIG: &str = include_str!("guardrails.toml");

#[tokio::main]
async fn main() -> ExitCode {
    // A Prometheus recorder for the whole process — the stack's request
    // metrics and every guardrail's — installed before the layers are
    // built, since they register their metrics then.
    let prometheus = match prometheus::install() {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("guarded_service: {e}");
            return ExitCode::from(2);
        }
    };
    // Everything is built before the first log line that says the service
    // runs: a config or setup problem is the only thing logged.
    let built = load_config().and_then(|config| {
        let guardrails = GuardrailsLayer::from_config(&config).map_err(|e| e.to_string())?;
        Ok((config, guardrails))
    });
    // One JSON object per line on stdout, every line scrubbed of PII and
    // secrets (with the configured rules), whoever logged it. The stack's
    // own scrubber, or the built-in rules when there is none.
    let scrubber = match &built {
        Ok((_, guardrails)) => Arc::clone(&guardrails.scrubber),
        Err(_) => Arc::new(Scrubber::new(Pseudonymizer::random())),
    };
    // With the `otel` feature and `trace.otlp_endpoint` set, each request's
    // span also goes to an OpenTelemetry collector, in the caller's trace.
    #[cfg(feature = "otel")]
    let (otlp, otlp_export) = match &built {
        Ok((config, _)) if !config.trace.otlp_endpoint.is_empty() => {
            match guardrails::pii_trace_layer::otel::otlp_layer(
                &config.trace.otlp_endpoint,
                "guarded_service",
            ) {
                Ok((layer, export)) => (Some(layer), Some(export)),
                Err(e) => {
                    eprintln!("guarded_service: refusing to start: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        _ => (None, None),
    };
    #[cfg(not(feature = "otel"))]
    let otlp = None::<tracing_subscriber::layer::Identity>;
    // Lines are written in batches off the request path; the guard writes
    // what is queued when `main` returns, so no line is lost on shutdown.
    let logging = init_json_logging_with(scrubber, otlp).map_err(|e| e.to_string());
    let (config, guardrails, log_guard) = match (built, logging) {
        (Ok((config, guardrails)), Ok(guard)) => (config, guardrails, guard),
        (Err(message), _) | (Ok(_), Err(message)) => {
            eprintln!("guarded_service: refusing to start: {message}");
            tracing::error!(error = %message, "refusing to start: invalid configuration");
            return ExitCode::from(2);
        }
    };

    let Guardrails {
        layer,
        mut tasks,
        pseudonymizer,
        auth: authenticate,
        redis,
        upstreams,
        flags,
        health,
        ..
    } = guardrails;
    // The log writer in the health report (`logging`: lines dropped while
    // its queue was full).
    health.register_arc(log_guard.health_source());
    // The service's database, when `DATABASE_URL` names one: its pool's
    // health (connections in use, the wait for one, timeouts) joins the
    // report, readiness and the metrics.
    if let Some(url) = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
        match database_pool(&url) {
            Ok(pool) => {
                let pool_health = PoolHealth::new("database", pool);
                tasks.push("database_pool_probe", pool_health.probe());
                health.register(pool_health);
            }
            Err(e) => {
                eprintln!("guarded_service: DATABASE_URL: {e}");
                tracing::error!(error = %e, "refusing to start: DATABASE_URL is not a PostgreSQL URL");
                return ExitCode::from(2);
            }
        }
    }
    // Route coverage, visible at startup: everything else needs a token.
    let public: Vec<String> = authenticate.public_routes().patterns().collect();
    tracing::info!(public_routes = ?public, "authentication required on every route except these");
    // Metrics are served on a listener of their own
    // (`monitor.metrics_listen`), or at `/metrics` on this router when that
    // is "" (a route `auth.public` must then list).
    let metrics_listen = match prometheus::listen_addr(&config.monitor.metrics_listen) {
        Ok(Some(addr)) => match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => Some(listener),
            Err(err) => {
                eprintln!("guarded_service: cannot listen for metrics on {addr}: {err}");
                return ExitCode::from(2);
            }
        },
        Ok(None) => None,
        Err(err) => {
            eprintln!("guarded_service: monitor.metrics_listen: {err}");
            return ExitCode::from(2);
        }
    };
    // Histogram samples are drained by a scrape or this, never piling up.
    tokio::spawn(prometheus::upkeep(prometheus.clone()));
    let mut app = app(&config, &pseudonymizer, redis, flags, health)
        .merge(weather_route(&config, upstreams.get("weather")));
    let metrics_addr = match metrics_listen {
        Some(listener) => {
            let addr = listener.local_addr().map(|a| a.to_string()).ok();
            tokio::spawn(prometheus::serve_metrics(listener, prometheus));
            addr
        }
        None => {
            app = app.route(
                "/metrics",
                get(move || async move {
                    prometheus::metrics_response::<axum::body::Body>(&prometheus)
                }),
            );
            None
        }
    };
    let app = app.layer(layer);

    let listen = std::env::var("GUARDRAILS_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("guarded_service: cannot listen on {listen}: {err}");
            return ExitCode::from(2);
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or(listen);
    let signal = shutdown_signal();
    // Background work of the layers (a JWKS refresh), stopped on shutdown.
    let background = tasks.spawn();
    tracing::info!(addr = %addr, metrics_addr = metrics_addr.as_deref(), profile = %config.profile(), "listening");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = stop_rx.await;
    });
    let grace = config.server.shutdown_grace;
    let mut server = tokio::spawn(async move { server.await });

    let finished = tokio::select! {
        finished = &mut server => Some(finished),
        () = signal => {
            // Stop accepting; in-flight requests get `grace` to finish.
            tracing::info!(grace = ?grace, "shutting down");
            let _ = stop_tx.send(());
            match tokio::time::timeout(grace, &mut server).await {
                Ok(finished) => Some(finished),
                Err(_) => {
                    tracing::warn!("shutdown grace period elapsed; dropping remaining connections");
                    // Dropping the handle would leave the server running
                    // until the process exits: stop it now.
                    server.abort();
                    None
                }
            }
        }
    };
    // Each task's stop is logged: `background task stopped`.
    background.shutdown().await;
    #[cfg(feature = "otel")]
    if let Some(export) = otlp_export {
        // The spans still queued; off the runtime (the export blocks).
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || export.shutdown()).await {
            tracing::warn!(error = %e, "OpenTelemetry export: spans still queued may be lost");
        }
    }
    match finished {
        None | Some(Ok(Ok(()))) => ExitCode::SUCCESS,
        Some(Ok(Err(err))) => {
            tracing::error!(error = %err, "server failed");
            ExitCode::FAILURE
        }
        Some(Err(err)) => {
            tracing::error!(error = %err, "server task failed");
            ExitCode::FAILURE
        }
    }
}

/// The service's pool: connected lazily, so an unreachable database shows
/// in readiness (503) rather than stopping the service from starting. The
/// error is sqlx's word for what is wrong with the URL, never the URL.
fn database_pool(url: &str) -> Result<sqlx::PgPool, String> {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(10)
        .acquire_timeout(std::time::Duration::from_secs(2))
        .connect_lazy(url)
        .map_err(|e| match e {
            sqlx::Error::Configuration(_) => "not a valid PostgreSQL URL".to_owned(),
            _ => "the pool could not be set up".to_owned(),
        })
}

/// The routes, with their route-level requirements; the stack goes around
/// them. `pseudonymizer` is the stack's, so denials name users as the
/// request log does.
fn app(
    config: &ValidConfig,
    pseudonymizer: &Pseudonymizer,
    redis: Option<RedisConnection>,
    flags: FlagStore,
    health: HealthRegistry,
) -> Router {
    let ready = health.clone();
    let auth = &config.auth;
    let router = Router::new()
        .route("/api/health", get(liveness))
        // Readiness for a load balancer or kubelet: the status only, 503
        // while a component fails.
        .route(
            "/api/ready",
            get(move || async move { readiness::<axum::body::Body>(&ready) }),
        )
        // Every component with its details: admins.
        .route(
            "/api/monitoring/health",
            get(move || async move { health_report::<axum::body::Body>(&health) })
                .route_layer(auth.require_admin(pseudonymizer)),
        )
        .route("/api/me", get(me))
        .route(
            "/api/users/{user_id}/profile",
            get(profile).route_layer(auth.require_owner("user_id", pseudonymizer)),
        )
        .route(
            "/api/integrations/{id}/credentials",
            post(store_credentials).route_layer(auth.require_fresh_mfa(pseudonymizer)),
        )
        .route(
            "/api/admin/users",
            get(admin_users).route_layer(auth.require_admin(pseudonymizer)),
        )
        // Hidden (the 404 of an unknown path) from callers the flag is off for.
        .route(
            "/api/recommendations",
            get(recommendations).route_layer(FlagLayer::new(flags.clone(), "ai_recommendations")),
        )
        // The kill switch and rollouts at runtime: admins with MFA.
        .route(
            "/api/admin/flags/{name}",
            put(update_flag)
                .route_layer(auth.require_admin(pseudonymizer))
                .route_layer(Extension(flags))
                .layer(no_axum_body_limit()),
        )
        .route(
            "/api/webhooks/stripe",
            post(stripe_webhook)
                .route_layer(VerifyWebhookLayer::from_config(&auth.webhook, redis))
                .layer(no_axum_body_limit()),
        )
        .fallback(not_found);
    if config.server.debug_routes {
        // Development only (validation refuses it in production): routes
        // that misbehave on purpose, to watch the inbound guards work.
        router
            .route("/api/debug/panic", get(debug_panic))
            .route("/api/debug/slow", get(debug_slow))
            .route(
                "/api/debug/echo",
                post(debug_echo).layer(no_axum_body_limit()),
            )
    } else {
        router
    }
}

/// `GET /api/integrations/weather` (authenticated by the stack): calls
/// `upstreams.weather.url` through its outbound layers (status check →
/// bulkhead → retry → circuit breaker, built by the stack from
/// `[upstreams.weather]`, the breaker in its health report) and answers
/// the upstream's JSON; every failure is one `OutboundError`, answered as
/// its problem. Nothing of the client's request is forwarded; the upstream
/// gets what is left of the request's deadline. Without
/// `[upstreams.weather]` the route answers 503.
fn weather_route(config: &ValidConfig, layers: Option<&UpstreamLayers>) -> Router {
    use http_body_util::BodyExt;
    use tower::{Layer, ServiceExt};

    type Body = ReplayBody<http_body_util::Full<bytes::Bytes>>;
    let url = config
        .upstreams
        .get("weather")
        .and_then(|u| u.url.parse::<http::Uri>().ok());
    let (Some(url), Some(layers)) = (url, layers) else {
        return Router::new().route(
            "/api/integrations/weather",
            get(|| async {
                OutboundError::BulkheadFull
                    .to_problem()
                    .into_response::<axum::body::Body>()
            }),
        );
    };
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Body>();
    let client = layers.layer(http);
    let check = layers.check.clone();
    let handler = move |deadline: Option<Extension<Deadline>>, id: Option<Extension<RequestId>>| {
        let client = client.clone();
        let url = url.clone();
        let check = check.clone();
        async move {
            let failed = |e: OutboundError| problem_response(e.to_problem(), id);
            let mut req = http::Request::get(url)
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .expect("a GET to a parsed URI");
            if let Some(Extension(deadline)) = deadline {
                req.extensions_mut().insert(deadline);
            }
            let res = match client.oneshot(req).await {
                Ok(res) => res,
                Err(e) => return failed(e),
            };
            // At most 1 MiB of JSON; anything else is the upstream failing.
            let body = http_body_util::Limited::new(res.into_body(), 1024 * 1024)
                .collect()
                .await;
            match body
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b.to_bytes()).ok())
            {
                Some(json) => Json(json).into_response(),
                None => {
                    // The head was fine; the body broke off or is not JSON.
                    let err = OutboundError::from_inner("the upstream's answer is not JSON");
                    check.report_failure(&err);
                    failed(err)
                }
            }
        }
    };
    Router::new().route("/api/integrations/weather", get(handler))
}

/// On routes whose handlers read the body with an extractor: the stack
/// enforces `[body_limit]` (problem+json, per route), and axum's own 2 MiB
/// default would otherwise answer a larger body with plain text first. Only
/// there: on every route it would cost an extension and a boxed service per
/// request (~1 µs of CPU per request end to end in `scripts/compare.sh`).
fn no_axum_body_limit() -> axum::extract::DefaultBodyLimit {
    axum::extract::DefaultBodyLimit::disable()
}

/// Panics (the error boundary answers 500 and the service serves on). The
/// message holds a card number, which the log line must not.
async fn debug_panic() -> &'static str {
    panic!("debug route panicked on purpose for card 4111 1111 1111 1111")
}

/// Sleeps `ms` milliseconds (at most a minute): past `[timeout] request`
/// the deadline answers 504; several at once fill `[load_shed]`.
async fn debug_slow(
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, u64>>,
) -> impl IntoResponse {
    let ms = q.get("ms").copied().unwrap_or(1000).min(60_000);
    tracing::info!(ms, "debug slow started");
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    Json(json!({ "slept_ms": ms }))
}

/// Reads the whole body (the body limit stops one that is too large before
/// this runs, or cuts it off while this reads).
async fn debug_echo(body: axum::body::Bytes) -> impl IntoResponse {
    tracing::info!(bytes = body.len(), "debug echo read the body");
    Json(json!({ "bytes": body.len() }))
}

/// Public liveness.
async fn liveness() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Authenticated: who the caller is.
async fn me(principal: Principal) -> impl IntoResponse {
    Json(json!({
        "subject": principal.subject(),
        "assurance_level": principal.assurance().as_str(),
        "roles": principal.roles(),
    }))
}

/// Owner or admin.
async fn profile(Path(user_id): Path<String>) -> impl IntoResponse {
    Json(json!({ "user_id": user_id }))
}

/// MFA within `auth.mfa_max_age`.
async fn store_credentials(Path(id): Path<String>) -> impl IntoResponse {
    (
        StatusCode::CREATED,
        Json(json!({ "integration": id, "stored": true })),
    )
}

/// Admin (with MFA unless configured otherwise).
async fn admin_users() -> impl IntoResponse {
    Json(json!({ "users": [] }))
}

/// Behind the flag `ai_recommendations` (rolled out to 50 % in the example
/// config): only reached by callers it is on for.
async fn recommendations() -> impl IntoResponse {
    Json(json!({ "recommendations": ["guardrails", "tower", "axum"] }))
}

/// `PUT /api/admin/flags/{name}`: a partial update of a flag at runtime,
/// which a reload of the source never undoes (`enabled: false` is the kill
/// switch); answers the flag's whole new state. 404 for an unknown flag,
/// 400 naming each field that is wrong.
async fn update_flag(
    Extension(flags): Extension<FlagStore>,
    principal: Principal,
    Path(name): Path<String>,
    id: Option<Extension<RequestId>>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let answer = |problem: Problem| problem_response(problem, id);
    let invalid = |problems: Vec<guardrails::guardrail_core::config::ConfigProblem>| {
        let errors: Vec<_> = problems
            .iter()
            .map(|p| {
                // The store names fields `flag.<field>`; the body's are bare.
                let field = p.path.strip_prefix("flag.").unwrap_or(&p.path);
                json!({ "field": field, "message": p.message })
            })
            .collect();
        Problem::bad_request()
            .detail("The flag update is not valid: see `errors`.")
            .extension("errors", errors)
    };
    let update = match FlagUpdate::from_json(&body) {
        Ok(update) => update,
        Err(problems) => return answer(invalid(problems)),
    };
    match flags.set(&name, update, &principal).await {
        Ok(flag) => {
            // What callers get: an environment off switch wins over this.
            let mut state = json!(flag);
            state["switched_off_by_environment"] =
                flags.is_switched_off_by_environment(&name).into();
            Json(state).into_response()
        }
        // Redis can't be written: nothing changed; try again shortly.
        Err(FlagError::Unavailable(_)) => answer(Problem::service_unavailable(1)),
        Err(FlagError::NotFound(_)) => {
            answer(Problem::not_found().detail("No flag has this name."))
        }
        Err(FlagError::Invalid(problems)) => answer(invalid(problems)),
        Err(_) => answer(Problem::bad_request()),
    }
}

/// Public, but only reached with a valid `Stripe-Signature`.
async fn stripe_webhook(body: axum::body::Bytes) -> impl IntoResponse {
    Json(json!({ "received": true, "bytes": body.len() }))
}

/// A handler's own problem, with the request's id.
fn problem_response(
    problem: Problem,
    id: Option<Extension<RequestId>>,
) -> axum::response::Response {
    match id {
        Some(Extension(id)) => problem.request_id(id),
        None => problem,
    }
    .into_response()
}

/// The same 404 as a route hidden behind a flag that is off.
async fn not_found(req: axum::extract::Request) -> impl IntoResponse {
    Problem::not_found()
        .request_id_from(req.extensions())
        .into_response::<axum::body::Body>()
}

fn load_config() -> Result<ValidConfig, String> {
    let config = match std::env::var("GUARDRAILS_CONFIG") {
        Ok(path) => GuardrailsConfig::load(&path),
        Err(_) if std::path::Path::new(DEFAULT_CONFIG_PATH).exists() => {
            GuardrailsConfig::load(DEFAULT_CONFIG_PATH)
        }
        Err(_) => GuardrailsConfig::from_sources(
            EMBEDDED_CONFIG,
            "embedded guardrails.toml",
            std::env::vars(),
        ),
    }
    .map_err(|e| e.to_string())?;
    config.validate().map_err(|e| e.to_string())
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when it is first polled, so a signal sent right after the
/// "listening" line is never lost.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                }
                _ => std::future::pending::<()>().await,
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

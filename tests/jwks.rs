//! JWKS against a real HTTP server on 127.0.0.1: rotation, rate-limited
//! refresh, stale-while-error, and 503 when no key can be had.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use auth_layer::{AuthenticateLayer, Jwks, JwtVerifier};
use axum::{Router, body::Body, extract::State, http::StatusCode, routing::get};
use guardrail_core::Principal;
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, jwk::Jwk};
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use serde_json::json;
use tower::ServiceExt;

/// An EC key pair derived from `seed`, as (signing key, public JWK with `kid`).
fn key(seed: u8, kid: &str) -> (EncodingKey, Jwk) {
    let sk = p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap();
    let enc =
        EncodingKey::from_ec_pem(sk.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&enc, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    (enc, jwk)
}

fn token(enc: &EncodingKey, kid: &str) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    let exp = jsonwebtoken::get_current_timestamp() + 600;
    encode(&header, &json!({"sub": "user-1", "exp": exp}), enc).unwrap()
}

/// What the fake identity provider serves, and how often it was asked.
#[derive(Clone, Default)]
struct Provider {
    reply: Arc<Mutex<(StatusCode, String)>>,
    hits: Arc<AtomicUsize>,
    /// While set, each request waits for [`release`](Self::release).
    holding: Arc<std::sync::atomic::AtomicBool>,
    gate: Arc<tokio::sync::Notify>,
}

impl Provider {
    fn hold(&self) {
        self.holding.store(true, Ordering::SeqCst);
    }
    fn release(&self) {
        self.holding.store(false, Ordering::SeqCst);
        // A stored permit if the handler isn't waiting yet.
        self.gate.notify_one();
    }
    /// Waits (yielding, not sleeping) until `n` requests have arrived.
    async fn wait_for_hits(&self, n: usize) {
        for _ in 0..10_000 {
            if self.hits() >= n {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("{} hits, expected {n}", self.hits());
    }
    fn serve_keys(&self, keys: &[&Jwk]) {
        *self.reply.lock().unwrap() = (StatusCode::OK, json!({ "keys": keys }).to_string());
    }
    fn fail(&self) {
        *self.reply.lock().unwrap() = (StatusCode::INTERNAL_SERVER_ERROR, "oops".into());
    }
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn start(provider: Provider) -> String {
    let app = Router::new()
        .route(
            "/.well-known/jwks.json",
            get(|State(p): State<Provider>| async move {
                p.hits.fetch_add(1, Ordering::SeqCst);
                if p.holding.load(Ordering::SeqCst) {
                    p.gate.notified().await;
                }
                let (status, body) = p.reply.lock().unwrap().clone();
                (status, body)
            }),
        )
        .with_state(provider);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/.well-known/jwks.json")
}

fn app(jwks: Jwks) -> Router {
    Router::new()
        .route(
            "/api/me",
            get(|p: Principal| async move { p.subject().to_owned() }),
        )
        .layer(AuthenticateLayer::new(JwtVerifier::new(jwks)))
}

async fn call(app: &Router, token: &str) -> (StatusCode, http::HeaderMap, String) {
    let req = http::Request::get("/api/me")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn key_rotation_is_picked_up() {
    let provider = Provider::default();
    let (k1, jwk1) = key(1, "k1");
    let (k2, jwk2) = key(2, "k2");
    provider.serve_keys(&[&jwk1]);
    let url = start(provider.clone()).await;
    let jwks = Jwks::builder(url)
        .min_refresh_interval(Duration::ZERO)
        .build()
        .unwrap();
    let app = app(jwks);

    assert_eq!(call(&app, &token(&k1, "k1")).await.0, StatusCode::OK);
    assert_eq!(provider.hits(), 1);
    assert_eq!(call(&app, &token(&k1, "k1")).await.0, StatusCode::OK);
    assert_eq!(provider.hits(), 1, "a cached key needs no fetch");

    provider.serve_keys(&[&jwk2]);
    let (status, _, body) = call(&app, &token(&k2, "k2")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "user-1");
    assert_eq!(provider.hits(), 2, "the unknown kid triggered one refresh");

    // The retired key is gone from the refreshed set.
    assert_eq!(
        call(&app, &token(&k1, "k1")).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn unknown_kid_refresh_is_rate_limited() {
    let provider = Provider::default();
    let (k1, jwk1) = key(1, "k1");
    provider.serve_keys(&[&jwk1]);
    let url = start(provider.clone()).await;
    let jwks = Jwks::builder(url)
        .min_refresh_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    let app = app(jwks);

    assert_eq!(call(&app, &token(&k1, "k1")).await.0, StatusCode::OK);
    for i in 0..25 {
        let (status, _, body) = call(&app, &token(&k1, &format!("random-{i}"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(!body.contains("random-"), "the kid is never echoed");
    }
    assert_eq!(
        provider.hits(),
        1,
        "random kids cannot make us hammer the endpoint"
    );
}

#[tokio::test]
async fn endpoint_down_keeps_serving_cached_keys() {
    let provider = Provider::default();
    let (k1, jwk1) = key(1, "k1");
    provider.serve_keys(&[&jwk1]);
    let url = start(provider.clone()).await;
    // Keys go stale at once, so every request wants a refresh.
    let jwks = Jwks::builder(url)
        .ttl(Duration::from_nanos(1))
        .max_stale(Duration::from_secs(3600))
        .min_refresh_interval(Duration::ZERO)
        .build()
        .unwrap();
    let app = app(jwks.clone());
    assert_eq!(call(&app, &token(&k1, "k1")).await.0, StatusCode::OK);

    provider.fail();
    jwks.refresh().await;
    assert_eq!(
        provider.hits(),
        2,
        "the refresh reached the failing endpoint"
    );
    for _ in 0..3 {
        assert_eq!(call(&app, &token(&k1, "k1")).await.0, StatusCode::OK);
    }
    assert_eq!(jwks.key_count(), 1, "the cached key survived the failure");
}

fn me(token: &str) -> http::Request<Body> {
    http::Request::get("/api/me")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn cancelled_request_does_not_cancel_the_fetch() {
    let provider = Provider::default();
    let (k1, jwk1) = key(1, "k1");
    provider.serve_keys(&[&jwk1]);
    provider.hold();
    let url = start(provider.clone()).await;
    let jwks = Jwks::builder(url)
        .min_refresh_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    let app = app(jwks.clone());
    // A request that needs a fetch, polled until the fetch has reached the
    // key server (which holds it), then dropped.
    let mut pending = Box::pin(app.clone().oneshot(me(&token(&k1, "k1"))));
    for _ in 0..10_000 {
        tokio::select! {
            biased;
            _ = &mut pending => panic!("answered while the key server holds the fetch"),
            () = tokio::task::yield_now() => {}
        }
        if provider.hits() == 1 {
            break;
        }
    }
    assert_eq!(provider.hits(), 1, "the fetch is in flight");
    drop(pending);
    provider.release();
    // The fetch went on without its request: the next request uses its
    // keys (one fetch in all, and the refresh interval forbids another).
    let (status, _, body) = call(&app, &token(&k1, "k1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(provider.hits(), 1);
    assert_eq!(jwks.fetch_count(), 1);
}

#[tokio::test]
async fn concurrent_requests_share_one_fetch() {
    let provider = Provider::default();
    let (k1, jwk1) = key(1, "k1");
    provider.serve_keys(&[&jwk1]);
    provider.hold();
    let url = start(provider.clone()).await;
    let app = app(Jwks::builder(url).build().unwrap());
    let requests: Vec<_> = (0..10)
        .map(|_| tokio::spawn(app.clone().oneshot(me(&token(&k1, "k1")))))
        .collect();
    provider.wait_for_hits(1).await;
    provider.release();
    for request in requests {
        assert_eq!(request.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    assert_eq!(provider.hits(), 1, "ten requests, one fetch");
}

#[tokio::test]
async fn cached_keys_stop_verifying_after_ttl_plus_max_stale() {
    let provider = Provider::default();
    let (k1, jwk1) = key(1, "k1");
    provider.serve_keys(&[&jwk1]);
    let url = start(provider.clone()).await;
    let (ttl, max_stale) = (Duration::from_secs(600), Duration::from_secs(3600));
    let app = app(Jwks::builder(url)
        .ttl(ttl)
        .max_stale(max_stale)
        .min_refresh_interval(Duration::from_secs(1))
        .build()
        .unwrap());
    assert_eq!(call(&app, &token(&k1, "k1")).await.0, StatusCode::OK);
    // The endpoint fails from now on; the clock moves, not the test.
    provider.fail();
    tokio::time::pause();
    tokio::time::advance(ttl + max_stale - Duration::from_secs(5)).await;
    let (status, _, body) = call(&app, &token(&k1, "k1")).await;
    assert_eq!(status, StatusCode::OK, "stale keys still serve: {body}");
    tokio::time::advance(Duration::from_secs(10)).await;
    let (status, headers, _) = call(&app, &token(&k1, "k1")).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "past ttl + max_stale"
    );
    assert!(headers.contains_key("retry-after"));
}

#[tokio::test]
async fn no_cached_key_and_endpoint_failing_is_503_with_retry_after() {
    let provider = Provider::default();
    provider.fail();
    let url = start(provider.clone()).await;
    let app = app(Jwks::builder(url).build().unwrap());
    let (k1, _) = key(1, "k1");
    let (status, headers, body) = call(&app, &token(&k1, "k1")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key("retry-after"));
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(
        !body.contains("127.0.0.1") && !body.contains("jwks"),
        "{body}"
    );
}

#[tokio::test]
async fn unreachable_endpoint_is_503_not_500() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let jwks = Jwks::builder(format!("http://{addr}/jwks.json"))
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let (k1, _) = key(1, "k1");
    assert_eq!(
        call(&app(jwks), &token(&k1, "k1")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn symmetric_keys_in_a_jwks_are_ignored() {
    let provider = Provider::default();
    let oct: Jwk =
        serde_json::from_value(json!({"kty": "oct", "kid": "h", "alg": "HS256", "k": "c2VjcmV0"}))
            .unwrap();
    provider.serve_keys(&[&oct]);
    let url = start(provider.clone()).await;
    let app = app(Jwks::builder(url).build().unwrap());
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("h".into());
    let exp = jsonwebtoken::get_current_timestamp() + 600;
    let forged = encode(
        &header,
        &json!({"sub": "admin", "exp": exp}),
        &EncodingKey::from_secret(b"secret"),
    )
    .unwrap();
    let status = call(&app, &forged).await.0;
    assert!(
        status == StatusCode::UNAUTHORIZED || status == StatusCode::SERVICE_UNAVAILABLE,
        "{status}"
    );
}

/// An OIDC provider on 127.0.0.1: its discovery document (naming
/// `issuer`, or its own address when `None`) and its key set, with the
/// number of times each was read.
async fn start_oidc(
    provider: Provider,
    issuer: Option<&'static str>,
    discovery_hits: Arc<AtomicUsize>,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let document = json!({
        "issuer": issuer.map_or(base.clone(), str::to_owned),
        "jwks_uri": format!("{base}/keys"),
        "authorization_endpoint": format!("{base}/authorize"),
    })
    .to_string();
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || {
                let hits = discovery_hits.clone();
                let document = document.clone();
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    document
                }
            }),
        )
        .route(
            "/keys",
            get(|State(p): State<Provider>| async move {
                p.hits.fetch_add(1, Ordering::SeqCst);
                let (status, body) = p.reply.lock().unwrap().clone();
                (status, body)
            }),
        )
        .with_state(provider);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test]
async fn oidc_discovery_finds_the_key_set_once() {
    let provider = Provider::default();
    let (k1, jwk1) = key(1, "k1");
    provider.serve_keys(&[&jwk1]);
    let discovery_hits = Arc::new(AtomicUsize::new(0));
    let issuer = start_oidc(provider.clone(), None, discovery_hits.clone()).await;
    let jwks = Jwks::discovery(&issuer)
        .https_only(false) // the local provider speaks http
        .min_refresh_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    let app = app(jwks.clone());
    let (status, _, body) = call(&app, &token(&k1, "k1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A later key refresh goes straight to the jwks_uri.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(2)).await;
    jwks.refresh().await;
    assert_eq!(provider.hits(), 2, "two key set fetches");
    assert_eq!(discovery_hits.load(Ordering::SeqCst), 1, "one discovery");
}

#[tokio::test]
async fn oidc_discovery_naming_another_issuer_is_refused() {
    let provider = Provider::default();
    let (k1, jwk1) = key(1, "k1");
    provider.serve_keys(&[&jwk1]);
    let discovery_hits = Arc::new(AtomicUsize::new(0));
    let issuer = start_oidc(
        provider.clone(),
        Some("https://evil.example"),
        discovery_hits.clone(),
    )
    .await;
    let (guard, logs) = guardrails_testkit::capture::json();
    let app = app(Jwks::discovery(&issuer).https_only(false).build().unwrap());
    let (status, _, _) = call(&app, &token(&k1, "k1")).await;
    drop(guard);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(provider.hits(), 0, "its jwks_uri is never followed");
    let failed: Vec<_> = logs
        .lines()
        .into_iter()
        .filter(|l| l["event"] == "integration.backend_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{}", logs.text());
    assert_eq!(
        failed[0]["reason"],
        "discovery document names another issuer"
    );
}

#[test]
fn discovery_config_is_checked_against_the_profile() {
    use guardrails::{GuardrailsConfig, Profile};
    let config = |issuer: &str, extra: &str| {
        GuardrailsConfig::from_toml_str(&format!(
            "profile = \"production\"\n[auth]\nissuer = \"{issuer}\"\naudience = \"api\"\n[auth.jwks]\nissuer_discovery = true\n{extra}"
        ))
        .unwrap()
    };
    let problems = |c: &GuardrailsConfig| match c.validate_for(Profile::Production) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    };
    // (Production asks for other things too; none about the key source.)
    let ok = problems(&config("https://idp.example", ""));
    assert!(!ok.contains("auth."), "{ok}");
    assert!(problems(&config("http://idp.example", "")).contains("must be https"));
    assert!(
        problems(&config(
            "https://idp.example",
            "url = \"https://idp.example/keys\""
        ))
        .contains("not both")
    );
}

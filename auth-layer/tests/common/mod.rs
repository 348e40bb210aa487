//! Token minting and a test service for the auth-layer tests.
#![allow(dead_code, unreachable_pub)]

use std::{
    convert::Infallible,
    time::{SystemTime, UNIX_EPOCH},
};

use auth_layer::{AuthenticateLayer, JwtVerifier, KeySource, PublicRoutes};
use axum::{Router, body::Body, routing::get};
use guardrail_core::Principal;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tower::ServiceExt;

pub const SECRET: &[u8] = b"test-secret-0123456789abcdefghijklmnop";
pub const ISSUER: &str = "https://auth.example.test/auth/v1";
pub const AUDIENCE: &str = "authenticated";
pub const RSA_PRIVATE: &[u8] = include_bytes!("../keys/rsa_private.pem");
pub const RSA_PUBLIC: &[u8] = include_bytes!("../keys/rsa_public.pem");

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Valid Supabase-shaped claims for `sub`, expiring in 10 minutes.
pub fn claims(sub: &str) -> Value {
    json!({
        "sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600, "iat": now(),
        "role": "authenticated", "aal": "aal1",
        "amr": [{"method": "password", "timestamp": now() - 60}],
        "session_id": "sess-1",
    })
}

pub fn mfa_claims(sub: &str, mfa_secs_ago: u64) -> Value {
    let mut c = claims(sub);
    c["aal"] = json!("aal2");
    c["amr"] = json!([{"method": "password", "timestamp": now() - 3600},
                      {"method": "totp", "timestamp": now() - mfa_secs_ago}]);
    c
}

pub fn admin_claims(sub: &str, mfa: bool) -> Value {
    let mut c = if mfa {
        mfa_claims(sub, 30)
    } else {
        claims(sub)
    };
    c["app_metadata"] = json!({"roles": ["admin"]});
    c
}

pub fn hs256(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

pub fn with_header(header: Value, claims: &Value, key: &EncodingKey) -> String {
    // Sign a hand-written header: jsonwebtoken's Header can't express every attack.
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
    let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
    let alg: Algorithm = header["alg"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or(Algorithm::HS256);
    let message = format!("{h}.{p}");
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{sig}")
}

pub fn verifier() -> JwtVerifier {
    JwtVerifier::new(KeySource::hs256(SECRET))
        .issuer(ISSUER)
        .audience(AUDIENCE)
}

/// The example's routes with the levels under test.
pub fn app(verifier: JwtVerifier) -> Router {
    use auth_layer::RequireLayer;
    use std::time::Duration;
    Router::new()
        .route("/api/health", get(|| async { "ok" }))
        .route(
            "/api/me",
            get(|p: Principal| async move {
                axum::Json(
                    json!({"sub": p.subject(), "aal": p.assurance().as_str(), "roles": p.roles()}),
                )
            }),
        )
        .route(
            "/api/users/{user_id}/profile",
            get(|| async { "profile" }).route_layer(RequireLayer::owner("user_id")),
        )
        .route(
            "/api/integrations/{id}/credentials",
            axum::routing::post(|| async { "stored" })
                .route_layer(RequireLayer::mfa().max_age(Duration::from_secs(15 * 60))),
        )
        .route(
            "/api/admin/users",
            get(|| async { "users" }).route_layer(RequireLayer::admin()),
        )
        .layer(AuthenticateLayer::new(verifier).public(PublicRoutes::new(["/api/health"]).unwrap()))
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    pub fn challenge(&self) -> String {
        self.headers
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
}

pub async fn send(app: &Router, req: Request<Body>) -> Reply {
    let res: Response<Body> = app
        .clone()
        .oneshot(req)
        .await
        .unwrap_or_else(|e: Infallible| match e {});
    let (parts, body) = res.into_parts();
    let body = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub fn get_with(uri: &str, token: Option<&str>) -> Request<Body> {
    let mut b = Request::get(uri);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Body::empty()).unwrap()
}

pub fn method_with(method: &str, uri: &str, token: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

//! Authentication and authorization levels for tower services: deny by
//! default, four levels (public, authenticated, MFA, admin), ownership
//! checks, and webhook signature verification.
//!
//! - [`AuthenticateLayer`] wraps the whole router: every route needs a valid
//!   JWT unless it is on the [`PublicRoutes`] allow-list; the caller's
//!   [`Principal`](guardrail_core::Principal) goes into extensions.
//! - [`RequireLayer`] on a route asks for more: [`RequireLayer::mfa`]
//!   (optionally with a max age), [`RequireLayer::admin`],
//!   [`RequireLayer::owner`].
//! - [`JwtVerifier`] verifies HS256/RS256/ES256/EdDSA tokens with keys from
//!   configuration ([`KeySource`]) or a cached [`Jwks`] endpoint; the
//!   algorithm always comes from the key, never from the token.
//! - [`VerifyWebhookLayer`] checks Stripe- or GitHub-style HMAC signatures.
//! - [`AuthConfig`] is the `[auth]` config section.
//!
//! Every refusal is a problem+json response (401 with an RFC 6750
//! `WWW-Authenticate` challenge, 403 for an insufficient level, 503 with
//! `Retry-After` when keys can't be had) and a `security.*` event with the
//! client address masked and the user pseudonymized.
//!
//! # Example
//!
//! ```
//! use auth_layer::{AuthenticateLayer, JwtVerifier, KeySource, PublicRoutes, RequireLayer};
//! use axum::{Router, routing::get};
//! use guardrail_core::Principal;
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let secret = b"a-32-byte-or-longer-random-secret!!";
//! let app = Router::new()
//!     .route("/api/health", get(|| async { "ok" }))
//!     .route("/api/me", get(|p: Principal| async move { p.subject().to_owned() }))
//!     .route(
//!         "/api/admin/users",
//!         get(|| async { "users" }).route_layer(RequireLayer::admin()),
//!     )
//!     .layer(
//!         AuthenticateLayer::new(JwtVerifier::new(KeySource::hs256(secret)))
//!             .public(PublicRoutes::new(["/api/health"]).unwrap()),
//!     );
//!
//! let get = |uri: &str| Request::get(uri).body(axum::body::Body::empty()).unwrap();
//! assert_eq!(app.clone().oneshot(get("/api/health")).await.unwrap().status(), StatusCode::OK);
//! assert_eq!(app.clone().oneshot(get("/api/me")).await.unwrap().status(), StatusCode::UNAUTHORIZED);
//!
//! let exp = jsonwebtoken::get_current_timestamp() + 60;
//! let token = jsonwebtoken::encode(
//!     &jsonwebtoken::Header::default(),
//!     &serde_json::json!({"sub": "u-1", "exp": exp}),
//!     &jsonwebtoken::EncodingKey::from_secret(secret),
//! ).unwrap();
//! let with_token = |uri: &str| Request::get(uri)
//!     .header("authorization", format!("Bearer {token}"))
//!     .body(axum::body::Body::empty()).unwrap();
//! assert_eq!(app.clone().oneshot(with_token("/api/me")).await.unwrap().status(), StatusCode::OK);
//! assert_eq!(app.oneshot(with_token("/api/admin/users")).await.unwrap().status(), StatusCode::FORBIDDEN);
//! # }
//! ```

pub mod authenticate;
mod cache;
pub mod claims;
mod config;
mod error;
pub mod jwks;
pub mod jwt;
mod keys;
mod public;
pub mod require;
pub mod webhook;

pub use authenticate::{Authenticate, AuthenticateLayer};
pub use cache::DEFAULT_TOKEN_CACHE;
pub use claims::{ClaimsMapper, SupabaseClaims};
pub use config::{AuthConfig, AuthConfigError, JwksConfig, WebhookConfig};
pub use error::{AuthError, Denial, StepUp};
pub use jwks::{Jwks, JwksBuilder};
pub use jwt::{JwtVerifier, KeySource};
pub use keys::VerificationKey;
pub use public::{PatternError, PublicRoutes};
pub use require::{Require, RequireLayer};
pub use webhook::{
    GitHub, ReplayFallback, ReplayStore, SignatureScheme, Stripe, VerifyWebhook,
    VerifyWebhookLayer, WebhookError,
};

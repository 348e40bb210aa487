//! Deny-by-default authentication for every route.
//!
//! [`AuthenticateLayer`] wraps the whole router. A request to a path on the
//! public allow-list passes untouched; every other request needs exactly one
//! `Authorization: Bearer <jwt>` header that verifies, or gets a 401
//! problem+json with an RFC 6750 challenge (503 with `Retry-After` when no
//! key can be had). A verified request carries its [`Principal`] in
//! extensions for the handlers and the layers inside.
//!
//! # Example
//!
//! ```
//! use auth_layer::{AuthenticateLayer, JwtVerifier, KeySource, PublicRoutes};
//! use guardrail_core::Principal;
//! use http::{Request, Response, StatusCode, header};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let secret = b"a-32-byte-or-longer-random-secret!!";
//! let layer = AuthenticateLayer::new(JwtVerifier::new(KeySource::hs256(secret)))
//!     .public(PublicRoutes::new(["/api/health"]).unwrap());
//! let svc = ServiceBuilder::new().layer(layer).service(service_fn(|req: Request<String>| async move {
//!     let who = req.extensions().get::<Principal>().map(|p| p.subject().to_owned());
//!     Ok::<_, std::convert::Infallible>(Response::new(who.unwrap_or_default()))
//! }));
//!
//! let res = svc.clone().oneshot(Request::get("/api/me").body(String::new()).unwrap()).await.unwrap();
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(res.headers()[header::WWW_AUTHENTICATE], "Bearer realm=\"api\"");
//!
//! let res = svc.clone().oneshot(Request::get("/api/health").body(String::new()).unwrap()).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//!
//! let exp = jsonwebtoken::get_current_timestamp() + 60;
//! let token = jsonwebtoken::encode(
//!     &jsonwebtoken::Header::default(),
//!     &serde_json::json!({"sub": "u-1", "exp": exp}),
//!     &jsonwebtoken::EncodingKey::from_secret(secret),
//! ).unwrap();
//! let req = Request::get("/api/me").header("authorization", format!("Bearer {token}"))
//!     .body(String::new()).unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! # }
//! ```

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use guardrail_core::{
    BackgroundTasks, CallerSlot, GuardFuture, Pass, PendingDecision, Principal, Problem,
    Pseudonymizer, RejectionBody, health::HealthSource, single_header,
};
use http::{HeaderMap, Request, Response, header::AUTHORIZATION};
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    AuthError, PublicRoutes,
    jwt::{Attempt, JwtVerifier},
};

type VerifyFuture = Pin<Box<dyn Future<Output = Result<Principal, AuthError>> + Send>>;

/// Layer that applies [`Authenticate`]: every route needs a valid bearer
/// token unless it is on the public allow-list.
#[derive(Clone, Debug)]
pub struct AuthenticateLayer {
    shared: Arc<Shared>,
}

#[derive(Clone, Debug)]
struct Shared {
    verifier: JwtVerifier,
    public: PublicRoutes,
    realm: String,
    pseudonymizer: Pseudonymizer,
}

impl AuthenticateLayer {
    /// Authenticates every route with `verifier`; nothing is public.
    pub fn new(verifier: JwtVerifier) -> Self {
        Self {
            shared: Arc::new(Shared {
                verifier,
                public: PublicRoutes::none(),
                realm: "api".into(),
                pseudonymizer: Pseudonymizer::random(),
            }),
        }
    }

    fn shared_mut(&mut self) -> &mut Shared {
        Arc::make_mut(&mut self.shared)
    }

    /// Sets the routes that need no authentication.
    pub fn public(mut self, routes: PublicRoutes) -> Self {
        self.shared_mut().public = routes;
        self
    }

    /// Sets the `realm` of the `WWW-Authenticate` challenge (default `api`;
    /// quotes and backslashes are dropped).
    pub fn realm(mut self, realm: &str) -> Self {
        self.shared_mut().realm = realm
            .chars()
            .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
            .collect();
        self
    }

    /// Sets the key of the caller pseudonyms this layer hands to outer
    /// layers (the request log); use the one the log scrubber uses, so a
    /// user has one pseudonym everywhere (default: a random key).
    pub fn pseudonymizer(mut self, pseudonymizer: Pseudonymizer) -> Self {
        self.shared_mut().pseudonymizer = pseudonymizer;
        self
    }

    /// What must run beside the layer: the JWKS refresh, when keys come
    /// from a JWKS endpoint (nothing otherwise).
    pub fn background_tasks(&self) -> BackgroundTasks {
        let mut tasks = BackgroundTasks::new();
        if let Some(jwks) = self.shared.verifier.jwks() {
            tasks.push("jwks_refresh", jwks.refresh_task());
        }
        tasks
    }

    /// The layer's state for the health report: the JWKS cache, when keys
    /// come from a JWKS endpoint.
    pub fn health_sources(&self) -> Vec<Arc<dyn HealthSource>> {
        self.shared
            .verifier
            .jwks()
            .map(|jwks| Arc::new(jwks.clone()) as Arc<dyn HealthSource>)
            .into_iter()
            .collect()
    }

    /// The public allow-list, e.g. to log route coverage at startup.
    pub fn public_routes(&self) -> &PublicRoutes {
        &self.shared.public
    }
}

impl<S> Layer<S> for AuthenticateLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Middleware that authenticates requests; see [`AuthenticateLayer`].
#[derive(Clone)]
pub struct Authenticate<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for Authenticate<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticate")
            .field("inner", &self.inner)
            .field("public", &self.shared.public)
            .finish()
    }
}

impl<S> Authenticate<S> {
    /// Wraps `inner`, authenticating with `verifier`.
    pub fn new(inner: S, verifier: JwtVerifier) -> Self {
        AuthenticateLayer::new(verifier).layer(inner)
    }

    /// Returns a new [`Layer`] that wraps services with an [`Authenticate`].
    pub fn layer(verifier: JwtVerifier) -> AuthenticateLayer {
        AuthenticateLayer::new(verifier)
    }

    guardrail_core::inner_service_accessors!();
}

impl Shared {
    /// Fills a [`CallerSlot`] an outer layer (tracing) left, with the
    /// caller's pseudonym. Nothing to do, and nothing computed, without one.
    fn tell_outer_layers<B>(&self, req: &Request<B>, principal: &Principal) {
        if let Some(slot) = req.extensions().get::<CallerSlot>() {
            slot.set_pseudonym(self.pseudonymizer.user(principal.subject()));
        }
    }
}

/// The bearer token of a request: exactly one `Authorization: Bearer` header.
fn bearer(headers: &HeaderMap) -> Result<&str, AuthError> {
    let value = single_header(headers, AUTHORIZATION)
        .map_err(|_| AuthError::MultipleCredentials)?
        .ok_or(AuthError::Missing)?;
    let text = value.to_str().map_err(|_| AuthError::Malformed)?;
    let (scheme, token) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::UnsupportedScheme);
    }
    let token = token.trim_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Authenticate<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: RejectionBody,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        if self.shared.public.is_public(req.uri().path()) {
            return GuardFuture::pass(self.inner.call(req));
        }
        let attempt = match bearer(req.headers()) {
            Ok(token) => self.shared.verifier.attempt(token, true),
            Err(e) => Attempt::Done(Err(e)),
        };
        match attempt {
            Attempt::Done(Ok(principal)) => {
                self.shared.tell_outer_layers(&req, &principal);
                req.extensions_mut().insert(principal);
                GuardFuture::pass(self.inner.call(req))
            }
            Attempt::Done(Err(e)) => {
                GuardFuture::reject(e.problem(&self.shared.realm, req.method(), req.extensions()))
            }
            Attempt::Refresh(_) => {
                // Keys must be fetched first: the ready inner service waits
                // in the decision, a fresh clone takes its place here.
                let verifier = self.shared.verifier.clone();
                let token = bearer(req.headers()).unwrap_or_default().to_owned();
                let verify: VerifyFuture = Box::pin(async move { verifier.verify(&token).await });
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                GuardFuture::pending(Verifying {
                    verify,
                    pending: Some((inner, req, Arc::clone(&self.shared))),
                })
            }
        }
    }
}

/// Response future for [`Authenticate`]: core's one guard future, with a
/// decision that waits for a key fetch.
pub type ResponseFuture<S, ReqBody> =
    GuardFuture<<S as Service<Request<ReqBody>>>::Future, Verifying<S, ReqBody>>;

/// The decision of [`Authenticate`] while the token's keys are fetched.
pub struct Verifying<S, ReqBody> {
    verify: VerifyFuture,
    pending: Option<(S, Request<ReqBody>, Arc<Shared>)>,
}

impl<S, ReqBody> fmt::Debug for Verifying<S, ReqBody> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifying").finish_non_exhaustive()
    }
}

impl<S, ReqBody> PendingDecision for Verifying<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    type Future = S::Future;

    fn poll_decide(&mut self, cx: &mut Context<'_>) -> Poll<Result<Pass<S::Future>, Problem>> {
        let result = ready!(self.verify.as_mut().poll(cx));
        let Some((mut inner, mut req, shared)) = self.pending.take() else {
            return Poll::Ready(Err(Problem::internal_error()));
        };
        Poll::Ready(match result {
            Ok(principal) => {
                shared.tell_outer_layers(&req, &principal);
                req.extensions_mut().insert(principal);
                Ok(Pass::new(inner.call(req)))
            }
            Err(e) => Err(e.problem(&shared.realm, req.method(), req.extensions())),
        })
    }
}

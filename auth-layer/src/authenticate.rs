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

use guardrail_core::{CallerSlot, GuardBody, Principal, Problem};
use http::{HeaderMap, Request, Response, header::AUTHORIZATION};
use pin_project_lite::pin_project;
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
}

impl AuthenticateLayer {
    /// Authenticates every route with `verifier`; nothing is public.
    pub fn new(verifier: JwtVerifier) -> Self {
        Self {
            shared: Arc::new(Shared {
                verifier,
                public: PublicRoutes::none(),
                realm: "api".into(),
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

    /// Gets a reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Gets a mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// Fills a [`CallerSlot`] an outer layer (tracing) left, with the caller's
/// pseudonym. Nothing to do, and nothing computed, without one.
fn tell_outer_layers<B>(req: &Request<B>, principal: &Principal) {
    if let Some(slot) = req.extensions().get::<CallerSlot>() {
        slot.set_pseudonym(guardrail_core::Pseudonymizer::global().user(principal.subject()));
    }
}

/// The bearer token of a request: exactly one `Authorization: Bearer` header.
fn bearer(headers: &HeaderMap) -> Result<&str, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = match (values.next(), values.next()) {
        (None, _) => return Err(AuthError::Missing),
        (Some(_), Some(_)) => return Err(AuthError::MultipleCredentials),
        (Some(value), None) => value,
    };
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
{
    type Response = Response<GuardBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        if self.shared.public.is_public(req.uri().path()) {
            return ResponseFuture::inner(self.inner.call(req));
        }
        let attempt = match bearer(req.headers()) {
            Ok(token) => self.shared.verifier.attempt(token, true),
            Err(e) => Attempt::Done(Err(e)),
        };
        match attempt {
            Attempt::Done(Ok(principal)) => {
                tell_outer_layers(&req, &principal);
                req.extensions_mut().insert(principal);
                ResponseFuture::inner(self.inner.call(req))
            }
            Attempt::Done(Err(e)) => ResponseFuture::reject(e.problem(
                &self.shared.realm,
                req.method(),
                req.extensions(),
            )),
            Attempt::Refresh(_) => {
                // Keys must be fetched first: the ready inner service waits
                // in the future, a fresh clone takes its place here.
                let verifier = self.shared.verifier.clone();
                let token = bearer(req.headers()).unwrap_or_default().to_owned();
                let verify: VerifyFuture = Box::pin(async move { verifier.verify(&token).await });
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture {
                    kind: Kind::Verifying {
                        verify,
                        pending: Some(Box::new((inner, req, Arc::clone(&self.shared)))),
                    },
                }
            }
        }
    }
}

pin_project! {
    /// Response future for [`Authenticate`].
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        kind: Kind<S, ReqBody>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Inner { #[pin] future: S::Future },
        // The rare variants are boxed so the common one stays small to move.
        Verifying { verify: VerifyFuture, pending: Option<Box<(S, Request<ReqBody>, Arc<Shared>)>> },
        Reject { problem: Option<Box<Problem>> },
    }
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    fn inner(future: S::Future) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }

    fn reject(problem: Problem) -> Self {
        Self {
            kind: Kind::Reject {
                problem: Some(Box::new(problem)),
            },
        }
    }
}

impl<S, ReqBody> fmt::Debug for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Output = Result<Response<GuardBody<ResBody>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            match this.kind.as_mut().project() {
                KindProj::Inner { future } => {
                    let res = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(res.map(GuardBody::new)));
                }
                KindProj::Reject { problem } => {
                    let problem = problem.take().map_or_else(Problem::internal_error, |p| *p);
                    return Poll::Ready(Ok(problem.into_response()));
                }
                KindProj::Verifying { verify, pending } => {
                    let result = ready!(verify.as_mut().poll(cx));
                    let Some((mut inner, mut req, shared)) = pending.take().map(|p| *p) else {
                        return Poll::Ready(Ok(Problem::internal_error().into_response()));
                    };
                    match result {
                        Ok(principal) => {
                            tell_outer_layers(&req, &principal);
                            req.extensions_mut().insert(principal);
                            let future = inner.call(req);
                            this.kind.set(Kind::Inner { future });
                        }
                        Err(e) => {
                            let problem = e.problem(&shared.realm, req.method(), req.extensions());
                            this.kind.set(Kind::Reject {
                                problem: Some(Box::new(problem)),
                            });
                        }
                    }
                }
            }
        }
    }
}

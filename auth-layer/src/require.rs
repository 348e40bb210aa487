//! Route-level requirements stricter than "authenticated": MFA, admin,
//! ownership.
//!
//! Put a [`RequireLayer`] on the routes that need it (axum's `route_layer`),
//! inside the global [`AuthenticateLayer`](crate::AuthenticateLayer). It
//! reads the [`Principal`] from extensions; without one the request is
//! refused with 401, so a forgotten global layer fails closed. An
//! insufficient level is a 403 problem+json that says what is missing
//! ("multi-factor authentication required", "administrator role required")
//! and nothing more.
//!
//! # Example
//!
//! ```
//! use auth_layer::RequireLayer;
//! use guardrail_core::{AssuranceLevel, Principal};
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let admin_only = ServiceBuilder::new()
//!     .layer(RequireLayer::admin())
//!     .service(service_fn(|_req: Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::from("users")))
//!     }));
//!
//! let mut req = Request::new(());
//! req.extensions_mut().insert(Principal::new("u-1").with_roles(["admin"]));
//! // An admin without MFA is refused: admin requires MFA by default.
//! let res = admin_only.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::FORBIDDEN);
//!
//! let mut req = Request::new(());
//! req.extensions_mut().insert(
//!     Principal::new("u-1").with_roles(["admin"]).with_assurance(AssuranceLevel::Aal2),
//! );
//! assert_eq!(admin_only.oneshot(req).await.unwrap().status(), StatusCode::OK);
//! # }
//! ```

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, SystemTime},
};

use guardrail_core::{GuardFuture, Principal, Pseudonymizer, RejectionBody};
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    AuthError,
    error::{Denial, StepUp},
};

/// How far in the future an MFA time may be and still count.
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Response future for [`Require`]: core's one guard future.
pub type ResponseFuture<F> = GuardFuture<F>;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Level {
    Authenticated,
    Mfa,
    Admin,
    Owner(String),
}

/// Layer that applies [`Require`]: a route-level authorization requirement.
#[derive(Clone, Debug)]
pub struct RequireLayer {
    rule: Arc<Rule>,
}

#[derive(Clone, Debug)]
struct Rule {
    level: Level,
    max_age: Option<Duration>,
    admin_roles: Vec<String>,
    admin_requires_mfa: bool,
    step_up: StepUp,
    realm: String,
    pseudonymizer: Pseudonymizer,
}

impl RequireLayer {
    fn with_level(level: Level) -> Self {
        Self {
            rule: Arc::new(Rule {
                level,
                max_age: None,
                admin_roles: vec!["admin".into()],
                admin_requires_mfa: true,
                step_up: StepUp::Forbid,
                realm: "api".into(),
                pseudonymizer: Pseudonymizer::random(),
            }),
        }
    }

    /// Any authenticated caller.
    pub fn authenticated() -> Self {
        Self::with_level(Level::Authenticated)
    }

    /// A caller who completed multi-factor authentication (aal2).
    pub fn mfa() -> Self {
        Self::with_level(Level::Mfa)
    }

    /// A caller with an administrator role (and MFA, unless
    /// [`admin_requires_mfa(false)`](Self::admin_requires_mfa)).
    pub fn admin() -> Self {
        Self::with_level(Level::Admin)
    }

    /// The owner of the resource: the path parameter `param` (as in the
    /// route template `/api/users/{user_id}/profile`) must equal the
    /// caller's subject. Administrators pass too.
    pub fn owner(param: &str) -> Self {
        Self::with_level(Level::Owner(param.to_owned()))
    }

    fn rule_mut(&mut self) -> &mut Rule {
        Arc::make_mut(&mut self.rule)
    }

    /// Requires the second factor to be at most `max_age` old (for
    /// sensitive operations). Without a known MFA time the caller is
    /// refused: freshness that can't be shown isn't assumed.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.rule_mut().max_age = Some(max_age);
        self
    }

    /// The roles that count as administrator (default `["admin"]`).
    pub fn admin_roles<I, R>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = R>,
        R: Into<String>,
    {
        self.rule_mut().admin_roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the `realm` of the `WWW-Authenticate` challenge (default `api`;
    /// quotes and backslashes are dropped).
    pub fn realm(mut self, realm: &str) -> Self {
        self.rule_mut().realm = realm
            .chars()
            .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
            .collect();
        self
    }

    /// Sets the key of the user pseudonyms in this layer's
    /// `security.forbidden` events; use the one the log scrubber uses
    /// (default: a random key).
    pub fn pseudonymizer(mut self, pseudonymizer: Pseudonymizer) -> Self {
        self.rule_mut().pseudonymizer = pseudonymizer;
        self
    }

    /// Whether administrators also need MFA (default `true`).
    pub fn admin_requires_mfa(mut self, required: bool) -> Self {
        self.rule_mut().admin_requires_mfa = required;
        self
    }

    /// What a caller lacking (fresh) MFA gets: a 403 (the default), or a
    /// 401 RFC 9470 step-up challenge ([`StepUp::Challenge`]).
    pub fn step_up(mut self, step_up: StepUp) -> Self {
        self.rule_mut().step_up = step_up;
        self
    }
}

impl<S> Layer<S> for RequireLayer {
    type Service = Require<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Require {
            inner,
            rule: Arc::clone(&self.rule),
        }
    }
}

/// Middleware that enforces one authorization requirement; see
/// [`RequireLayer`].
#[derive(Clone)]
pub struct Require<S> {
    inner: S,
    rule: Arc<Rule>,
}

impl<S: fmt::Debug> fmt::Debug for Require<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Require")
            .field("inner", &self.inner)
            .field("rule", &self.rule)
            .finish()
    }
}

impl<S> Require<S> {
    /// Wraps `inner`, requiring `requirement` (a configured
    /// [`RequireLayer`], e.g. `RequireLayer::admin().admin_roles(["ops"])`).
    pub fn new(inner: S, requirement: RequireLayer) -> Self {
        requirement.layer(inner)
    }

    /// The layer that applies `requirement` (the same value: a
    /// [`RequireLayer`] is the requirement).
    pub fn layer(requirement: RequireLayer) -> RequireLayer {
        requirement
    }

    guardrail_core::inner_service_accessors!();
}

impl Rule {
    fn is_admin(&self, p: &Principal) -> bool {
        self.admin_roles.iter().any(|r| p.has_role(r))
    }

    fn check_mfa(&self, p: &Principal) -> Result<(), Denial> {
        if !p.is_mfa() {
            return Err(Denial::MfaRequired);
        }
        if let Some(max_age) = self.max_age {
            let fresh = p.mfa_time().is_some_and(|at| {
                let now = SystemTime::now();
                match now.duration_since(at) {
                    Ok(age) => age <= max_age,
                    // In the future: fresh only within clock skew, so one bad
                    // timestamp can't make MFA "recent" forever.
                    Err(ahead) => ahead.duration() <= MAX_CLOCK_SKEW,
                }
            });
            if !fresh {
                return Err(Denial::MfaTooOld);
            }
        }
        Ok(())
    }

    fn check_admin(&self, p: &Principal) -> Result<(), Denial> {
        if !self.is_admin(p) {
            return Err(Denial::AdminRequired);
        }
        if self.admin_requires_mfa {
            self.check_mfa(p)?;
        }
        Ok(())
    }

    fn check<B>(&self, p: &Principal, req: &Request<B>) -> Result<(), Denial> {
        match &self.level {
            Level::Authenticated => Ok(()),
            Level::Mfa => self.check_mfa(p),
            Level::Admin => self.check_admin(p),
            Level::Owner(param) => {
                if path_param(req, param).is_some_and(|v| v == p.subject()) {
                    return Ok(());
                }
                // Not the owner: only an administrator passes. An
                // administrator who lacks (fresh) MFA is told that, not that
                // the resource is someone else's.
                self.check_admin(p).map_err(|denial| {
                    if self.is_admin(p) {
                        denial
                    } else {
                        Denial::NotOwner
                    }
                })
            }
        }
    }
}

/// The value of `{param}` in the matched route template, percent-decoded.
#[cfg(feature = "axum")]
fn path_param<B>(req: &Request<B>, param: &str) -> Option<String> {
    let template = req
        .extensions()
        .get::<axum::extract::MatchedPath>()?
        .as_str();
    // Nested routers strip their prefix from the URI; the original has it.
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| req.uri().path(), |o| o.0.path());
    let index = template
        .split('/')
        .position(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) == Some(param))?;
    let raw = path.split('/').nth(index)?;
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

#[cfg(not(feature = "axum"))]
fn path_param<B>(_req: &Request<B>, _param: &str) -> Option<String> {
    None
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Require<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: RejectionBody,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let Some(principal) = req.extensions().get::<Principal>() else {
            let problem =
                AuthError::Missing.problem(&self.rule.realm, req.method(), req.extensions());
            return GuardFuture::reject(problem);
        };
        match self.rule.check(principal, &req) {
            Ok(()) => GuardFuture::pass(self.inner.call(req)),
            Err(denial) => {
                #[cfg(feature = "axum")]
                let route = req
                    .extensions()
                    .get::<axum::extract::MatchedPath>()
                    .map(|m| m.as_str());
                #[cfg(not(feature = "axum"))]
                let route: Option<&str> = None;
                let problem = denial.problem(
                    &self.rule.realm,
                    self.rule.step_up,
                    self.rule.max_age,
                    Some(&self.rule.pseudonymizer.user(principal.subject())),
                    route,
                    req.extensions(),
                );
                GuardFuture::reject(problem)
            }
        }
    }
}

//! Who the caller is: the [`Principal`] that authentication puts in request
//! extensions and every other layer reads.
//!
//! Its `Debug` output never shows the raw subject or session id, so
//! `tracing::debug!(?principal)` can't leak a user id into logs.
//!
//! # Example
//!
//! ```
//! use guardrail_core::{AssuranceLevel, Principal};
//!
//! let p = Principal::new("user-8c1f")
//!     .with_assurance(AssuranceLevel::Aal2)
//!     .with_roles(["admin"])
//!     .with_org_id("org-7");
//! assert!(p.has_role("admin"));
//! assert!(p.is_mfa());
//! assert_eq!(p.subject(), "user-8c1f");
//! assert!(!format!("{p:?}").contains("user-8c1f"));
//! ```

use std::{fmt, time::SystemTime};

use serde::{Deserialize, Serialize};

/// Authenticator assurance level, as in NIST SP 800-63B and Supabase's `aal`
/// claim.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum AssuranceLevel {
    /// Single factor (password, magic link, OAuth).
    #[default]
    Aal1,
    /// Multi-factor.
    Aal2,
}

impl AssuranceLevel {
    /// `"aal1"` or `"aal2"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aal1 => "aal1",
            Self::Aal2 => "aal2",
        }
    }
}

impl fmt::Display for AssuranceLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated caller.
#[derive(Clone, PartialEq, Eq)]
pub struct Principal {
    subject: String,
    assurance: AssuranceLevel,
    roles: Vec<String>,
    org_id: Option<String>,
    session_id: Option<String>,
    auth_time: Option<SystemTime>,
    mfa_time: Option<SystemTime>,
}

impl Principal {
    /// A principal with subject `subject` (the token's `sub`), at
    /// [`AssuranceLevel::Aal1`], with no roles.
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            assurance: AssuranceLevel::Aal1,
            roles: Vec::new(),
            org_id: None,
            session_id: None,
            auth_time: None,
            mfa_time: None,
        }
    }

    /// Sets the assurance level.
    pub fn with_assurance(mut self, level: AssuranceLevel) -> Self {
        self.assurance = level;
        self
    }

    /// Sets the roles.
    pub fn with_roles<I, R>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = R>,
        R: Into<String>,
    {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the organization id.
    pub fn with_org_id(mut self, org_id: impl Into<String>) -> Self {
        self.org_id = Some(org_id.into());
        self
    }

    /// Sets the session id.
    pub fn with_session_id(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }

    /// Sets when the user authenticated.
    pub fn with_auth_time(mut self, at: SystemTime) -> Self {
        self.auth_time = Some(at);
        self
    }

    /// Sets when the user last completed a second factor.
    pub fn with_mfa_time(mut self, at: SystemTime) -> Self {
        self.mfa_time = Some(at);
        self
    }

    /// The subject (raw user id). Log [`pseudonyms`](crate::event) of it,
    /// never the value itself.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The assurance level.
    pub fn assurance(&self) -> AssuranceLevel {
        self.assurance
    }

    /// Whether the caller completed multi-factor authentication (aal2).
    pub fn is_mfa(&self) -> bool {
        self.assurance >= AssuranceLevel::Aal2
    }

    /// The roles.
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    /// Whether the caller has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// The organization id.
    pub fn org_id(&self) -> Option<&str> {
        self.org_id.as_deref()
    }

    /// The session id.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// When the user authenticated.
    pub fn auth_time(&self) -> Option<SystemTime> {
        self.auth_time
    }

    /// When the user last completed a second factor.
    pub fn mfa_time(&self) -> Option<SystemTime> {
        self.mfa_time
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const REDACTED: &str = "[redacted]";
        f.debug_struct("Principal")
            .field("subject", &REDACTED)
            .field("assurance", &self.assurance)
            .field("roles", &self.roles)
            .field("org_id", &self.org_id)
            .field("session_id", &self.session_id.as_ref().map(|_| REDACTED))
            .field("auth_time", &self.auth_time)
            .field("mfa_time", &self.mfa_time)
            .finish()
    }
}

/// A place for authentication to tell an *outer* layer who the caller was.
///
/// Layers outside authentication (request tracing) never see the inner
/// request's extensions. Such a layer inserts a `CallerSlot` before calling
/// inward; authentication, on success, stores the caller's pseudonym in it.
/// Only the pseudonym: the raw subject never leaves authentication this way.
///
/// ```
/// use guardrail_core::CallerSlot;
///
/// let slot = CallerSlot::default();
/// let seen_by_auth = slot.clone();
/// seen_by_auth.set_pseudonym("usr_3f9a1c2b7d04e615".into());
/// assert_eq!(slot.pseudonym(), Some("usr_3f9a1c2b7d04e615"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct CallerSlot(std::sync::Arc<std::sync::OnceLock<String>>);

impl CallerSlot {
    /// Stores the caller's pseudonym (the first one stored wins).
    pub fn set_pseudonym(&self, pseudonym: String) {
        let _ = self.0.set(pseudonym);
    }

    /// The caller's pseudonym, once authentication has stored it.
    pub fn pseudonym(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}

/// Extracts the [`Principal`] that authentication put in the request. A
/// handler taking one is unreachable without it: a request that somehow
/// arrives unauthenticated gets a 401 problem, never a panic.
#[cfg(feature = "axum")]
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Principal {
    type Rejection = http::Response<axum::body::Body>;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
            let (parts_, body) = crate::Problem::unauthorized()
                .detail("Authentication is required.")
                .header(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer"),
                )
                .request_id_from(&parts.extensions)
                .into_response::<axum::body::Body>()
                .into_parts();
            http::Response::from_parts(parts_, axum::body::Body::new(body))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_subject_or_session() {
        let p = Principal::new("alice@example.com").with_session_id("sess-secret-123");
        let dbg = format!("{p:?} {p:#?}");
        assert!(!dbg.contains("alice"));
        assert!(!dbg.contains("sess-secret-123"));
        assert!(dbg.contains("[redacted]"));
    }

    #[cfg(feature = "axum")]
    #[tokio::test]
    async fn extractor_rejects_missing_principal_with_401() {
        use axum::extract::FromRequestParts;
        let (mut parts, ()) = http::Request::new(()).into_parts();
        let res = Principal::from_request_parts(&mut parts, &())
            .await
            .unwrap_err();
        assert_eq!(res.status(), http::StatusCode::UNAUTHORIZED);
        assert_eq!(
            res.headers()[http::header::CONTENT_TYPE],
            "application/problem+json"
        );

        parts.extensions.insert(Principal::new("u1"));
        let p = Principal::from_request_parts(&mut parts, &())
            .await
            .unwrap();
        assert_eq!(p.subject(), "u1");
    }

    #[test]
    fn aal2_is_mfa_and_aal1_is_not() {
        assert!(!Principal::new("u").is_mfa());
        assert!(
            Principal::new("u")
                .with_assurance(AssuranceLevel::Aal2)
                .is_mfa()
        );
        assert_eq!(AssuranceLevel::Aal2.to_string(), "aal2");
    }
}

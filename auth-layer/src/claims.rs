//! Mapping verified claims to a [`Principal`].
//!
//! [`SupabaseClaims`] (the default) reads Supabase Auth's claims: `sub`,
//! `aal` (`aal2` = MFA), `amr` (objects `{method, timestamp}` or strings),
//! `session_id`, `role` and `app_metadata.role` / `app_metadata.roles`, and
//! an organization id from a configurable claim path. `user_metadata` is
//! never read: users can edit it. Any other issuer's shape plugs in through
//! [`ClaimsMapper`], which closures implement.
//!
//! # Example
//!
//! ```
//! use auth_layer::{ClaimsMapper, SupabaseClaims};
//! use serde_json::json;
//!
//! let claims = json!({
//!     "sub": "8c1f", "aal": "aal2", "role": "authenticated",
//!     "amr": [{"method": "password", "timestamp": 1700000000},
//!             {"method": "totp", "timestamp": 1700000100}],
//!     "app_metadata": {"roles": ["admin"], "org_id": "org-7"},
//!     "user_metadata": {"roles": ["superuser"]},
//! });
//! let mapper = SupabaseClaims::new().org_claim("app_metadata.org_id");
//! let p = mapper.principal(claims.as_object().unwrap()).unwrap();
//! assert!(p.is_mfa() && p.has_role("admin") && !p.has_role("superuser"));
//! assert_eq!(p.org_id(), Some("org-7"));
//! ```

use std::{
    borrow::Cow,
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use guardrail_core::{AssuranceLevel, Principal};
use serde_json::{Map, Value};

/// Turns verified claims into a [`Principal`]; `None` rejects the token
/// (as `invalid_claims`).
pub trait ClaimsMapper: Send + Sync + 'static {
    /// Maps the claims.
    fn principal(&self, claims: &Map<String, Value>) -> Option<Principal>;

    /// The built-in Supabase mapper reads claims without building a `Map`.
    #[doc(hidden)]
    fn as_supabase(&self) -> Option<&SupabaseClaims> {
        None
    }
}

impl<F> ClaimsMapper for F
where
    F: Fn(&Map<String, Value>) -> Option<Principal> + Send + Sync + 'static,
{
    fn principal(&self, claims: &Map<String, Value>) -> Option<Principal> {
        self(claims)
    }
}

/// `amr` methods that count as a second factor.
const MFA_METHODS: [&str; 5] = ["totp", "webauthn", "mfa/totp", "mfa/phone", "mfa/webauthn"];

/// Longest accepted `sub`.
const MAX_SUBJECT_LEN: usize = 256;

/// The default mapper, for Supabase Auth's claims.
#[derive(Clone, Default)]
pub struct SupabaseClaims {
    org_claim: Option<Vec<String>>,
}

impl SupabaseClaims {
    /// Reads no organization id.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the organization id from a dotted claim path, e.g.
    /// `app_metadata.org_id`.
    pub fn org_claim(mut self, path: &str) -> Self {
        self.org_claim = Some(path.split('.').map(str::to_owned).collect());
        self
    }
}

impl fmt::Debug for SupabaseClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupabaseClaims")
            .field("org_claim", &self.org_claim.as_ref().map(|p| p.join(".")))
            .finish()
    }
}

fn timestamp(secs: f64) -> Option<SystemTime> {
    if !(secs.is_finite() && secs >= 0.0) {
        return None;
    }
    UNIX_EPOCH.checked_add(Duration::from_secs(secs as u64))
}

fn str_at<'a>(claims: &'a Value, path: &[String]) -> Option<&'a str> {
    path.iter().try_fold(claims, |v, key| v.get(key))?.as_str()
}

impl SupabaseClaims {
    /// Maps claims already parsed from `payload` (the decoded JSON).
    pub(crate) fn map_raw(&self, claims: &RawClaims<'_>, payload: &[u8]) -> Option<Principal> {
        let subject = claims
            .sub
            .as_deref()
            .filter(|s| !s.is_empty() && s.len() <= MAX_SUBJECT_LEN)?;
        let assurance = match claims.aal.as_deref() {
            Some("aal2") => AssuranceLevel::Aal2,
            _ => AssuranceLevel::Aal1,
        };

        let mut mfa_time: Option<SystemTime> = None;
        let mut first_auth: Option<SystemTime> = None;
        for entry in claims.amr.iter().flatten() {
            let Amr::Entry {
                method,
                timestamp: Some(at),
            } = entry
            else {
                continue;
            };
            let Some(at) = timestamp(*at) else { continue };
            if method.as_deref().is_some_and(|m| MFA_METHODS.contains(&m)) {
                mfa_time = mfa_time.max(Some(at));
            } else {
                first_auth = Some(first_auth.map_or(at, |t| t.min(at)));
            }
        }
        let auth_time = claims
            .auth_time
            .and_then(timestamp)
            .or(first_auth)
            .or_else(|| claims.iat.and_then(timestamp));

        let app = claims.app_metadata.as_ref();
        let mut roles: Vec<String> = [claims.role.as_deref(), app.and_then(|a| a.role.as_deref())]
            .into_iter()
            .flatten()
            .chain(
                app.and_then(|a| a.roles.as_ref())
                    .into_iter()
                    .flatten()
                    .map(|r| r.as_ref()),
            )
            .map(str::to_owned)
            .collect();
        roles.sort();
        roles.dedup();

        let mut principal = Principal::new(subject)
            .with_assurance(assurance)
            .with_roles(roles);
        if let Some(at) = auth_time {
            principal = principal.with_auth_time(at);
        }
        if let Some(at) = mfa_time {
            principal = principal.with_mfa_time(at);
        }
        if let Some(session) = claims.session_id.as_deref() {
            principal = principal.with_session_id(session);
        }
        if let Some(path) = self.org_claim.as_deref() {
            // Only services that configured an org claim pay for a full parse.
            let value: Value = serde_json::from_slice(payload).ok()?;
            if let Some(org) = str_at(&value, path) {
                principal = principal.with_org_id(org);
            }
        }
        Some(principal)
    }
}

impl ClaimsMapper for SupabaseClaims {
    fn principal(&self, claims: &Map<String, Value>) -> Option<Principal> {
        let payload = serde_json::to_vec(claims).ok()?;
        let raw: RawClaims<'_> = serde_json::from_slice(&payload).ok()?;
        self.map_raw(&raw, &payload)
    }

    fn as_supabase(&self) -> Option<&SupabaseClaims> {
        Some(self)
    }
}

/// The claims we read, borrowed from the decoded payload. Unknown claims are
/// skipped without being parsed into values.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct RawClaims<'a> {
    #[serde(default, deserialize_with = "numeric_date")]
    pub(crate) exp: Option<f64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub(crate) nbf: Option<f64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub(crate) iat: Option<f64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub(crate) auth_time: Option<f64>,
    #[serde(borrow, default)]
    pub(crate) sub: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) iss: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) aud: Option<OneOrMany<'a>>,
    #[serde(borrow, default)]
    pub(crate) aal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) amr: Option<Vec<Amr<'a>>>,
    #[serde(borrow, default)]
    pub(crate) session_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) app_metadata: Option<AppMetadata<'a>>,
}

/// The registered claims alone, for issuers of any other shape.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Registered<'a> {
    #[serde(default, deserialize_with = "numeric_date")]
    pub(crate) exp: Option<f64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub(crate) nbf: Option<f64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub(crate) iat: Option<f64>,
    #[serde(borrow, default)]
    pub(crate) sub: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) iss: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) aud: Option<OneOrMany<'a>>,
}

/// `aud`: one string or a list.
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany<'a> {
    One(#[serde(borrow)] Cow<'a, str>),
    Many(#[serde(borrow)] Vec<Cow<'a, str>>),
}

impl OneOrMany<'_> {
    pub(crate) fn contains(&self, wanted: &str) -> bool {
        match self {
            Self::One(one) => one == wanted,
            Self::Many(many) => many.iter().any(|a| a == wanted),
        }
    }
}

/// One `amr` entry: `"pwd"` or `{"method": "totp", "timestamp": 1700000000}`.
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
pub(crate) enum Amr<'a> {
    /// A bare method name carries no time, so nothing reads it.
    Method(
        #[serde(borrow)]
        #[allow(dead_code)]
        Cow<'a, str>,
    ),
    Entry {
        #[serde(borrow, default)]
        method: Option<Cow<'a, str>>,
        #[serde(default)]
        timestamp: Option<f64>,
    },
}

/// The server-controlled part of Supabase's metadata (never `user_metadata`).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct AppMetadata<'a> {
    #[serde(borrow, default)]
    pub(crate) role: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) roles: Option<Vec<Cow<'a, str>>>,
}

/// A NumericDate: a JSON number (integer or not). Strings are refused.
fn numeric_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    use serde::Deserialize;
    Option::<f64>::deserialize(d).and_then(|v| match v {
        Some(f) if !f.is_finite() => Err(serde::de::Error::custom("not a finite number")),
        v => Ok(v),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn string_amr_and_missing_aal_mean_single_factor() {
        let p = SupabaseClaims::new()
            .principal(&map(
                json!({"sub": "u", "amr": ["pwd", "mfa"], "iat": 1700000000}),
            ))
            .unwrap();
        assert!(!p.is_mfa());
        assert_eq!(p.mfa_time(), None);
        assert_eq!(
            p.auth_time(),
            UNIX_EPOCH.checked_add(Duration::from_secs(1700000000))
        );
    }

    #[test]
    fn mfa_time_is_the_latest_second_factor() {
        let p = SupabaseClaims::new()
            .principal(&map(json!({"sub": "u", "aal": "aal2", "amr": [
                {"method": "totp", "timestamp": 100}, {"method": "totp", "timestamp": 300},
                {"method": "password", "timestamp": 50}]})))
            .unwrap();
        assert_eq!(
            p.mfa_time(),
            UNIX_EPOCH.checked_add(Duration::from_secs(300))
        );
        assert_eq!(
            p.auth_time(),
            UNIX_EPOCH.checked_add(Duration::from_secs(50))
        );
    }

    #[test]
    fn missing_empty_or_non_string_subject_is_rejected() {
        for claims in [
            json!({}),
            json!({"sub": ""}),
            json!({"sub": 42}),
            json!({"sub": "x".repeat(300)}),
        ] {
            assert!(SupabaseClaims::new().principal(&map(claims)).is_none());
        }
    }

    #[test]
    fn closures_are_mappers() {
        let mapper =
            |c: &Map<String, Value>| c.get("uid").and_then(Value::as_str).map(Principal::new);
        assert_eq!(
            mapper
                .principal(&map(json!({"uid": "7"})))
                .unwrap()
                .subject(),
            "7"
        );
    }
}

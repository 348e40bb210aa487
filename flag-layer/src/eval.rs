//! Who is asking, what they get and why: the evaluation context, its
//! result, and the rollout bucket (Unleash's).

use std::{fmt, hash::Hasher};

use guardrail_core::Principal;

/// Who a flag is evaluated for: the user, session and organisation (from
/// the caller's [`Principal`]), and any other properties a custom
/// stickiness reads. Its `Debug` output never shows the ids.
///
/// ```
/// use flag_layer::FlagContext;
/// use guardrail_core::Principal;
///
/// let ctx = FlagContext::from_principal(&Principal::new("user-1").with_org_id("org-7"));
/// assert_eq!(ctx.user_id(), Some("user-1"));
/// assert_eq!(ctx.org_id(), Some("org-7"));
/// assert!(!format!("{ctx:?}").contains("user-1"));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct FlagContext {
    user_id: Option<String>,
    session_id: Option<String>,
    org_id: Option<String>,
    properties: Vec<(String, String)>,
}

impl FlagContext {
    /// Nobody in particular: only flags on for everyone are on.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// The user `user_id`.
    pub fn user(user_id: impl Into<String>) -> Self {
        Self {
            user_id: Some(user_id.into()),
            ..Self::default()
        }
    }

    /// The caller: its subject, session and organisation.
    pub fn from_principal(principal: &Principal) -> Self {
        Self {
            user_id: Some(principal.subject().to_owned()),
            session_id: principal.session_id().map(str::to_owned),
            org_id: principal.org_id().map(str::to_owned),
            properties: Vec::new(),
        }
    }

    /// Sets the session id.
    pub fn with_session(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }

    /// Sets the organisation id.
    pub fn with_org(mut self, org_id: impl Into<String>) -> Self {
        self.org_id = Some(org_id.into());
        self
    }

    /// Adds a property (for a custom stickiness such as `"tenant"`).
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((key.into(), value.into()));
        self
    }

    /// The user id.
    pub fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }

    /// The session id.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// The organisation id.
    pub fn org_id(&self) -> Option<&str> {
        self.org_id.as_deref()
    }

    /// A property's value.
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl fmt::Debug for FlagContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlagContext")
            .field("user", &self.user_id.is_some())
            .field("session", &self.session_id.is_some())
            .field("org", &self.org_id.is_some())
            .field("properties", &self.properties.len())
            .finish()
    }
}

#[cfg(feature = "axum")]
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for FlagContext {
    type Rejection = std::convert::Infallible;

    /// The caller's context, from the [`Principal`] authentication put in
    /// the request; anonymous on a public route.
    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Principal>()
            .map_or_else(Self::anonymous, Self::from_principal))
    }
}

/// Why an evaluation came out as it did, in OpenFeature's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The same for everyone: rolled out to 100 %.
    Static,
    /// A target or deny list named the caller.
    TargetingMatch,
    /// The caller's rollout bucket decided.
    Split,
    /// The flag is off (the kill switch, in its source, at runtime or by
    /// the environment).
    Disabled,
    /// Nothing applied: rolled out to 0 %, or no stickiness value for a
    /// partial rollout.
    Default,
    /// The flag could not be evaluated: see the [`ErrorCode`].
    Error,
}

impl Reason {
    /// OpenFeature's name: `STATIC`, `TARGETING_MATCH`, `SPLIT`,
    /// `DISABLED`, `DEFAULT`, `ERROR`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Static => "STATIC",
            Self::TargetingMatch => "TARGETING_MATCH",
            Self::Split => "SPLIT",
            Self::Disabled => "DISABLED",
            Self::Default => "DEFAULT",
            Self::Error => "ERROR",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an evaluation failed (OpenFeature's error codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// No flag of that name.
    FlagNotFound,
}

impl ErrorCode {
    /// OpenFeature's name: `FLAG_NOT_FOUND`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FlagNotFound => "FLAG_NOT_FOUND",
        }
    }
}

/// What a flag evaluated to for one caller, and why. Evaluation never
/// fails: an unknown flag is off, with [`Reason::Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Evaluation {
    /// On or off.
    pub enabled: bool,
    /// Why.
    pub reason: Reason,
    /// What went wrong, with [`Reason::Error`].
    pub error: Option<ErrorCode>,
}

impl Evaluation {
    pub(crate) const fn new(enabled: bool, reason: Reason) -> Self {
        Self {
            enabled,
            reason,
            error: None,
        }
    }

    pub(crate) const fn not_found() -> Self {
        Self {
            enabled: false,
            reason: Reason::Error,
            error: Some(ErrorCode::FlagNotFound),
        }
    }
}

/// The caller's rollout bucket, 1–100, as Unleash computes it:
/// `murmur3_x86_32("{group_id}:{id}", seed 0) % 100 + 1`. A caller is in a
/// rollout of `p` % when the bucket is at most `p`, so raising `p` only
/// adds callers.
///
/// ```
/// // A case of Unleash's client specification (10-flexible-rollout-strategy).
/// assert!(flag_layer::bucket("Feature.flexibleRollout.10", "174") <= 10);
/// assert!(flag_layer::bucket("Feature.flexibleRollout.10", "499") > 10);
/// ```
pub fn bucket(group_id: &str, id: &str) -> u32 {
    let (group, id) = (group_id.as_bytes(), id.as_bytes());
    let len = group.len() + 1 + id.len();
    let hash = if len <= STACK_KEY {
        // The usual case, hashed in one go from the stack: no allocation,
        // and faster than feeding a streaming hasher three pieces.
        let mut key = [0u8; STACK_KEY];
        key[..group.len()].copy_from_slice(group);
        key[group.len()] = b':';
        key[group.len() + 1..len].copy_from_slice(id);
        mur3::murmurhash3_x86_32(&key[..len], 0)
    } else {
        let mut hasher = mur3::Hasher32::with_seed(0);
        hasher.write(group);
        hasher.write(b":");
        hasher.write(id);
        hasher.finish32()
    };
    hash % 100 + 1
}

/// `{group_id}:{id}` up to this long is hashed from a stack buffer.
const STACK_KEY: usize = 128;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_match_the_one_shot_hash_and_spread_evenly() {
        // Both ways (stack buffer, streamed for long ids) hash the joined
        // bytes, whatever the split (tails of 1–3 bytes carried across
        // writes).
        let long = "u".repeat(200);
        for (group, id) in [
            ("g", "1"),
            ("abc", "defgh"),
            ("flag_x", "user-123456"),
            ("flag_x", long.as_str()),
        ] {
            let joined = format!("{group}:{id}");
            let one_shot = mur3::murmurhash3_x86_32(joined.as_bytes(), 0) % 100 + 1;
            assert_eq!(bucket(group, id), one_shot, "{joined}");
        }
        let mut counts = [0u32; 100];
        for i in 0..100_000 {
            counts[bucket("ai_recommendations", &format!("user-{i}")) as usize - 1] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }
}

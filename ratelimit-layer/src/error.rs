//! Why a rate limiter could not be built.

/// Why a policy can't be used; the message says what to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct PolicyError {
    reason: std::borrow::Cow<'static, str>,
}

impl PolicyError {
    pub(crate) fn new(reason: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        Self {
            reason: reason.into(),
        }
    }

    /// What is wrong and what to do instead.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// Why a [`RateLimitLayer`](crate::RateLimitLayer) could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// A policy is invalid.
    #[error("policy `{name}`: {source}")]
    Policy {
        /// The policy's name.
        name: String,
        /// What is wrong with it.
        source: PolicyError,
    },
    /// Two policies have one name.
    #[error("policy `{name}` is defined twice")]
    DuplicatePolicy {
        /// The name.
        name: String,
    },
    /// An exempt path is not a path or `/prefix/*`.
    #[error("exempt `{pattern}`: use a path or `/prefix/*` (not `/*`)")]
    Exempt {
        /// The pattern given.
        pattern: String,
    },
    /// `max_keys` is 0.
    #[error("max_keys must be at least 1")]
    MaxKeys,
    /// `backend = "redis"` without a Redis connection (or without the
    /// `redis` feature).
    #[error("backend = \"redis\" needs the shared [redis] connection and the `redis` feature")]
    RedisUnavailable,
    /// `backend = "redis"` without a readable `redis_key_secret`.
    #[error("rate_limit.redis_key_secret: {reason}")]
    RedisKeySecret {
        /// Why the key can't be used (never the key itself).
        reason: String,
    },
}

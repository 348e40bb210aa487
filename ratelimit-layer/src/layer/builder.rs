//! [`RateLimitLayerBuilder`]: checks every policy and compiles the layer.

use std::sync::Arc;

use guardrail_core::{Pseudonymizer, RedisConnection};

use super::{
    RateLimitLayer,
    decide::{Compiled, Shared},
};
use crate::{
    RateLimitError, RateLimitPolicy,
    decision::policy_header,
    memory::{LimiterClock, MemoryLimiter},
};

/// The default cap on keys held per policy in memory.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// What a Redis-backed limiter does when Redis fails or is too slow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRedisError {
    /// Decide with this replica's in-memory limiter (the default): limits
    /// stay enforced per replica.
    #[default]
    Local,
    /// Let the request through.
    Allow,
    /// Refuse with 503 and `Retry-After: 1`.
    Deny,
}

/// Builder for [`RateLimitLayer`].
#[derive(Debug, Default)]
pub struct RateLimitLayerBuilder {
    policies: Vec<RateLimitPolicy>,
    max_keys: Option<usize>,
    headers: Option<bool>,
    exempt: Vec<String>,
    #[cfg(feature = "redis")]
    redis: Option<crate::RedisBackend>,
    on_redis_error: OnRedisError,
    clock: LimiterClock,
    pseudonymizer: Option<Pseudonymizer>,
}

impl RateLimitLayerBuilder {
    /// The clock in-memory limiters count on (default: quanta, the fastest;
    /// [`LimiterClock::Tokio`] for tests under `tokio::time::pause()`).
    pub fn clock(mut self, clock: LimiterClock) -> Self {
        self.clock = clock;
        self
    }

    /// Adds a policy; every applicable policy counts, the strictest decides.
    /// A layer without policies lets everything through.
    pub fn policy(mut self, policy: RateLimitPolicy) -> Self {
        self.policies.push(policy);
        self
    }

    /// Keys held per policy in memory (default 100 000).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = Some(max_keys);
        self
    }

    /// Whether allowed responses carry `RateLimit-Policy` and `RateLimit`
    /// (default `true`; 429s always do).
    pub fn headers(mut self, on: bool) -> Self {
        self.headers = Some(on);
        self
    }

    /// Paths never limited: exact paths, or prefixes written `/prefix/*`.
    pub fn exempt<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.exempt = paths.into_iter().map(Into::into).collect();
        self
    }

    /// Decides on Redis, shared by every replica.
    #[cfg(feature = "redis")]
    pub fn redis(mut self, backend: crate::RedisBackend) -> Self {
        self.redis = Some(backend);
        self
    }

    /// The key of the pseudonyms that stand for users and custom keys in
    /// `security.rate_limited` events; use the one the log scrubber uses
    /// (default: a random key).
    pub fn pseudonymizer(mut self, pseudonymizer: Pseudonymizer) -> Self {
        self.pseudonymizer = Some(pseudonymizer);
        self
    }

    /// Decides on the service's shared Redis connection (a
    /// [`RedisBackend`](crate::RedisBackend) on it, bucket names keyed by
    /// `names`); without the `redis` feature this is
    /// [`RateLimitError::RedisUnavailable`].
    pub fn redis_connection(
        self,
        redis: RedisConnection,
        names: Pseudonymizer,
    ) -> Result<Self, RateLimitError> {
        #[cfg(feature = "redis")]
        return Ok(self.redis(crate::RedisBackend::new(redis, names)));
        #[cfg(not(feature = "redis"))]
        {
            let _ = (redis, names);
            Err(RateLimitError::RedisUnavailable)
        }
    }

    /// Decides on the same Redis backend as `other` (one backend, one
    /// failure state and one probe for every stage of a service).
    pub(crate) fn redis_of(self, other: &super::RateLimitLayer) -> Self {
        #[cfg(feature = "redis")]
        return Self {
            redis: other.shared.redis.clone(),
            ..self
        };
        #[cfg(not(feature = "redis"))]
        {
            let _ = other;
            self
        }
    }

    /// What to do when Redis fails (default: decide locally).
    pub fn on_redis_error(mut self, choice: OnRedisError) -> Self {
        self.on_redis_error = choice;
        self
    }

    /// Checks every policy and builds the layer.
    pub fn build(self) -> Result<RateLimitLayer, RateLimitError> {
        let max_keys = self.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
        let headers = self.headers.unwrap_or(true);
        if let Some(bad) = self.exempt.iter().find(|e| !is_exempt_pattern(e)) {
            return Err(RateLimitError::Exempt {
                pattern: bad.clone(),
            });
        }
        if max_keys == 0 {
            return Err(RateLimitError::MaxKeys);
        }
        let mut policies = Vec::with_capacity(self.policies.len());
        for policy in self.policies {
            policy.validate().map_err(|source| RateLimitError::Policy {
                name: policy.name.clone(),
                source,
            })?;
            if policies
                .iter()
                .any(|c: &Compiled| c.policy.name == policy.name)
            {
                return Err(RateLimitError::DuplicatePolicy { name: policy.name });
            }
            let name = policy.name.clone();
            let shadow = policy.mode == crate::PolicyMode::Shadow;
            policies.push(Compiled {
                local: MemoryLimiter::new(
                    &policy,
                    max_keys,
                    self.clock,
                    metrics::gauge!(guardrail_core::metric::RATELIMIT_KEYS, "policy" => name.clone()),
                    headers,
                ),
                policy_header: policy_header(&policy),
                everywhere: policy.routes.is_empty() && policy.methods.is_empty(),
                allowed: metrics::counter!(guardrail_core::metric::RATELIMIT_DECISIONS_TOTAL, "policy" => name.clone(), "outcome" => "allowed"),
                limited: metrics::counter!(guardrail_core::metric::RATELIMIT_DECISIONS_TOTAL, "policy" => name.clone(), "outcome" => if shadow { "shadow_limited" } else { "limited" }),
                shadow,
                policy,
            });
        }
        Ok(RateLimitLayer {
            shared: Arc::new(Shared {
                // Shadow policies report with the request's context: not on
                // the fast path, which never borrows the request.
                by_ip: policies.iter().all(|c| c.policy.by_client_ip && !c.shadow),
                everywhere: policies.iter().all(|c| c.everywhere),
                policies,
                headers,
                exempt: self.exempt,
                #[cfg(feature = "redis")]
                redis: self.redis,
                on_redis_error: self.on_redis_error,
                pseudonymizer: self.pseudonymizer.unwrap_or_else(Pseudonymizer::random),
            }),
        })
    }
}

/// An exempt path: exact, or `/prefix/*` (never `/*`, which would exempt
/// everything).
pub(crate) fn is_exempt_pattern(e: &str) -> bool {
    e.starts_with('/') && e != "/*" && (!e.contains('*') || e.ends_with("/*"))
}

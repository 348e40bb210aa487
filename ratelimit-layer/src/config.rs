//! The `[rate_limit]` config section.

use std::time::Duration;

use std::sync::Arc;

use guardrail_core::{
    Pseudonymizer, RedisConnection, SecretRef,
    config::{ConfigProblem, Profile},
    health::{ComponentHealth, HealthSource},
};
use http::{HeaderName, Method};
use serde::Deserialize;

use crate::{
    OnRedisError, PolicyError, PolicyMode, RateLimitError, RateLimitLayer, RateLimitPolicy,
    key::{ApiKeyHeader, ClientIpKey, GlobalKey, PrincipalKey},
    layer::{DEFAULT_MAX_KEYS, is_exempt_pattern},
};

/// Where decisions are made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// This replica's memory (the default).
    #[default]
    Memory,
    /// Redis, shared by every replica.
    Redis,
}

/// Where in the stack a policy runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Before authentication: protects the authenticator itself (per IP).
    #[default]
    BeforeAuth,
    /// After authentication: can key on the principal.
    AfterAuth,
}

/// What a configured policy keys on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// The resolved client IP (the default).
    #[default]
    ClientIp,
    /// The authenticated subject (client IP when unauthenticated).
    Principal,
    /// The `api_key_header` value, hashed (client IP when absent).
    ApiKey,
    /// One bucket for everyone.
    Global,
}

/// `[[rate_limit.policies]]`: one policy.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PolicyConfig {
    /// Name in headers, events and metrics (`[A-Za-z0-9_-]`).
    pub name: String,
    /// What requests are counted by (default `client_ip`).
    #[serde(default)]
    pub key: KeyKind,
    /// The header holding the API key, for `key = "api_key"`.
    #[serde(default)]
    pub api_key_header: Option<String>,
    /// Requests per `period`.
    pub rate: u32,
    /// The period of `rate`, e.g. `"1m"`.
    #[serde(with = "humantime_serde")]
    pub period: Duration,
    /// Requests allowed at once (default: `rate`).
    #[serde(default)]
    pub burst: Option<u32>,
    /// Path prefixes it applies to (default: all).
    #[serde(default)]
    pub routes: Vec<String>,
    /// Methods it applies to (default: all).
    #[serde(default)]
    pub methods: Vec<String>,
    /// `before_auth` (default) or `after_auth`.
    #[serde(default)]
    pub stage: Stage,
    /// `enforce` (default) or `shadow`: decide, count and report, never
    /// reject (see [`PolicyMode::Shadow`]).
    #[serde(default)]
    pub mode: PolicyMode,
}

/// `[rate_limit]`: rate limiting.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// `memory` (default) or `redis` (the shared `[redis]` connection;
    /// keys under `<redis.key_prefix>:rl`, each decision bounded by
    /// `redis.timeout`).
    pub backend: Backend,
    /// `local` (default), `allow` or `deny` when Redis fails.
    pub on_redis_error: OnRedisError,
    /// The key of the keyed hash that stands for a client (IP, user, API
    /// key) in Redis key names, e.g. `{ env = "GUARDRAILS_RATELIMIT_KEY" }`:
    /// at least 32 bytes, the same on every replica. Required with
    /// `backend = "redis"`, so no raw client id is ever stored in Redis and
    /// replicas share their buckets (a per-process random key would
    /// silently split them).
    pub redis_key_secret: Option<SecretRef>,
    /// Keys held per policy in memory (default 100000).
    pub max_keys: usize,
    /// `RateLimit-Policy`/`RateLimit` on allowed responses (default true).
    pub headers: bool,
    /// Paths never limited: exact, or `/prefix/*`.
    pub exempt: Vec<String>,
    /// The policies.
    pub policies: Vec<PolicyConfig>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Memory,
            on_redis_error: OnRedisError::Local,
            redis_key_secret: None,
            max_keys: DEFAULT_MAX_KEYS,
            headers: true,
            exempt: Vec::new(),
            policies: Vec::new(),
        }
    }
}

impl PolicyConfig {
    fn policy(&self) -> Result<RateLimitPolicy, PolicyError> {
        let mut policy = RateLimitPolicy::new(self.rate, self.period)
            .burst(self.burst.unwrap_or(self.rate))
            .name(self.name.clone())
            .routes(self.routes.iter().cloned())
            .mode(self.mode);
        policy = match self.key {
            KeyKind::ClientIp => policy.key(ClientIpKey),
            KeyKind::Principal => policy.key(PrincipalKey),
            KeyKind::Global => policy.key(GlobalKey),
            KeyKind::ApiKey => {
                let header = self.api_key_header.as_deref().ok_or(PolicyError::new(
                    "api_key_header is required with key = \"api_key\"",
                ))?;
                let header = HeaderName::try_from(header)
                    .map_err(|_| PolicyError::new(format!("`{header}` is not a header name")))?;
                policy.key(ApiKeyHeader::new(header))
            }
        };
        let methods = self
            .methods
            .iter()
            .map(|m| {
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| PolicyError::new(format!("`{m}` is not a method")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        policy = policy.methods(methods);
        policy.validate()?;
        Ok(policy)
    }
}

impl RateLimitConfig {
    /// Adds every problem of this section to `problems`.
    pub fn validate(&self, profile: Profile, problems: &mut Vec<ConfigProblem>) {
        let mut problem =
            |path: String, message: String| problems.push(ConfigProblem::new(path, message));
        if self.max_keys == 0 {
            problem("rate_limit.max_keys".into(), "must be at least 1".into());
        }
        let mut names = std::collections::HashSet::new();
        for (i, p) in self.policies.iter().enumerate() {
            if let Err(e) = p.policy() {
                problem(format!("rate_limit.policies[{i}]"), e.to_string());
            }
            if !names.insert(p.name.as_str()) {
                problem(
                    format!("rate_limit.policies[{i}].name"),
                    format!("`{}` is used twice", p.name),
                );
            }
        }
        for (i, e) in self.exempt.iter().enumerate() {
            if !is_exempt_pattern(e) {
                problem(
                    format!("rate_limit.exempt[{i}]"),
                    "must be a path or `/prefix/*` (not `/*`)".into(),
                );
            }
        }
        let ip_before_auth = self
            .policies
            .iter()
            .any(|p| p.stage == Stage::BeforeAuth && p.key == KeyKind::ClientIp);
        for (i, p) in self.policies.iter().enumerate() {
            if p.stage == Stage::BeforeAuth && p.key == KeyKind::Principal {
                problem(
                    format!("rate_limit.policies[{i}].stage"),
                    "key = \"principal\" needs stage = \"after_auth\": before authentication there is no principal, so it would limit per IP".into(),
                );
            }
            if p.stage == Stage::BeforeAuth && p.key == KeyKind::ApiKey && !ip_before_auth {
                problem(
                    format!("rate_limit.policies[{i}].key"),
                    "an unverified API key header lets a client pick a fresh bucket per request: add a client_ip policy before auth, or use stage = \"after_auth\"".into(),
                );
            }
        }
        if self.uses_redis()
            && let Err(e) = self.redis_names()
        {
            problem("rate_limit.redis_key_secret".into(), e);
        }
        if profile == Profile::Production && self.policies.is_empty() {
            problem(
                "rate_limit.policies".into(),
                "production needs at least one policy".into(),
            );
        }
    }

    /// Whether this section decides on Redis (so `[redis]` must be usable).
    pub fn uses_redis(&self) -> bool {
        self.backend == Backend::Redis
    }

    /// The keyed hash of Redis key names, from `redis_key_secret`.
    fn redis_names(&self) -> Result<Pseudonymizer, String> {
        let Some(secret) = &self.redis_key_secret else {
            return Err("required with backend = \"redis\" (e.g. { env = \"GUARDRAILS_RATELIMIT_KEY\" }, at least 32 random bytes, the same on every replica): Redis key names hold a keyed hash of each client, never its address or id".into());
        };
        let key = secret.resolve().map_err(|e| e.to_string())?;
        if let Some(weak) = key.weakness(32) {
            return Err(format!("the key in {secret} {weak}"));
        }
        Ok(Pseudonymizer::new(key.expose()))
    }
}

/// The two rate-limit layers of a `[rate_limit]` section: its policies
/// before authentication (per IP: protecting the authenticator) and after
/// it (per principal). A stage without policies lets everything through.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RateLimitStages {
    /// The `stage = "before_auth"` policies.
    pub before_auth: RateLimitLayer,
    /// The `stage = "after_auth"` policies.
    pub after_auth: RateLimitLayer,
}

impl RateLimitLayer {
    /// The layers of a `[rate_limit]` section, one per [`Stage`]. With
    /// `backend = "redis"` both decide on `redis` (the service's shared
    /// connection, which must then be given); keys and users in events are
    /// named under `pseudonymizer`.
    pub fn from_config(
        config: &RateLimitConfig,
        redis: Option<RedisConnection>,
        pseudonymizer: Pseudonymizer,
    ) -> Result<RateLimitStages, RateLimitError> {
        let stage = |stage: Stage, first: Option<&RateLimitLayer>| {
            let mut builder = RateLimitLayer::builder()
                .max_keys(config.max_keys)
                .headers(config.headers)
                .exempt(config.exempt.iter().cloned())
                .on_redis_error(config.on_redis_error)
                .pseudonymizer(pseudonymizer.clone());
            match first {
                // Both stages decide on one backend: one failure state.
                Some(first) => builder = builder.redis_of(first),
                None if config.uses_redis() => {
                    let redis = redis.clone().ok_or(RateLimitError::RedisUnavailable)?;
                    let names = config
                        .redis_names()
                        .map_err(|reason| RateLimitError::RedisKeySecret { reason })?;
                    builder = builder.redis_connection(redis, names)?;
                }
                None => {}
            }
            for p in config.policies.iter().filter(|p| p.stage == stage) {
                builder = builder.policy(p.policy().map_err(|source| RateLimitError::Policy {
                    name: p.name.clone(),
                    source,
                })?);
            }
            builder.build()
        };
        let before_auth = stage(Stage::BeforeAuth, None)?;
        let after_auth = stage(Stage::AfterAuth, Some(&before_auth))?;
        Ok(RateLimitStages {
            before_auth,
            after_auth,
        })
    }
}

impl RateLimitStages {
    /// `rate_limit` in the health report: the backend, whether Redis is
    /// failing (`warn`: decisions fall back as configured) and the keys
    /// each policy holds in memory.
    pub fn health_sources(&self) -> Vec<Arc<dyn HealthSource>> {
        vec![Arc::new(self.clone())]
    }
}

impl HealthSource for RateLimitStages {
    fn name(&self) -> &str {
        "rate_limit"
    }

    fn check(&self) -> ComponentHealth {
        let layers = [&self.before_auth, &self.after_auth];
        let keys: serde_json::Map<String, serde_json::Value> = layers
            .iter()
            .flat_map(|l| l.key_counts())
            .map(|(name, n)| (name, n.into()))
            .collect();
        let mut backends = layers.iter().filter_map(|l| l.redis_failing()).peekable();
        let redis = backends
            .peek()
            .is_some()
            .then(|| backends.any(|failing| failing));
        let details = serde_json::json!({
            "backend": if redis.is_some() { "redis" } else { "memory" },
            "redis_failing": redis,
            "keys": keys,
        });
        if redis == Some(true) {
            ComponentHealth::warn(details)
        } else {
            ComponentHealth::pass(details)
        }
    }
}

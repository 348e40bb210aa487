//! The `[rate_limit]` config section.

use std::time::Duration;

use guardrail_core::{
    SecretRef,
    config::{ConfigProblem, Profile},
};
use http::{HeaderName, Method};
use serde::Deserialize;

use crate::{
    OnRedisError, RateLimitLayer, RateLimitPolicy,
    key::{ApiKeyHeader, ClientIpKey, GlobalKey, PrincipalKey},
    layer::DEFAULT_MAX_KEYS,
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
}

/// `[rate_limit]`: rate limiting.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// `memory` (default) or `redis`.
    pub backend: Backend,
    /// The Redis URL (it may hold a password): `{ env = "REDIS_URL" }`.
    pub redis_url: Option<SecretRef>,
    /// Prefix of Redis keys (default `guardrails:rl`).
    pub redis_prefix: String,
    /// Longest a Redis decision may take (default `"50ms"`).
    #[serde(with = "humantime_serde")]
    pub redis_timeout: Duration,
    /// `local` (default), `allow` or `deny` when Redis fails.
    pub on_redis_error: OnRedisError,
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
            redis_url: None,
            redis_prefix: "guardrails:rl".into(),
            redis_timeout: Duration::from_millis(50),
            on_redis_error: OnRedisError::Local,
            max_keys: DEFAULT_MAX_KEYS,
            headers: true,
            exempt: Vec::new(),
            policies: Vec::new(),
        }
    }
}

impl PolicyConfig {
    fn policy(&self) -> Result<RateLimitPolicy, String> {
        let mut policy = RateLimitPolicy::new(self.rate, self.period)
            .burst(self.burst.unwrap_or(self.rate))
            .name(self.name.clone())
            .routes(self.routes.iter().cloned());
        policy = match self.key {
            KeyKind::ClientIp => policy.key(ClientIpKey),
            KeyKind::Principal => policy.key(PrincipalKey),
            KeyKind::Global => policy.key(GlobalKey),
            KeyKind::ApiKey => {
                let header = self
                    .api_key_header
                    .as_deref()
                    .ok_or("api_key_header is required with key = \"api_key\"")?;
                let header = HeaderName::try_from(header)
                    .map_err(|_| format!("`{header}` is not a header name"))?;
                policy.key(ApiKeyHeader::new(header))
            }
        };
        let methods = self
            .methods
            .iter()
            .map(|m| {
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| format!("`{m}` is not a method"))
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
        if self.redis_timeout.is_zero() || self.redis_timeout > Duration::from_secs(5) {
            problem(
                "rate_limit.redis_timeout".into(),
                "must be more than 0s and at most 5s".into(),
            );
        }
        match (self.backend, &self.redis_url) {
            (Backend::Redis, None) => problem(
                "rate_limit.redis_url".into(),
                "required with backend = \"redis\"".into(),
            ),
            (Backend::Redis, Some(url)) => {
                if let Err(e) = url.resolve() {
                    problem("rate_limit.redis_url".into(), e.to_string());
                }
            }
            _ => {}
        }
        let mut names = std::collections::HashSet::new();
        for (i, p) in self.policies.iter().enumerate() {
            if let Err(e) = p.policy() {
                problem(format!("rate_limit.policies[{i}]"), e);
            }
            if !names.insert(p.name.as_str()) {
                problem(
                    format!("rate_limit.policies[{i}].name"),
                    format!("`{}` is used twice", p.name),
                );
            }
        }
        for (i, e) in self.exempt.iter().enumerate() {
            if !e.starts_with('/') || e == "/*" || (e.contains('*') && !e.ends_with("/*")) {
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
        if profile == Profile::Production && self.policies.is_empty() {
            problem(
                "rate_limit.policies".into(),
                "production needs at least one policy".into(),
            );
        }
    }

    /// A Redis backend for this section, if it selects one. Needs a tokio
    /// runtime; call once and share the result between stages.
    #[cfg(feature = "redis")]
    pub fn redis_backend(&self) -> Result<Option<crate::RedisBackend>, String> {
        if self.backend != Backend::Redis {
            return Ok(None);
        }
        let url = self
            .redis_url
            .as_ref()
            .ok_or("rate_limit.redis_url is required")?;
        let url = url.resolve().map_err(|e| e.to_string())?;
        let url = std::str::from_utf8(url.expose())
            .map_err(|_| "the Redis URL is not UTF-8".to_owned())?;
        Ok(Some(
            crate::RedisBackend::new(url)?
                .prefix(self.redis_prefix.clone())
                .timeout(self.redis_timeout),
        ))
    }

    /// The layer for one stage's policies (a pass-through if it has none).
    pub fn layer(
        &self,
        stage: Stage,
        #[cfg(feature = "redis")] redis: Option<crate::RedisBackend>,
    ) -> Result<RateLimitLayer, String> {
        let mut builder = RateLimitLayer::builder()
            .max_keys(self.max_keys)
            .headers(self.headers)
            .exempt(self.exempt.iter().cloned())
            .on_redis_error(self.on_redis_error);
        #[cfg(feature = "redis")]
        if let Some(redis) = redis {
            builder = builder.redis(redis);
        }
        for p in self.policies.iter().filter(|p| p.stage == stage) {
            builder = builder.policy(
                p.policy()
                    .map_err(|e| format!("policy `{}`: {e}", p.name))?,
            );
        }
        builder.build()
    }
}

//! The `[auth]` config section.

use std::{path::PathBuf, str::FromStr, time::Duration};

use guardrail_core::{
    Pseudonymizer, RedisConnection, Secret, SecretRef,
    config::{ConfigProblem, Profile},
};
use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::{
    AuthenticateLayer, Jwks, JwtVerifier, KeySource, PatternError, PublicRoutes, ReplayFallback,
    ReplayStore, RequireLayer, StepUp, SupabaseClaims, VerifyWebhookLayer,
    jwt::{DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_BYTES},
    webhook::Stripe,
    webhook::{DEFAULT_REPLAY_CAPACITY, DEFAULT_TOLERANCE},
};

/// Production's shortest HS256 secret, in bytes.
const MIN_HS256_SECRET: usize = 32;
const MIN_WEBHOOK_SECRET: usize = 16;

/// `[auth]`: how callers are authenticated and what the levels mean.
///
/// Exactly one key source: `hs256_secret`, `public_key_file` (with
/// `algorithm`), or `[auth.jwks]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AuthConfig {
    /// The HS256 secret: `{ env = "VAR" }` or `{ file = "/path" }`.
    pub hs256_secret: Option<SecretRef>,
    /// A PEM public key file (RS*/PS*, ES256/ES384, EdDSA).
    pub public_key_file: Option<PathBuf>,
    /// The algorithm of `public_key_file`, e.g. `"ES256"`.
    pub algorithm: Option<String>,
    /// A JWKS endpoint.
    pub jwks: Option<JwksConfig>,
    /// Required `iss` (required in production).
    pub issuer: Option<String>,
    /// Required `aud` (required in production).
    pub audience: Option<String>,
    /// Clock-skew allowance for `exp`/`nbf` (default `"30s"`, at most 5m).
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// Largest accepted token in bytes (default 8192).
    pub max_token_bytes: usize,
    /// Verified tokens kept so a repeated token skips the signature check
    /// (default 4096, at most 1000000; 0 turns it off). An entry serves
    /// only the identical token, under the key set that verified it, with
    /// `exp`/`nbf` checked on every use; failures are never kept.
    pub token_cache: usize,
    /// Routes that need no authentication: exact paths and `/prefix/*`.
    pub public: Vec<String>,
    /// Roles that count as administrator (default `["admin"]`).
    pub admin_roles: Vec<String>,
    /// Whether administrators also need MFA (default `true`).
    pub admin_requires_mfa: bool,
    /// Max age of the second factor for sensitive routes (default `"15m"`).
    #[serde(with = "humantime_serde")]
    pub mfa_max_age: Duration,
    /// Dotted claim path of the organization id, e.g. `"app_metadata.org_id"`.
    pub org_claim: Option<String>,
    /// What a route needing (fresh) MFA answers a caller without it:
    /// `"forbid"` (default: 403 with an MFA hint) or `"challenge"` (401
    /// with an RFC 9470 step-up challenge).
    pub step_up: StepUp,
    /// Realm of the `WWW-Authenticate` challenge (default `"api"`).
    pub realm: String,
    /// `[auth.webhook]`: webhook signature verification.
    pub webhook: WebhookConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            hs256_secret: None,
            public_key_file: None,
            algorithm: None,
            jwks: None,
            issuer: None,
            audience: None,
            leeway: DEFAULT_LEEWAY,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            token_cache: crate::DEFAULT_TOKEN_CACHE,
            public: Vec::new(),
            admin_roles: vec!["admin".into()],
            admin_requires_mfa: true,
            mfa_max_age: Duration::from_secs(15 * 60),
            org_claim: None,
            step_up: StepUp::Forbid,
            realm: "api".into(),
            webhook: WebhookConfig::default(),
        }
    }
}

/// `[auth.jwks]`: a JWKS endpoint, configured or found by OIDC discovery.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct JwksConfig {
    /// The key set URL (https in production); omitted with
    /// `issuer_discovery`.
    #[serde(default)]
    pub url: Option<String>,
    /// Find the key set through `{auth.issuer}/.well-known/openid-configuration`
    /// (its `issuer` must equal `auth.issuer`; its `jwks_uri` is followed,
    /// https only in production). Default `false`.
    #[serde(default)]
    pub issuer_discovery: bool,
    /// How long fetched keys are fresh (default `"10m"`).
    #[serde(with = "humantime_serde", default = "JwksConfig::default_ttl")]
    pub ttl: Duration,
    /// How long past `ttl` cached keys serve while the endpoint fails
    /// (default `"1h"`).
    #[serde(with = "humantime_serde", default = "JwksConfig::default_max_stale")]
    pub max_stale: Duration,
    /// Least time between fetches (default `"30s"`).
    #[serde(with = "humantime_serde", default = "JwksConfig::default_min_refresh")]
    pub min_refresh_interval: Duration,
    /// Timeout of one fetch (default `"5s"`).
    #[serde(with = "humantime_serde", default = "JwksConfig::default_timeout")]
    pub timeout: Duration,
}

impl JwksConfig {
    fn default_ttl() -> Duration {
        Duration::from_secs(600)
    }
    fn default_max_stale() -> Duration {
        Duration::from_secs(3600)
    }
    fn default_min_refresh() -> Duration {
        Duration::from_secs(30)
    }
    fn default_timeout() -> Duration {
        Duration::from_secs(5)
    }
}

/// `[auth.webhook]`: webhook signature verification.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct WebhookConfig {
    /// Signing secrets; any one verifies (list the old and new one while
    /// rotating).
    pub secrets: Vec<SecretRef>,
    /// How far a signed timestamp may be from now (default `"5m"`).
    #[serde(with = "humantime_serde")]
    pub tolerance: Duration,
    /// Moved: the webhook route's body limit is a per-route override of
    /// the one body limit (`[[body_limit.routes]]`); setting this key is
    /// a validation problem that says so.
    pub max_body_bytes: Option<usize>,
    /// Accepted signatures remembered to refuse replays (default 10000).
    pub replay_capacity: usize,
    /// Where accepted deliveries are remembered: `"local"` (default, this
    /// process) or `"redis"` (the `[redis]` section, every replica).
    pub replay_store: ReplayStore,
    /// With `replay_store = "redis"`, while Redis fails: `"refuse"`
    /// (default: 503, the sender retries) or `"local"` (this replica's
    /// cache only).
    pub redis_failure: ReplayFallback,
}

impl WebhookConfig {
    /// Whether the layer needs the `[redis]` connection.
    pub fn uses_redis(&self) -> bool {
        self.replay_store == ReplayStore::Redis
    }
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            secrets: Vec::new(),
            tolerance: DEFAULT_TOLERANCE,
            max_body_bytes: None,
            replay_capacity: DEFAULT_REPLAY_CAPACITY,
            replay_store: ReplayStore::Local,
            redis_failure: ReplayFallback::Refuse,
        }
    }
}

/// Algorithms a PEM public key can be for.
fn public_key_algorithm(name: &str) -> Option<Algorithm> {
    use Algorithm::*;
    Algorithm::from_str(name).ok().filter(|a| {
        matches!(
            a,
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 | ES256 | ES384 | EdDSA
        )
    })
}

impl AuthConfig {
    /// Adds every problem of this section to `problems` (paths start with
    /// `auth.`). Secrets are resolved to check them; their values never
    /// appear in a message.
    pub fn validate(&self, profile: Profile, problems: &mut Vec<ConfigProblem>) {
        let prod = profile == Profile::Production;
        let mut problem =
            |path: &str, message: String| problems.push(ConfigProblem::new(path, message));

        let sources = [
            self.hs256_secret.is_some(),
            self.public_key_file.is_some(),
            self.jwks.is_some(),
        ];
        match sources.iter().filter(|s| **s).count() {
            0 => problem(
                "auth",
                "no key source: set hs256_secret, public_key_file (with algorithm) or [auth.jwks]"
                    .into(),
            ),
            1 => {}
            _ => problem(
                "auth",
                "set only one of hs256_secret, public_key_file and [auth.jwks]".into(),
            ),
        }
        if let Some(secret) = &self.hs256_secret {
            match secret.resolve() {
                Ok(s) if prod => {
                    if let Some(weak) = s.weakness(MIN_HS256_SECRET) {
                        problem(
                            "auth.hs256_secret",
                            format!("the secret in {secret} {weak}"),
                        );
                    }
                }
                Ok(_) => {}
                // Development runs without a secret (every token is refused).
                Err(_) if !prod => {}
                Err(e) => problem("auth.hs256_secret", e.to_string()),
            }
        }
        match (&self.public_key_file, &self.algorithm) {
            (Some(path), Some(alg)) => match public_key_algorithm(alg) {
                None => problem(
                    "auth.algorithm",
                    format!(
                        "`{alg}` is not a public-key algorithm (RS256, PS256, ES256, ES384, EdDSA, …)"
                    ),
                ),
                Some(alg) => match std::fs::read(path) {
                    Err(e) => problem(
                        "auth.public_key_file",
                        format!("cannot read {}: {e}", path.display()),
                    ),
                    Ok(pem) => {
                        if KeySource::from_pem(alg, &pem).is_err() {
                            problem(
                                "auth.public_key_file",
                                format!("{} is not a {alg:?} public key in PEM", path.display()),
                            );
                        }
                    }
                },
            },
            (Some(_), None) => problem("auth.algorithm", "required with public_key_file".into()),
            (None, Some(_)) => problem(
                "auth.algorithm",
                "only meaningful with public_key_file".into(),
            ),
            (None, None) => {}
        }
        if let Some(jwks) = &self.jwks {
            match (&jwks.url, jwks.issuer_discovery, &self.issuer) {
                (Some(_), true, _) => problem(
                    "auth.jwks.url",
                    "set either url or issuer_discovery, not both".into(),
                ),
                (None, false, _) => problem(
                    "auth.jwks.url",
                    "required (or set issuer_discovery = true with auth.issuer)".into(),
                ),
                (None, true, None) => problem(
                    "auth.jwks.issuer_discovery",
                    "needs auth.issuer: the discovery document is read from it".into(),
                ),
                (None, true, Some(issuer)) => {
                    if let Err(e) = Jwks::discovery(issuer).https_only(prod).build() {
                        problem("auth.issuer", format!("issuer discovery: {e}"));
                    }
                }
                (Some(url), false, _) => {
                    if let Err(e) = Jwks::builder(url).build() {
                        problem("auth.jwks.url", e.to_string());
                    } else if prod && !url.starts_with("https://") {
                        problem("auth.jwks.url", "must be https in production".into());
                    }
                }
            }
            if jwks.ttl.is_zero() || jwks.ttl > Duration::from_secs(24 * 3600) {
                problem(
                    "auth.jwks.ttl",
                    "must be more than 0s and at most 24h".into(),
                );
            }
            if jwks.max_stale > Duration::from_secs(7 * 24 * 3600) {
                problem("auth.jwks.max_stale", "must be at most 7 days".into());
            }
            if jwks.min_refresh_interval > jwks.ttl {
                problem(
                    "auth.jwks.min_refresh_interval",
                    "must not exceed ttl".into(),
                );
            }
            if jwks.timeout.is_zero() || jwks.timeout > Duration::from_secs(30) {
                problem(
                    "auth.jwks.timeout",
                    "must be more than 0s and at most 30s".into(),
                );
            }
        }
        if prod && self.issuer.as_deref().is_none_or(str::is_empty) {
            problem(
                "auth.issuer",
                "required in production: tokens from any issuer would be accepted".into(),
            );
        }
        if prod && self.audience.as_deref().is_none_or(str::is_empty) {
            problem(
                "auth.audience",
                "required in production: tokens for any audience would be accepted".into(),
            );
        }
        if self.leeway > Duration::from_secs(300) {
            problem("auth.leeway", "must be at most 5m".into());
        }
        if self.token_cache > 1_000_000 {
            problem("auth.token_cache", "must be at most 1000000 tokens".into());
        }
        if !(1024..=65536).contains(&self.max_token_bytes) {
            problem(
                "auth.max_token_bytes",
                "must be between 1024 and 65536".into(),
            );
        }
        for (i, pattern) in self.public.iter().enumerate() {
            if let Err(e) = PublicRoutes::new([pattern]) {
                problem(&format!("auth.public[{i}]"), e.to_string());
            }
        }
        if self.admin_roles.is_empty() {
            problem("auth.admin_roles", "must name at least one role".into());
        }
        if self.mfa_max_age.is_zero() {
            problem("auth.mfa_max_age", "must be more than 0s".into());
        }
        if self.realm.is_empty() || self.realm.contains(['"', '\\']) {
            problem(
                "auth.realm",
                "must be non-empty, without quotes or backslashes".into(),
            );
        }
        for (i, secret) in self.webhook.secrets.iter().enumerate() {
            let path = format!("auth.webhook.secrets[{i}]");
            match secret.resolve() {
                Ok(s) if prod => {
                    if let Some(weak) = s.weakness(MIN_WEBHOOK_SECRET) {
                        problem(&path, format!("the secret in {secret} {weak}"));
                    }
                }
                Ok(_) => {}
                Err(_) if !prod => {}
                Err(e) => problem(&path, e.to_string()),
            }
        }
        if self.webhook.tolerance.is_zero() || self.webhook.tolerance > Duration::from_secs(3600) {
            problem(
                "auth.webhook.tolerance",
                "must be more than 0s and at most 1h".into(),
            );
        }
        if let Some(max) = self.webhook.max_body_bytes {
            problem(
                "auth.webhook.max_body_bytes",
                format!(
                    "moved to the one request body limit: remove it and add [[body_limit.routes]] with prefix = \"<your webhook route>\" and max_bytes = {max}"
                ),
            );
        }
        if self.webhook.replay_capacity == 0 {
            problem("auth.webhook.replay_capacity", "must be at least 1".into());
        }
    }

    /// Builds the verifier. Call after [`validate`](Self::validate): the
    /// umbrella crate's validated config makes that impossible to forget.
    ///
    /// An HS256 secret that can't be read, or is weak, is an error in
    /// production. In development an unreadable one becomes a random key
    /// (so every token is refused), said once at WARN.
    pub fn verifier(&self, profile: Profile) -> Result<JwtVerifier, AuthConfigError> {
        let keys = if let Some(secret_ref) = &self.hs256_secret {
            let secret = match secret_ref.resolve() {
                Ok(secret) => secret,
                Err(e) if profile == Profile::Development => {
                    tracing::warn!(error = %e, "HS256 secret unavailable; every token will be refused (development: a random key is in use)");
                    Secret::random()
                }
                Err(e) => return Err(AuthConfigError::Secret(e)),
            };
            if profile == Profile::Production
                && let Some(weakness) = secret.weakness(MIN_HS256_SECRET)
            {
                return Err(AuthConfigError::WeakSecret {
                    origin: secret_ref.to_string(),
                    weakness,
                });
            }
            KeySource::hs256(secret.expose())
        } else if let (Some(path), Some(alg)) = (&self.public_key_file, &self.algorithm) {
            let alg =
                public_key_algorithm(alg).ok_or_else(|| AuthConfigError::Algorithm(alg.clone()))?;
            let pem = std::fs::read(path).map_err(|source| AuthConfigError::ReadKey {
                path: path.clone(),
                source,
            })?;
            KeySource::from_pem(alg, &pem)?
        } else if let Some(jwks) = &self.jwks {
            let builder = match (&jwks.url, jwks.issuer_discovery, &self.issuer) {
                (None, true, Some(issuer)) => {
                    Jwks::discovery(issuer).https_only(profile == Profile::Production)
                }
                (Some(url), false, _) => Jwks::builder(url),
                _ => {
                    return Err(AuthConfigError::Jwks(crate::jwks::JwksError(
                        "set auth.jwks.url, or issuer_discovery = true with auth.issuer".into(),
                    )));
                }
            };
            builder
                .ttl(jwks.ttl)
                .max_stale(jwks.max_stale)
                .min_refresh_interval(jwks.min_refresh_interval)
                .timeout(jwks.timeout)
                .build()?
                .into()
        } else {
            return Err(AuthConfigError::NoKeySource);
        };
        let mut claims = SupabaseClaims::new();
        if let Some(path) = &self.org_claim {
            claims = claims.org_claim(path);
        }
        let mut verifier = JwtVerifier::new(keys)
            .leeway(self.leeway)
            .max_token_bytes(self.max_token_bytes)
            .claims(claims);
        if let Some(iss) = &self.issuer {
            verifier = verifier.issuer(iss.clone());
        }
        if let Some(aud) = &self.audience {
            verifier = verifier.audience(aud.clone());
        }
        Ok(verifier.token_cache(self.token_cache))
    }

    /// [`RequireLayer::mfa`] with `mfa_max_age`: for sensitive operations.
    /// `pseudonymizer` names users in its events (the service's one).
    pub fn require_fresh_mfa(&self, pseudonymizer: &Pseudonymizer) -> RequireLayer {
        RequireLayer::mfa()
            .max_age(self.mfa_max_age)
            .realm(&self.realm)
            .step_up(self.step_up)
            .pseudonymizer(pseudonymizer.clone())
    }

    /// [`RequireLayer::admin`] with the configured admin roles and MFA rule.
    pub fn require_admin(&self, pseudonymizer: &Pseudonymizer) -> RequireLayer {
        self.levels(RequireLayer::admin(), pseudonymizer)
    }

    /// [`RequireLayer::owner`] with the configured admin roles and MFA rule.
    pub fn require_owner(&self, param: &str, pseudonymizer: &Pseudonymizer) -> RequireLayer {
        self.levels(RequireLayer::owner(param), pseudonymizer)
    }

    fn levels(&self, layer: RequireLayer, pseudonymizer: &Pseudonymizer) -> RequireLayer {
        layer
            .admin_roles(self.admin_roles.iter().cloned())
            .admin_requires_mfa(self.admin_requires_mfa)
            .realm(&self.realm)
            .step_up(self.step_up)
            .pseudonymizer(pseudonymizer.clone())
    }
}

impl VerifyWebhookLayer<Stripe> {
    /// The Stripe webhook layer of an `[auth.webhook]` section, with the
    /// stack's `[redis]` connection for `replay_store = "redis"`
    /// ([`Guardrails::redis`]; without one, every delivery is refused as
    /// if Redis were down, and that is logged).
    /// Unresolvable secrets are left out (with a warning; production
    /// validation refuses them); with none left every delivery is refused.
    ///
    /// [`Guardrails::redis`]: https://docs.rs/floyo-guardrails
    pub fn from_config(config: &WebhookConfig, redis: Option<RedisConnection>) -> Self {
        let secrets: Vec<Secret> = config
            .secrets
            .iter()
            .filter_map(|r| {
                r.resolve()
                    .inspect_err(|e| tracing::warn!(error = %e, "webhook secret unavailable"))
                    .ok()
            })
            .collect();
        let layer = VerifyWebhookLayer::stripe(secrets)
            .tolerance(config.tolerance)
            .replay_capacity(config.replay_capacity);
        match config.replay_store {
            ReplayStore::Redis => layer.replay_store(redis, config.redis_failure),
            _ => layer,
        }
    }
}

/// Why `[auth]` could not be turned into layers. Each names its key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthConfigError {
    /// No key source is configured.
    #[error(
        "auth: no key source: set hs256_secret, public_key_file (with algorithm) or [auth.jwks]"
    )]
    NoKeySource,
    /// The HS256 secret can't be read; production refuses to run with a
    /// random key.
    #[error("auth.hs256_secret: {0}")]
    Secret(guardrail_core::SecretError),
    /// The HS256 secret is too weak for production.
    #[error("auth.hs256_secret: the secret in {origin} {weakness}")]
    WeakSecret {
        /// Where the secret comes from (the variable or file, never the
        /// value).
        origin: String,
        /// What is weak about it.
        weakness: String,
    },
    /// `algorithm` is not a public-key algorithm.
    #[error("auth.algorithm: `{0}` is not a public-key algorithm")]
    Algorithm(String),
    /// The public key file can't be read.
    #[error("auth.public_key_file: cannot read {}: {source}", path.display())]
    ReadKey {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The public key can't be used.
    #[error("auth.public_key_file: {0}")]
    Key(#[from] crate::keys::KeyError),
    /// The JWKS settings can't be used.
    #[error("auth.jwks: {0}")]
    Jwks(#[from] crate::jwks::JwksError),
    /// A public route pattern is invalid.
    #[error("auth.public: {0}")]
    Public(#[from] PatternError),
}

impl AuthenticateLayer {
    /// The authentication layer of an `[auth]` section: its key source, the
    /// public allow-list and realm; user pseudonyms under `pseudonymizer`.
    /// `profile` decides what an unreadable HS256 secret means (see
    /// [`AuthConfig::verifier`]). A JWKS source needs
    /// [`background_tasks`](Self::background_tasks) run to stay fresh.
    pub fn from_config(
        config: &AuthConfig,
        profile: Profile,
        pseudonymizer: Pseudonymizer,
    ) -> Result<Self, AuthConfigError> {
        Ok(AuthenticateLayer::new(config.verifier(profile)?)
            .public(PublicRoutes::new(&config.public)?)
            .realm(&config.realm)
            .pseudonymizer(pseudonymizer))
    }
}

//! The one configuration file for every guardrail: TOML, with environment
//! overrides, validated per profile.
//!
//! # Loading
//!
//! [`GuardrailsConfig::load`] reads a TOML file, then applies every
//! environment variable named `GUARDRAILS__<SECTION>__<KEY>` (double
//! underscores separate the path; names are case-insensitive), so
//! `GUARDRAILS__SERVER__SHUTDOWN_GRACE=5s` overrides `[server]
//! shutdown_grace`. An override's value is read as a TOML value
//! (`20`, `true`, `["10.0.0.0/8"]`) and, if that fails, as a string. Unknown
//! keys — in the file or in an override — are errors naming the key, so a
//! typo never silently falls back to a default.
//!
//! # Validation
//!
//! [`GuardrailsConfig::validate`] checks the loaded values against a
//! [`Profile`] and returns **every** problem at once, each with its key path.
//! [`Profile::Production`] (the default when the file names none) refuses
//! what is merely unwise in development.
//!
//! # Secrets
//!
//! A secret is never written in the file: a [`SecretRef`] names the
//! environment variable or file that holds it (`{ env = "JWT_SECRET" }`).
//!
//! # Example
//!
//! ```
//! use guardrails::{GuardrailsConfig, Profile};
//! use std::time::Duration;
//!
//! let env = [("GUARDRAILS__SERVER__SHUTDOWN_GRACE".to_string(), "3s".to_string())];
//! let config = GuardrailsConfig::from_sources(
//!     "[server]\nshutdown_grace = \"20s\"\n",
//!     "inline",
//!     env,
//! ).unwrap();
//! assert_eq!(config.server.shutdown_grace, Duration::from_secs(3));
//! assert_eq!(config.profile, Profile::Production);
//!
//! let err = GuardrailsConfig::from_toml_str("[server]\nshutdown_grace_period = \"1s\"").unwrap_err();
//! assert!(err.to_string().contains("shutdown_grace_period"));
//! ```

mod env;
mod validate;

use std::{path::Path, time::Duration};

use guardrail_core::ClientIpConfig;
use serde::Deserialize;

pub use env::ENV_PREFIX;
pub use guardrail_core::config::{ConfigProblem, Profile};
pub use guardrail_core::{RedisConfig, RequestIdConfig, Secret, SecretError, SecretRef};
pub use validate::{ValidConfig, ValidationErrors};

/// Every guardrail's settings, one section per layer.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct GuardrailsConfig {
    /// Which checks [`GuardrailsConfig::validate`] applies by default
    /// (`"development"` or `"production"`; default production).
    pub profile: Profile,
    /// `[server]`: how the service itself runs.
    pub server: ServerConfig,
    /// `[request_id]`: request id header and trust.
    pub request_id: RequestIdConfig,
    /// `[client_ip]`: trusted proxies and the forwarding header.
    pub client_ip: ClientIpConfig,
    /// `[redis]`: the one Redis connection every Redis user shares.
    pub redis: RedisConfig,
    /// `[auth]`: authentication and authorization levels.
    #[cfg(feature = "auth-layer")]
    pub auth: auth_layer::AuthConfig,
    /// `[auth]`: the `auth-layer` feature is off, so no keys are accepted.
    #[cfg(not(feature = "auth-layer"))]
    pub auth: EmptySection,
    /// `[rate_limit]`: rate limiting.
    #[cfg(feature = "ratelimit-layer")]
    pub rate_limit: ratelimit_layer::RateLimitConfig,
    /// `[rate_limit]`: the `ratelimit-layer` feature is off.
    #[cfg(not(feature = "ratelimit-layer"))]
    pub rate_limit: EmptySection,
    /// `[trace]`: scrubbed request tracing and log scrubbing.
    #[cfg(feature = "pii-trace-layer")]
    pub trace: pii_trace_layer::TraceConfig,
    /// `[trace]`: the `pii-trace-layer` feature is off.
    #[cfg(not(feature = "pii-trace-layer"))]
    pub trace: EmptySection,
    /// `[timeout]`: the inbound request deadline.
    #[cfg(feature = "timeout-retry-layer")]
    pub timeout: timeout_retry_layer::TimeoutConfig,
    /// `[timeout]`: the `timeout-retry-layer` feature is off.
    #[cfg(not(feature = "timeout-retry-layer"))]
    pub timeout: EmptySection,
    /// `[error_boundary]`: handler panics and bare 5xx bodies.
    #[cfg(feature = "timeout-retry-layer")]
    pub error_boundary: timeout_retry_layer::ErrorBoundaryConfig,
    /// `[error_boundary]`: the `timeout-retry-layer` feature is off.
    #[cfg(not(feature = "timeout-retry-layer"))]
    pub error_boundary: EmptySection,
    /// `[body_limit]`: the largest request body, per route.
    #[cfg(feature = "timeout-retry-layer")]
    pub body_limit: timeout_retry_layer::BodyLimitConfig,
    /// `[body_limit]`: the `timeout-retry-layer` feature is off.
    #[cfg(not(feature = "timeout-retry-layer"))]
    pub body_limit: EmptySection,
    /// `[load_shed]`: requests in flight at most.
    #[cfg(feature = "timeout-retry-layer")]
    pub load_shed: timeout_retry_layer::LoadShedConfig,
    /// `[load_shed]`: the `timeout-retry-layer` feature is off.
    #[cfg(not(feature = "timeout-retry-layer"))]
    pub load_shed: EmptySection,
    /// `[upstreams.<name>]`: the services this one calls, each with its
    /// outbound stack (retry, circuit breaker, bulkhead).
    #[cfg(feature = "timeout-retry-layer")]
    pub upstreams: std::collections::BTreeMap<String, timeout_retry_layer::UpstreamConfig>,
    /// `[upstreams]`: the `timeout-retry-layer` feature is off.
    #[cfg(not(feature = "timeout-retry-layer"))]
    pub upstreams: EmptySection,
    /// `[flags]`: feature flags — their source and, with `source =
    /// "config"`, their definitions (`[[flags.flag]]`).
    #[cfg(feature = "flag-layer")]
    pub flags: flag_layer::FlagsConfig,
    /// `[flags]`: the `flag-layer` feature is off.
    #[cfg(not(feature = "flag-layer"))]
    pub flags: EmptySection,
    /// `[monitor]`: where metrics are served.
    #[cfg(feature = "monitor-layer")]
    pub monitor: monitor_layer::MonitorConfig,
    /// `[monitor]`: the `monitor-layer` feature is off.
    #[cfg(not(feature = "monitor-layer"))]
    pub monitor: EmptySection,
}

/// A section whose layer has no settings yet: any key in it is an error.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptySection {}

/// `[server]`: how the service runs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ServerConfig {
    /// How long in-flight requests may take to finish after a shutdown
    /// signal (default `"10s"`, at most 5 minutes).
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Routes that misbehave on purpose, for trying the guards
    /// (`/api/debug/panic`, `/api/debug/slow?ms=…`, `POST
    /// /api/debug/echo`); the example service adds them when set.
    /// Development profile only (default `false`).
    pub debug_routes: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            shutdown_grace: Duration::from_secs(10),
            debug_routes: false,
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{origin} is not valid TOML: {message}")]
    Syntax {
        /// Where the text came from.
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// An environment override could not be applied.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        message: String,
    },
    /// Keys with unknown names or values of the wrong shape: every one
    /// found, each with its path (one per line when there are several).
    #[error("{}", list(problems))]
    Invalid {
        /// The problems, in the order they were found.
        problems: Vec<InvalidKey>,
    },
}

/// A key with an unknown name or a value of the wrong shape.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("config key `{path}`{}: {message}", origin.as_ref().map(|o| format!(" (set by {o})")).unwrap_or_default())]
#[non_exhaustive]
pub struct InvalidKey {
    /// The key path, e.g. `client_ip.trusted_proxies[0]`.
    pub path: String,
    /// The environment variable that set it (or a key below it), when one
    /// did.
    pub origin: Option<String>,
    /// What is wrong.
    pub message: String,
}

fn list(problems: &[InvalidKey]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// How many bad keys one load reports at most.
const MAX_KEY_PROBLEMS: usize = 32;

/// Removes the key at `path` (`a.b`, `a.list[2].c`) from `table`: the key
/// itself, or the whole list an indexed path points into, so the indices
/// of later problems stay true. `false` when there is nothing to remove.
fn remove_path(table: &mut toml::Table, path: &str) -> bool {
    let segments: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut current = table;
    for segment in parents {
        let name = segment.split('[').next().unwrap_or(segment);
        if segment.contains('[') {
            // Inside a list: drop the list.
            return current.remove(name).is_some();
        }
        match current.get_mut(name).and_then(toml::Value::as_table_mut) {
            Some(next) => current = next,
            None => return false,
        }
    }
    let name = last.split('[').next().unwrap_or(last);
    current.remove(name).is_some()
}

impl GuardrailsConfig {
    /// Loads `path`, then applies `GUARDRAILS__*` overrides from the process
    /// environment.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_sources(&text, &path.display().to_string(), crate::stack::env_vars())
    }

    /// Parses TOML text with no environment overrides.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::from_sources(text, "config", std::iter::empty())
    }

    /// Parses TOML `text` (named `origin` in errors), then applies the
    /// `GUARDRAILS__*` overrides found in `env`; other variables are ignored.
    pub fn from_sources<I>(text: &str, origin: &str, env: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    origin: origin.to_owned(),
                    message: e.to_string().trim_end().to_owned(),
                })?;
        let overrides = env::apply(&mut table, env)?;
        // Every bad key, not just the first: each one found is reported,
        // taken out, and the rest read again.
        let mut problems = Vec::new();
        loop {
            match serde_path_to_error::deserialize(toml::Value::Table(table.clone())) {
                Ok(config) if problems.is_empty() => return Ok(config),
                Ok(_) => break,
                Err(err) => {
                    let path = err.path().to_string();
                    // A parent of a key already taken out now misses it:
                    // a consequence, not another problem. The same path
                    // twice: removal didn't help, stop.
                    let consequence = problems.iter().any(|p: &InvalidKey| {
                        p.path
                            .strip_prefix(path.as_str())
                            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
                    });
                    if problems.iter().any(|p| p.path == path) {
                        break;
                    }
                    if !consequence {
                        problems.push(InvalidKey {
                            origin: overrides.origin_of(&path),
                            message: err.into_inner().to_string().trim_end().to_owned(),
                            path: path.clone(),
                        });
                    }
                    if problems.len() >= MAX_KEY_PROBLEMS || !remove_path(&mut table, &path) {
                        break;
                    }
                }
            }
        }
        Err(ConfigError::Invalid { problems })
    }
}

//! The `[trace]` config section.

use std::sync::Arc;

use guardrail_core::{
    Pseudonymizer, SecretRef,
    config::{ConfigProblem, Profile},
};
use http::HeaderName;
use serde::Deserialize;
use tracing::Level;

use crate::{ScrubConfig, Scrubber, TraceError, TraceLayer};

/// A log level name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LevelName {
    /// `trace`
    Trace,
    /// `debug`
    Debug,
    /// `info`
    Info,
    /// `warn`
    Warn,
    /// `error`
    Error,
}

impl From<LevelName> for Level {
    fn from(l: LevelName) -> Level {
        match l {
            LevelName::Trace => Level::TRACE,
            LevelName::Debug => Level::DEBUG,
            LevelName::Info => Level::INFO,
            LevelName::Warn => Level::WARN,
            LevelName::Error => Level::ERROR,
        }
    }
}

/// `[trace]`: request tracing and log scrubbing.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct TraceConfig {
    /// Request headers logged (scrubbed) with each `api.request`; credential
    /// headers are never logged.
    pub headers: Vec<String>,
    /// Level of `api.request` for 1xx–3xx (default `info`).
    pub success_level: LevelName,
    /// Level for 4xx (default `warn`).
    pub client_error_level: LevelName,
    /// Level for 5xx (default `error`).
    pub server_error_level: LevelName,
    /// Key of user pseudonyms: `{ env = "VAR" }` or `{ file = "…" }`. Set it
    /// so pseudonyms are stable across restarts and replicas; unset, a
    /// random key per process.
    pub pseudonym_key: Option<SecretRef>,
    /// `[trace.scrub]`: scrubber adjustments (classes off, extra keys,
    /// custom patterns, IP masking).
    pub scrub: ScrubConfig,
    /// Whether a caller's W3C `traceparent` is continued (default true);
    /// false starts a trace here for every request (a service whose
    /// callers are not yours and whose traces they must not steer).
    pub trust_traceparent: bool,
    /// An OpenTelemetry collector's OTLP/HTTP traces URL (such as
    /// `http://127.0.0.1:4318/v1/traces`) to export request spans to;
    /// `""` (default) exports nothing. Needs the cargo feature `otel`.
    pub otlp_endpoint: String,
}

impl Default for TraceConfig {
    fn default() -> Self {
        Self {
            headers: Vec::new(),
            success_level: LevelName::Info,
            client_error_level: LevelName::Warn,
            server_error_level: LevelName::Error,
            pseudonym_key: None,
            scrub: ScrubConfig::default(),
            trust_traceparent: true,
            otlp_endpoint: String::new(),
        }
    }
}

impl TraceConfig {
    /// Adds every problem of this section to `problems`.
    pub fn validate(&self, profile: Profile, problems: &mut Vec<ConfigProblem>) {
        if !self.otlp_endpoint.is_empty() {
            #[cfg(feature = "otel")]
            if let Err(e) = crate::otel::check_endpoint(&self.otlp_endpoint) {
                problems.push(ConfigProblem::new("trace.otlp_endpoint", e));
            }
            #[cfg(not(feature = "otel"))]
            problems.push(ConfigProblem::new(
                "trace.otlp_endpoint",
                "is set, but this build has no OpenTelemetry export (cargo feature `otel`)",
            ));
        }
        for (i, h) in self.headers.iter().enumerate() {
            if HeaderName::try_from(h.as_str()).is_err() {
                problems.push(ConfigProblem::new(
                    format!("trace.headers[{i}]"),
                    format!("`{h}` is not a header name"),
                ));
            }
        }
        if let Err(e) = Scrubber::with_config(Pseudonymizer::new(b"check"), &self.scrub) {
            let message = match e {
                TraceError::Scrub { message } => message,
                other => other.to_string(),
            };
            problems.push(ConfigProblem::new("trace.scrub", message));
        }
        if let Some(key) = &self.pseudonym_key {
            match key.resolve() {
                Ok(k) if profile == Profile::Production => {
                    if let Some(weak) = k.weakness(32) {
                        problems.push(ConfigProblem::new(
                            "trace.pseudonym_key",
                            format!("the key in {key} {weak}"),
                        ));
                    }
                }
                Ok(_) | Err(_) if profile == Profile::Development => {}
                Ok(_) => {}
                Err(e) => problems.push(ConfigProblem::new("trace.pseudonym_key", e.to_string())),
            }
        }
    }

    /// The pseudonymizer of this section's key: build it once and hand the
    /// same value to every layer that pseudonymizes, so a user has one
    /// pseudonym in every line. Without a key (or, in development, with one
    /// that can't be read) the key is random, so pseudonyms change with
    /// every restart; that is said once at WARN.
    pub fn pseudonymizer(&self) -> Pseudonymizer {
        match self.pseudonym_key.as_ref().map(SecretRef::resolve) {
            Some(Ok(key)) => Pseudonymizer::new(key.expose()),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "trace.pseudonym_key unavailable; user pseudonyms use a random key and change on restart");
                Pseudonymizer::random()
            }
            None => Pseudonymizer::random(),
        }
    }

    /// The scrubber of this section, pseudonymizing with `pseudonymizer`.
    pub fn scrubber(&self, pseudonymizer: Pseudonymizer) -> Result<Arc<Scrubber>, TraceError> {
        Scrubber::with_config(pseudonymizer, &self.scrub).map(Arc::new)
    }
}

impl TraceLayer {
    /// The trace layer of a `[trace]` section, logging through `scrubber`
    /// (build it once with [`TraceConfig::scrubber`] and share it with the
    /// log writer).
    pub fn from_config(config: &TraceConfig, scrubber: Arc<Scrubber>) -> Result<Self, TraceError> {
        let headers = config
            .headers
            .iter()
            .map(|h| {
                HeaderName::try_from(h.as_str()).map_err(|_| TraceError::Header { name: h.clone() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TraceLayer::new(scrubber)
            .headers(headers)
            .levels(
                config.success_level.into(),
                config.client_error_level.into(),
                config.server_error_level.into(),
            )
            .trust_traceparent(config.trust_traceparent))
    }
}

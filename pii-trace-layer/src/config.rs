//! The `[trace]` config section.

use std::sync::Arc;

use guardrail_core::{
    Pseudonymizer, SecretRef,
    config::{ConfigProblem, Profile},
};
use http::HeaderName;
use serde::Deserialize;
use tracing::Level;

use crate::{ScrubConfig, Scrubber, TraceLayer};

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
        }
    }
}

impl TraceConfig {
    /// Adds every problem of this section to `problems`.
    pub fn validate(&self, profile: Profile, problems: &mut Vec<ConfigProblem>) {
        for (i, h) in self.headers.iter().enumerate() {
            if HeaderName::try_from(h.as_str()).is_err() {
                problems.push(ConfigProblem::new(
                    format!("trace.headers[{i}]"),
                    format!("`{h}` is not a header name"),
                ));
            }
        }
        if let Err(e) = Scrubber::with_config(Pseudonymizer::new(b"check"), &self.scrub) {
            problems.push(ConfigProblem::new("trace.scrub", e));
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

    /// The pseudonymizer for this section's key (random if none), installed
    /// as the process-wide one so every layer's events agree.
    pub fn install_pseudonymizer(&self) -> &'static Pseudonymizer {
        if let Some(key) = self.pseudonym_key.as_ref().and_then(|k| k.resolve().ok()) {
            Pseudonymizer::install_global(Pseudonymizer::new(key.expose()));
        }
        Pseudonymizer::global()
    }

    /// The scrubber of this section, with the process-wide pseudonymizer.
    pub fn scrubber(&self) -> Result<Arc<Scrubber>, String> {
        Scrubber::with_config(self.install_pseudonymizer().clone(), &self.scrub).map(Arc::new)
    }

    /// The trace layer of this section.
    pub fn layer(&self, scrubber: Arc<Scrubber>) -> TraceLayer {
        TraceLayer::new(scrubber)
            .headers(
                self.headers
                    .iter()
                    .filter_map(|h| HeaderName::try_from(h.as_str()).ok()),
            )
            .levels(
                self.success_level.into(),
                self.client_error_level.into(),
                self.server_error_level.into(),
            )
    }
}

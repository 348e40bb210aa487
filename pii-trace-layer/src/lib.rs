//! The PII scrubber, scrubbed request tracing, the structured event API and a tracing-subscriber writer that scrubs every line.
//!
//! - [`Scrubber`]: the PII/secret scrubber (typed replacements, keyed
//!   pseudonyms, Luhn/mod-97 validation, JSON kept valid).
//! - [`TraceLayer`]: a span and exactly one scrubbed `api.request` event per
//!   request.
//! - [`ScrubbingMakeWriter`] / [`init_json_logging`]: every log line
//!   scrubbed before it is written, whoever emitted it.
//! - [`Events`]: typed structured events over the taxonomy.
//! - The `scrub` binary: scrub or `--check` log files in CI.
//! - [`TraceConfig`]: the `[trace]` config section.
//!
//! # Example
//!
//! ```
//! use pii_trace_layer::Scrubber;
//! use guardrail_core::Pseudonymizer;
//!
//! let s = Scrubber::new(Pseudonymizer::new(b"key"));
//! assert_eq!(s.scrub("login failed for ann@example.com"), "login failed for [email]");
//! ```

pub mod batched;
mod config;
mod error;
pub mod events;
pub mod json_format;
#[cfg(feature = "otel")]
pub mod otel;
pub mod scrub;
pub mod trace;
pub mod writer;

pub use batched::{BatchedWriter, BatchedWriterGuard};
pub use config::{LevelName, TraceConfig};
pub use error::TraceError;
pub use events::Events;
pub use json_format::{JsonFields, JsonLines};
pub use scrub::{Class, CustomRule, Finding, LineScrubber, ScrubConfig, Scrubber};
pub use trace::{Trace, TraceLayer};
pub use writer::{
    LogGuard, ScrubbingMakeWriter, ScrubbingWriter, init_json_logging, init_json_logging_with,
};

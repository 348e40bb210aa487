//! The PII scrubber, scrubbed request tracing, the structured event API and a tracing-subscriber writer that scrubs every line.
//!
//! **In progress.** Here: the [`Scrubber`], the scrubbing log writer
//! ([`ScrubbingMakeWriter`], [`init_json_logging`]), the request
//! [`TraceLayer`] and the `scrub` tool. Not yet: the typed event API.
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

#![deny(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod config;
pub mod scrub;
pub mod trace;
pub mod writer;

pub use config::{LevelName, TraceConfig};
pub use scrub::{Class, CustomRule, Finding, ScrubConfig, Scrubber};
pub use trace::{Trace, TraceLayer};
pub use writer::{ScrubbingMakeWriter, ScrubbingWriter, init_json_logging};

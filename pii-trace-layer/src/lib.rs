//! The PII scrubber, scrubbed request tracing, the structured event API and a tracing-subscriber writer that scrubs every line.
//!
//! **In progress.** The [`Scrubber`] is here; the trace layer, the
//! scrubbing log writer, the event API and the `scrub` tool are not yet.
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

pub mod scrub;

pub use scrub::{Class, Finding, Scrubber};

//! What a layer needs to scrub text it logs: the [`Scrub`] trait.
//!
//! The scrubber itself lives in `pii-trace-layer`; layers that log text
//! they did not write (a panic message, a handler's error body) take any
//! `Arc<dyn Scrub>`, so they depend on core alone. The umbrella stack
//! hands them the one scrubber of `[trace]`.
//!
//! # Example
//!
//! ```
//! use std::borrow::Cow;
//! use guardrail_core::Scrub;
//!
//! /// Hides every digit (a stand-in for the real scrubber).
//! struct Digits;
//!
//! impl Scrub for Digits {
//!     fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
//!         if text.bytes().any(|b| b.is_ascii_digit()) {
//!             Cow::Owned(text.chars().map(|c| if c.is_ascii_digit() { '#' } else { c }).collect())
//!         } else {
//!             Cow::Borrowed(text)
//!         }
//!     }
//! }
//!
//! assert_eq!(Digits.scrub("card 4111"), "card ####");
//! ```

use std::borrow::Cow;

/// Removes personal data and secrets from text before it is logged.
pub trait Scrub: Send + Sync + 'static {
    /// `text` with what must not be logged replaced.
    fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str>;
}

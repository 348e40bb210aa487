//! What can go wrong setting up scrubbing and tracing.

/// Why a scrubber, trace layer or log subscriber could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// `[trace.scrub]` is invalid (an unknown class, a custom pattern that
    /// doesn't compile); the message names the setting.
    #[error("trace.scrub: {message}")]
    Scrub {
        /// What is wrong.
        message: String,
    },
    /// A name in `trace.headers` is not an HTTP header name.
    #[error("trace.headers: `{name}` is not a header name")]
    Header {
        /// The name given.
        name: String,
    },
    /// The global log subscriber could not be installed (one already is).
    #[error("cannot install the log subscriber: {message}")]
    Subscriber {
        /// The subscriber's reason.
        message: String,
    },
}

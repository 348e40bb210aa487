//! Why a delivery is refused, and the response that says so.

use guardrail_core::{EventName, Problem, emit};

/// Why a webhook was refused; the reason code of its event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WebhookError {
    /// No signature header.
    MissingSignature,
    /// A signature header that can't be parsed (or several).
    MalformedSignature,
    /// The timestamp is outside the tolerance window.
    StaleTimestamp,
    /// No signature matches any secret.
    BadSignature,
    /// This signature was accepted before.
    Replayed,
    /// The body exceeds the cap.
    TooLarge,
    /// The body could not be read.
    UnreadableBody,
    /// The shared replay store (Redis) failed and the layer is set to
    /// refuse rather than fall back to its local cache: 503, the sender
    /// retries later.
    ReplayStoreUnavailable,
}

impl WebhookError {
    /// The stable reason code.
    pub fn reason(self) -> &'static str {
        match self {
            Self::MissingSignature => "missing_signature",
            Self::MalformedSignature => "malformed_signature",
            Self::StaleTimestamp => "stale_timestamp",
            Self::BadSignature => "bad_signature",
            Self::Replayed => "replayed",
            Self::TooLarge => "too_large",
            Self::UnreadableBody => "unreadable_body",
            Self::ReplayStoreUnavailable => "replay_store_unavailable",
        }
    }

    pub(super) fn problem(self, extensions: &http::Extensions) -> Problem {
        emit!(
            WARN,
            EventName::SECURITY_WEBHOOK_REJECTED,
            from = extensions,
            reason = self.reason(),
        );
        let problem = match self {
            Self::TooLarge => {
                Problem::payload_too_large().detail("The webhook payload is too large.")
            }
            Self::ReplayStoreUnavailable => Problem::service_unavailable(30)
                .detail("The webhook can't be accepted right now. Retry later."),
            _ => Problem::bad_request().detail("Webhook signature verification failed."),
        };
        problem.request_id_from(extensions)
    }
}

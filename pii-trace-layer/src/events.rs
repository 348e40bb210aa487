//! Structured events: the seed's `log_event(event_type, level, user_id,
//! details)` as a typed API over `tracing`.
//!
//! The event name comes from the taxonomy ([`EventName`]: `user.*`,
//! `api.*`, `database.*`, `security.*`, `integration.*`, `flag.*`,
//! `alert.*`); the user is written only as a keyed pseudonym (`usr_…`),
//! never the raw id; details are scrubbed before they are written.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use guardrail_core::{EventName, Pseudonymizer};
//! use pii_trace_layer::{Events, Scrubber};
//! use serde_json::json;
//! use tracing::Level;
//!
//! let events = Events::new(Arc::new(Scrubber::new(Pseudonymizer::new(b"key"))));
//! events.log(
//!     EventName::new("user.password_changed"),
//!     Level::INFO,
//!     Some("8c1f0b7e-user"),
//!     json!({"channel": "email", "sent_to": "ann@example.com"}),
//! );
//! // Written: event=user.password_changed user=usr_… details={"channel":"email","sent_to":"[email]"}
//! ```

use std::{fmt, sync::Arc};

use guardrail_core::{EventName, emit};
use tracing::Level;

use crate::Scrubber;

/// Writes structured events; cheap to clone.
#[derive(Clone)]
pub struct Events {
    scrubber: Arc<Scrubber>,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl Events {
    /// Events scrubbed by `scrubber` (whose pseudonymizer names users).
    pub fn new(scrubber: Arc<Scrubber>) -> Self {
        Self { scrubber }
    }

    /// Writes `event` at `level`: the user as a pseudonym, `details`
    /// (any JSON) scrubbed.
    pub fn log(
        &self,
        event: EventName,
        level: Level,
        user_id: Option<&str>,
        details: serde_json::Value,
    ) {
        let user = user_id.map(|id| self.scrubber.pseudonymizer().user(id));
        let details = match details {
            serde_json::Value::Null => None,
            d => Some(self.scrubber.scrub(&d.to_string()).into_owned()),
        };
        emit!(
            level = level,
            event,
            category = ?event.category(),
            user = user.as_deref(),
            details = details.as_deref(),
        );
    }

    /// `user.{action}` at INFO.
    pub fn user(&self, action: EventName, user_id: &str, details: serde_json::Value) {
        self.log(action, Level::INFO, Some(user_id), details);
    }

    /// `security.{event}` at WARN.
    pub fn security(&self, event: EventName, user_id: Option<&str>, details: serde_json::Value) {
        self.log(event, Level::WARN, user_id, details);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guardrail_core::Pseudonymizer;
    use guardrails_testkit::capture;
    use serde_json::json;

    #[test]
    fn events_carry_the_name_a_pseudonym_and_scrubbed_details() {
        let events = Events::new(Arc::new(Scrubber::new(Pseudonymizer::new(b"k"))));
        let (_guard, logs) = capture::json();
        events.user(
            EventName::new("user.login"),
            "user-8c1f",
            json!({"ip": "203.0.113.9", "mfa": true}),
        );
        events.security(
            EventName::SECURITY_AUTH_FAILED,
            None,
            json!({"reason": "bad_password", "password": "hunter2"}),
        );
        let out = logs.text();
        let lines = logs.lines();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "user.login");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["user"], Pseudonymizer::new(b"k").user("user-8c1f"));
        assert_eq!(lines[1]["event"], "security.auth_failed");
        assert_eq!(lines[1]["level"], "WARN");
        for leaked in ["user-8c1f", "203.0.113.9", "hunter2"] {
            assert!(!out.contains(leaked), "{leaked} in {out}");
        }
        let details: serde_json::Value =
            serde_json::from_str(lines[1]["details"].as_str().unwrap()).unwrap();
        assert_eq!(details["reason"], "bad_password");
    }
}

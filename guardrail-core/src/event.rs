//! The event taxonomy, and the one way guardrail crates emit events.
//!
//! Every decision a layer makes is a `tracing` event whose `event` field is a
//! stable [`EventName`] from the taxonomy: `user.*`, `api.*`, `database.*`,
//! `security.*`, `integration.*`, `flag.*`, `alert.*`, `error.*`. Crates emit through
//! [`emit!`](crate::emit) so the name, target and field layout are the same
//! everywhere, and log pipelines can filter on `event` without parsing
//! messages. Values that identify a person (user ids, IPs) are pseudonymized
//! or masked by the caller before they reach an event.
//!
//! # Example
//!
//! ```
//! use guardrail_core::{emit, event::{Category, EventName}};
//!
//! assert_eq!(EventName::SECURITY_RATE_LIMITED.as_str(), "security.rate_limited");
//! assert_eq!(EventName::SECURITY_RATE_LIMITED.category(), Category::Security);
//!
//! // Names outside the taxonomy don't compile when used as constants.
//! const LOGIN: EventName = EventName::new("user.login");
//! assert_eq!(LOGIN.category(), Category::User);
//!
//! emit!(WARN, EventName::SECURITY_RATE_LIMITED, policy = "per_ip", key = "203.0.113.0/24");
//! ```

use std::fmt;

/// The `tracing` target of every guardrail event.
pub const TARGET: &str = "guardrails";

/// A family of events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Category {
    /// `user.{action}`: things a user did (login, profile change).
    User,
    /// `api.{endpoint}`: one `api.request` per request.
    Api,
    /// `database.{operation}`.
    Database,
    /// `security.{event}`: authentication failures, denials, rate limits.
    Security,
    /// `integration.{service}`: retries, circuit changes of outbound calls.
    Integration,
    /// `flag.{event}`: feature-flag changes.
    Flag,
    /// `alert.{severity}`: `alert.p0` critical, `alert.p1` warning,
    /// `alert.p2` info.
    Alert,
    /// `error.{kind}`: failures the service caught (a handler's panic, a
    /// 5xx body replaced before it reached the client).
    Error,
}

impl Category {
    const ALL: [(Category, &'static str); 8] = [
        (Category::User, "user."),
        (Category::Api, "api."),
        (Category::Database, "database."),
        (Category::Security, "security."),
        (Category::Integration, "integration."),
        (Category::Flag, "flag."),
        (Category::Alert, "alert."),
        (Category::Error, "error."),
    ];
}

/// A stable event name from the taxonomy.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventName(&'static str);

impl EventName {
    /// One per request, written by the trace layer.
    pub const API_REQUEST: Self = Self("api.request");
    /// A request was not answered by its deadline (answered 504 or 503).
    pub const API_DEADLINE_EXCEEDED: Self = Self("api.deadline_exceeded");
    /// A request was refused because too many were in flight.
    pub const API_LOAD_SHED: Self = Self("api.load_shed");
    /// A request body was over its limit (answered 413).
    pub const API_BODY_TOO_LARGE: Self = Self("api.body_too_large");
    /// A request could not be authenticated.
    pub const SECURITY_AUTH_FAILED: Self = Self("security.auth_failed");
    /// An authenticated caller lacks the required level, role or ownership.
    pub const SECURITY_FORBIDDEN: Self = Self("security.forbidden");
    /// A request exceeded a rate limit.
    pub const SECURITY_RATE_LIMITED: Self = Self("security.rate_limited");
    /// A webhook's signature was missing, wrong, stale or replayed.
    pub const SECURITY_WEBHOOK_REJECTED: Self = Self("security.webhook_rejected");
    /// An outbound call is retried.
    pub const INTEGRATION_RETRY: Self = Self("integration.retry");
    /// A circuit breaker opened.
    pub const INTEGRATION_CIRCUIT_OPENED: Self = Self("integration.circuit_opened");
    /// An outbound call (one attempt, or all of them) ran out of time.
    pub const INTEGRATION_TIMEOUT: Self = Self("integration.timeout");
    /// A circuit breaker let its first probe through.
    pub const INTEGRATION_CIRCUIT_HALF_OPEN: Self = Self("integration.circuit_half_open");
    /// A circuit breaker closed again.
    pub const INTEGRATION_CIRCUIT_CLOSED: Self = Self("integration.circuit_closed");
    /// A backend (Redis, JWKS endpoint, flag source) failed.
    pub const INTEGRATION_BACKEND_FAILED: Self = Self("integration.backend_failed");
    /// A backend recovered.
    pub const INTEGRATION_BACKEND_RECOVERED: Self = Self("integration.backend_recovered");
    /// A flag's kill switch was turned on.
    pub const FLAG_KILL_SWITCH_ACTIVATED: Self = Self("flag.kill_switch_activated");
    /// A flag changed.
    pub const FLAG_CHANGED: Self = Self("flag.changed");
    /// A flag source's new definitions were refused (invalid, unreadable);
    /// the previous ones keep serving.
    pub const FLAG_SOURCE_REJECTED: Self = Self("flag.source_rejected");
    /// P0, critical.
    pub const ALERT_P0: Self = Self("alert.p0");
    /// P1, warning.
    pub const ALERT_P1: Self = Self("alert.p1");
    /// P2, info.
    pub const ALERT_P2: Self = Self("alert.p2");
    /// A handler panicked; the client got a 500 problem and the service
    /// kept serving.
    pub const ERROR_PANIC: Self = Self("error.panic");
    /// A handler's 5xx response that was not a problem document was
    /// replaced by one (its body logged, scrubbed and truncated).
    pub const ERROR_RESPONSE_REPLACED: Self = Self("error.response_replaced");

    /// A name of one of the taxonomy's families, e.g. `"user.login"`.
    ///
    /// # Panics
    ///
    /// If `name` is not `<category>.<action>` with a known category and an
    /// action of `[a-z0-9_.]`. Used in a `const`, that is a compile error.
    pub const fn new(name: &'static str) -> Self {
        let bytes = name.as_bytes();
        let mut i = 0;
        while i < Category::ALL.len() {
            let prefix = Category::ALL[i].1.as_bytes();
            if starts_with(bytes, prefix) && valid_action(bytes, prefix.len()) {
                return Self(name);
            }
            i += 1;
        }
        panic!(
            "event names are `<category>.<action>`: user, api, database, security, integration, flag, alert or error"
        );
    }

    /// The name as text.
    pub const fn as_str(self) -> &'static str {
        self.0
    }

    /// The family the event belongs to.
    pub fn category(self) -> Category {
        Category::ALL
            .iter()
            .find(|(_, prefix)| self.0.starts_with(prefix))
            .map(|(c, _)| *c)
            .unwrap_or(Category::Api)
    }
}

const fn starts_with(bytes: &[u8], prefix: &[u8]) -> bool {
    if bytes.len() < prefix.len() {
        return false;
    }
    let mut i = 0;
    while i < prefix.len() {
        if bytes[i] != prefix[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn valid_action(bytes: &[u8], from: usize) -> bool {
    if bytes.len() == from {
        return false;
    }
    let mut i = from;
    while i < bytes.len() {
        let b = bytes[i];
        if !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.') {
            return false;
        }
        i += 1;
    }
    true
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Emits a guardrail event: a `tracing` event with target `guardrails` and
/// an `event` field holding the [`EventName`].
///
/// The level is a `tracing::Level` constant name (`ERROR`, `WARN`, `INFO`,
/// `DEBUG`, `TRACE`), or `level = expr` for a level chosen at run time. The
/// remaining arguments are `tracing` fields and an optional message.
///
/// ```
/// use guardrail_core::{emit, event::EventName};
/// use tracing::Level;
///
/// emit!(INFO, EventName::API_REQUEST, status = 200_u16, latency_ms = 3.2);
/// let level = Level::WARN;
/// emit!(level = level, EventName::API_REQUEST, status = 404_u16);
/// ```
#[macro_export]
macro_rules! emit {
    // `from = extensions`: the request's masked client and request id.
    (level = $level:expr, $name:expr, from = $ext:expr $(, $($rest:tt)+)?) => {{
        let __context = $crate::event::RequestContext::of($ext);
        $crate::emit!(
            level = $level,
            $name,
            client = __context.client(),
            request_id = __context.request_id()
            $(, $($rest)+)?
        )
    }};
    ($level:ident, $name:expr, from = $ext:expr $(, $($rest:tt)+)?) => {{
        let __context = $crate::event::RequestContext::of($ext);
        $crate::emit!(
            $level,
            $name,
            client = __context.client(),
            request_id = __context.request_id()
            $(, $($rest)+)?
        )
    }};
    (level = $level:expr, $name:expr $(, $($rest:tt)+)?) => {{
        use $crate::__private::tracing::Level as __Level;
        let __level: __Level = $level;
        if __level == __Level::ERROR {
            $crate::emit!(ERROR, $name $(, $($rest)+)?);
        } else if __level == __Level::WARN {
            $crate::emit!(WARN, $name $(, $($rest)+)?);
        } else if __level == __Level::INFO {
            $crate::emit!(INFO, $name $(, $($rest)+)?);
        } else if __level == __Level::DEBUG {
            $crate::emit!(DEBUG, $name $(, $($rest)+)?);
        } else {
            $crate::emit!(TRACE, $name $(, $($rest)+)?);
        }
    }};
    ($level:ident, $name:expr $(, $($rest:tt)+)?) => {{
        let __name: $crate::event::EventName = $name;
        $crate::event::count(__name);
        $crate::__private::tracing::event!(
            target: $crate::event::TARGET,
            $crate::__private::tracing::Level::$level,
            event = $crate::event::EventName::as_str(__name),
            $($($rest)+)?
        )
    }};
}

/// The events alert rules count, whatever the log filter lets through.
pub const COUNTED: [EventName; 6] = [
    EventName::SECURITY_AUTH_FAILED,
    EventName::SECURITY_WEBHOOK_REJECTED,
    EventName::SECURITY_RATE_LIMITED,
    EventName::FLAG_KILL_SWITCH_ACTIVATED,
    EventName::INTEGRATION_BACKEND_FAILED,
    EventName::INTEGRATION_CIRCUIT_OPENED,
];

static COUNTS: [std::sync::atomic::AtomicU64; COUNTED.len()] =
    [const { std::sync::atomic::AtomicU64::new(0) }; COUNTED.len()];

/// Counts `name` if it is one of [`COUNTED`]. Called by
/// [`emit!`](crate::emit) for every event, before (and whether or not) a
/// subscriber takes it: a few length comparisons for the others.
#[doc(hidden)]
#[inline]
pub fn count(name: EventName) {
    if let Some(i) = counted_index(name) {
        COUNTS[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How many `name` events this process has emitted since it started
/// (`None` for a name not in [`COUNTED`]): the small hook alert rules read
/// — counts, never log lines, so a log filter (`RUST_LOG=off`) changes
/// nothing.
///
/// ```
/// use guardrail_core::{emit, event::{EventName, emitted}};
///
/// let before = emitted(EventName::SECURITY_WEBHOOK_REJECTED).unwrap();
/// emit!(WARN, EventName::SECURITY_WEBHOOK_REJECTED, reason = "bad_signature");
/// assert!(emitted(EventName::SECURITY_WEBHOOK_REJECTED).unwrap() > before);
/// assert_eq!(emitted(EventName::API_REQUEST), None);
/// ```
pub fn emitted(name: EventName) -> Option<u64> {
    counted_index(name).map(|i| COUNTS[i].load(std::sync::atomic::Ordering::Relaxed))
}

/// Every [`COUNTED`] event's count so far, in that order.
pub fn counts() -> [u64; COUNTED.len()] {
    std::array::from_fn(|i| COUNTS[i].load(std::sync::atomic::Ordering::Relaxed))
}

/// Where `name` is in [`COUNTED`] (and in [`counts`]), if it is counted.
pub fn counted_index(name: EventName) -> Option<usize> {
    let name = name.as_str();
    COUNTED
        .iter()
        .position(|counted| counted.as_str().len() == name.len() && counted.as_str() == name)
}

/// The fields every event about a request carries: the client's masked
/// address and the request id, read from the request's extensions. Written
/// by [`emit!`](crate::emit)`(LEVEL, NAME, from = extensions, …)`, so no
/// layer spells them out by hand.
///
/// ```
/// use guardrail_core::{ClientIp, EventName, emit};
///
/// let mut extensions = http::Extensions::new();
/// extensions.insert(ClientIp::new("203.0.113.9".parse().unwrap()));
/// emit!(WARN, EventName::SECURITY_FORBIDDEN, from = &extensions, reason = "not_owner");
/// let context = guardrail_core::event::RequestContext::of(&extensions);
/// assert_eq!(context.client().unwrap().to_string(), "203.0.113.0/24");
/// assert!(context.request_id().is_none());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct RequestContext<'a> {
    client: Option<&'a crate::ClientIp>,
    request_id: Option<&'a crate::RequestId>,
}

impl<'a> RequestContext<'a> {
    /// The context of a request with these extensions.
    pub fn of(extensions: &'a http::Extensions) -> Self {
        Self {
            client: extensions.get(),
            request_id: extensions.get(),
        }
    }

    /// The client's masked address (`/24`, `/48`), never the address.
    pub fn client(&self) -> Option<tracing::field::DisplayValue<ipnet::IpNet>> {
        self.client.map(|c| tracing::field::display(c.masked()))
    }

    /// The request id.
    pub fn request_id(&self) -> Option<tracing::field::DisplayValue<&'a crate::RequestId>> {
        self.request_id.map(tracing::field::display)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guardrails_testkit::capture;

    #[test]
    fn emitted_events_carry_name_target_and_fields() {
        let (_guard, logs) = capture::json_nested();
        emit!(WARN, EventName::SECURITY_AUTH_FAILED, reason = "expired");
        emit!(
            level = tracing::Level::ERROR,
            EventName::API_REQUEST,
            status = 503_u16,
            "upstream down"
        );
        let lines = logs.lines();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["target"], "guardrails");
        assert_eq!(lines[0]["level"], "WARN");
        assert_eq!(lines[0]["fields"]["event"], "security.auth_failed");
        assert_eq!(lines[0]["fields"]["reason"], "expired");
        assert_eq!(lines[1]["level"], "ERROR");
        assert_eq!(lines[1]["fields"]["event"], "api.request");
        assert_eq!(lines[1]["fields"]["status"], 503);
        assert_eq!(lines[1]["fields"]["message"], "upstream down");
    }

    #[test]
    fn every_predefined_name_belongs_to_its_category() {
        for (name, cat) in [
            (EventName::API_REQUEST, Category::Api),
            (EventName::SECURITY_WEBHOOK_REJECTED, Category::Security),
            (EventName::INTEGRATION_CIRCUIT_OPENED, Category::Integration),
            (EventName::FLAG_KILL_SWITCH_ACTIVATED, Category::Flag),
            (EventName::ALERT_P0, Category::Alert),
            (EventName::ERROR_PANIC, Category::Error),
            (EventName::new("database.insert"), Category::Database),
        ] {
            assert_eq!(name.category(), cat, "{name}");
            assert_eq!(EventName::new(name.as_str()), name);
        }
    }

    #[test]
    #[should_panic(expected = "event names are")]
    fn names_outside_the_taxonomy_are_refused() {
        let _ = EventName::new(String::from("payments.charged").leak());
    }

    #[test]
    #[should_panic(expected = "event names are")]
    fn empty_or_uppercase_actions_are_refused() {
        let _ = EventName::new(String::from("user.Login").leak());
    }
}

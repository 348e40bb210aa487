//! The names of every metric the guardrail layers record, in one place like
//! the [event names](crate::EventName), so dashboards and alert rules have
//! one list to follow.
//!
//! # Example
//!
//! ```
//! use guardrail_core::metric;
//!
//! assert_eq!(metric::RATELIMIT_DECISIONS_TOTAL, "guardrails_ratelimit_decisions_total");
//! assert!(metric::ALL.iter().all(|name| name.starts_with("guardrails_")));
//! ```

/// Rate-limit decisions, by `policy` and `outcome` (`allowed`, `limited`,
/// `shadow_limited`).
pub const RATELIMIT_DECISIONS_TOTAL: &str = "guardrails_ratelimit_decisions_total";
/// Keys held in memory, by `policy`.
pub const RATELIMIT_KEYS: &str = "guardrails_ratelimit_keys";
/// Failed calls to a rate-limit backend, by `backend`.
pub const RATELIMIT_BACKEND_ERRORS_TOTAL: &str = "guardrails_ratelimit_backend_errors_total";

/// Log lines dropped because the log writer's queue was full (never WARN
/// or above).
pub const LOG_LINES_DROPPED_TOTAL: &str = "guardrails_log_lines_dropped_total";

/// Requests refused by load shedding (`max_in_flight` reached).
pub const LOAD_SHED_TOTAL: &str = "guardrails_load_shed_total";
/// Requests in flight through the load shedder.
pub const IN_FLIGHT_REQUESTS: &str = "guardrails_in_flight_requests";
/// Requests answered 504 (or 503) at their deadline.
pub const DEADLINE_EXCEEDED_TOTAL: &str = "guardrails_deadline_exceeded_total";
/// Requests refused for a body over the limit.
pub const BODY_LIMIT_REJECTED_TOTAL: &str = "guardrails_body_limit_rejected_total";
/// Outbound calls in flight through bulkheads.
pub const OUTBOUND_IN_FLIGHT: &str = "guardrails_outbound_in_flight";
/// Outbound calls that failed at the upstream after their retries, by
/// `upstream` and `reason` (`timeout`, `error`, `status`).
pub const OUTBOUND_FAILURES_TOTAL: &str = "guardrails_outbound_failures_total";
/// Flag evaluations, by `flag` and `outcome` (`on`, `off`): adoption.
pub const FLAG_EVALUATIONS_TOTAL: &str = "guardrails_flag_evaluations_total";
/// 1 while a flag store's source can't be reached (serving its last
/// good set: STALE), else 0.
pub const FLAG_SOURCE_STALE: &str = "guardrails_flag_source_stale";
/// Handler panics caught by the error boundary.
pub const PANICS_TOTAL: &str = "guardrails_panics_total";

/// Every metric name above.
pub const ALL: &[&str] = &[
    BODY_LIMIT_REJECTED_TOTAL,
    DEADLINE_EXCEEDED_TOTAL,
    IN_FLIGHT_REQUESTS,
    LOAD_SHED_TOTAL,
    OUTBOUND_IN_FLIGHT,
    OUTBOUND_FAILURES_TOTAL,
    FLAG_EVALUATIONS_TOTAL,
    FLAG_SOURCE_STALE,
    PANICS_TOTAL,
    LOG_LINES_DROPPED_TOTAL,
    RATELIMIT_DECISIONS_TOTAL,
    RATELIMIT_KEYS,
    RATELIMIT_BACKEND_ERRORS_TOTAL,
];

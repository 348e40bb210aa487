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

/// Every metric name above.
pub const ALL: &[&str] = &[
    LOG_LINES_DROPPED_TOTAL,
    RATELIMIT_DECISIONS_TOTAL,
    RATELIMIT_KEYS,
    RATELIMIT_BACKEND_ERRORS_TOTAL,
];

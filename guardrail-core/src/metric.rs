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
//! assert!(metric::ALL.iter().all(|m| m.name.starts_with("guardrails_")));
//! let keys = metric::ALL.iter().find(|m| m.name == metric::RATELIMIT_KEYS).unwrap();
//! assert_eq!(keys.kind, metric::Kind::Gauge);
//! assert!(!keys.help.is_empty());
//! ```
//!
//! An exporter describes them from [`ALL`] (`monitor_layer::prometheus::install`
//! does), so each carries its `# HELP` line.

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
/// A circuit breaker's state, by `upstream`: 0 closed, 1 half-open, 2
/// open (or forced open).
pub const CIRCUIT_STATE: &str = "guardrails_circuit_state";
/// The events alert rules watch ([`event::COUNTED`](crate::event::COUNTED)),
/// by `event`, as counted when emitted; published at each scrape by the
/// monitor layer's Prometheus endpoint.
pub const EVENTS_TOTAL: &str = "guardrails_events_total";
/// Flag evaluations, by `flag` and `outcome` (`on`, `off`): adoption.
pub const FLAG_EVALUATIONS_TOTAL: &str = "guardrails_flag_evaluations_total";
/// 1 while a flag store's source can't be reached (serving its last
/// good set: STALE), else 0.
pub const FLAG_SOURCE_STALE: &str = "guardrails_flag_source_stale";
/// A database pool's connections, by `pool` and `state` (`idle`,
/// `in_use`).
pub const DB_POOL_CONNECTIONS: &str = "guardrails_db_pool_connections";
/// A database pool's maximum size, by `pool`.
pub const DB_POOL_MAX_CONNECTIONS: &str = "guardrails_db_pool_max_connections";
/// How long the latest probe waited for a connection, by `pool`.
pub const DB_POOL_ACQUIRE_WAIT_SECONDS: &str = "guardrails_db_pool_acquire_wait_seconds";
/// Probes that got no connection within their timeout, by `pool`.
pub const DB_POOL_ACQUIRE_TIMEOUTS_TOTAL: &str = "guardrails_db_pool_acquire_timeouts_total";
/// Handler panics caught by the error boundary.
pub const PANICS_TOTAL: &str = "guardrails_panics_total";

/// What a metric is, for its `# TYPE` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// A metric's name, kind and help text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metric {
    /// The name, as exported.
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// One line for `# HELP`.
    pub help: &'static str,
}

const fn counter(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        kind: Kind::Counter,
        help,
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        kind: Kind::Gauge,
        help,
    }
}

/// Every metric above, described.
pub const ALL: &[Metric] = &[
    counter(
        BODY_LIMIT_REJECTED_TOTAL,
        "Requests refused for a body over the limit.",
    ),
    counter(
        DEADLINE_EXCEEDED_TOTAL,
        "Requests answered at their deadline.",
    ),
    gauge(
        IN_FLIGHT_REQUESTS,
        "Requests in flight through the load shedder.",
    ),
    counter(LOAD_SHED_TOTAL, "Requests refused by load shedding."),
    gauge(
        OUTBOUND_IN_FLIGHT,
        "Outbound calls in flight through bulkheads.",
    ),
    counter(
        OUTBOUND_FAILURES_TOTAL,
        "Outbound calls that failed at the upstream after their retries, by upstream and reason.",
    ),
    gauge(
        CIRCUIT_STATE,
        "A circuit breaker's state, by upstream: 0 closed, 1 half-open, 2 open.",
    ),
    counter(
        EVENTS_TOTAL,
        "Security, flag and upstream events as the layers emit them, by event.",
    ),
    counter(
        FLAG_EVALUATIONS_TOTAL,
        "Feature-flag evaluations, by flag and outcome.",
    ),
    gauge(
        FLAG_SOURCE_STALE,
        "1 while a flag store serves its last good set (source unreachable).",
    ),
    gauge(
        DB_POOL_CONNECTIONS,
        "A database pool's connections, by pool and state (idle, in_use).",
    ),
    gauge(
        DB_POOL_MAX_CONNECTIONS,
        "A database pool's maximum size, by pool.",
    ),
    gauge(
        DB_POOL_ACQUIRE_WAIT_SECONDS,
        "How long the latest probe waited for a pool connection, in seconds, by pool.",
    ),
    counter(
        DB_POOL_ACQUIRE_TIMEOUTS_TOTAL,
        "Probes that got no pool connection within their timeout, by pool.",
    ),
    counter(PANICS_TOTAL, "Handler panics caught by the error boundary."),
    counter(
        LOG_LINES_DROPPED_TOTAL,
        "Log lines dropped because the writer's queue was full.",
    ),
    counter(
        RATELIMIT_DECISIONS_TOTAL,
        "Rate-limit decisions, by policy and outcome.",
    ),
    gauge(RATELIMIT_KEYS, "Rate-limit keys held in memory, by policy."),
    counter(
        RATELIMIT_BACKEND_ERRORS_TOTAL,
        "Failed calls to a rate-limit backend, by backend.",
    ),
];

//! The config sections of the inbound guards: `[timeout]`,
//! `[error_boundary]`, `[body_limit]` and `[load_shed]`.

use std::time::Duration;

use guardrail_core::config::{ConfigProblem, Profile};
use serde::Deserialize;

/// The default request deadline.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The default request body limit: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
/// The largest body limit a config may set: 1 GiB.
const MAX_BODY_LIMIT: u64 = 1024 * 1024 * 1024;

/// `[timeout]`: the inbound request deadline.
///
/// ```
/// let cfg = timeout_retry_layer::TimeoutConfig::default();
/// assert_eq!(cfg.request, std::time::Duration::from_secs(10));
/// assert_eq!(cfg.status, 504);
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct TimeoutConfig {
    /// How long a request may take (default `"10s"`).
    #[serde(with = "humantime_serde")]
    pub request: Duration,
    /// The status answered at the deadline: 504 (default) or 503.
    pub status: u16,
    /// Overrides for path prefixes (`[[timeout.routes]]`); the longest
    /// matching prefix wins.
    pub routes: Vec<TimeoutRoute>,
}

/// `[[timeout.routes]]`: a deadline for the paths under `prefix`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TimeoutRoute {
    /// A path prefix, e.g. `"/api/reports/"`.
    pub prefix: String,
    /// How long requests there may take.
    #[serde(with = "humantime_serde")]
    pub request: Duration,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        Self {
            request: DEFAULT_REQUEST_TIMEOUT,
            status: 504,
            routes: Vec::new(),
        }
    }
}

/// Longest deadline accepted: a request held open longer is a resource
/// leak, not a deadline.
const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);

impl TimeoutConfig {
    /// Adds every problem of this section to `problems`.
    pub fn validate(&self, problems: &mut Vec<ConfigProblem>) {
        let check = |path: String, d: Duration, problems: &mut Vec<ConfigProblem>| {
            if d.is_zero() || d > MAX_REQUEST_TIMEOUT {
                problems.push(ConfigProblem::new(
                    path,
                    "must be more than 0s and at most 1h",
                ));
            }
        };
        check("timeout.request".into(), self.request, problems);
        if !matches!(self.status, 503 | 504) {
            problems.push(ConfigProblem::new(
                "timeout.status",
                "must be 504 (Gateway Timeout) or 503 (Service Unavailable)",
            ));
        }
        let prefixes = self.routes.iter().map(|r| r.prefix.as_str());
        check_prefixes("timeout.routes", prefixes, problems);
        for (i, route) in self.routes.iter().enumerate() {
            check(
                format!("timeout.routes[{i}].request"),
                route.request,
                problems,
            );
        }
    }
}

/// `[error_boundary]`: what happens to a handler's panic or 5xx.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ErrorBoundaryConfig {
    /// Replace a handler's 5xx response that is not problem+json by a
    /// problem with the same status, logging its body scrubbed (default:
    /// on in production, off in development, where the handler's own
    /// error text helps).
    pub sanitize_5xx: Option<bool>,
}

impl ErrorBoundaryConfig {
    /// Whether 5xx bodies are replaced under `profile`.
    pub fn sanitize_5xx_for(&self, profile: Profile) -> bool {
        self.sanitize_5xx.unwrap_or(profile == Profile::Production)
    }
}

/// `[body_limit]`: the largest request body.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct BodyLimitConfig {
    /// Bytes a request body may carry (default 1 MiB).
    pub max_bytes: u64,
    /// Overrides for path prefixes (`[[body_limit.routes]]`), e.g. the
    /// webhook route; the longest matching prefix wins.
    pub routes: Vec<BodyLimitRoute>,
}

/// `[[body_limit.routes]]`: a limit for the paths under `prefix`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BodyLimitRoute {
    /// A path prefix, e.g. `"/api/webhooks/"`.
    pub prefix: String,
    /// Bytes a request body there may carry.
    pub max_bytes: u64,
}

impl Default for BodyLimitConfig {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BODY_BYTES,
            routes: Vec::new(),
        }
    }
}

impl BodyLimitConfig {
    /// Adds every problem of this section to `problems`.
    pub fn validate(&self, problems: &mut Vec<ConfigProblem>) {
        // Zero is allowed: a route that takes no body at all. Above 1 GiB
        // a reader that buffers (webhook verification) could be made to
        // hold more memory than a replica has.
        let check = |path: String, max: u64, problems: &mut Vec<ConfigProblem>| {
            if max > MAX_BODY_LIMIT {
                problems.push(ConfigProblem::new(
                    path,
                    "must be at most 1073741824 (1 GiB)",
                ));
            }
        };
        check("body_limit.max_bytes".into(), self.max_bytes, problems);
        let prefixes = self.routes.iter().map(|r| r.prefix.as_str());
        check_prefixes("body_limit.routes", prefixes, problems);
        for (i, route) in self.routes.iter().enumerate() {
            check(
                format!("body_limit.routes[{i}].max_bytes"),
                route.max_bytes,
                problems,
            );
        }
    }
}

/// `[load_shed]`: refuse requests beyond a number in flight.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct LoadShedConfig {
    /// Requests in flight at most; more are answered 503 with
    /// `Retry-After: 1` at once, never queued. Unset (the default): off.
    pub max_in_flight: Option<usize>,
    /// Paths never counted nor shed (health probes): exact, or
    /// `/prefix/*` for a path and everything under it.
    pub exempt: Vec<String>,
}

impl LoadShedConfig {
    /// Adds every problem of this section to `problems`.
    pub fn validate(&self, problems: &mut Vec<ConfigProblem>) {
        if self.max_in_flight == Some(0) {
            problems.push(ConfigProblem::new(
                "load_shed.max_in_flight",
                "must be at least 1 (leave it unset to turn load shedding off)",
            ));
        }
        for (i, path) in self.exempt.iter().enumerate() {
            if !path.starts_with('/') || path == "/*" {
                problems.push(ConfigProblem::new(
                    format!("load_shed.exempt[{i}]"),
                    "must be a path (`/api/health`) or `/prefix/*`, not `/*`",
                ));
            }
        }
    }
}

/// Prefixes start with `/` and appear once.
fn check_prefixes<'a>(
    section: &str,
    prefixes: impl Iterator<Item = &'a str>,
    problems: &mut Vec<ConfigProblem>,
) {
    let mut seen = Vec::new();
    for (i, prefix) in prefixes.enumerate() {
        if !prefix.starts_with('/') {
            problems.push(ConfigProblem::new(
                format!("{section}[{i}].prefix"),
                "must be a path prefix starting with `/`",
            ));
        } else if seen.contains(&prefix) {
            problems.push(ConfigProblem::new(
                format!("{section}[{i}].prefix"),
                "appears twice; give each prefix one entry",
            ));
        }
        seen.push(prefix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let mut problems = Vec::new();
        let timeout = TimeoutConfig {
            request: Duration::ZERO,
            status: 500,
            routes: vec![
                TimeoutRoute {
                    prefix: "api".into(),
                    request: Duration::from_secs(1),
                },
                TimeoutRoute {
                    prefix: "/x".into(),
                    request: Duration::from_secs(7200),
                },
                TimeoutRoute {
                    prefix: "/x".into(),
                    request: Duration::from_secs(1),
                },
            ],
        };
        timeout.validate(&mut problems);
        LoadShedConfig {
            max_in_flight: Some(0),
            exempt: vec!["/*".into()],
        }
        .validate(&mut problems);
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "timeout.request",
                "timeout.status",
                "timeout.routes[0].prefix",
                "timeout.routes[2].prefix",
                "timeout.routes[1].request",
                "load_shed.max_in_flight",
                "load_shed.exempt[0]"
            ]
        );
    }

    #[test]
    fn defaults_are_valid_and_sanitizing_follows_the_profile() {
        let mut problems = Vec::new();
        TimeoutConfig::default().validate(&mut problems);
        BodyLimitConfig::default().validate(&mut problems);
        LoadShedConfig::default().validate(&mut problems);
        assert!(problems.is_empty());
        let boundary = ErrorBoundaryConfig::default();
        assert!(boundary.sanitize_5xx_for(Profile::Production));
        assert!(!boundary.sanitize_5xx_for(Profile::Development));
    }
}

//! `[upstreams.<name>]`: one outbound stack per upstream, from config.

use std::time::Duration;

use guardrail_core::config::{ConfigProblem, Profile};
use http::Uri;
use serde::Deserialize;
use tower_layer::Layer;

use super::{
    Bulkhead, BulkheadLayer, CheckStatus, CheckStatusLayer, CircuitBreaker, CircuitBreakerLayer,
    ClientErrors, PropagateTraceContext, PropagateTraceContextLayer, Retry, RetryLayer,
};

/// `[upstreams.<name>]`: where an upstream is and how calls to it are
/// guarded. Every key but `url` has a default.
///
/// ```
/// use timeout_retry_layer::UpstreamConfig;
///
/// // `[upstreams.weather]` in the config file; any serde format reads it.
/// let upstream: UpstreamConfig = serde_json::from_value(serde_json::json!({
///     "url": "https://api.weather.example/v1/now",
///     "timeout": "1s",
///     "retry": { "attempts": 2 },
///     "circuit": { "window": "30s" },
/// })).unwrap();
/// let mut problems = Vec::new();
/// upstream.validate("weather", guardrail_core::config::Profile::Production, &mut problems);
/// assert!(problems.is_empty(), "{problems:?}");
/// let layers = upstream.layers("weather"); // status check → bulkhead → retry → circuit breaker
/// assert_eq!(layers.circuit.state(), timeout_retry_layer::CircuitState::Closed);
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct UpstreamConfig {
    /// The upstream's URL (https in production unless the host is
    /// loopback).
    pub url: String,
    /// How long one attempt may take (default `"2s"`).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// How long all attempts and waits may take together (default `"5s"`;
    /// the inbound request's deadline, when earlier, wins).
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// Calls in flight at most; more are refused (default 64).
    pub max_concurrent: usize,
    /// What the caller gets when the upstream answers a 4xx other than
    /// 429: `"bad_gateway"` (502, default) or `"forward"` (its status).
    pub client_errors: ClientErrors,
    /// Whether calls carry the current request's W3C trace context
    /// (`traceparent`, `tracestate`; default true). Turn it off for a
    /// third party that should not see your trace ids or your callers'
    /// `tracestate`.
    pub propagate_trace: bool,
    /// `[upstreams.<name>.retry]`.
    pub retry: UpstreamRetry,
    /// `[upstreams.<name>.circuit]`.
    pub circuit: UpstreamCircuit,
}

/// `[upstreams.<name>.retry]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct UpstreamRetry {
    /// Attempts in all, the first included (default 3).
    pub attempts: u32,
    /// Backoff base (default `"100ms"`).
    #[serde(with = "humantime_serde")]
    pub base: Duration,
    /// Backoff cap (default `"2s"`).
    #[serde(with = "humantime_serde")]
    pub cap: Duration,
    /// Longest `Retry-After` waited for (default `"30s"`).
    #[serde(with = "humantime_serde")]
    pub retry_after_cap: Duration,
    /// Retries as a share of requests (default 0.2).
    pub budget_ratio: f64,
    /// Retries always allowed per second (default 10).
    pub budget_min_per_s: u32,
}

/// `[upstreams.<name>.circuit]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct UpstreamCircuit {
    /// A number of calls (`20`) or a duration (`"30s"`); default 20.
    pub window: CircuitWindow,
    /// Failure rate that opens it, in (0, 1] (default 0.5).
    pub failure_rate: f64,
    /// Slow-call rate that opens it, in (0, 1]; unset: slow calls are not
    /// looked for.
    pub slow_call_rate: Option<f64>,
    /// A call this long is slow (default `"5s"`).
    #[serde(with = "humantime_serde")]
    pub slow_call: Duration,
    /// Calls in the window before it can open (default 10).
    pub min_calls: u32,
    /// How long it stays open (default `"30s"`).
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
    /// Probes let through half-open (default 3).
    pub half_open_probes: u32,
    /// How long a probe may take (default `"5s"`).
    #[serde(with = "humantime_serde")]
    pub probe_timeout: Duration,
}

/// A breaker's window: the last N calls, or the calls of a duration.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(untagged)]
pub enum CircuitWindow {
    /// The last N calls.
    Calls(u32),
    /// The calls of the last duration.
    Duration(#[serde(with = "humantime_serde")] Duration),
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(5),
            max_concurrent: 64,
            client_errors: ClientErrors::default(),
            propagate_trace: true,
            retry: UpstreamRetry::default(),
            circuit: UpstreamCircuit::default(),
        }
    }
}

impl Default for UpstreamRetry {
    fn default() -> Self {
        Self {
            attempts: 3,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
            retry_after_cap: Duration::from_secs(30),
            budget_ratio: 0.2,
            budget_min_per_s: 10,
        }
    }
}

impl Default for UpstreamCircuit {
    fn default() -> Self {
        Self {
            window: CircuitWindow::Calls(20),
            failure_rate: 0.5,
            slow_call_rate: None,
            slow_call: Duration::from_secs(5),
            min_calls: 10,
            open_for: Duration::from_secs(30),
            half_open_probes: 3,
            probe_timeout: Duration::from_secs(5),
        }
    }
}

/// The layers of one upstream, outermost first; as a layer itself it
/// stacks them: [`CheckStatus`] → [`Bulkhead`] → [`Retry`] →
/// [`CircuitBreaker`] → the client (every attempt passes the breaker; a
/// breaker refusal is not retried; the final answer's status is checked
/// once).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct UpstreamLayers {
    /// The current request's trace context on each call (W3C
    /// `traceparent`).
    pub trace: PropagateTraceContextLayer,
    /// A failure status becomes an error; failed calls are reported.
    pub check: CheckStatusLayer,
    /// At most `max_concurrent` calls at once.
    pub bulkhead: BulkheadLayer,
    /// Retries, per-try timeout and the overall deadline.
    pub retry: RetryLayer,
    /// The circuit breaker (its state, health source and operator
    /// controls).
    pub circuit: CircuitBreakerLayer,
}

impl<S> Layer<S> for UpstreamLayers {
    type Service = PropagateTraceContext<CheckStatus<Bulkhead<Retry<CircuitBreaker<S>>>>>;

    fn layer(&self, inner: S) -> Self::Service {
        let guarded = self
            .bulkhead
            .layer(self.retry.layer(self.circuit.layer(inner)));
        self.trace.layer(self.check.layer(guarded))
    }
}

impl UpstreamConfig {
    /// The layers for the upstream `name` (used in events and the health
    /// report).
    pub fn layers(&self, name: &str) -> UpstreamLayers {
        let r = &self.retry;
        let c = &self.circuit;
        let circuit = CircuitBreakerLayer::new(name)
            .failure_rate(c.failure_rate)
            .slow_call(c.slow_call)
            .min_calls(c.min_calls)
            .open_for(c.open_for)
            .half_open_probes(c.half_open_probes)
            .probe_timeout(c.probe_timeout);
        let circuit = match c.window {
            CircuitWindow::Calls(n) => circuit.window_calls(n),
            CircuitWindow::Duration(d) => circuit.window_duration(d),
        };
        let circuit = match c.slow_call_rate {
            Some(rate) => circuit.slow_call_rate(rate),
            None => circuit,
        };
        UpstreamLayers {
            trace: PropagateTraceContextLayer::new().enabled(self.propagate_trace),
            check: CheckStatusLayer::new(name).client_errors(self.client_errors),
            bulkhead: BulkheadLayer::new(self.max_concurrent),
            retry: RetryLayer::new(name)
                .attempts(r.attempts)
                .backoff(r.base, r.cap)
                .retry_after_cap(r.retry_after_cap)
                .budget(r.budget_ratio, r.budget_min_per_s)
                .per_try_timeout(self.timeout)
                .deadline(self.deadline),
            circuit,
        }
    }

    /// Adds every problem of `[upstreams.<name>]` to `problems`.
    pub fn validate(&self, name: &str, profile: Profile, problems: &mut Vec<ConfigProblem>) {
        let key = |k: &str| format!("upstreams.{name}.{k}");
        let mut problem = |k: &str, msg: &str| problems.push(ConfigProblem::new(key(k), msg));
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            problem("", "upstream names are [a-z0-9_-]");
        }
        match self.url.parse::<Uri>() {
            Ok(uri)
                if uri.host().is_some() && matches!(uri.scheme_str(), Some("http" | "https")) =>
            {
                let loopback = matches!(
                    uri.host(),
                    Some("localhost" | "127.0.0.1" | "[::1]" | "::1")
                );
                if profile == Profile::Production && uri.scheme_str() != Some("https") && !loopback
                {
                    problem(
                        "url",
                        "must be https in production (unless the host is loopback)",
                    );
                }
            }
            _ => problem("url", "must be an http(s) URL with a host"),
        }
        for (k, d) in [
            ("timeout", self.timeout),
            ("deadline", self.deadline),
            ("retry.base", self.retry.base),
            ("retry.cap", self.retry.cap),
            ("circuit.slow_call", self.circuit.slow_call),
            ("circuit.open_for", self.circuit.open_for),
            ("circuit.probe_timeout", self.circuit.probe_timeout),
        ] {
            if d.is_zero() {
                problem(k, "must be more than 0s");
            }
        }
        if let CircuitWindow::Duration(d) = self.circuit.window
            && d.is_zero()
        {
            problem(
                "circuit.window",
                "must be more than 0s (or a number of calls)",
            );
        }
        if matches!(self.circuit.window, CircuitWindow::Calls(0)) {
            problem("circuit.window", "must be at least 1 call (or a duration)");
        }
        if self.max_concurrent == 0 {
            problem("max_concurrent", "must be at least 1");
        }
        if self.retry.attempts == 0 {
            problem("retry.attempts", "must be at least 1 (1: no retries)");
        }
        if !(0.0..=1.0).contains(&self.retry.budget_ratio) {
            problem("retry.budget_ratio", "must be between 0 and 1");
        }
        let rate_ok = |r: f64| r > 0.0 && r <= 1.0;
        if !rate_ok(self.circuit.failure_rate) {
            problem("circuit.failure_rate", "must be in (0, 1]");
        }
        if self.circuit.slow_call_rate.is_some_and(|r| !rate_ok(r)) {
            problem("circuit.slow_call_rate", "must be in (0, 1]");
        }
        if self.circuit.min_calls == 0 || self.circuit.half_open_probes == 0 {
            problem(
                "circuit",
                "min_calls and half_open_probes must be at least 1",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: serde_json::Value) -> UpstreamConfig {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn every_bad_value_is_reported_with_its_key() {
        let upstream = parse(serde_json::json!({
            "url": "ftp://weather",
            "timeout": "0s",
            "max_concurrent": 0,
            "retry": {"attempts": 0, "budget_ratio": 2.0},
            "circuit": {"window": 0, "failure_rate": 0.0, "slow_call_rate": 1.5},
        }));
        let mut problems = Vec::new();
        upstream.validate("Weather!", Profile::Development, &mut problems);
        let keys: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            keys,
            [
                "upstreams.Weather!.",
                "upstreams.Weather!.url",
                "upstreams.Weather!.timeout",
                "upstreams.Weather!.circuit.window",
                "upstreams.Weather!.max_concurrent",
                "upstreams.Weather!.retry.attempts",
                "upstreams.Weather!.retry.budget_ratio",
                "upstreams.Weather!.circuit.failure_rate",
                "upstreams.Weather!.circuit.slow_call_rate",
            ]
        );
    }

    #[test]
    fn production_wants_https_except_on_loopback() {
        let check = |url: &str, profile| {
            let mut problems = Vec::new();
            parse(serde_json::json!({ "url": url })).validate("weather", profile, &mut problems);
            problems.len()
        };
        assert_eq!(
            check("http://api.weather.example/now", Profile::Production),
            1
        );
        assert_eq!(
            check("http://api.weather.example/now", Profile::Development),
            0
        );
        assert_eq!(
            check("http://127.0.0.1:18089/weather", Profile::Production),
            0
        );
        assert_eq!(
            check("https://api.weather.example/now", Profile::Production),
            0
        );
        assert_eq!(check("", Profile::Development), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_layers_stack_bulkhead_retry_and_breaker_in_that_order() {
        use std::sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        };

        use bytes::Bytes;
        use http::{Request, Response, StatusCode};
        use http_body_util::Full;
        use tower::{ServiceExt, service_fn};

        let (_guard, _logs) = guardrails_testkit::capture::json();
        let upstream = parse(serde_json::json!({
            "url": "https://x.example",
            "retry": {"attempts": 2},
            "circuit": {"window": 4, "min_calls": 4, "failure_rate": 0.5},
        }));
        let layers = upstream.layers("x");
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&calls);
        let client = layers.layer(service_fn(
            move |_req: Request<super::super::ReplayBody<Full<Bytes>>>| {
                seen.fetch_add(1, Ordering::SeqCst);
                async {
                    let mut res = Response::new(());
                    *res.status_mut() = StatusCode::BAD_GATEWAY;
                    Ok::<_, std::io::Error>(res)
                }
            },
        ));
        let get = || {
            Request::get("https://x.example/")
                .body(Full::new(Bytes::new()))
                .unwrap()
        };
        // Two calls, two attempts each: four failures the breaker saw, and
        // the last answer's status checked once per call.
        for _ in 0..2 {
            let err = client.clone().oneshot(get()).await.unwrap_err();
            assert!(
                matches!(&err, super::super::OutboundError::Status(s) if s.status() == 502),
                "{err:?}"
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!(layers.circuit.state(), super::super::CircuitState::Open);
        // Open: refused without a call, and not retried.
        let err = client.oneshot(get()).await.unwrap_err();
        assert!(
            matches!(err, super::super::OutboundError::CircuitOpen { .. }),
            "{err:?}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn client_errors_are_bad_gateway_or_forward() {
        let default = parse(serde_json::json!({"url": "https://x.example"}));
        assert_eq!(default.client_errors, ClientErrors::BadGateway);
        let forward =
            parse(serde_json::json!({"url": "https://x.example", "client_errors": "forward"}));
        assert_eq!(forward.client_errors, ClientErrors::Forward);
        let wrong = serde_json::from_value::<UpstreamConfig>(
            serde_json::json!({"url": "https://x.example", "client_errors": "pass"}),
        )
        .unwrap_err();
        assert!(wrong.to_string().contains("bad_gateway"), "{wrong}");
    }

    #[test]
    fn windows_are_calls_or_durations() {
        let calls =
            parse(serde_json::json!({"url": "https://x.example", "circuit": {"window": 50}}));
        assert!(matches!(calls.circuit.window, CircuitWindow::Calls(50)));
        let time =
            parse(serde_json::json!({"url": "https://x.example", "circuit": {"window": "30s"}}));
        assert!(
            matches!(time.circuit.window, CircuitWindow::Duration(d) if d == Duration::from_secs(30))
        );
    }
}

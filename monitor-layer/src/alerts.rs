//! In-process alert rules: the seeds' P0 / P1 / P2 thresholds evaluated
//! every few seconds over the [request statistics](crate::RequestStats),
//! the health report and the events the layers emit — counted as they are
//! emitted ([`guardrail_core::event::emitted`]), never parsed from logs.
//!
//! | rule | severity | fires when | window |
//! |---|---|---|---|
//! | `error_rate_critical` | P0 | 5xx rate > `error_rate_p0` (5 %) | 5 min |
//! | `component_failed:<name>` | P0 | a health component fails (pool exhausted, no JWKS keys…) | now |
//! | `security_auth_failures` | P0 | `security.auth_failed` > `auth_failures_per_minute_p0` (100) | 1 min |
//! | `security_webhook_rejections` | P0 | `security.webhook_rejected` > `webhook_rejections_per_minute_p0` (20) | 1 min |
//! | `slo_fast_burn` | P0 | error budget burning > 14.4× over 1 h **and** 5 min (with `slo`) | 1 h, 5 min |
//! | `error_rate_high` | P1 | 5xx rate > `error_rate_p1` (1 %) | 5 min |
//! | `latency_p95_high` | P1 | P95 > `p95_p1` (2 s) | 5 min |
//! | `kill_switch_activated` | P1 | a `flag.kill_switch_activated` | 5 min |
//! | `slo_slow_burn` | P1 | > 6× over 6 h **and** 30 min (with `slo`) | 6 h, 30 min |
//! | `traffic_high` | P2 | requests > `requests_per_minute_p2` (1000) | 1 min |
//! | `slow_requests` | P2 | P99 > `slow_p2` (1 s): over 1 % of requests slower | 1 min |
//! | `external_api_errors` | P2 | an `integration.backend_failed` | 5 min |
//!
//! Rules over request rates fire only with at least `min_requests` (20)
//! in their window — one error out of two requests is not a 50 % error
//! rate. A rule fires when its value goes over the threshold and resolves
//! only when it falls to `resolve_ratio` (0.8) of it or the traffic guard
//! no longer holds, so a value hovering at the threshold does not flap.
//! Each change is an event — `alert.p0` / `alert.p1` / `alert.p2` with
//! `state = "fired"` (ERROR, WARN, INFO) or `"resolved"` (INFO), `rule`,
//! the measured `value`, the `threshold` and the `window` — and the firing
//! set is the `alerts` health component (`warn` while any fires; never
//! `fail`: an alert is for people, not for the load balancer).
//!
//! "Service down" can't be seen from inside the service: the Prometheus
//! rules (`monitoring/prometheus/alerts.yml`) have it as `up == 0`.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use monitor_layer::{Alerts, AlertsConfig, RequestStats};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let stats = RequestStats::new();
//! let alerts = Alerts::new(AlertsConfig::default(), stats.clone());
//! for i in 0..100 {
//!     stats.record(if i < 10 { 503 } else { 200 }, Duration::from_millis(20));
//! }
//! alerts.evaluate(); // `alerts.run()` does this every 5 s
//! let firing: Vec<_> = alerts.firing().into_iter().map(|f| f.rule).collect();
//! assert_eq!(firing, ["error_rate_critical", "error_rate_high"]);
//! # }
//! ```

use std::{
    collections::{BTreeMap, VecDeque},
    fmt,
    future::Future,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use guardrail_core::{
    EventName,
    config::ConfigProblem,
    emit,
    event::{COUNTED, counted_index},
    health::{ComponentHealth, HealthRegistry, HealthSource, HealthStatus},
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::time::Instant;

use crate::{RequestStats, Window};

/// `[monitor.alerts]`: the thresholds of the built-in rules.
///
/// ```
/// use monitor_layer::AlertsConfig;
///
/// let config: AlertsConfig = serde_json::from_str(r#"{"error_rate_p0": 0.1, "slo": 0.999}"#).unwrap();
/// assert_eq!(config.error_rate_p1, 0.01);
/// let mut problems = Vec::new();
/// serde_json::from_str::<AlertsConfig>(r#"{"slo": 1.5}"#).unwrap().validate(&mut problems);
/// assert_eq!(problems[0].path, "monitor.alerts.slo");
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AlertsConfig {
    /// Whether the rules run (default true).
    pub enabled: bool,
    /// How often they are evaluated (default `"5s"`).
    #[serde(with = "humantime_serde")]
    pub evaluate_every: Duration,
    /// The fewest requests in a window for a rate rule to fire (default 20).
    pub min_requests: u64,
    /// A firing rule resolves at this fraction of its threshold (default
    /// 0.8).
    pub resolve_ratio: f64,
    /// P0 5xx rate over 5 minutes (default 0.05).
    pub error_rate_p0: f64,
    /// P1 5xx rate over 5 minutes (default 0.01).
    pub error_rate_p1: f64,
    /// P1 latency: the 5-minute P95 above this (default `"2s"`).
    #[serde(with = "humantime_serde")]
    pub p95_p1: Duration,
    /// P2 traffic: requests in the last minute above this (default 1000).
    pub requests_per_minute_p2: u64,
    /// P2 slow requests: the 1-minute P99 above this (default `"1s"`).
    #[serde(with = "humantime_serde")]
    pub slow_p2: Duration,
    /// P0 security: failed authentications in the last minute above this
    /// (default 100).
    pub auth_failures_per_minute_p0: u64,
    /// P0 security: rejected webhooks in the last minute above this
    /// (default 20).
    pub webhook_rejections_per_minute_p0: u64,
    /// An availability objective (e.g. `0.999`) turns on the burn-rate
    /// rules: 14.4× over 1 h and 5 min (P0), 6× over 6 h and 30 min (P1).
    pub slo: Option<f64>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            evaluate_every: Duration::from_secs(5),
            min_requests: 20,
            resolve_ratio: 0.8,
            error_rate_p0: 0.05,
            error_rate_p1: 0.01,
            p95_p1: Duration::from_secs(2),
            requests_per_minute_p2: 1000,
            slow_p2: Duration::from_secs(1),
            auth_failures_per_minute_p0: 100,
            webhook_rejections_per_minute_p0: 20,
            slo: None,
        }
    }
}

impl AlertsConfig {
    /// Adds every problem of `[monitor.alerts]` to `problems`.
    pub fn validate(&self, problems: &mut Vec<ConfigProblem>) {
        let mut problem = |key: &str, message: &str| {
            problems.push(ConfigProblem::new(format!("monitor.alerts.{key}"), message));
        };
        // Event windows are counted from the samples taken at each
        // evaluation: they are exact to one interval.
        if self.evaluate_every < Duration::from_secs(1)
            || self.evaluate_every > Duration::from_secs(15)
        {
            problem("evaluate_every", "must be from 1s to 15s");
        }
        if self.min_requests == 0 {
            problem("min_requests", "must be at least 1");
        }
        if !(self.resolve_ratio > 0.0 && self.resolve_ratio <= 1.0) {
            problem("resolve_ratio", "must be above 0 and at most 1");
        }
        for (key, rate) in [
            ("error_rate_p0", self.error_rate_p0),
            ("error_rate_p1", self.error_rate_p1),
        ] {
            if !(rate > 0.0 && rate < 1.0) {
                problem(key, "must be a fraction above 0 and below 1, such as 0.05");
            }
        }
        if self.error_rate_p1 > self.error_rate_p0 {
            problem(
                "error_rate_p1",
                "must not be above error_rate_p0 (P1 warns before P0 pages)",
            );
        }
        if self.slo.is_some_and(|slo| !(slo > 0.0 && slo < 1.0)) {
            problem(
                "slo",
                "must be a fraction above 0 and below 1, such as 0.999",
            );
        }
    }
}

/// How urgent an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Severity {
    /// Critical: page someone.
    P0,
    /// Warning.
    P1,
    /// Info.
    P2,
}

impl Severity {
    /// Its event: `alert.p0`, `alert.p1` or `alert.p2`.
    pub fn event(self) -> EventName {
        match self {
            Self::P0 => EventName::ALERT_P0,
            Self::P1 => EventName::ALERT_P1,
            Self::P2 => EventName::ALERT_P2,
        }
    }
}

/// A firing alert.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Firing {
    /// The rule's name.
    pub rule: String,
    /// Its severity.
    pub severity: Severity,
    /// The value it measured last.
    pub value: f64,
    /// Its threshold.
    pub threshold: f64,
    /// The window it measures.
    pub window: &'static str,
    /// How long it has been firing, in seconds.
    pub firing_for_s: u64,
}

/// The in-process alert rules; clones share their state.
#[derive(Clone)]
pub struct Alerts {
    inner: Arc<Inner>,
}

type EventCounts = [u64; COUNTED.len()];

struct Inner {
    config: AlertsConfig,
    stats: RequestStats,
    health: std::sync::OnceLock<HealthRegistry>,
    counts: Box<dyn Fn() -> EventCounts + Send + Sync>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Firing rules by name: since when, and the last reading.
    firing: BTreeMap<String, (Instant, Reading)>,
    /// Rules that need a streak: how many evaluations in a row their
    /// change has held (over the threshold while not firing, at or under
    /// the resolve level while firing).
    streaks: BTreeMap<String, u32>,
    /// Event counts as sampled at each evaluation (the last 5 minutes and
    /// one more).
    samples: VecDeque<(Instant, EventCounts)>,
}

/// One rule's reading at one evaluation.
#[derive(Clone, Debug)]
struct Reading {
    rule: String,
    severity: Severity,
    value: f64,
    threshold: f64,
    window: &'static str,
    /// The traffic guard holds (always, for rules without one).
    enough: bool,
    /// Evaluations in a row a change must hold before it is made (1: at
    /// once). Rules whose value is only 0 or 1 (a component failing) have
    /// no resolve level to stop flapping: they wait for a streak instead.
    streak: u32,
}

/// The streak of a rule that is only on or off.
const ON_OFF_STREAK: u32 = 2;

fn index_of(name: EventName) -> usize {
    counted_index(name).expect("a counted event")
}

impl Alerts {
    /// The rules of `config` over `stats`, counting the events this process
    /// emits from now on.
    pub fn new(config: AlertsConfig, stats: RequestStats) -> Self {
        Self::with_counts(config, stats, guardrail_core::event::counts)
    }

    /// The same, with the event counts read from `counts` (cumulative, in
    /// the order of [`COUNTED`]) instead of this process's `emit!`.
    pub fn with_counts(
        config: AlertsConfig,
        stats: RequestStats,
        counts: impl Fn() -> EventCounts + Send + Sync + 'static,
    ) -> Self {
        let first = counts();
        let state = State {
            samples: VecDeque::from([(Instant::now(), first)]),
            ..State::default()
        };
        Self {
            inner: Arc::new(Inner {
                config,
                stats,
                health: std::sync::OnceLock::new(),
                counts: Box::new(counts),
                state: Mutex::new(state),
            }),
        }
    }

    /// Also fires `component_failed:<name>` (P0) while a component of
    /// `registry` fails (for two evaluations in a row: a component that
    /// flips does not page every few seconds). The first registry given
    /// is kept.
    pub fn health(self, registry: HealthRegistry) -> Self {
        let _ = self.inner.health.set(registry);
        self
    }

    /// The rule evaluation, every `evaluate_every`, forever: run it beside
    /// the service.
    pub fn run(&self) -> impl Future<Output = ()> + Send + 'static {
        let this = self.clone();
        async move {
            loop {
                tokio::time::sleep(this.inner.config.evaluate_every).await;
                this.evaluate();
            }
        }
    }

    /// Evaluates every rule once: fires and resolves, with their events.
    pub fn evaluate(&self) {
        let now = Instant::now();
        let counts = (self.inner.counts)();
        let samples = {
            let mut state = self.state();
            state.samples.push_back((now, counts));
            // Keep one sample at or before five minutes ago.
            while state.samples.len() > 2
                && now.duration_since(state.samples[1].0) >= Duration::from_secs(300)
            {
                state.samples.pop_front();
            }
            state.samples.clone()
        };
        // Unlocked: the health report asks this component too.
        let mut readings = self.readings(&samples, now);
        let resolve_ratio = self.inner.config.resolve_ratio;
        // Announced once the lock is released (a subscriber may ask).
        let mut announce_later = Vec::new();
        {
            let mut state = self.state();
            let state = &mut *state;
            // A firing rule that did not read at all (a component no longer
            // failing) reads as 0, a clean reading.
            for (rule, (_, last)) in &state.firing {
                if !readings.iter().any(|r| &r.rule == rule) {
                    let mut clean = last.clone();
                    clean.value = 0.0;
                    readings.push(clean);
                }
            }
            state
                .streaks
                .retain(|rule, _| readings.iter().any(|r| &r.rule == rule));
            for reading in readings {
                let firing = state.firing.contains_key(&reading.rule);
                let change = if firing {
                    !reading.enough || reading.value <= reading.threshold * resolve_ratio
                } else {
                    reading.enough && reading.value > reading.threshold
                };
                let held = if change {
                    let streak = state.streaks.entry(reading.rule.clone()).or_default();
                    *streak += 1;
                    *streak >= reading.streak
                } else {
                    state.streaks.remove(&reading.rule);
                    false
                };
                if held {
                    state.streaks.remove(&reading.rule);
                    if firing {
                        state.firing.remove(&reading.rule);
                        announce_later.push(("resolved", reading));
                    } else {
                        state
                            .firing
                            .insert(reading.rule.clone(), (now, reading.clone()));
                        announce_later.push(("fired", reading));
                    }
                } else if let Some((_, last)) = state.firing.get_mut(&reading.rule) {
                    *last = reading;
                }
            }
        }
        for (what, reading) in &announce_later {
            announce(what, reading);
        }
    }

    /// The alerts firing now, most severe first.
    pub fn firing(&self) -> Vec<Firing> {
        let state = self.state();
        let now = Instant::now();
        let mut firing: Vec<Firing> = state
            .firing
            .values()
            .map(|(since, r)| Firing {
                rule: r.rule.clone(),
                severity: r.severity,
                value: r.value,
                threshold: r.threshold,
                window: r.window,
                firing_for_s: now.duration_since(*since).as_secs(),
            })
            .collect();
        firing.sort_by_key(|f| f.severity);
        firing
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Every rule's reading now.
    fn readings(&self, samples: &VecDeque<(Instant, EventCounts)>, now: Instant) -> Vec<Reading> {
        let c = &self.inner.config;
        let min = c.min_requests;
        let stats = &self.inner.stats;
        let minute = stats.window(Window::Minute);
        let five = stats.window(Window::FiveMinutes);
        let secs = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64());
        let reading = |rule: &str, severity, value, threshold, window, enough| Reading {
            rule: rule.to_owned(),
            severity,
            value,
            threshold,
            window,
            enough,
            streak: 1,
        };
        // Events in the last `window`: now minus the latest sample at or
        // before its start (or the first sample, when younger).
        let events = |name: EventName, window: Duration| {
            let i = index_of(name);
            let newest = samples.back().map_or(0, |(_, c)| c[i]);
            let base = samples
                .iter()
                .rev()
                .find(|(at, _)| now.duration_since(*at) >= window)
                .or(samples.front())
                .map_or(0, |(_, c)| c[i]);
            newest.saturating_sub(base) as f64
        };
        let mut readings = vec![
            reading(
                "error_rate_critical",
                Severity::P0,
                five.error_rate,
                c.error_rate_p0,
                "5m",
                five.requests >= min,
            ),
            reading(
                "error_rate_high",
                Severity::P1,
                five.error_rate,
                c.error_rate_p1,
                "5m",
                five.requests >= min,
            ),
            reading(
                "latency_p95_high",
                Severity::P1,
                secs(five.p95),
                c.p95_p1.as_secs_f64(),
                "5m",
                five.requests >= min,
            ),
            reading(
                "traffic_high",
                Severity::P2,
                minute.requests as f64,
                c.requests_per_minute_p2 as f64,
                "1m",
                true,
            ),
            reading(
                "slow_requests",
                Severity::P2,
                secs(minute.p99),
                c.slow_p2.as_secs_f64(),
                "1m",
                minute.requests >= min,
            ),
            reading(
                "security_auth_failures",
                Severity::P0,
                events(EventName::SECURITY_AUTH_FAILED, Duration::from_secs(60)),
                c.auth_failures_per_minute_p0 as f64,
                "1m",
                true,
            ),
            reading(
                "security_webhook_rejections",
                Severity::P0,
                events(
                    EventName::SECURITY_WEBHOOK_REJECTED,
                    Duration::from_secs(60),
                ),
                c.webhook_rejections_per_minute_p0 as f64,
                "1m",
                true,
            ),
            reading(
                "kill_switch_activated",
                Severity::P1,
                events(
                    EventName::FLAG_KILL_SWITCH_ACTIVATED,
                    Duration::from_secs(300),
                ),
                0.0,
                "5m",
                true,
            ),
            reading(
                "external_api_errors",
                Severity::P2,
                events(
                    EventName::INTEGRATION_BACKEND_FAILED,
                    Duration::from_secs(300),
                ),
                0.0,
                "5m",
                true,
            ),
        ];
        if let Some(slo) = c.slo {
            let budget = 1.0 - slo;
            let burn = |w: Window| {
                let s = stats.window(w);
                (s.error_rate / budget, s.requests)
            };
            // A pair fires when both windows burn too fast; its value is the
            // smaller of the two burn rates.
            for (rule, severity, factor, long, short, window) in [
                (
                    "slo_fast_burn",
                    Severity::P0,
                    14.4,
                    Window::Hour,
                    Window::FiveMinutes,
                    "1h+5m",
                ),
                (
                    "slo_slow_burn",
                    Severity::P1,
                    6.0,
                    Window::SixHours,
                    Window::ThirtyMinutes,
                    "6h+30m",
                ),
            ] {
                let (long, _) = burn(long);
                let (short, requests) = burn(short);
                readings.push(reading(
                    rule,
                    severity,
                    long.min(short),
                    factor,
                    window,
                    requests >= min,
                ));
            }
        }
        if let Some(health) = self.inner.health.get() {
            for component in health.report().components {
                if component.name != ALERTS && component.health.status == HealthStatus::Fail {
                    readings.push(Reading {
                        streak: ON_OFF_STREAK,
                        ..reading(
                            &format!("component_failed:{}", component.name),
                            Severity::P0,
                            1.0,
                            0.0,
                            "now",
                            true,
                        )
                    });
                }
            }
        }
        readings
    }
}

/// The health component's name.
const ALERTS: &str = "alerts";

fn announce(state: &'static str, r: &Reading) {
    let level = match (state, r.severity) {
        ("fired", Severity::P0) => tracing::Level::ERROR,
        ("fired", Severity::P1) => tracing::Level::WARN,
        _ => tracing::Level::INFO,
    };
    emit!(
        level = level,
        r.severity.event(),
        state = state,
        rule = %r.rule,
        value = r.value,
        threshold = r.threshold,
        window = r.window,
    );
}

impl HealthSource for Alerts {
    fn name(&self) -> &str {
        ALERTS
    }

    fn check(&self) -> ComponentHealth {
        let firing = self.firing();
        let details = json!({ "firing": firing });
        if firing.is_empty() {
            ComponentHealth::pass(details)
        } else {
            ComponentHealth::warn(details)
        }
    }
}

impl fmt::Debug for Alerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Alerts")
            .field("config", &self.inner.config)
            .field("firing", &self.firing())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use guardrails_testkit::capture;

    use super::*;

    const MS: Duration = Duration::from_millis(20);

    fn rules(alerts: &Alerts) -> Vec<String> {
        alerts.firing().into_iter().map(|f| f.rule).collect()
    }

    /// (event, state, rule) of every alert event so far.
    fn alert_events(logs: &guardrails_testkit::capture::Capture) -> Vec<(String, String, String)> {
        logs.lines()
            .into_iter()
            .filter(|l| l["event"].as_str().is_some_and(|e| e.starts_with("alert.")))
            .map(|l| {
                let s = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
                (s("event"), s("state"), s("rule"))
            })
            .collect()
    }

    fn event(e: &str, state: &str, rule: &str) -> (String, String, String) {
        (e.into(), state.into(), rule.into())
    }

    fn record(stats: &RequestStats, n: u32, status: u16, latency: Duration) {
        for _ in 0..n {
            stats.record(status, latency);
        }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_error_rate_fires_over_the_guard_and_resolves_with_hysteresis() {
        let (_guard, logs) = capture::json();
        let stats = RequestStats::new();
        let config = AlertsConfig {
            // Not the traffic rule here.
            requests_per_minute_p2: 1_000_000,
            ..AlertsConfig::default()
        };
        let alerts = Alerts::new(config, stats.clone());

        // 10 of 10 failed: too few requests to call it a rate.
        record(&stats, 10, 503, MS);
        alerts.evaluate();
        assert!(rules(&alerts).is_empty());

        // 10 of 30: both error-rate rules fire, once.
        record(&stats, 20, 200, MS);
        alerts.evaluate();
        alerts.evaluate();
        assert_eq!(rules(&alerts), ["error_rate_critical", "error_rate_high"]);
        let fired = alerts.firing()[0].clone();
        assert_eq!((fired.severity, fired.window), (Severity::P0, "5m"));
        assert!((fired.value - 1.0 / 3.0).abs() < 1e-9, "{fired:?}");

        // Five minutes on, a window of 4.5 %: under 5 %, above its 4 %
        // resolve level — still firing, no flapping.
        tokio::time::advance(Duration::from_secs(310)).await;
        record(&stats, 955, 200, MS);
        record(&stats, 45, 500, MS);
        alerts.evaluate();
        assert_eq!(rules(&alerts), ["error_rate_critical", "error_rate_high"]);
        // 45 of 2000 (2.25 %): P0 resolves, P1 (1 %) still fires.
        record(&stats, 1000, 200, MS);
        alerts.evaluate();
        assert_eq!(rules(&alerts), ["error_rate_high"]);
        // Traffic gone: the window empties, the guard no longer holds.
        tokio::time::advance(Duration::from_secs(310)).await;
        alerts.evaluate();
        assert!(rules(&alerts).is_empty());

        assert_eq!(
            alert_events(&logs),
            [
                event("alert.p0", "fired", "error_rate_critical"),
                event("alert.p1", "fired", "error_rate_high"),
                event("alert.p0", "resolved", "error_rate_critical"),
                event("alert.p1", "resolved", "error_rate_high"),
            ]
        );
        let fired = logs
            .lines()
            .into_iter()
            .find(|l| l["event"] == "alert.p0")
            .unwrap();
        assert_eq!(fired["level"], "ERROR");
        assert_eq!(fired["threshold"], 0.05);
        assert_eq!(fired["window"], "5m");
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn latency_traffic_and_slow_requests() {
        // Every test that makes alert events holds a subscriber: a callsite
        // first reached on a thread without one could be cached as
        // uninteresting for the test that captures.
        let (_guard, _logs) = capture::json();
        let stats = RequestStats::new();
        let alerts = Alerts::new(AlertsConfig::default(), stats.clone());
        // P95 of 3 s over 5 minutes (P1), P99 over a second in the last
        // minute (P2).
        record(&stats, 30, 200, Duration::from_secs(3));
        alerts.evaluate();
        assert_eq!(rules(&alerts), ["latency_p95_high", "slow_requests"]);
        // Over 1000 requests in a minute (P2); the fast ones bring the P95
        // and the P99 down.
        record(&stats, 3000, 200, MS);
        alerts.evaluate();
        assert_eq!(rules(&alerts), ["traffic_high"]);
        tokio::time::advance(Duration::from_secs(65)).await;
        alerts.evaluate();
        assert!(rules(&alerts).is_empty());
    }

    /// Counts fed by the test, as `emit!` feeds the process's.
    fn counted() -> (
        Arc<[AtomicU64; COUNTED.len()]>,
        impl Fn() -> EventCounts + Send + Sync,
    ) {
        let counts: Arc<[AtomicU64; COUNTED.len()]> = Arc::new(Default::default());
        let read = Arc::clone(&counts);
        (counts, move || {
            read.each_ref().map(|c| c.load(Ordering::Relaxed))
        })
    }

    fn add(counts: &[AtomicU64; COUNTED.len()], name: EventName, n: u64) {
        counts[index_of(name)].fetch_add(n, Ordering::Relaxed);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn security_kill_switch_and_upstream_events_are_counted_per_window() {
        let (_guard, logs) = capture::json();
        let (counts, read) = counted();
        let alerts = Alerts::with_counts(AlertsConfig::default(), RequestStats::new(), read);
        // 100 failed tokens in a minute is the threshold, not above it.
        add(&counts, EventName::SECURITY_AUTH_FAILED, 100);
        tokio::time::advance(Duration::from_secs(5)).await;
        alerts.evaluate();
        assert!(rules(&alerts).is_empty());
        add(&counts, EventName::SECURITY_AUTH_FAILED, 1);
        add(&counts, EventName::SECURITY_WEBHOOK_REJECTED, 21);
        add(&counts, EventName::FLAG_KILL_SWITCH_ACTIVATED, 1);
        add(&counts, EventName::INTEGRATION_BACKEND_FAILED, 1);
        tokio::time::advance(Duration::from_secs(5)).await;
        alerts.evaluate();
        assert_eq!(
            rules(&alerts),
            [
                "security_auth_failures",
                "security_webhook_rejections",
                "kill_switch_activated",
                "external_api_errors"
            ]
        );
        // A minute without failures: the security alerts resolve; the
        // kill switch and the upstream errors stay for five minutes.
        for _ in 0..13 {
            tokio::time::advance(Duration::from_secs(5)).await;
            alerts.evaluate();
        }
        assert_eq!(
            rules(&alerts),
            ["kill_switch_activated", "external_api_errors"]
        );
        for _ in 0..48 {
            tokio::time::advance(Duration::from_secs(5)).await;
            alerts.evaluate();
        }
        assert!(rules(&alerts).is_empty());
        let events = alert_events(&logs);
        assert_eq!(events.len(), 8, "{events:?}");
        assert_eq!(
            events[0],
            event("alert.p0", "fired", "security_auth_failures")
        );
        assert_eq!(
            events[2],
            event("alert.p1", "fired", "kill_switch_activated")
        );
        assert_eq!(events[3], event("alert.p2", "fired", "external_api_errors"));
    }

    #[derive(Debug)]
    struct Toggle(Arc<std::sync::atomic::AtomicBool>);

    impl HealthSource for Toggle {
        fn name(&self) -> &str {
            "database"
        }
        fn check(&self) -> ComponentHealth {
            if self.0.load(Ordering::Relaxed) {
                ComponentHealth::fail(json!({"reason": "exhausted"}))
            } else {
                ComponentHealth::pass(json!({}))
            }
        }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_failing_component_is_a_p0_and_the_firing_set_is_in_the_report() {
        // Every test that makes alert events holds a subscriber: a callsite
        // first reached on a thread without one could be cached as
        // uninteresting for the test that captures.
        let (_guard, _logs) = capture::json();
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let registry = HealthRegistry::new();
        registry.register(Toggle(Arc::clone(&failing)));
        let alerts =
            Alerts::new(AlertsConfig::default(), RequestStats::new()).health(registry.clone());
        registry.register(alerts.clone());
        alerts.evaluate();
        assert_eq!(registry.report().status, HealthStatus::Pass);

        // One failing evaluation is not enough (a flip), two are.
        failing.store(true, Ordering::Relaxed);
        alerts.evaluate();
        assert!(rules(&alerts).is_empty());
        failing.store(false, Ordering::Relaxed);
        alerts.evaluate();
        failing.store(true, Ordering::Relaxed);
        alerts.evaluate();
        assert!(rules(&alerts).is_empty(), "it flipped");
        alerts.evaluate();
        assert_eq!(rules(&alerts), ["component_failed:database"]);
        let report = registry.report();
        let mine = &report.components[1];
        assert_eq!(mine.name, "alerts");
        assert_eq!(mine.health.status, HealthStatus::Warn);
        assert_eq!(
            mine.health.details["firing"][0]["rule"],
            "component_failed:database"
        );
        assert_eq!(mine.health.details["firing"][0]["severity"], "P0");

        // Resolved after two clean evaluations.
        failing.store(false, Ordering::Relaxed);
        alerts.evaluate();
        assert_eq!(rules(&alerts), ["component_failed:database"]);
        alerts.evaluate();
        assert!(rules(&alerts).is_empty());
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn slo_burn_rates_fire_on_both_windows() {
        // Every test that makes alert events holds a subscriber: a callsite
        // first reached on a thread without one could be cached as
        // uninteresting for the test that captures.
        let (_guard, _logs) = capture::json();
        let stats = RequestStats::new();
        let config = AlertsConfig {
            slo: Some(0.999),
            // Only the burn rates here.
            error_rate_p0: 0.9,
            error_rate_p1: 0.9,
            requests_per_minute_p2: 1_000_000,
            ..AlertsConfig::default()
        };
        let alerts = Alerts::new(config, stats.clone());
        // 0.5 % errors: 5× the budget — below both pairs' factors.
        record(&stats, 995, 200, MS);
        record(&stats, 5, 500, MS);
        alerts.evaluate();
        assert!(rules(&alerts).is_empty());
        // 1 % over everything so far: 10× — the slow pair (6×) fires.
        record(&stats, 990, 200, MS);
        record(&stats, 15, 500, MS);
        alerts.evaluate();
        assert_eq!(rules(&alerts), ["slo_slow_burn"]);
        // A burst of 5 % errors: the fast pair (14.4×) too.
        record(&stats, 950, 200, MS);
        record(&stats, 80, 500, MS);
        alerts.evaluate();
        assert_eq!(rules(&alerts), ["slo_fast_burn", "slo_slow_burn"]);
        let fast = &alerts.firing()[0];
        assert_eq!(fast.window, "1h+5m");
        assert!(fast.value > 14.4, "{fast:?}");
    }
}

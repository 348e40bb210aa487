//! A circuit breaker: after enough failing (or slow) calls to an upstream,
//! calls are refused at once for a while instead of piling onto it; then a
//! few probes test it, and it closes again when they succeed.
//!
//! [`CircuitBreakerLayer`] keeps a sliding window of outcomes — the last
//! N calls, or the calls of the last duration — and opens when, after at
//! least `min_calls`, the failure rate or the slow-call rate reaches its
//! threshold. While open, a call is refused with
//! [`OutboundError::CircuitOpen`] carrying the remaining open time (the
//! caller's `Retry-After`), without reaching the upstream. After
//! `open_for`, up to `half_open_probes` calls go through as probes: all
//! succeeding closes the circuit, any failing (or slow) reopens it, and a
//! probe that hangs past `probe_timeout` fails, so the breaker is never
//! stuck half-open. State is shared by clones of the layer; operators can
//! [`force_open`](CircuitBreakerLayer::force_open) and
//! [`reset`](CircuitBreakerLayer::reset) it. Transitions are events
//! (`integration.circuit_opened`, `integration.circuit_half_open`,
//! `integration.circuit_closed`) and the breaker is a health source.
//!
//! A call fails when the upstream answers 5xx or the call errs (timeouts
//! included); [`failure_when`](CircuitBreakerLayer::failure_when) changes
//! that. Requests the breaker itself or a bulkhead refused never count.
//!
//! # Example
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//! use http::{Request, Response, StatusCode};
//! use timeout_retry_layer::{CircuitBreakerLayer, CircuitState, OutboundError};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! tokio::time::pause();
//! let breaker = CircuitBreakerLayer::new("weather")
//!     .window_calls(10)
//!     .min_calls(4)
//!     .failure_rate(0.5)
//!     .open_for(Duration::from_secs(30));
//! let client = breaker.layer(service_fn(|_req: Request<()>| async {
//!     let mut res = Response::new(());
//!     *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
//!     Ok::<_, Infallible>(res)
//! }));
//! for _ in 0..4 {
//!     let res = client.clone().oneshot(Request::new(())).await.unwrap();
//!     assert_eq!(res.status(), 503);
//! }
//! assert_eq!(breaker.state(), CircuitState::Open);
//! let refused = client.oneshot(Request::new(())).await.unwrap_err();
//! assert!(matches!(refused, OutboundError::CircuitOpen { retry_after } if retry_after == Duration::from_secs(30)));
//! # }
//! ```

use std::{
    collections::VecDeque,
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use guardrail_core::{
    EventName, emit,
    health::{ComponentHealth, HealthSource},
};
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_layer::Layer;
use tower_service::Service;

use super::{BoxError, Classify, OutboundError};

/// Where a breaker is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through; outcomes are counted.
    Closed,
    /// Calls are refused until the open time is over.
    Open,
    /// A few probe calls test the upstream.
    HalfOpen,
    /// Opened by an operator; stays open until [`reset`](CircuitBreakerLayer::reset).
    ForcedOpen,
}

impl CircuitState {
    /// The state's name in events and the health report.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::ForcedOpen => "forced_open",
        }
    }
}

/// The breaker's settings.
#[derive(Clone)]
struct Settings {
    name: Arc<str>,
    window: WindowKind,
    failure_rate: f64,
    /// `None`: slow calls are not looked for (no clock read per call).
    slow_call_rate: Option<f64>,
    slow_call: Duration,
    min_calls: u32,
    open_for: Duration,
    half_open_probes: u32,
    probe_timeout: Duration,
    failure_when: Classify,
}

#[derive(Clone, Copy, Debug)]
enum WindowKind {
    Calls(u32),
    Time(Duration),
}

/// Layer that applies [`CircuitBreaker`]. Clones share one breaker.
#[derive(Clone)]
pub struct CircuitBreakerLayer {
    shared: Arc<Shared>,
}

struct Shared {
    settings: Settings,
    state: Mutex<State>,
    /// The generation while closed, `u64::MAX` otherwise (kept beside the
    /// locked state, changed only under its lock): a closed breaker lets a
    /// call through without taking the lock.
    closed_generation: AtomicU64,
    /// `guardrails_circuit_state{upstream}`: 0 closed, 1 half-open, 2 open.
    state_gauge: metrics::Gauge,
}

/// The state as `guardrails_circuit_state` reports it.
fn gauge_value(state: CircuitState) -> f64 {
    match state {
        CircuitState::Closed => 0.0,
        CircuitState::HalfOpen => 1.0,
        CircuitState::Open | CircuitState::ForcedOpen => 2.0,
    }
}

const NOT_CLOSED: u64 = u64::MAX;

impl fmt::Debug for CircuitBreakerLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared.settings;
        f.debug_struct("CircuitBreakerLayer")
            .field("name", &s.name)
            .field("window", &s.window)
            .field("failure_rate", &s.failure_rate)
            .field("slow_call_rate", &s.slow_call_rate)
            .field("min_calls", &s.min_calls)
            .field("open_for", &s.open_for)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl CircuitBreakerLayer {
    /// A breaker for the upstream `name` (used in events and the health
    /// report): a window of the last 20 calls, opening at a 50 % failure
    /// rate after at least 10 calls (slow calls are not looked for until
    /// [`slow_call_rate`](Self::slow_call_rate) is set); open for 30 s; 3
    /// probes, each given 5 s.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        let settings = Settings {
            name: name.into(),
            window: WindowKind::Calls(20),
            failure_rate: 0.5,
            slow_call_rate: None,
            slow_call: Duration::from_secs(5),
            min_calls: 10,
            open_for: Duration::from_secs(30),
            half_open_probes: 3,
            probe_timeout: Duration::from_secs(5),
            failure_when: Arc::new(|status| status.is_none_or(|s| s.is_server_error())),
        };
        Self::with(settings)
    }

    fn with(settings: Settings) -> Self {
        let window = Window::new(settings.window);
        let state_gauge = metrics::gauge!(
            guardrail_core::metric::CIRCUIT_STATE,
            "upstream" => settings.name.to_string()
        );
        state_gauge.set(gauge_value(CircuitState::Closed));
        Self {
            shared: Arc::new(Shared {
                settings,
                state: Mutex::new(State {
                    phase: Phase::Closed,
                    generation: 0,
                    window,
                }),
                closed_generation: AtomicU64::new(0),
                state_gauge,
            }),
        }
    }

    fn set(self, f: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = self.shared.settings.clone();
        f(&mut settings);
        Self::with(settings)
    }

    /// Counts the last `calls` calls (at least 1).
    pub fn window_calls(self, calls: u32) -> Self {
        self.set(|s| s.window = WindowKind::Calls(calls.max(1)))
    }

    /// Counts the calls of the last `duration` (in ten buckets).
    pub fn window_duration(self, duration: Duration) -> Self {
        self.set(|s| s.window = WindowKind::Time(duration.max(Duration::from_millis(10))))
    }

    /// Opens when at least this share of the window's calls failed
    /// (in (0, 1]; default 0.5).
    pub fn failure_rate(self, rate: f64) -> Self {
        self.set(|s| s.failure_rate = rate.clamp(f64::MIN_POSITIVE, 1.0))
    }

    /// Opens when at least this share of the window's calls were slower
    /// than [`slow_call`](Self::slow_call) (in (0, 1]). Off by default:
    /// timing each call costs two clock reads.
    pub fn slow_call_rate(self, rate: f64) -> Self {
        self.set(|s| s.slow_call_rate = Some(rate.clamp(f64::MIN_POSITIVE, 1.0)))
    }

    /// A call taking this long or longer is slow (default 5 s; counted
    /// once [`slow_call_rate`](Self::slow_call_rate) is set).
    pub fn slow_call(self, duration: Duration) -> Self {
        self.set(|s| s.slow_call = duration)
    }

    /// Calls the window must hold before it can open (at least 1;
    /// default 10).
    pub fn min_calls(self, calls: u32) -> Self {
        self.set(|s| s.min_calls = calls.max(1))
    }

    /// How long it stays open before probing (default 30 s).
    pub fn open_for(self, duration: Duration) -> Self {
        self.set(|s| s.open_for = duration)
    }

    /// Probe calls let through half-open (at least 1; default 3).
    pub fn half_open_probes(self, probes: u32) -> Self {
        self.set(|s| s.half_open_probes = probes.max(1))
    }

    /// How long a probe may take before it counts as failed (default 5 s).
    pub fn probe_timeout(self, duration: Duration) -> Self {
        self.set(|s| s.probe_timeout = duration)
    }

    /// Which outcomes are failures: `f(Some(status))` for an answer,
    /// `f(None)` for an error. Default: 5xx and errors.
    pub fn failure_when(
        self,
        f: impl Fn(Option<StatusCode>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.set(|s| s.failure_when = Arc::new(f))
    }

    /// Where the breaker is now.
    pub fn state(&self) -> CircuitState {
        let state = self.shared.lock();
        state.phase.state()
    }

    /// Opens the circuit until [`reset`](Self::reset), whatever the
    /// upstream does.
    pub fn force_open(&self) {
        let mut state = self.shared.lock();
        self.shared
            .transition(&mut state, Phase::ForcedOpen, "forced");
    }

    /// Closes the circuit and forgets the window.
    pub fn reset(&self) {
        let mut state = self.shared.lock();
        self.shared.transition(&mut state, Phase::Closed, "reset");
    }

    /// The breaker as a health component named `circuit:<name>`: `pass`
    /// while closed, `warn` while half-open or open — never `fail`: an
    /// open circuit is the service protecting itself from an upstream
    /// that fails, and a readiness check that took the service out of its
    /// load balancer for it would spread the outage instead of containing
    /// it. Its details: the state and the window's calls, failures and
    /// slow calls.
    pub fn health_source(&self) -> Arc<dyn HealthSource> {
        Arc::new(BreakerHealth {
            name: format!("circuit:{}", self.shared.settings.name),
            breaker: self.clone(),
        })
    }
}

#[derive(Debug)]
struct BreakerHealth {
    name: String,
    breaker: CircuitBreakerLayer,
}

impl HealthSource for BreakerHealth {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> ComponentHealth {
        let (phase, calls, failures, slow) = {
            let state = self.breaker.shared.lock();
            let (calls, failures, slow) = state.window.totals(Instant::now());
            (state.phase.state(), calls, failures, slow)
        };
        let details = serde_json::json!({
            "state": phase.as_str(),
            "window_calls": calls,
            "window_failures": failures,
            "window_slow": slow,
        });
        match phase {
            CircuitState::Closed => ComponentHealth::pass(details),
            CircuitState::HalfOpen | CircuitState::Open | CircuitState::ForcedOpen => {
                ComponentHealth::warn(details)
            }
        }
    }
}

struct State {
    phase: Phase,
    /// Bumped at every transition: a permit from an earlier phase never
    /// moves the breaker.
    generation: u64,
    window: Window,
}

enum Phase {
    Closed,
    Open {
        until: Instant,
    },
    HalfOpen {
        issued: u32,
        succeeded: u32,
        started: Instant,
    },
    ForcedOpen,
}

impl Phase {
    fn state(&self) -> CircuitState {
        match self {
            Self::Closed => CircuitState::Closed,
            Self::Open { .. } => CircuitState::Open,
            Self::HalfOpen { .. } => CircuitState::HalfOpen,
            Self::ForcedOpen => CircuitState::ForcedOpen,
        }
    }
}

/// Permission for one call, and what to record when it ends.
struct Permit {
    shared: Arc<Shared>,
    generation: u64,
    probe: bool,
    recorded: bool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn transition(&self, state: &mut State, to: Phase, reason: &'static str) {
        let from = state.phase.state();
        state.phase = to;
        state.generation += 1;
        state.window.clear();
        let to = state.phase.state();
        let closed = if to == CircuitState::Closed {
            state.generation
        } else {
            NOT_CLOSED
        };
        self.closed_generation.store(closed, Ordering::Release);
        if from == to {
            return;
        }
        self.state_gauge.set(gauge_value(to));
        let name = &*self.settings.name;
        match to {
            CircuitState::Open | CircuitState::ForcedOpen => emit!(
                WARN,
                EventName::INTEGRATION_CIRCUIT_OPENED,
                upstream = name,
                reason = reason,
                open_for_ms = u64::try_from(self.settings.open_for.as_millis()).unwrap_or(u64::MAX),
                forced = to == CircuitState::ForcedOpen,
            ),
            CircuitState::HalfOpen => emit!(
                INFO,
                EventName::INTEGRATION_CIRCUIT_HALF_OPEN,
                upstream = name,
                probes = self.settings.half_open_probes,
            ),
            CircuitState::Closed => emit!(
                INFO,
                EventName::INTEGRATION_CIRCUIT_CLOSED,
                upstream = name,
                reason = reason,
            ),
        }
    }

    fn open(&self, state: &mut State, now: Instant, reason: &'static str) {
        // An open time too long for the clock is about 30 years.
        let until = now
            .checked_add(self.settings.open_for)
            .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 86_400));
        self.transition(state, Phase::Open { until }, reason);
    }

    /// Permission for a call now, or how long the circuit stays open.
    #[inline]
    fn acquire(self: &Arc<Self>) -> Result<Permit, Duration> {
        let generation = self.closed_generation.load(Ordering::Acquire);
        if generation != NOT_CLOSED {
            return Ok(Permit {
                shared: Arc::clone(self),
                generation,
                probe: false,
                recorded: false,
            });
        }
        self.acquire_slow(Instant::now())
    }

    /// Open, half-open or forced open: decided under the lock.
    #[cold]
    fn acquire_slow(self: &Arc<Self>, now: Instant) -> Result<Permit, Duration> {
        let mut state = self.lock();
        let probe = match state.phase {
            Phase::Closed => false,
            Phase::ForcedOpen => return Err(self.settings.open_for),
            Phase::Open { until } if now < until => return Err(until - now),
            Phase::Open { .. } => {
                self.transition(
                    &mut state,
                    Phase::HalfOpen {
                        issued: 0,
                        succeeded: 0,
                        started: now,
                    },
                    "probing",
                );
                true
            }
            Phase::HalfOpen { .. } => true,
        };
        if probe {
            let probes = self.settings.half_open_probes;
            let probe_timeout = self.settings.probe_timeout;
            if let Phase::HalfOpen {
                issued, started, ..
            } = &mut state.phase
            {
                if *issued >= probes {
                    // Every probe is out. One that has hung past its
                    // timeout (its own timer would have failed it) means
                    // the upstream is not back: open again.
                    if now.saturating_duration_since(*started) >= probe_timeout {
                        self.open(&mut state, now, "probe timed out");
                        return Err(self.settings.open_for);
                    }
                    return Err(
                        probe_timeout.saturating_sub(now.saturating_duration_since(*started))
                    );
                }
                *issued += 1;
            }
        }
        Ok(Permit {
            shared: Arc::clone(self),
            generation: state.generation,
            probe,
            recorded: false,
        })
    }
}

impl Permit {
    /// Records how the call went.
    fn record(mut self, failed: bool, slow: bool) {
        self.recorded = true;
        let shared = Arc::clone(&self.shared);
        let settings = &shared.settings;
        let mut state = shared.lock();
        // Read only when something needs the time (a time window, a
        // transition): a closed breaker with a count window never does.
        let mut now_cache = None;
        let mut now = || *now_cache.get_or_insert_with(Instant::now);
        if state.generation != self.generation {
            return;
        }
        if self.probe {
            let probes = settings.half_open_probes;
            if failed || slow {
                shared.open(
                    &mut state,
                    now(),
                    if failed { "probe failed" } else { "probe slow" },
                );
            } else if let Phase::HalfOpen { succeeded, .. } = &mut state.phase {
                *succeeded += 1;
                if *succeeded >= probes {
                    shared.transition(&mut state, Phase::Closed, "probes succeeded");
                }
            }
            return;
        }
        if !matches!(state.phase, Phase::Closed) {
            return;
        }
        let (calls, failures, slowed) = state.window.record(&mut now, failed, slow);
        if calls < settings.min_calls {
            return;
        }
        let calls = f64::from(calls);
        if f64::from(failures) / calls >= settings.failure_rate {
            shared.open(&mut state, now(), "failure rate");
        } else if let Some(rate) = settings.slow_call_rate
            && f64::from(slowed) / calls >= rate
        {
            shared.open(&mut state, now(), "slow call rate");
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        // A probe abandoned before it ended (the caller gave up): its
        // place goes to the next call.
        if self.probe && !self.recorded {
            let mut state = self.shared.lock();
            if state.generation == self.generation
                && let Phase::HalfOpen { issued, .. } = &mut state.phase
            {
                *issued = issued.saturating_sub(1);
            }
        }
    }
}

/// The window of recent outcomes.
enum Window {
    /// The last `capacity` calls: (failed, slow) each.
    Calls {
        capacity: usize,
        outcomes: VecDeque<(bool, bool)>,
        failures: u32,
        slow: u32,
    },
    /// Calls per bucket over ten buckets spanning the duration.
    Time {
        bucket: Duration,
        buckets: VecDeque<Bucket>,
    },
}

#[derive(Clone, Copy)]
struct Bucket {
    start: Instant,
    calls: u32,
    failures: u32,
    slow: u32,
}

const TIME_BUCKETS: u32 = 10;

impl Window {
    fn new(kind: WindowKind) -> Self {
        match kind {
            WindowKind::Calls(n) => Self::Calls {
                capacity: n as usize,
                outcomes: VecDeque::with_capacity(n as usize),
                failures: 0,
                slow: 0,
            },
            WindowKind::Time(d) => Self::Time {
                bucket: d / TIME_BUCKETS,
                buckets: VecDeque::with_capacity(TIME_BUCKETS as usize + 1),
            },
        }
    }

    fn clear(&mut self) {
        match self {
            Self::Calls {
                outcomes,
                failures,
                slow,
                ..
            } => {
                outcomes.clear();
                *failures = 0;
                *slow = 0;
            }
            Self::Time { buckets, .. } => buckets.clear(),
        }
    }

    /// Adds one call; returns (calls, failures, slow) in the window.
    fn record(
        &mut self,
        now: &mut impl FnMut() -> Instant,
        failed: bool,
        was_slow: bool,
    ) -> (u32, u32, u32) {
        match self {
            Self::Calls {
                capacity,
                outcomes,
                failures,
                slow,
            } => {
                if outcomes.len() == *capacity
                    && let Some((f, s)) = outcomes.pop_front()
                {
                    *failures -= u32::from(f);
                    *slow -= u32::from(s);
                }
                outcomes.push_back((failed, was_slow));
                *failures += u32::from(failed);
                *slow += u32::from(was_slow);
                (outcomes.len() as u32, *failures, *slow)
            }
            Self::Time { bucket, buckets } => {
                let now = now();
                Self::expire(*bucket, buckets, now);
                let current = match buckets.back_mut() {
                    Some(b) if now.saturating_duration_since(b.start) < *bucket => b,
                    _ => {
                        buckets.push_back(Bucket {
                            start: now,
                            calls: 0,
                            failures: 0,
                            slow: 0,
                        });
                        buckets.back_mut().expect("just pushed")
                    }
                };
                current.calls += 1;
                current.failures += u32::from(failed);
                current.slow += u32::from(was_slow);
                // Expired buckets are gone: the rest is the window.
                buckets.iter().fold((0, 0, 0), |(c, f, s), b| {
                    (c + b.calls, f + b.failures, s + b.slow)
                })
            }
        }
    }

    fn expire(bucket: Duration, buckets: &mut VecDeque<Bucket>, now: Instant) {
        let span = bucket * TIME_BUCKETS;
        while buckets
            .front()
            .is_some_and(|b| now.saturating_duration_since(b.start) >= span)
        {
            buckets.pop_front();
        }
    }

    /// (calls, failures, slow) in the window at `now`.
    fn totals(&self, now: Instant) -> (u32, u32, u32) {
        match self {
            Self::Calls {
                outcomes,
                failures,
                slow,
                ..
            } => (outcomes.len() as u32, *failures, *slow),
            Self::Time { bucket, buckets } => {
                let span = *bucket * TIME_BUCKETS;
                buckets
                    .iter()
                    .filter(|b| now.saturating_duration_since(b.start) < span)
                    .fold((0, 0, 0), |(c, f, s), b| {
                        (c + b.calls, f + b.failures, s + b.slow)
                    })
            }
        }
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreaker<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Middleware that refuses calls while the upstream is failing; see the
/// [`CircuitBreakerLayer`].
#[derive(Clone)]
pub struct CircuitBreaker<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> CircuitBreaker<S> {
    guardrail_core::inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for CircuitBreaker<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("upstream", &self.shared.settings.name)
            .finish()
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for CircuitBreaker<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<ResB>;
    type Error = OutboundError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(OutboundError::from_inner)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let settings = &self.shared.settings;
        let started = settings.slow_call_rate.is_some().then(Instant::now);
        match self.shared.acquire() {
            Ok(permit) => {
                let probe_timer = permit
                    .probe
                    .then(|| tokio::time::sleep(settings.probe_timeout));
                ResponseFuture {
                    inner: Some(self.inner.call(req)),
                    permit: Some(permit),
                    started,
                    probe_timer,
                    refused: None,
                }
            }
            Err(retry_after) => ResponseFuture {
                inner: None,
                permit: None,
                started: None,
                probe_timer: None,
                refused: Some(retry_after),
            },
        }
    }
}

pin_project! {
    /// Response future for [`CircuitBreaker`]: the call, its outcome
    /// recorded when it ends (a probe failed at its timeout); or the
    /// refusal.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
        permit: Option<Permit>,
        // When the call began, if slow calls are looked for.
        started: Option<Instant>,
        #[pin]
        probe_timer: Option<Sleep>,
        refused: Option<Duration>,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("refused", &self.refused)
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<B>, OutboundError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            let retry_after = this.refused.take().unwrap_or_default();
            return Poll::Ready(Err(OutboundError::CircuitOpen { retry_after }));
        };
        let out = match inner.poll(cx) {
            Poll::Ready(out) => out.map_err(OutboundError::from_inner),
            Poll::Pending => {
                let timed_out = this
                    .probe_timer
                    .as_mut()
                    .as_pin_mut()
                    .is_some_and(|timer| timer.poll(cx).is_ready());
                if !timed_out {
                    return Poll::Pending;
                }
                this.inner.set(None);
                Err(OutboundError::Timeout)
            }
        };
        if let Some(permit) = this.permit.take() {
            let counted = !matches!(
                out,
                Err(OutboundError::CircuitOpen { .. } | OutboundError::BulkheadFull)
            );
            if counted {
                let status = out.as_ref().ok().map(Response::status);
                let failed = (permit.shared.settings.failure_when)(status);
                let slow = this
                    .started
                    .is_some_and(|started| started.elapsed() >= permit.shared.settings.slow_call);
                permit.record(failed, slow);
            }
        }
        Poll::Ready(out)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering},
    };

    use guardrails_testkit::capture;
    use tower::{ServiceExt, service_fn};

    use super::*;

    /// An upstream whose answer and delay the test sets, counting calls.
    #[derive(Clone, Default)]
    struct Upstream {
        status: Arc<AtomicU16>,
        delay_ms: Arc<AtomicU64>,
        calls: Arc<AtomicUsize>,
    }

    impl Upstream {
        fn answering(status: u16) -> Self {
            let up = Self::default();
            up.set(status, 0);
            up
        }

        fn set(&self, status: u16, delay_ms: u64) {
            self.status.store(status, Ordering::SeqCst);
            self.delay_ms.store(delay_ms, Ordering::SeqCst);
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }

        fn behind(
            &self,
            breaker: &CircuitBreakerLayer,
        ) -> impl Service<
            Request<()>,
            Response = Response<()>,
            Error = OutboundError,
            Future: Send,
        > + Clone
        + use<> {
            let up = self.clone();
            breaker.layer(service_fn(move |_req: Request<()>| {
                let up = up.clone();
                async move {
                    up.calls.fetch_add(1, Ordering::SeqCst);
                    let delay = up.delay_ms.load(Ordering::SeqCst);
                    if delay > 0 {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                    }
                    let mut res = Response::new(());
                    *res.status_mut() =
                        StatusCode::from_u16(up.status.load(Ordering::SeqCst)).unwrap();
                    Ok::<_, Infallible>(res)
                }
            }))
        }
    }

    async fn call(
        client: &(impl Service<Request<()>, Response = Response<()>, Error = OutboundError> + Clone),
    ) -> Result<u16, OutboundError> {
        client
            .clone()
            .oneshot(Request::new(()))
            .await
            .map(|r| r.status().as_u16())
    }

    fn breaker() -> CircuitBreakerLayer {
        CircuitBreakerLayer::new("test")
            .window_calls(10)
            .min_calls(5)
            .failure_rate(0.5)
            .open_for(Duration::from_secs(30))
            .half_open_probes(2)
            .probe_timeout(Duration::from_secs(2))
    }

    #[tokio::test(start_paused = true)]
    async fn opens_at_the_threshold_after_the_minimum_calls_and_refuses_without_calling() {
        let (_guard, logs) = capture::json();
        let breaker = breaker();
        let up = Upstream::answering(503);
        let client = up.behind(&breaker);
        for _ in 0..4 {
            assert_eq!(call(&client).await.unwrap(), 503);
            assert_eq!(
                breaker.state(),
                CircuitState::Closed,
                "fewer than min_calls"
            );
        }
        assert_eq!(call(&client).await.unwrap(), 503);
        assert_eq!(breaker.state(), CircuitState::Open);
        assert_eq!(up.calls(), 5);
        tokio::time::advance(Duration::from_secs(10)).await;
        let refused = call(&client).await.unwrap_err();
        assert!(
            matches!(refused, OutboundError::CircuitOpen { retry_after } if retry_after == Duration::from_secs(20)),
            "{refused:?}"
        );
        assert_eq!(up.calls(), 5, "the upstream was not called");
        assert_eq!(
            breaker.health_source().check().status,
            guardrail_core::health::HealthStatus::Warn
        );
        let lines = logs.lines();
        let opened = lines
            .iter()
            .find(|l| l["event"] == "integration.circuit_opened")
            .unwrap();
        assert_eq!(opened["upstream"], "test");
        assert_eq!(opened["reason"], "failure rate");
    }

    #[tokio::test(start_paused = true)]
    async fn below_the_failure_rate_it_stays_closed() {
        let (_guard, _logs) = capture::json();
        let breaker = breaker();
        let up = Upstream::answering(200);
        let client = up.behind(&breaker);
        for i in 0..20 {
            up.set(if i % 3 == 0 { 500 } else { 200 }, 0);
            let _ = call(&client).await;
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
        // 4xx are the caller's problem, not the upstream's.
        up.set(404, 0);
        for _ in 0..20 {
            let _ = call(&client).await;
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    async fn opened(breaker: &CircuitBreakerLayer, up: &Upstream) {
        up.set(500, 0);
        let client = up.behind(breaker);
        while breaker.state() != CircuitState::Open {
            let _ = call(&client).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn half_opens_after_the_open_time_and_closes_when_the_probes_succeed() {
        let (_guard, logs) = capture::json();
        let breaker = breaker();
        let up = Upstream::default();
        opened(&breaker, &up).await;
        let client = up.behind(&breaker);
        up.set(200, 0);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(call(&client).await.unwrap(), 200);
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        assert_eq!(call(&client).await.unwrap(), 200);
        assert_eq!(breaker.state(), CircuitState::Closed);
        let lines = logs.lines();
        for event in [
            "integration.circuit_half_open",
            "integration.circuit_closed",
        ] {
            assert!(lines.iter().any(|l| l["event"] == event), "{event}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_opens_it_again() {
        let (_guard, _logs) = capture::json();
        let breaker = breaker();
        let up = Upstream::default();
        opened(&breaker, &up).await;
        let client = up.behind(&breaker);
        tokio::time::advance(Duration::from_secs(30)).await;
        let before = up.calls();
        assert_eq!(call(&client).await.unwrap(), 500);
        assert_eq!(up.calls(), before + 1);
        assert_eq!(breaker.state(), CircuitState::Open);
        assert!(matches!(
            call(&client).await,
            Err(OutboundError::CircuitOpen { .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_probe_times_out_and_never_leaves_it_half_open() {
        let (_guard, _logs) = capture::json();
        let breaker = breaker();
        let up = Upstream::default();
        opened(&breaker, &up).await;
        let client = up.behind(&breaker);
        tokio::time::advance(Duration::from_secs(30)).await;
        up.set(200, 3_600_000);
        let start = Instant::now();
        let probe = call(&client).await;
        assert!(matches!(probe, Err(OutboundError::Timeout)), "{probe:?}");
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(2),
            "failed at the probe timeout"
        );
        assert_eq!(breaker.state(), CircuitState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn probes_are_bounded_while_they_run() {
        let (_guard, _logs) = capture::json();
        let breaker = breaker();
        let up = Upstream::default();
        opened(&breaker, &up).await;
        let client = up.behind(&breaker);
        tokio::time::advance(Duration::from_secs(30)).await;
        up.set(200, 1000);
        let probes: Vec<_> = (0..2)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move { call(&client).await })
            })
            .collect();
        tokio::task::yield_now().await;
        let before = up.calls();
        assert!(matches!(
            call(&client).await,
            Err(OutboundError::CircuitOpen { .. })
        ));
        assert_eq!(up.calls(), before, "no third probe");
        for p in probes {
            assert_eq!(p.await.unwrap().unwrap(), 200);
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_calls_count() {
        let (_guard, _logs) = capture::json();
        let breaker = breaker()
            .slow_call(Duration::from_millis(500))
            .slow_call_rate(0.6);
        let up = Upstream::default();
        up.set(200, 800);
        let client = up.behind(&breaker);
        for _ in 0..5 {
            assert_eq!(call(&client).await.unwrap(), 200);
        }
        assert_eq!(breaker.state(), CircuitState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn a_time_window_forgets_old_failures() {
        let (_guard, _logs) = capture::json();
        let breaker = breaker().window_duration(Duration::from_secs(10));
        let up = Upstream::answering(500);
        let client = up.behind(&breaker);
        for _ in 0..4 {
            let _ = call(&client).await;
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        up.set(200, 0);
        for _ in 0..4 {
            let _ = call(&client).await;
        }
        up.set(500, 0);
        let _ = call(&client).await;
        assert_eq!(
            breaker.state(),
            CircuitState::Closed,
            "1 failure in 5 within the window"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_time_too_long_for_the_clock_does_not_panic() {
        let (_guard, _logs) = capture::json();
        let breaker = breaker().open_for(Duration::MAX);
        let up = Upstream::default();
        opened(&breaker, &up).await;
        assert!(matches!(
            call(&up.behind(&breaker)).await,
            Err(OutboundError::CircuitOpen { .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn operators_can_force_it_open_and_reset_it() {
        let (_guard, _logs) = capture::json();
        let breaker = breaker();
        let up = Upstream::answering(200);
        let client = up.behind(&breaker);
        breaker.force_open();
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(matches!(
            call(&client).await,
            Err(OutboundError::CircuitOpen { .. })
        ));
        assert_eq!(breaker.state(), CircuitState::ForcedOpen);
        breaker.reset();
        assert_eq!(call(&client).await.unwrap(), 200);
        assert_eq!(up.calls(), 1);
    }
}

//! Request statistics over sliding windows, in process and in bounded
//! memory, for the health report and the alert rules: whatever exporter
//! (if any) the service uses.
//!
//! Each request is recorded once ([`RequestStats::record`]): its status
//! and latency. A window — the last minute, 5 or 30 minutes, hour or 6
//! hours — gives the request rate, the error rate (**5xx only**: 4xx are counted apart,
//! so a flood of 401s or 429s is a security signal, not an error-rate
//! alert) and the latency percentiles.
//!
//! Latencies are kept in logarithmic buckets 3 % wide, so a percentile is
//! within 1.5 % of the true value (relative); memory is fixed: two rings of
//! 60 slots (5 s slots for the last 5 minutes, 1 min slots for the last
//! hour), ~700 counters each, and 72 slots of 5 min for 6 hours with
//! counts only (no percentiles: what slow-burn SLO alerts need).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use monitor_layer::{RequestStats, Window};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let stats = RequestStats::new();
//! for ms in 1..=100 {
//!     stats.record(200, Duration::from_millis(ms));
//! }
//! stats.record(503, Duration::from_millis(5));
//! stats.record(401, Duration::from_millis(1));
//! let minute = stats.window(Window::Minute);
//! assert_eq!(minute.requests, 102);
//! assert_eq!(minute.server_errors, 1);
//! assert_eq!(minute.client_errors, 1);
//! let p95 = minute.p95.unwrap().as_secs_f64() * 1000.0;
//! assert!((p95 - 94.0).abs() / 94.0 <= 0.02, "{p95}");
//! # }
//! ```

use std::{
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::time::Instant;

/// Bucket growth: each latency bucket is 3 % wider than the one before,
/// so the midpoint estimate is within 1.5 % of any value in it.
const GAMMA: f64 = 1.03;
/// The smallest latency told apart: 1 µs (anything less counts as it).
const MIN_NANOS: f64 = 1_000.0;
/// Buckets from 1 µs to beyond 1000 s (`ln(1e9) / ln(1.03)` ≈ 701).
const BUCKETS: usize = 704;
const SLOTS: usize = 60;

/// A sliding window of [`RequestStats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Window {
    /// The last minute (5 s resolution).
    Minute,
    /// The last 5 minutes (5 s resolution).
    FiveMinutes,
    /// The last 30 minutes (1 min resolution).
    ThirtyMinutes,
    /// The last hour (1 min resolution).
    Hour,
    /// The last 6 hours (5 min resolution; counts only, no percentiles):
    /// for slow-burn SLO alerts.
    SixHours,
}

impl Window {
    /// Its length.
    pub fn duration(self) -> Duration {
        match self {
            Self::Minute => Duration::from_secs(60),
            Self::FiveMinutes => Duration::from_secs(300),
            Self::ThirtyMinutes => Duration::from_secs(1800),
            Self::Hour => Duration::from_secs(3600),
            Self::SixHours => Duration::from_secs(6 * 3600),
        }
    }

    /// `"1m"`, `"5m"` or `"1h"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minute => "1m",
            Self::FiveMinutes => "5m",
            Self::ThirtyMinutes => "30m",
            Self::Hour => "1h",
            Self::SixHours => "6h",
        }
    }
}

/// What one window saw.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct WindowStats {
    /// Requests answered in the window.
    pub requests: u64,
    /// Of which 5xx.
    pub server_errors: u64,
    /// Of which 4xx (not errors of the service: counted apart).
    pub client_errors: u64,
    /// Requests per second over the window's length.
    pub rate_per_s: f64,
    /// `server_errors / requests` (0 without requests).
    pub error_rate: f64,
    /// Latency percentiles (none without requests).
    pub p50: Option<Duration>,
    /// 95th percentile.
    pub p95: Option<Duration>,
    /// 99th percentile.
    pub p99: Option<Duration>,
}

/// Request statistics over sliding windows from a minute to six hours; clones
/// share them. Cheap to record into: one short lock (shared by every
/// request) and a few
/// counter increments.
#[derive(Clone)]
pub struct RequestStats {
    inner: Arc<Mutex<Rings>>,
    /// The health details last computed, and when.
    details: Arc<Mutex<Option<(Instant, serde_json::Value)>>>,
}

impl fmt::Debug for RequestStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestStats").finish_non_exhaustive()
    }
}

impl Default for RequestStats {
    fn default() -> Self {
        Self::new()
    }
}

struct Rings {
    start: Instant,
    /// 5 s slots: the last 5 minutes.
    fine: Ring,
    /// 1 min slots: the last hour.
    coarse: Ring,
    /// 5 min slots, counts only: the last 6 hours.
    long: Ring,
}

struct Ring {
    width: Duration,
    slots: Vec<Slot>,
}

struct Slot {
    /// Which period (time since start / width) the counts are of.
    period: u64,
    requests: u64,
    server_errors: u64,
    client_errors: u64,
    /// `None` in a counts-only ring.
    latencies: Option<Box<[u32; BUCKETS]>>,
}

impl Slot {
    fn empty(latencies: bool) -> Self {
        Self {
            period: u64::MAX,
            requests: 0,
            server_errors: 0,
            client_errors: 0,
            latencies: latencies.then(|| Box::new([0; BUCKETS])),
        }
    }
}

fn bucket_of(latency: Duration) -> usize {
    let nanos = latency.as_nanos() as f64;
    if nanos <= MIN_NANOS {
        return 0;
    }
    let index = ((nanos / MIN_NANOS).ln() / GAMMA.ln()).ceil() as usize;
    index.min(BUCKETS - 1)
}

/// The value a bucket stands for: the middle of its range, so the error
/// is at most half its width.
fn value_of(bucket: usize) -> Duration {
    let upper = MIN_NANOS * GAMMA.powi(bucket as i32);
    let mid = upper * 2.0 / (1.0 + GAMMA);
    Duration::from_nanos(mid as u64)
}

impl Ring {
    fn new(width: Duration, slots: usize, latencies: bool) -> Self {
        Self {
            width,
            slots: (0..slots).map(|_| Slot::empty(latencies)).collect(),
        }
    }

    fn period(&self, elapsed: Duration) -> u64 {
        (elapsed.as_nanos() / self.width.as_nanos()) as u64
    }

    fn record(&mut self, elapsed: Duration, status: u16, bucket: usize) {
        let period = self.period(elapsed);
        let len = self.slots.len() as u64;
        let slot = &mut self.slots[(period % len) as usize];
        if slot.period != period {
            // The ring came round: this slot starts over for its new period.
            slot.period = period;
            slot.requests = 0;
            slot.server_errors = 0;
            slot.client_errors = 0;
            if let Some(latencies) = &mut slot.latencies {
                latencies.fill(0);
            }
        }
        slot.requests += 1;
        match status {
            500..=599 => slot.server_errors += 1,
            400..=499 => slot.client_errors += 1,
            _ => {}
        }
        if let Some(latencies) = &mut slot.latencies {
            latencies[bucket] = latencies[bucket].saturating_add(1);
        }
    }

    /// The sums of the slots of the last `count` periods up to `elapsed`.
    fn sum(&self, elapsed: Duration, count: u64, into: &mut Sum) {
        let now = self.period(elapsed);
        let first = now.saturating_sub(count - 1);
        for slot in &self.slots {
            if slot.period != u64::MAX && (first..=now).contains(&slot.period) {
                into.requests += slot.requests;
                into.server_errors += slot.server_errors;
                into.client_errors += slot.client_errors;
                for (total, n) in into
                    .latencies
                    .iter_mut()
                    .zip(slot.latencies.iter().flat_map(|l| l.iter()))
                {
                    *total += u64::from(*n);
                }
            }
        }
    }
}

struct Sum {
    requests: u64,
    server_errors: u64,
    client_errors: u64,
    latencies: Vec<u64>,
}

impl Sum {
    fn percentile(&self, q: f64) -> Option<Duration> {
        let total: u64 = self.latencies.iter().sum();
        if total == 0 {
            return None;
        }
        // The smallest value with at least q of the requests at or below.
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, n) in self.latencies.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(value_of(bucket));
            }
        }
        None
    }
}

impl RequestStats {
    /// Empty statistics; time starts now (tokio's clock, so tests can
    /// pause it).
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Rings {
                start: Instant::now(),
                fine: Ring::new(Duration::from_secs(5), SLOTS, true),
                coarse: Ring::new(Duration::from_secs(60), SLOTS, true),
                long: Ring::new(Duration::from_secs(300), 72, false),
            })),
            details: Arc::default(),
        }
    }

    /// `compute`'s value, computed again only when the last one is older
    /// than `max_age`.
    pub(crate) fn cached_details(
        &self,
        max_age: Duration,
        compute: impl FnOnce() -> serde_json::Value,
    ) -> serde_json::Value {
        let mut cached = self.details.lock().unwrap_or_else(PoisonError::into_inner);
        match &*cached {
            Some((at, value)) if at.elapsed() < max_age => value.clone(),
            _ => {
                let value = compute();
                *cached = Some((Instant::now(), value.clone()));
                value
            }
        }
    }

    fn rings(&self) -> std::sync::MutexGuard<'_, Rings> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one answered request: its status and how long it took.
    pub fn record(&self, status: u16, latency: Duration) {
        let bucket = bucket_of(latency);
        let mut rings = self.rings();
        let elapsed = rings.start.elapsed();
        rings.fine.record(elapsed, status, bucket);
        rings.coarse.record(elapsed, status, bucket);
        rings.long.record(elapsed, status, bucket);
    }

    /// What the window saw, up to now: its last whole slots and the
    /// current one (so a minute is 55–60 s: exact to its slot width, 5 s
    /// or 1 min); the rate is over the time those cover.
    pub fn window(&self, window: Window) -> WindowStats {
        let rings = self.rings();
        let elapsed = rings.start.elapsed();
        // What the window's slots cover: its whole slots and the part of
        // the current one gone by, and never more than the time since the
        // start (at least a second, so a first request is not a huge rate).
        let (width, slots) = match window {
            Window::Minute => (rings.fine.width, 12u32),
            Window::FiveMinutes => (rings.fine.width, 60),
            Window::ThirtyMinutes => (rings.coarse.width, 30),
            Window::Hour => (rings.coarse.width, 60),
            Window::SixHours => (rings.long.width, 72),
        };
        let into_slot = Duration::from_nanos((elapsed.as_nanos() % width.as_nanos()) as u64);
        let covered = (width * (slots - 1) + into_slot)
            .min(elapsed)
            .max(Duration::from_secs(1));
        let mut sum = Sum {
            requests: 0,
            server_errors: 0,
            client_errors: 0,
            latencies: vec![0; BUCKETS],
        };
        match window {
            Window::Minute => rings.fine.sum(elapsed, 12, &mut sum),
            Window::FiveMinutes => rings.fine.sum(elapsed, 60, &mut sum),
            Window::ThirtyMinutes => rings.coarse.sum(elapsed, 30, &mut sum),
            Window::Hour => rings.coarse.sum(elapsed, 60, &mut sum),
            Window::SixHours => rings.long.sum(elapsed, 72, &mut sum),
        }
        drop(rings);
        let error_rate = if sum.requests == 0 {
            0.0
        } else {
            sum.server_errors as f64 / sum.requests as f64
        };
        WindowStats {
            requests: sum.requests,
            server_errors: sum.server_errors,
            client_errors: sum.client_errors,
            rate_per_s: sum.requests as f64 / covered.as_secs_f64(),
            error_rate,
            p50: sum.percentile(0.50),
            p95: sum.percentile(0.95),
            p99: sum.percentile(0.99),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(sorted: &[Duration], q: f64) -> Duration {
        let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
        sorted[rank - 1]
    }

    fn within(got: Option<Duration>, want: Duration, tolerance: f64) {
        let got = got.expect("a percentile").as_secs_f64();
        let want = want.as_secs_f64();
        assert!(
            (got - want).abs() / want <= tolerance,
            "got {got}, want {want} (±{tolerance})"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn percentiles_are_within_two_percent_of_the_exact_ones() {
        // Three shapes: uniform, long-tailed, and two clusters far apart.
        let uniform: Vec<Duration> = (1..=10_000).map(Duration::from_micros).collect();
        let tailed: Vec<Duration> = (1..=10_000u64)
            .map(|i| Duration::from_micros(200 + i * i / 50))
            .collect();
        let clusters: Vec<Duration> = (0..10_000u64)
            .map(|i| {
                if i % 10 < 9 {
                    Duration::from_millis(3) + Duration::from_micros(i % 97)
                } else {
                    Duration::from_secs(2) + Duration::from_millis(i % 89)
                }
            })
            .collect();
        for latencies in [uniform, tailed, clusters] {
            let stats = RequestStats::new();
            for l in &latencies {
                stats.record(200, *l);
            }
            let mut sorted = latencies.clone();
            sorted.sort();
            let minute = stats.window(Window::Minute);
            within(minute.p50, exact(&sorted, 0.50), 0.02);
            within(minute.p95, exact(&sorted, 0.95), 0.02);
            within(minute.p99, exact(&sorted, 0.99), 0.02);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn only_5xx_are_errors_and_windows_forget_what_is_older() {
        let stats = RequestStats::new();
        for status in [200, 200, 201, 304, 401, 429, 404, 500, 503, 200] {
            stats.record(status, Duration::from_millis(10));
        }
        let minute = stats.window(Window::Minute);
        assert_eq!(
            (minute.requests, minute.server_errors, minute.client_errors),
            (10, 2, 3)
        );
        assert!((minute.error_rate - 0.2).abs() < 1e-9);
        // At the start the rate is over a second, not a minute.
        assert!((minute.rate_per_s - 10.0).abs() < 1e-9);

        // Two minutes on: gone from the minute, still in 5 minutes and the hour.
        tokio::time::advance(Duration::from_secs(120)).await;
        stats.record(200, Duration::from_millis(10));
        assert_eq!(stats.window(Window::Minute).requests, 1);
        assert_eq!(stats.window(Window::FiveMinutes).requests, 11);
        assert_eq!(stats.window(Window::Hour).requests, 11);
        // Past 5 minutes, then past the hour.
        tokio::time::advance(Duration::from_secs(300)).await;
        assert_eq!(stats.window(Window::FiveMinutes).requests, 0);
        assert_eq!(stats.window(Window::Hour).requests, 11);
        tokio::time::advance(Duration::from_secs(3600)).await;
        let hour = stats.window(Window::Hour);
        assert_eq!((hour.requests, hour.p50), (0, None));
        assert_eq!(hour.error_rate, 0.0);
        // A slot reused after its ring came round holds only the new period.
        stats.record(503, Duration::from_millis(1));
        let minute = stats.window(Window::Minute);
        assert_eq!((minute.requests, minute.server_errors), (1, 1));
    }

    #[test]
    fn buckets_cover_a_microsecond_to_beyond_a_thousand_seconds() {
        assert_eq!(bucket_of(Duration::ZERO), 0);
        assert!(bucket_of(Duration::from_secs(1000)) < BUCKETS - 1);
        assert_eq!(bucket_of(Duration::from_secs(100_000)), BUCKETS - 1);
        for micros in [1, 7, 100, 12_345, 2_000_000, 900_000_000] {
            let d = Duration::from_micros(micros);
            let back = value_of(bucket_of(d)).as_secs_f64();
            assert!(
                (back - d.as_secs_f64()).abs() / d.as_secs_f64() <= 0.015,
                "{d:?}"
            );
        }
    }
}

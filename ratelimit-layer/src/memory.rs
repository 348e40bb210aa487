//! The in-memory backend: governor's GCRA over a store with a hard key cap.
//!
//! Each policy has a governor keyed limiter whose state store holds at most
//! `max_keys` keys, spread over shards. A new key arriving at a full shard
//! evicts the most idle of a few sampled keys (the one closest to a full
//! bucket), and every few thousand decisions one shard drops the keys whose
//! bucket is full again (indistinguishable from a new key). Nobody has to
//! call `retain_recent` by hand, and a flood of distinct keys can't grow
//! memory past the cap.

use std::{
    collections::HashMap,
    hash::{BuildHasher, BuildHasherDefault, Hasher},
    net::IpAddr,
    num::NonZeroU32,
    ops::Add,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

/// A shard lock. A decision holds it for one hash probe and a few
/// arithmetic operations; rarer holders are a new key's insertion (which
/// may grow the shard's map) and a sweep (one pass over a shard of at most
/// `SHARD_KEYS` keys, a few microseconds). For holds this short a spin lock
/// fits: its unlock is a plain release store, one locked instruction fewer
/// per decision than a parking mutex (whose unlock must check for
/// sleepers). A waiter yields its thread on every failed attempt instead of
/// sleeping; if the holder was preempted and nothing else wants the
/// waiter's core, that is a busy loop of `sched_yield` until the holder
/// runs again — the price of the faster common case.
type Mutex<T> = spin::mutex::SpinMutex<T, spin::relax::Yield>;

use governor::{
    Quota, RateLimiter,
    clock::{Clock, QuantaClock, Reference},
    middleware::{NoOpMiddleware, StateInformationMiddleware},
    nanos::Nanos,
    state::StateStore,
};

use crate::{RateLimitPolicy, decision::Decision, key::Key};

/// Shards per store: at least `MIN_SHARDS`, more for large caps so that a
/// shard holds at most `SHARD_KEYS` keys (a sweep holds one shard's lock
/// for one pass over it), up to `MAX_SHARDS` (caps above
/// `MAX_SHARDS * SHARD_KEYS` get larger shards). Sweeps take one shard per
/// `SWEEP_EVERY` decisions in turn, so with many shards each is swept less
/// often; the cap holds regardless (a new key at a full shard evicts).
const MIN_SHARDS: usize = 64;
const MAX_SHARDS: usize = 1024;
const SHARD_KEYS: usize = 4096;
const EVICTION_SAMPLE: usize = 8;
const SWEEP_EVERY: u64 = 1024;

thread_local! {
    static DECISIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Instants on tokio's clock, so `tokio::time::pause()` drives the limiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TokioInstant(tokio::time::Instant);

impl Add<Nanos> for TokioInstant {
    type Output = Self;
    fn add(self, rhs: Nanos) -> Self {
        Self(self.0 + Duration::from(rhs))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        self.0.saturating_duration_since(earlier.0).into()
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        Self(self.0.checked_sub(duration.into()).unwrap_or(self.0))
    }
}

/// governor's clock on tokio time.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TokioClock;

impl Clock for TokioClock {
    type Instant = TokioInstant;
    fn now(&self) -> TokioInstant {
        TokioInstant(tokio::time::Instant::now())
    }
}

/// Keys are already (randomly seeded) hashes: hash them no further.
#[derive(Default)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Shard = HashMap<u64, u64, BuildHasherDefault<PassThrough>>;

/// One shard and its cap, alone on its cache lines: threads deciding on
/// different shards never contend for a line (128 bytes: x86's adjacent
/// line prefetcher pulls lines in pairs).
#[repr(align(128))]
struct Slot {
    map: Mutex<Shard>,
    cap: usize,
}

/// A sharded, capped GCRA state store: key hash → theoretical arrival time.
///
/// A cheap handle (governor holds one, the limiter another for sweeps and
/// counts) whose shards are one pointer away: a decision follows as few
/// pointers as possible.
#[derive(Clone)]
pub(crate) struct CappedStore {
    /// Each shard with its own cap; the caps add up to `max_keys` exactly.
    shards: Arc<[Slot]>,
    /// `shards.len() - 1` (a power of two minus one).
    mask: usize,
    /// Keys held, and the shard the next sweep takes.
    counts: Arc<(AtomicUsize, AtomicUsize)>,
}

impl CappedStore {
    fn new(max_keys: usize) -> Self {
        let max_keys = max_keys.max(1);
        // A power of two no larger than the cap, so every shard holds >= 1.
        let wanted = max_keys
            .div_ceil(SHARD_KEYS)
            .next_power_of_two()
            .clamp(MIN_SHARDS, MAX_SHARDS);
        let count = wanted.min(1 << max_keys.ilog2());
        let shards = (0..count)
            .map(|i| {
                let cap = max_keys / count + usize::from(i < max_keys % count);
                Slot {
                    map: Mutex::new(Shard::default()),
                    cap,
                }
            })
            .collect();
        Self {
            shards,
            mask: count - 1,
            counts: Arc::new((AtomicUsize::new(0), AtomicUsize::new(0))),
        }
    }

    fn shard(&self, key: u64) -> &Slot {
        // The high half picks the shard; the map hashes on the whole key.
        &self.shards[(key >> 32) as usize & self.mask]
    }

    /// Drops keys of shard `index` whose bucket is full again at `now`.
    fn sweep(&self, index: usize, now: Nanos) {
        let Some(slot) = self.shards.get(index % self.shards.len()) else {
            return;
        };
        let mut shard = slot.map.lock();
        let before = shard.len();
        shard.retain(|_, tat| *tat > now.as_u64());
        self.counts
            .0
            .fetch_sub(before - shard.len(), Ordering::Relaxed);
    }

    pub(crate) fn len(&self) -> usize {
        self.counts.0.load(Ordering::Relaxed)
    }
}

impl StateStore for CappedStore {
    type Key = u64;

    #[inline]
    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let slot = self.shard(*key);
        let mut shard = slot.map.lock();
        // A known key: one probe, updated in place.
        if let Some(stored) = shard.get_mut(key) {
            let (outcome, tat) = f(Some(Nanos::from(*stored)))?;
            *stored = tat.as_u64();
            return Ok(outcome);
        }
        self.insert(&mut shard, slot.cap, *key, f)
    }
}

impl CappedStore {
    /// A new key (rare next to known ones, so kept off the inlined path):
    /// at a full shard, evicts the sampled key closest to a full bucket.
    #[cold]
    #[inline(never)]
    fn insert<T, F, E>(&self, shard: &mut Shard, cap: usize, key: u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let (outcome, tat) = f(None)?;
        if shard.len() >= cap {
            // Evict the sampled key closest to a full bucket.
            let idle = shard
                .iter()
                .take(EVICTION_SAMPLE)
                .min_by_key(|(_, tat)| **tat)
                .map(|(k, _)| *k);
            if let Some(idle) = idle {
                shard.remove(&idle);
                self.counts.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.counts.0.fetch_add(1, Ordering::Relaxed);
        shard.insert(key, tat.as_u64());
        Ok(outcome)
    }
}

/// Which clock a limiter counts time on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LimiterClock {
    /// A TSC-based clock (governor's default, via quanta): the fastest read.
    #[default]
    Quanta,
    /// tokio's clock, so `tokio::time::pause()` and `advance()` drive the
    /// limiter: for tests.
    Tokio,
}

type Limiter<C> = RateLimiter<u64, CappedStore, C, StateInformationMiddleware>;

/// One policy's in-memory limiter.
pub(crate) enum MemoryLimiter {
    Quanta(ClockedLimiter<QuantaClock>),
    Tokio(ClockedLimiter<TokioClock>),
}

/// A limiter on one clock.
pub(crate) struct ClockedLimiter<C: Clock> {
    limiter: Limiter<C>,
    clock: C,
    store: CappedStore,
    /// Our copy of the limiter's start, for sweeps (a hair later than
    /// governor's own, so sweeps err towards keeping keys).
    start: C::Instant,
    /// Randomly seeded per limiter, so keys can't be chosen to collide.
    hasher: foldhash::fast::RandomState,
    /// Seeded apart from `hasher`: an address can't be made to collide with
    /// another kind of key.
    ip_hasher: foldhash::fast::RandomState,
    /// `guardrails_ratelimit_keys{policy}`, updated on sweeps.
    keys: metrics::Gauge,
    burst: u32,
    interval: Duration,
    /// Whether allowed decisions report the quota left (for headers).
    report: bool,
}

impl MemoryLimiter {
    /// `report`: whether allowed decisions carry the quota left (only
    /// headers need it; denied decisions always carry everything).
    pub(crate) fn new(
        policy: &RateLimitPolicy,
        max_keys: usize,
        clock: LimiterClock,
        keys: metrics::Gauge,
        report: bool,
    ) -> Self {
        match clock {
            LimiterClock::Quanta => Self::Quanta(ClockedLimiter::new(
                policy,
                max_keys,
                QuantaClock::default(),
                keys,
                report,
            )),
            LimiterClock::Tokio => Self::Tokio(ClockedLimiter::new(
                policy, max_keys, TokioClock, keys, report,
            )),
        }
    }

    /// Counts one request for `key`.
    pub(crate) fn decide(&self, key: &Key) -> Decision {
        match self {
            Self::Quanta(l) => l.decide_hashed(l.hash(key)),
            Self::Tokio(l) => l.decide_hashed(l.hash(key)),
        }
    }

    /// Counts one request for the address `ip`: the same bucket as
    /// `decide(&Key::Ip(ip))`, without building the key.
    #[inline]
    pub(crate) fn decide_ip(&self, ip: IpAddr) -> Decision {
        match self {
            Self::Quanta(l) => l.decide_hashed(l.hash_ip(ip)),
            Self::Tokio(l) => l.decide_hashed(l.hash_ip(ip)),
        }
    }

    /// Keys currently held.
    pub(crate) fn key_count(&self) -> usize {
        match self {
            Self::Quanta(l) => l.store.len(),
            Self::Tokio(l) => l.store.len(),
        }
    }

    #[cfg(test)]
    fn store(&self) -> &CappedStore {
        match self {
            Self::Quanta(l) => &l.store,
            Self::Tokio(l) => &l.store,
        }
    }
}

impl<C> ClockedLimiter<C>
where
    C: Clock + Clone,
{
    fn new(
        policy: &RateLimitPolicy,
        max_keys: usize,
        clock: C,
        keys: metrics::Gauge,
        report: bool,
    ) -> Self {
        let burst = NonZeroU32::new(policy.burst).unwrap_or(NonZeroU32::MIN);
        let interval = policy.emission_interval().max(Duration::from_nanos(1));
        let quota = Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        let store = CappedStore::new(max_keys);
        let limiter: Limiter<C> =
            RateLimiter::<u64, CappedStore, C, NoOpMiddleware<C::Instant>>::new(
                quota,
                store.clone(),
                clock.clone(),
            )
            .with_middleware::<StateInformationMiddleware>();
        Self {
            start: clock.now(),
            clock,
            limiter,
            store,
            hasher: foldhash::fast::RandomState::default(),
            ip_hasher: foldhash::fast::RandomState::default(),
            keys,
            burst: burst.get(),
            interval,
            report,
        }
    }

    /// The store key of `key`: addresses (nearly every key) hashed as one
    /// integer, everything else as the whole `Key`.
    #[inline]
    fn hash(&self, key: &Key) -> u64 {
        match key {
            Key::Ip(ip) => self.hash_ip(*ip),
            other => self.hasher.hash_one(other),
        }
    }

    #[inline]
    fn hash_ip(&self, ip: IpAddr) -> u64 {
        match ip {
            // IPv4 as one tagged integer (cheaper than its IPv6 form); an
            // IPv6 key could only hash alike if it were `::8000:0:a.b.c.d`,
            // a reserved address, grouped by a prefix of 65 or more.
            IpAddr::V4(ip) => self.ip_hasher.hash_one(u64::from(ip.to_bits()) | 1 << 63),
            IpAddr::V6(ip) => self.ip_hasher.hash_one(ip.to_bits()),
        }
    }

    /// Sweeps the next shard and reports the key count.
    #[cold]
    #[inline(never)]
    fn sweep_next(&self) {
        let shard = self.store.counts.1.fetch_add(1, Ordering::Relaxed);
        let now = self.clock.now().duration_since(self.start);
        self.store.sweep(shard, now);
        self.keys.set(self.store.len() as f64);
    }

    #[inline]
    fn decide_hashed(&self, hash: u64) -> Decision {
        // Every SWEEP_EVERY decisions on a thread sweep the next shard. The
        // counter is per thread: no cache line written by every request.
        let due = DECISIONS.with(|n| {
            let next = n.get().wrapping_add(1);
            n.set(next);
            // Mixed with the key's hash, so a fixed pattern of decisions per
            // request can't make one limiter always miss its turn.
            next.wrapping_add(hash).is_multiple_of(SWEEP_EVERY)
        });
        if due {
            self.sweep_next();
        }

        match self.limiter.check_key(&hash) {
            Ok(_) if !self.report => Decision::allow(self.burst, 0, Duration::ZERO),
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity().min(self.burst);
                Decision::allow(
                    self.burst,
                    remaining,
                    self.interval * (self.burst - remaining),
                )
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                let reset = wait + self.interval * self.burst.saturating_sub(1);
                Decision::deny(self.burst, wait, reset)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max_keys: usize) -> MemoryLimiter {
        MemoryLimiter::new(
            &RateLimitPolicy::per_minute(60).burst(5),
            max_keys,
            LimiterClock::Tokio,
            metrics::Gauge::noop(),
            true,
        )
    }

    #[test]
    fn threads_deciding_on_one_key_spend_the_burst_exactly() {
        const THREADS: usize = 4;
        const ATTEMPTS: usize = 50_000;
        const BURST: u32 = 120_000;
        let limiter = MemoryLimiter::new(
            &RateLimitPolicy::per_hour(1).burst(BURST),
            16,
            LimiterClock::Quanta,
            metrics::Gauge::noop(),
            false,
        );
        // All start together, so their decisions interleave on the lock.
        let start = std::sync::Barrier::new(THREADS);
        let allowed = std::thread::scope(|s| {
            let workers: Vec<_> = (0..THREADS)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        (0..ATTEMPTS)
                            .filter(|_| limiter.decide(&Key::Global).allowed)
                            .count()
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap())
                .sum::<usize>()
        });
        assert_eq!(
            allowed, BURST as usize,
            "200 000 attempts on one key, burst 120 000: every token spent once"
        );
    }

    #[test]
    fn caps_add_up_to_max_keys_exactly() {
        for max in [
            1,
            2,
            3,
            63,
            64,
            65,
            1000,
            100_000,
            524_287,
            MAX_SHARDS * SHARD_KEYS,
            10_000_000,
        ] {
            let store = CappedStore::new(max);
            assert!(store.shards.len() <= MAX_SHARDS);
            if max >= MIN_SHARDS {
                assert!(store.shards.len() >= MIN_SHARDS, "{max}");
            }
            if max <= MAX_SHARDS * SHARD_KEYS {
                assert!(
                    store.shards.iter().all(|s| s.cap <= SHARD_KEYS),
                    "{max}: shards stay small enough to sweep quickly"
                );
            }
            assert_eq!(
                store.shards.iter().map(|s| s.cap).sum::<usize>(),
                max,
                "{max}"
            );
            assert!(store.shards.iter().all(|s| s.cap >= 1));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_million_distinct_keys_never_exceed_max_keys() {
        let limiter = limiter(10_000);
        for i in 0..1_000_000u32 {
            let key = Key::Ip(std::net::IpAddr::V4(i.into()));
            assert!(limiter.decide(&key).allowed);
        }
        let held = limiter.key_count();
        assert!(held <= 10_000, "{held}");
        assert!(held >= 9_000, "{held}");
        let in_maps: usize = limiter
            .store()
            .shards
            .iter()
            .map(|s| s.map.lock().len())
            .sum();
        assert_eq!(in_maps, held, "the count matches what is stored");
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_has_one_bucket_whichever_way_it_is_decided() {
        let limiter = limiter(1_000);
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        for _ in 0..5 {
            assert!(limiter.decide_ip(ip).allowed);
        }
        assert!(!limiter.decide(&Key::Ip(ip)).allowed, "the same bucket");
        // Other kinds of key, and addresses that look alike, are apart.
        assert!(limiter.decide(&Key::Global).allowed);
        assert!(limiter.decide_ip("0.0.0.3".parse().unwrap()).allowed);
        assert!(
            limiter
                .decide_ip("::ffff:203.0.113.8".parse().unwrap())
                .allowed
        );
        assert!(limiter.decide_ip("::cb00:7109".parse().unwrap()).allowed);
    }

    #[tokio::test(start_paused = true)]
    async fn full_buckets_are_swept_away() {
        let limiter = limiter(100_000);
        for i in 0..5_000u32 {
            limiter.decide(&Key::Ip(std::net::IpAddr::V4(i.into())));
        }
        assert_eq!(limiter.key_count(), 5_000);
        // Long after, every bucket is full again: sweeps, triggered by the
        // traffic that keeps arriving, drop them.
        tokio::time::advance(Duration::from_secs(3600)).await;
        for i in 0..200_000u32 {
            limiter.decide(&Key::Custom(format!("later-{}", i % 50)));
        }
        assert!(
            limiter.key_count() <= 50,
            "{} keys left",
            limiter.key_count()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_new_keys_does_not_reset_a_limited_key() {
        let limiter = limiter(1_000);
        let abuser = Key::Ip("203.0.113.9".parse().unwrap());
        for _ in 0..5 {
            limiter.decide(&abuser);
        }
        assert!(!limiter.decide(&abuser).allowed, "bucket empty");
        // Eviction takes the most idle sampled key; an empty bucket is the
        // least idle of all, so churning keys can't buy the abuser a reset.
        for i in 0..50_000u32 {
            limiter.decide(&Key::Custom(i.to_string()));
        }
        assert!(limiter.key_count() <= 1_000);
        assert!(
            !limiter.decide(&abuser).allowed,
            "still limited after the flood"
        );
    }
}

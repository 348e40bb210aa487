//! The Redis backend: one GCRA decision per round trip, shared by every
//! replica.
//!
//! The decision is a server-side Lua script (`EVALSHA`, falling back to
//! `EVAL` once if the server lost its script cache). It reads Redis's own
//! `TIME`, so replica clocks don't matter, and stores one integer per key
//! with a TTL equal to the time until that bucket is full again, so Redis
//! memory stays bounded by the active keys. Every call is bounded by a
//! short timeout; what happens on failure is the layer's
//! [`OnRedisError`](crate::OnRedisError) choice.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use guardrail_core::{RedisConfig, RedisConnection};
//! use ratelimit_layer::RedisBackend;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // The service's one connection (`[redis]`), prepared lazily: building
//! // never blocks or fails on an unreachable server.
//! let redis = RedisConnection::open("redis://127.0.0.1:6379", &RedisConfig::default()).unwrap();
//! let backend = RedisBackend::new(redis).timeout(Duration::from_millis(50));
//! assert!(backend.bucket_key("per_ip", &ratelimit_layer::key::Key::Global).starts_with("guardrails:rl:"));
//! assert!(RedisConnection::open("not a url", &RedisConfig::default()).is_err());
//! # }
//! ```

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use guardrail_core::{EventName, RedisConnection, emit};
use redis::{RedisError, ServerErrorKind, aio::ConnectionManager};

use crate::{RateLimitPolicy, decision::Decision, key::Key};

/// While Redis fails, how often one decision tries it again.
const PROBE_EVERY_MS: u64 = 1_000;

/// GCRA on Redis time, in microseconds.
///
/// KEYS[1]: the bucket. ARGV[1]: emission interval. ARGV[2]: burst.
/// Returns {allowed (0/1), remaining, retry_after_us, reset_us}.
const GCRA: &str = r"
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - interval * burst
if allow_at > now then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, math.floor((now + interval * burst - new_tat) / interval), 0, new_tat - now}
";

/// A Redis connection for rate-limit decisions. Cheap to clone.
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

struct Inner {
    manager: ConnectionManager,
    script_sha: String,
    prefix: String,
    timeout: Duration,
    failing: AtomicBool,
    /// While failing: milliseconds since `base` before which Redis is not
    /// tried again (the fallback decides at once instead of waiting out a
    /// timeout per request).
    next_probe_ms: AtomicU64,
    base: std::time::Instant,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password: never printed.
        f.debug_struct("RedisBackend")
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.inner.timeout)
            .field("failing", &self.inner.failing.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Why a Redis decision could not be made.
#[derive(Debug)]
pub(crate) enum RedisFailure {
    Timeout,
    Error(RedisError),
    CoolingDown,
}

impl fmt::Display for RedisFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("timed out"),
            Self::CoolingDown => f.write_str("cooling down after failures"),
            // Kinds only: error text can carry the URL.
            Self::Error(e) => write!(f, "{:?}", e.kind()),
        }
    }
}

impl RedisBackend {
    /// Decides on the service's shared Redis connection (`[redis]`): keys
    /// under `<key_prefix>:rl`, each decision bounded by the connection's
    /// timeout.
    pub fn new(redis: RedisConnection) -> Self {
        Self::with(redis.manager(), redis.key_prefix("rl"), redis.timeout())
    }

    fn with(manager: ConnectionManager, prefix: String, timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                manager,
                script_sha: redis::Script::new(GCRA).get_hash().to_owned(),
                prefix,
                timeout,
                failing: AtomicBool::new(false),
                next_probe_ms: AtomicU64::new(0),
                base: std::time::Instant::now(),
            }),
        }
    }

    /// Replaces the prefix of every key (default `<[redis] key_prefix>:rl`).
    pub fn prefix(self, prefix: impl Into<String>) -> Self {
        Self::with(
            self.inner.manager.clone(),
            prefix.into(),
            self.inner.timeout,
        )
    }

    /// How long one decision may take before the fallback applies (default:
    /// the connection's timeout).
    pub fn timeout(self, timeout: Duration) -> Self {
        Self::with(
            self.inner.manager.clone(),
            self.inner.prefix.clone(),
            timeout,
        )
    }

    /// The Redis key of a policy's bucket for `key`.
    pub fn bucket_key(&self, policy: &str, key: &Key) -> String {
        format!("{}:{}:{}", self.inner.prefix, policy, key.storage_id())
    }

    /// Whether the last decision failed.
    pub fn is_failing(&self) -> bool {
        self.inner.failing.load(Ordering::Relaxed)
    }

    pub(crate) async fn decide(
        &self,
        policy: &RateLimitPolicy,
        key: &Key,
    ) -> Result<Decision, RedisFailure> {
        let now_ms = self.inner.base.elapsed().as_millis() as u64;
        if self.inner.failing.load(Ordering::Relaxed)
            && now_ms < self.inner.next_probe_ms.load(Ordering::Relaxed)
        {
            // Cooling down: one probe a second finds out when Redis is back.
            return Err(RedisFailure::CoolingDown);
        }
        let bucket = self.bucket_key(&policy.name, key);
        let interval_us = (policy.emission_interval().as_micros() as u64).max(1);
        let result = tokio::time::timeout(
            self.inner.timeout,
            self.eval(&bucket, interval_us, policy.burst),
        )
        .await;
        let result = match result {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(RedisFailure::Error(e)),
            Err(_) => Err(RedisFailure::Timeout),
        };
        match &result {
            Ok(_) => {
                if self.inner.failing.load(Ordering::Relaxed)
                    && self.inner.failing.swap(false, Ordering::Relaxed)
                {
                    emit!(
                        INFO,
                        EventName::INTEGRATION_BACKEND_RECOVERED,
                        backend = "redis"
                    );
                }
            }
            Err(failure) => {
                self.inner
                    .next_probe_ms
                    .store(now_ms + PROBE_EVERY_MS, Ordering::Relaxed);
                metrics::counter!(guardrail_core::metric::RATELIMIT_BACKEND_ERRORS_TOTAL, "backend" => "redis").increment(1);
                if !self.inner.failing.swap(true, Ordering::Relaxed) {
                    emit!(
                        ERROR,
                        EventName::INTEGRATION_BACKEND_FAILED,
                        backend = "redis",
                        reason = %failure,
                    );
                }
            }
        }
        let [allowed, remaining, retry_us, reset_us] = result?;
        let us = |v: i64| Duration::from_micros(v.max(0) as u64);
        Ok(if allowed == 1 {
            Decision::allow(
                policy.burst,
                remaining.clamp(0, i64::from(policy.burst)) as u32,
                us(reset_us),
            )
        } else {
            Decision::deny(policy.burst, us(retry_us), us(reset_us))
        })
    }

    /// One round trip: `EVALSHA`, or `EVAL` when the server lost the script.
    async fn eval(
        &self,
        bucket: &str,
        interval_us: u64,
        burst: u32,
    ) -> Result<[i64; 4], RedisError> {
        let mut conn = self.inner.manager.clone();
        let reply: Result<Vec<i64>, RedisError> = redis::cmd("EVALSHA")
            .arg(&self.inner.script_sha)
            .arg(1)
            .arg(bucket)
            .arg(interval_us)
            .arg(burst)
            .query_async(&mut conn)
            .await;
        let reply = match reply {
            Err(e) if e.kind() == redis::ErrorKind::Server(ServerErrorKind::NoScript) => {
                redis::cmd("EVAL")
                    .arg(GCRA)
                    .arg(1)
                    .arg(bucket)
                    .arg(interval_us)
                    .arg(burst)
                    .query_async(&mut conn)
                    .await?
            }
            other => other?,
        };
        reply
            .try_into()
            .map_err(|_| RedisError::from((redis::ErrorKind::Client, "unexpected script reply")))
    }
}

//! The Redis backend: the decisions of every policy of a stage in one
//! round trip, shared by every replica.
//!
//! The decision is a server-side Lua script (`EVALSHA`, falling back to
//! `EVAL` once if the server lost its script cache) over one bucket per
//! policy. It reads Redis's own `TIME`, so replica clocks don't matter, and
//! stores one integer per bucket with a TTL equal to the time until that
//! bucket is full again, so Redis memory stays bounded by the active keys.
//! Every call is bounded by a short timeout; what happens on failure is the
//! layer's [`OnRedisError`](crate::OnRedisError) choice.
//!
//! Bucket names never hold a client's address, user id or API key: the
//! client part is a keyed hash (HMAC-SHA-256, 64 bits) under a key every
//! replica shares (`rate_limit.redis_key_secret`), written as a hash tag
//! (`<prefix>:{ip_3f9a1c2b7d04e615}:per_ip`). On a Redis Cluster the
//! buckets of one client share a slot, so the policies of a stage that key
//! on the same client are still one script call; policies keyed on
//! different things (one per IP, one global) are one call per slot.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use guardrail_core::{Pseudonymizer, RedisConfig, RedisConnection};
//! use ratelimit_layer::{RedisBackend, key::Key};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // The service's one connection (`[redis]`), prepared lazily: building
//! // never blocks or fails on an unreachable server.
//! let redis = RedisConnection::open("redis://127.0.0.1:6379", &RedisConfig::default()).unwrap();
//! // The key of bucket names: the same on every replica.
//! let backend = RedisBackend::new(redis, Pseudonymizer::new(b"a secret every replica shares"))
//!     .timeout(Duration::from_millis(50));
//! let bucket = backend.bucket_key("per_ip", &Key::Ip("203.0.113.9".parse().unwrap()));
//! assert!(bucket.starts_with("guardrails:rl:{ip_") && bucket.ends_with("}:per_ip"));
//! assert!(!bucket.contains("203.0.113.9"));
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

use guardrail_core::{EventName, Pseudonymizer, RedisConnection, RedisHandle, emit};
use redis::{RedisError, ServerErrorKind};

use crate::{RateLimitPolicy, decision::Decision, key::Key};

/// While Redis fails, how often one decision tries it again.
const PROBE_EVERY_MS: u64 = 1_000;

/// GCRA on Redis time, in microseconds, for every bucket of a request.
///
/// KEYS: the buckets. ARGV: per bucket, its emission interval and burst.
/// Returns per bucket {allowed (0/1), remaining, retry_after_us, reset_us}.
const GCRA: &str = r"
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - interval * burst
  if allow_at > now then
    out[#out + 1] = 0
    out[#out + 1] = 0
    out[#out + 1] = allow_at - now
    out[#out + 1] = tat - now
  else
    redis.call('SET', key, new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
    out[#out + 1] = 1
    out[#out + 1] = math.floor((now + interval * burst - new_tat) / interval)
    out[#out + 1] = 0
    out[#out + 1] = new_tat - now
  end
end
return out
";

/// A Redis connection for rate-limit decisions. Cheap to clone.
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

struct Inner {
    connection: RedisHandle,
    cluster: bool,
    /// The key of bucket names' client part.
    names: Pseudonymizer,
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
    /// timeout, the client part of every bucket name hashed under `names`
    /// (the same key on every replica that shares the quota:
    /// `rate_limit.redis_key_secret`).
    pub fn new(redis: RedisConnection, names: Pseudonymizer) -> Self {
        Self::with(
            redis.connection(),
            redis.is_cluster(),
            names,
            redis.key_prefix("rl"),
            redis.timeout(),
        )
    }

    fn with(
        connection: RedisHandle,
        cluster: bool,
        names: Pseudonymizer,
        prefix: String,
        timeout: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                connection,
                cluster,
                names,
                script_sha: redis::Script::new(GCRA).get_hash().to_owned(),
                prefix,
                timeout,
                failing: AtomicBool::new(false),
                next_probe_ms: AtomicU64::new(0),
                base: std::time::Instant::now(),
            }),
        }
    }

    fn rebuilt(&self, prefix: String, timeout: Duration) -> Self {
        let i = &self.inner;
        Self::with(
            i.connection.clone(),
            i.cluster,
            i.names.clone(),
            prefix,
            timeout,
        )
    }

    /// Replaces the prefix of every key (default `<[redis] key_prefix>:rl`).
    pub fn prefix(self, prefix: impl Into<String>) -> Self {
        self.rebuilt(prefix.into(), self.inner.timeout)
    }

    /// How long one decision may take before the fallback applies (default:
    /// the connection's timeout).
    pub fn timeout(self, timeout: Duration) -> Self {
        self.rebuilt(self.inner.prefix.clone(), timeout)
    }

    /// The Redis key of a policy's bucket for `key`:
    /// `<prefix>:{<kind>_<keyed hash>}:<policy>`.
    pub fn bucket_key(&self, policy: &str, key: &Key) -> String {
        self.bucket(policy, &self.client_tag(key))
    }

    /// The bucket of `policy` for the client whose tag is `tag`.
    fn bucket(&self, policy: &str, tag: &str) -> String {
        format!("{}:{{{tag}}}:{policy}", self.inner.prefix)
    }

    /// The keyed hash standing for the client in bucket names.
    fn client_tag(&self, key: &Key) -> String {
        self.inner.names.pseudonym(key.kind(), &key.storage_id())
    }

    /// Whether the last decision failed.
    pub fn is_failing(&self) -> bool {
        self.inner.failing.load(Ordering::Relaxed)
    }

    /// The decisions of `policies` (each with its client key), in order:
    /// one script call, or on a Redis Cluster one per distinct client.
    pub(crate) async fn decide_all(
        &self,
        policies: &[(&RateLimitPolicy, &Key)],
    ) -> Result<Vec<Decision>, RedisFailure> {
        let now_ms = self.inner.base.elapsed().as_millis() as u64;
        if self.inner.failing.load(Ordering::Relaxed)
            && now_ms < self.inner.next_probe_ms.load(Ordering::Relaxed)
        {
            // Cooling down: one probe a second finds out when Redis is back.
            return Err(RedisFailure::CoolingDown);
        }
        let result = tokio::time::timeout(self.inner.timeout, self.eval_all(policies)).await;
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
        let replies = result?;
        let us = |v: i64| Duration::from_micros(v.max(0) as u64);
        Ok(policies
            .iter()
            .zip(replies)
            .map(|((policy, _), [allowed, remaining, retry_us, reset_us])| {
                if allowed == 1 {
                    Decision::allow(
                        policy.burst,
                        remaining.clamp(0, i64::from(policy.burst)) as u32,
                        us(reset_us),
                    )
                } else {
                    Decision::deny(policy.burst, us(retry_us), us(reset_us))
                }
            })
            .collect())
    }

    /// The script's replies for `policies`, in order. On a single server
    /// every bucket goes in one call; on a cluster the buckets of one
    /// client share a slot (their hash tag) and each client is one call.
    async fn eval_all(
        &self,
        policies: &[(&RateLimitPolicy, &Key)],
    ) -> Result<Vec<[i64; 4]>, RedisError> {
        let buckets: Vec<(String, String, u64, u32)> = policies
            .iter()
            .map(|(policy, key)| {
                let tag = self.client_tag(key);
                let bucket = self.bucket(&policy.name, &tag);
                let interval_us = (policy.emission_interval().as_micros() as u64).max(1);
                (tag, bucket, interval_us, policy.burst)
            })
            .collect();
        if !self.inner.cluster {
            return self.eval(&buckets.iter().collect::<Vec<_>>()).await;
        }
        let mut replies = vec![[0; 4]; buckets.len()];
        let mut done = vec![false; buckets.len()];
        for first in 0..buckets.len() {
            if done[first] {
                continue;
            }
            let group: Vec<usize> = (first..buckets.len())
                .filter(|&i| !done[i] && buckets[i].0 == buckets[first].0)
                .collect();
            let reply = self
                .eval(&group.iter().map(|&i| &buckets[i]).collect::<Vec<_>>())
                .await?;
            for (&i, r) in group.iter().zip(reply) {
                replies[i] = r;
                done[i] = true;
            }
        }
        Ok(replies)
    }

    /// One round trip: `EVALSHA`, or `EVAL` when the server lost the script.
    async fn eval(
        &self,
        buckets: &[&(String, String, u64, u32)],
    ) -> Result<Vec<[i64; 4]>, RedisError> {
        let mut conn = self.inner.connection.clone();
        let call = |command: &str, script: &str| {
            let mut cmd = redis::cmd(command);
            cmd.arg(script).arg(buckets.len());
            for (_, bucket, _, _) in buckets {
                cmd.arg(bucket);
            }
            for (_, _, interval_us, burst) in buckets {
                cmd.arg(interval_us).arg(burst);
            }
            cmd
        };
        let reply: Result<Vec<i64>, RedisError> = call("EVALSHA", &self.inner.script_sha)
            .query_async(&mut conn)
            .await;
        let reply = match reply {
            Err(e) if e.kind() == redis::ErrorKind::Server(ServerErrorKind::NoScript) => {
                call("EVAL", GCRA).query_async(&mut conn).await?
            }
            other => other?,
        };
        if reply.len() != 4 * buckets.len() {
            return Err(RedisError::from((
                redis::ErrorKind::Client,
                "unexpected script reply",
            )));
        }
        Ok(reply
            .chunks_exact(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect())
    }
}

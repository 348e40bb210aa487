//! The replay cache: deliveries already accepted.

use std::collections::{HashSet, VecDeque};

use sha2::{Digest, Sha256};

/// Signatures already accepted, oldest first, bounded.
#[derive(Debug, Default)]
pub(super) struct ReplayCache {
    pub(super) seen: HashSet<Vec<u8>>,
    pub(super) order: VecDeque<Vec<u8>>,
}

impl ReplayCache {
    pub(super) fn remove(&mut self, id: &[u8]) {
        if self.seen.remove(id) {
            self.order.retain(|x| x.as_slice() != id);
        }
    }

    /// Records `sig`; `false` if it was already there.
    pub(super) fn insert(&mut self, sig: &[u8], capacity: usize) -> bool {
        if self.seen.contains(sig) {
            return false;
        }
        while self.order.len() >= capacity.max(1) {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(sig.to_vec());
        self.order.push_back(sig.to_vec());
        true
    }
}

/// What identifies one delivery whatever secret signed it.
pub(super) fn delivery_id(timestamp: Option<i64>, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    if let Some(t) = timestamp {
        h.update(t.to_string().as_bytes());
    }
    h.update(b".");
    h.update(body);
    h.finalize().into()
}

/// `[auth.webhook] replay_store`: where accepted deliveries are remembered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ReplayStore {
    /// In this process only (default): a delivery replayed to another
    /// replica is not recognised.
    #[default]
    Local,
    /// In `[redis]`, shared by every replica (`SET NX PX`).
    Redis,
}

/// `[auth.webhook] redis_failure`: what happens to a delivery while the
/// shared replay store can't be reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ReplayFallback {
    /// 503 with `Retry-After` (default): the sender retries later, and no
    /// replay slips through during the outage.
    #[default]
    Refuse,
    /// Checked against this replica's local cache only: accepted, but a
    /// replay sent to another replica during the outage would pass too.
    Local,
}

impl ReplayFallback {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Refuse => "refuse",
            Self::Local => "local",
        }
    }
}

/// The replay cache every replica shares, in Redis.
#[derive(Clone, Debug)]
pub(super) struct SharedReplay {
    /// `None`: configured without a connection; every check fails.
    pub(super) redis: Option<guardrail_core::RedisConnection>,
    pub(super) fallback: ReplayFallback,
}

impl SharedReplay {
    fn key(redis: &guardrail_core::RedisConnection, id: &[u8; 32]) -> String {
        format!("{}:{}", redis.key_prefix("webhook"), hex::encode(id))
    }

    /// Records `id`: `Ok(true)` if it is new, `Ok(false)` if some replica
    /// accepted it before, `Err` (a short reason) if Redis failed.
    pub(super) async fn insert(
        &self,
        id: &[u8; 32],
        ttl: std::time::Duration,
    ) -> Result<bool, String> {
        let redis = self.redis.as_ref().ok_or("no [redis] connection")?;
        #[cfg(feature = "redis")]
        {
            let mut conn = redis.connection();
            let mut cmd = redis::cmd("SET");
            cmd.arg(Self::key(redis, id))
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1));
            let set = cmd.query_async::<Option<String>>(&mut conn);
            match tokio::time::timeout(redis.timeout(), set).await {
                Ok(Ok(reply)) => Ok(reply.is_some()),
                Ok(Err(e)) => Err(format!("{:?}", e.kind())),
                Err(_) => Err("timeout".into()),
            }
        }
        #[cfg(not(feature = "redis"))]
        {
            let _ = (Self::key(redis, id), ttl);
            Err("the redis feature of auth-layer is off".into())
        }
    }

    /// Forgets `id` (the handler refused the delivery, so its retry is no
    /// replay): best effort, in the background.
    pub(super) fn remove(&self, id: &[u8; 32]) {
        #[cfg(feature = "redis")]
        if let (Some(redis), Ok(runtime)) = (&self.redis, tokio::runtime::Handle::try_current()) {
            let key = Self::key(redis, id);
            let mut conn = redis.connection();
            let limit = redis.timeout();
            runtime.spawn(async move {
                let mut cmd = redis::cmd("DEL");
                cmd.arg(key);
                let del = cmd.query_async::<i64>(&mut conn);
                let _ = tokio::time::timeout(limit, del).await;
            });
        }
        #[cfg(not(feature = "redis"))]
        let _ = id;
    }
}

//! A bounded cache of verified tokens: the same token on the next request
//! skips the signature check, the payload parse and the claims mapping.
//!
//! What keeps it safe:
//! - an entry is found only by the **whole token**, compared byte for byte
//!   (the hash only picks the slot), so no other token — forged, altered
//!   or colliding — can match it;
//! - only successes are stored, never a failure;
//! - every hit checks `exp` and `nbf` again against the clock, with the
//!   verifier's leeway, so an entry never outlives its token;
//! - an entry belongs to the key set it was verified with: a JWKS refresh
//!   (rotation, a removed key) makes every older entry a miss;
//! - an entry belongs to the verifier settings it was verified under:
//!   changing the issuer, audience, claims mapper or size cap of a verifier
//!   (or of a clone) gives it a cache of its own;
//! - it is bounded: at most `capacity` entries (expired ones are dropped
//!   first, then arbitrary ones), tokens over 4 KiB are never stored.
//!
//! The claims mapper must be a function of the claims alone (the built-in
//! mappers are): a cached principal is what the mapper returned when the
//! token was first seen.

use std::{collections::HashMap, hash::BuildHasher, sync::Mutex, time::Duration};

use guardrail_core::Principal;

use crate::jwt::{check_window, now_secs};

/// Tokens longer than this are verified every time (and not held).
const MAX_CACHED_TOKEN: usize = 4096;
const SHARDS: usize = 16;

/// The default number of tokens kept (`auth.token_cache`).
pub const DEFAULT_TOKEN_CACHE: usize = 4096;

pub(crate) struct TokenCache {
    shards: Box<[Mutex<Shard>]>,
    capacity: usize,
    per_shard: usize,
    hasher: foldhash::fast::RandomState,
}

type Shard = HashMap<u64, Entry, foldhash::fast::FixedState>;

struct Entry {
    token: Box<str>,
    principal: Principal,
    /// The key set the token was verified with.
    generation: u64,
    /// Seconds since the epoch.
    exp: f64,
    nbf: Option<f64>,
}

/// What a verification established, to be cached.
pub(crate) struct Verified {
    pub(crate) principal: Principal,
    pub(crate) exp: f64,
    pub(crate) nbf: Option<f64>,
}

impl TokenCache {
    /// `None` for a capacity of 0 (no cache).
    pub(crate) fn new(capacity: usize) -> Option<Self> {
        (capacity > 0).then(|| Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            capacity,
            per_shard: capacity.div_ceil(SHARDS),
            hasher: foldhash::fast::RandomState::default(),
        })
    }

    /// An empty cache of the same size.
    pub(crate) fn emptied(&self) -> Self {
        Self::new(self.capacity).expect("a cache has a capacity of at least 1")
    }

    fn slot(&self, token: &str) -> (u64, &Mutex<Shard>) {
        let hash = self.hasher.hash_one(token);
        // Middle bits: the map inside uses the low ones and the top seven.
        (hash, &self.shards[(hash >> 32) as usize % SHARDS])
    }

    /// The principal of `token` if it was verified under key set
    /// `generation` and is still within `exp`/`nbf` (± `leeway`).
    pub(crate) fn get(&self, token: &str, generation: u64, leeway: Duration) -> Option<Principal> {
        if token.len() > MAX_CACHED_TOKEN {
            return None;
        }
        let (hash, shard) = self.slot(token);
        let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        let entry = shard.get(&hash)?;
        (*entry.token == *token
            && entry.generation == generation
            && check_window(entry.exp, entry.nbf, leeway, now_secs()).is_ok())
        .then(|| entry.principal.clone())
    }

    /// Keeps `verified` for `token`, verified under key set `generation`.
    pub(crate) fn insert(&self, token: &str, generation: u64, verified: &Verified) {
        if token.len() > MAX_CACHED_TOKEN {
            return;
        }
        let (hash, shard) = self.slot(token);
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        if shard.len() >= self.per_shard && !shard.contains_key(&hash) {
            let now = now_secs();
            shard.retain(|_, e| e.exp > now);
            if shard.len() >= self.per_shard
                && let Some(&victim) = shard.keys().next()
            {
                shard.remove(&victim);
            }
        }
        shard.insert(
            hash,
            Entry {
                token: token.into(),
                principal: verified.principal.clone(),
                generation,
                exp: verified.exp,
                nbf: verified.nbf,
            },
        );
    }

    /// Tokens held (for tests and health reports).
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

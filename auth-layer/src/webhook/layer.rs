//! [`VerifyWebhookLayer`]: the secrets, the scheme and the limits, shared
//! by every copy of the middleware.

use std::{
    fmt,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use guardrail_core::{EventName, RedisConnection, Secret, emit};
use hmac::Mac;
use subtle::ConstantTimeEq;
use tower_layer::Layer;

use super::{
    GitHub, SignatureHeader, SignatureScheme, Stripe, VerifyWebhook, WebhookError,
    replay::{ReplayCache, ReplayFallback, SharedReplay, delivery_id},
    scheme::HmacSha256,
};

/// The default body cap: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// The default timestamp tolerance: 5 minutes.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
/// The default number of remembered signatures.
pub const DEFAULT_REPLAY_CAPACITY: usize = 10_000;

/// Layer that applies [`VerifyWebhook`].
pub struct VerifyWebhookLayer<Sch = Stripe> {
    shared: Arc<Shared<Sch>>,
}

/// The scheme, secrets and limits of a layer, and the replay cache its
/// copies share.
pub(super) struct Shared<Sch> {
    pub(super) scheme: Arc<Sch>,
    secrets: Vec<HmacSha256>,
    tolerance: Duration,
    /// Set with [`VerifyWebhookLayer::max_body_bytes`]; `None`: the
    /// request's `BodyLimit`, or the default without one.
    pub(super) max_body_bytes: Option<usize>,
    replay_capacity: usize,
    /// Shared by every copy of the layer, whatever its settings.
    replay: Arc<Mutex<ReplayCache>>,
    /// Shared by every replica, when configured.
    shared_replay: Option<SharedReplay>,
}

impl<Sch> Clone for Shared<Sch> {
    fn clone(&self) -> Self {
        Self {
            scheme: Arc::clone(&self.scheme),
            secrets: self.secrets.clone(),
            tolerance: self.tolerance,
            max_body_bytes: self.max_body_bytes,
            replay_capacity: self.replay_capacity,
            replay: Arc::clone(&self.replay),
            shared_replay: self.shared_replay.clone(),
        }
    }
}

impl<Sch> Clone for VerifyWebhookLayer<Sch> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<Sch: fmt::Debug> fmt::Debug for VerifyWebhookLayer<Sch> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyWebhookLayer")
            .field("scheme", &self.shared.scheme)
            .field(
                "secrets",
                &format_args!("[{} redacted]", self.shared.secrets.len()),
            )
            .field("tolerance", &self.shared.tolerance)
            .field("max_body_bytes", &self.shared.max_body_bytes)
            .field("replay_capacity", &self.shared.replay_capacity)
            .field(
                "shared_replay",
                &self.shared.shared_replay.as_ref().map(|r| r.fallback),
            )
            .finish()
    }
}

impl VerifyWebhookLayer<Stripe> {
    /// Verifies Stripe deliveries against any of `secrets`.
    pub fn stripe(secrets: impl IntoIterator<Item = Secret>) -> Self {
        Self::new(Stripe, secrets)
    }
}

impl VerifyWebhookLayer<GitHub> {
    /// Verifies GitHub deliveries against any of `secrets`.
    pub fn github(secrets: impl IntoIterator<Item = Secret>) -> Self {
        Self::new(GitHub, secrets)
    }
}

impl<Sch: SignatureScheme> VerifyWebhookLayer<Sch> {
    /// Verifies with `scheme` against any of `secrets` (none: every
    /// delivery is refused).
    pub fn new(scheme: Sch, secrets: impl IntoIterator<Item = Secret>) -> Self {
        let secrets = secrets
            .into_iter()
            .filter(|s| !s.expose().is_empty())
            .filter_map(|s| HmacSha256::new_from_slice(s.expose()).ok())
            .collect();
        Self {
            shared: Arc::new(Shared {
                scheme: Arc::new(scheme),
                secrets,
                tolerance: DEFAULT_TOLERANCE,
                max_body_bytes: None,
                replay_capacity: DEFAULT_REPLAY_CAPACITY,
                replay: Arc::new(Mutex::new(ReplayCache::default())),
                shared_replay: None,
            }),
        }
    }

    fn shared_mut(&mut self) -> &mut Shared<Sch> {
        // Copied if this layer was cloned before being configured, so a
        // setting never silently fails to apply.
        Arc::make_mut(&mut self.shared)
    }

    /// How far a timestamp may be from now (default 5 minutes).
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        let s = self.shared_mut();
        s.tolerance = tolerance;
        self
    }

    /// The largest accepted body. Unset, the request's
    /// [`BodyLimit`](guardrail_core::BodyLimit) applies — the one
    /// `[body_limit]` setting for the route, set by the body limit layer
    /// further out — or [`DEFAULT_MAX_BODY_BYTES`] without one. Set, the
    /// smaller of this and the request's limit applies.
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        let s = self.shared_mut();
        s.max_body_bytes = Some(max);
        self
    }

    /// The most bytes a request may make this layer buffer.
    pub(super) fn body_limit_for(shared: &Shared<Sch>, request: Option<usize>) -> usize {
        match (shared.max_body_bytes, request) {
            (Some(own), Some(request)) => own.min(request),
            (Some(own), None) => own,
            (None, Some(request)) => request,
            (None, None) => DEFAULT_MAX_BODY_BYTES,
        }
    }

    /// Remembers accepted deliveries in Redis as well, so a delivery
    /// replayed to another replica is refused too (`SET NX PX`, a key per
    /// delivery under `<key_prefix>:webhook:`, kept twice the timestamp
    /// tolerance, or a day for schemes without a timestamp). While Redis
    /// fails, `fallback` decides: refuse with 503 (the sender retries) or
    /// check this replica's cache only; either way it is logged
    /// (`integration.backend_failed`, backend `redis`).
    pub fn shared_replay(self, redis: RedisConnection, fallback: ReplayFallback) -> Self {
        self.replay_store(Some(redis), fallback)
    }

    /// [`shared_replay`](Self::shared_replay) where the connection may be
    /// missing: then every check counts as a Redis failure (`fallback`).
    pub(crate) fn replay_store(
        mut self,
        redis: Option<RedisConnection>,
        fallback: ReplayFallback,
    ) -> Self {
        // Without a connection, falling back to the local cache would
        // silently drop the cross-replica protection: refuse instead.
        let fallback = if redis.is_none() {
            tracing::error!(
                "webhook replay store is redis but no [redis] connection was given: every delivery is refused"
            );
            ReplayFallback::Refuse
        } else {
            fallback
        };
        self.shared_mut().shared_replay = Some(SharedReplay { redis, fallback });
        self
    }

    /// How many accepted signatures are remembered to refuse replays
    /// (default 10 000).
    pub fn replay_capacity(mut self, capacity: usize) -> Self {
        let s = self.shared_mut();
        s.replay_capacity = capacity.max(1);
        self
    }
}

impl<Sch: SignatureScheme> Shared<Sch> {
    /// Verifies the delivery's timestamp and signature; returns its replay
    /// id (see [`record`](Self::record)).
    pub(super) fn verify(
        &self,
        header: &SignatureHeader,
        body: &[u8],
    ) -> Result<[u8; 32], WebhookError> {
        if let Some(t) = header.timestamp {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            if now.abs_diff(t) > self.tolerance.as_secs() {
                return Err(WebhookError::StaleTimestamp);
            }
        }
        let matched = self.secrets.iter().find_map(|keyed| {
            let mut mac = keyed.clone();
            self.scheme.signed_content(header.timestamp, body, &mut mac);
            let expected = mac.finalize().into_bytes();
            header
                .signatures
                .iter()
                .find(|sig| bool::from(expected[..].ct_eq(&sig[..])))
        });
        if matched.is_none() {
            return Err(WebhookError::BadSignature);
        }
        // Remember the delivery, not the signature that matched: while
        // secrets rotate one delivery carries several valid signatures.
        Ok(delivery_id(header.timestamp, body))
    }

    /// How long the shared store remembers a delivery: while its signed
    /// timestamp can still be accepted, twice over, plus a minute of clock
    /// skew between replicas; a day for schemes without a timestamp
    /// (GitHub: deduplicate on `X-GitHub-Delivery` in the handler too).
    fn shared_ttl(&self) -> Duration {
        if self.scheme.has_timestamp() {
            self.tolerance
                .saturating_mul(2)
                .saturating_add(Duration::from_secs(60))
        } else {
            Duration::from_secs(24 * 3600)
        }
    }

    /// Records a verified delivery: refused if it was accepted before, by
    /// this replica or (with [`shared_replay`](VerifyWebhookLayer::shared_replay))
    /// any other. `Ok(true)` when it was recorded in the shared store.
    pub(super) async fn record(&self, id: &[u8; 32]) -> Result<bool, WebhookError> {
        // The local cache always decides too: a delivery accepted while
        // Redis was down (local fallback) stays known here after it is back.
        let fresh_here = {
            let mut replay = self.replay.lock().unwrap_or_else(|e| e.into_inner());
            replay.insert(id, self.replay_capacity)
        };
        if !fresh_here {
            return Err(WebhookError::Replayed);
        }
        if let Some(shared) = &self.shared_replay {
            match shared.insert(id, self.shared_ttl()).await {
                Ok(true) => return Ok(true),
                Ok(false) => return Err(WebhookError::Replayed),
                Err(reason) => {
                    emit!(
                        WARN,
                        EventName::INTEGRATION_BACKEND_FAILED,
                        backend = "redis",
                        purpose = "webhook_replay",
                        reason = %reason,
                        fallback = shared.fallback.as_str(),
                    );
                    if shared.fallback == ReplayFallback::Refuse {
                        // Not accepted: its retry must not count as a replay.
                        self.replay
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(id);
                        return Err(WebhookError::ReplayStoreUnavailable);
                    }
                }
            }
        }
        Ok(false)
    }

    /// Forgets a delivery the handler did not accept, so its retry is not a
    /// "replay": here, and in the shared store if this request recorded it
    /// there.
    pub(super) fn forget(&self, id: &[u8; 32], in_shared_store: bool) {
        if let (true, Some(shared)) = (in_shared_store, &self.shared_replay) {
            shared.remove(id);
        }
        let mut replay = self.replay.lock().unwrap_or_else(|e| e.into_inner());
        replay.remove(id);
    }
}

impl<S, Sch> Layer<S> for VerifyWebhookLayer<Sch> {
    type Service = VerifyWebhook<S, Sch>;

    fn layer(&self, inner: S) -> Self::Service {
        VerifyWebhook {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

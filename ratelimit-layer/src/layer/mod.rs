//! [`RateLimitLayer`]: applies policies to requests, answers 429s, reports
//! quota in headers.
//!
//! - `builder`: [`RateLimitLayerBuilder`] checks the policies and compiles
//!   them into the layer.
//! - `decide`: the in-memory decision engine, shared by every copy of the
//!   middleware.
//! - `service`: [`RateLimit`] and its three call paths (by client IP, any
//!   key, on Redis).
//! - `future`: [`ResponseFuture`] and the decision pending on Redis.

mod builder;
mod decide;
mod future;
mod service;

pub(crate) use builder::is_exempt_pattern;
pub use builder::{DEFAULT_MAX_KEYS, OnRedisError, RateLimitLayerBuilder};
pub use future::{Deciding, ResponseFuture};
pub use service::RateLimit;

use std::{fmt, sync::Arc};

use tower_layer::Layer;

use decide::Shared;

/// Layer that applies [`RateLimit`].
#[derive(Clone)]
pub struct RateLimitLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field(
                "policies",
                &self
                    .shared
                    .policies
                    .iter()
                    .map(|c| &c.policy)
                    .collect::<Vec<_>>(),
            )
            .field("headers", &self.shared.headers)
            .field("exempt", &self.shared.exempt)
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    /// Starts a layer.
    pub fn builder() -> RateLimitLayerBuilder {
        RateLimitLayerBuilder::default()
    }

    /// `Some(failing)` when decisions are made on Redis.
    pub(crate) fn redis_failing(&self) -> Option<bool> {
        #[cfg(feature = "redis")]
        return self
            .shared
            .redis
            .as_ref()
            .map(crate::RedisBackend::is_failing);
        #[cfg(not(feature = "redis"))]
        None
    }

    /// Keys held in memory, per policy name (for health reports).
    pub fn key_counts(&self) -> Vec<(String, usize)> {
        self.shared
            .policies
            .iter()
            .map(|c| (c.policy.name.clone(), c.local.key_count()))
            .collect()
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

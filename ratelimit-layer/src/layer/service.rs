//! [`RateLimit`]: the three call paths — by client IP (the fast path), any
//! key in memory, and on Redis.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use guardrail_core::{ClientIp, GuardFuture, RejectionBody};
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::{RateLimitLayer, ResponseFuture, decide::Shared};
use crate::key::RequestParts;
// Only the Redis path waits for its decision.
#[cfg(feature = "redis")]
use {
    super::{
        OnRedisError,
        decide::{Verdict, unknown_key},
        future::{Decide, Deciding},
    },
    crate::key::Key,
};

/// Middleware that rate-limits requests; see [`RateLimitLayer`].
#[derive(Clone)]
pub struct RateLimit<S> {
    pub(super) inner: S,
    pub(super) shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> RateLimit<S> {
    /// Wraps `inner` with the policies of `limits` (built with
    /// [`RateLimitLayer::builder`] or [`RateLimitLayer::from_config`]).
    pub fn new(inner: S, limits: RateLimitLayer) -> Self {
        limits.layer(inner)
    }

    /// The layer that applies `limits` (the same value: a
    /// [`RateLimitLayer`] is the compiled set of policies).
    pub fn layer(limits: RateLimitLayer) -> RateLimitLayer {
        limits
    }

    guardrail_core::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: RejectionBody,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if !self.shared.exempt.is_empty() && self.shared.is_exempt(req.uri().path()) {
            return GuardFuture::pass(self.inner.call(req));
        }
        #[cfg(feature = "redis")]
        if self.shared.redis.is_some() {
            return self.call_redis(req);
        }
        // The fast path: only values are read off the request (no
        // reference to it reaches a call that isn't inlined), so the
        // compiler hands the request on to the inner service without
        // copying it.
        if self.shared.by_ip
            && let Some(ip) = req.extensions().get::<ClientIp>().map(ClientIp::group)
        {
            let route = if self.shared.everywhere {
                None
            } else {
                Some((req.method(), req.uri().path()))
            };
            return match self.shared.decide_by_ip(route, ip) {
                Ok(headers) => GuardFuture::pass_with_headers(self.inner.call(req), headers),
                Err(denied) => GuardFuture::reject(self.shared.reject_by_ip(denied, ip, req)),
            };
        }
        self.call_general(req)
    }
}

impl<S> RateLimit<S> {
    /// Any policy and key: the request is borrowed for the decision.
    #[inline(never)]
    fn call_general<ReqBody, ResBody>(
        &mut self,
        req: Request<ReqBody>,
    ) -> ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    {
        match self.shared.decide_locally(&RequestParts::from(&req)) {
            Ok(headers) => GuardFuture::pass_with_headers(self.inner.call(req), headers),
            Err(problem) => GuardFuture::reject(problem),
        }
    }
}

impl<S> RateLimit<S> {
    /// The Redis path: decided in a future, off the in-memory hot path.
    #[cfg(feature = "redis")]
    #[inline(never)]
    fn call_redis<ReqBody, ResBody>(&mut self, req: Request<ReqBody>) -> ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    {
        let shared = &self.shared;
        let Some(redis) = &shared.redis else {
            return GuardFuture::pass(self.inner.call(req));
        };
        let parts = RequestParts::from(&req);
        let keys: Vec<(usize, Key)> = shared
            .policies
            .iter()
            .enumerate()
            .filter(|(_, c)| c.policy.applies_to(&parts))
            .map(|(i, c)| (i, c.policy.key.key(&parts).unwrap_or_else(unknown_key)))
            .collect();
        if keys.is_empty() {
            return GuardFuture::pass(self.inner.call(req));
        }
        let shared = Arc::clone(shared);
        let redis = redis.clone();
        let extensions = req.extensions().clone();
        let decide: Decide = Box::pin(async move {
            let mut verdict = Verdict::default();
            let policies: Vec<_> = keys
                .iter()
                .map(|(index, key)| (&shared.policies[*index].policy, key))
                .collect();
            // Every policy of this stage in one round trip.
            match redis.decide_all(&policies).await {
                Ok(decisions) => {
                    for ((index, key), decision) in keys.iter().zip(decisions) {
                        shared.record(*index, key, decision, &mut verdict, &extensions);
                    }
                }
                Err(_) => match shared.on_redis_error {
                    OnRedisError::Local => {
                        for (index, key) in &keys {
                            let decision = shared.local(*index, key);
                            shared.record(*index, key, decision, &mut verdict, &extensions);
                        }
                    }
                    OnRedisError::Allow => {}
                    // Shadow policies never reject, not even for an outage.
                    OnRedisError::Deny
                        if keys
                            .iter()
                            .any(|(index, _)| !shared.policies[*index].shadow) =>
                    {
                        verdict.unavailable = true;
                        verdict.denied = true;
                    }
                    OnRedisError::Deny => {}
                },
            }
            verdict
        });
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        GuardFuture::pending(Deciding {
            decide,
            pending: Some((inner, req)),
        })
    }
}

//! [`RateLimitLayer`]: applies policies to requests, answers 429s, reports
//! quota in headers.

use std::{
    fmt,
    future::Future,
    net::IpAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use guardrail_core::{
    ClientIp, EventName, GuardFuture, Pass, PendingDecision, Problem, Pseudonymizer,
    RedisConnection, RejectionBody, emit,
};
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    RateLimitError, RateLimitPolicy,
    decision::{Decision, Headers, ceil_secs, policy_header, write_headers},
    key::{ClientIpKey, Key, RequestParts},
    memory::{LimiterClock, MemoryLimiter},
};

/// The default cap on keys held per policy in memory.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// What a Redis-backed limiter does when Redis fails or is too slow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRedisError {
    /// Decide with this replica's in-memory limiter (the default): limits
    /// stay enforced per replica.
    #[default]
    Local,
    /// Let the request through.
    Allow,
    /// Refuse with 503 and `Retry-After: 1`.
    Deny,
}

struct Compiled {
    policy: RateLimitPolicy,
    /// No route or method matcher: applies to every request.
    everywhere: bool,
    local: MemoryLimiter,
    allowed: metrics::Counter,
    limited: metrics::Counter,
    /// `RateLimit-Policy` never changes: built once.
    policy_header: http::HeaderValue,
}

struct Shared {
    policies: Vec<Compiled>,
    /// Every policy is keyed by client IP: requests with a `ClientIp` take
    /// the fast path.
    by_ip: bool,
    /// No policy has a route or method matcher.
    everywhere: bool,
    headers: bool,
    exempt: Vec<String>,
    #[cfg(feature = "redis")]
    redis: Option<crate::RedisBackend>,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    on_redis_error: OnRedisError,
    pseudonymizer: Pseudonymizer,
}

/// Builder for [`RateLimitLayer`].
#[derive(Debug, Default)]
pub struct RateLimitLayerBuilder {
    policies: Vec<RateLimitPolicy>,
    max_keys: Option<usize>,
    headers: Option<bool>,
    exempt: Vec<String>,
    #[cfg(feature = "redis")]
    redis: Option<crate::RedisBackend>,
    on_redis_error: OnRedisError,
    clock: LimiterClock,
    pseudonymizer: Option<Pseudonymizer>,
}

impl RateLimitLayerBuilder {
    /// The clock in-memory limiters count on (default: quanta, the fastest;
    /// [`LimiterClock::Tokio`] for tests under `tokio::time::pause()`).
    pub fn clock(mut self, clock: LimiterClock) -> Self {
        self.clock = clock;
        self
    }

    /// Adds a policy; every applicable policy counts, the strictest decides.
    /// A layer without policies lets everything through.
    pub fn policy(mut self, policy: RateLimitPolicy) -> Self {
        self.policies.push(policy);
        self
    }

    /// Keys held per policy in memory (default 100 000).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = Some(max_keys);
        self
    }

    /// Whether allowed responses carry `RateLimit-Policy` and `RateLimit`
    /// (default `true`; 429s always do).
    pub fn headers(mut self, on: bool) -> Self {
        self.headers = Some(on);
        self
    }

    /// Paths never limited: exact paths, or prefixes written `/prefix/*`.
    pub fn exempt<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.exempt = paths.into_iter().map(Into::into).collect();
        self
    }

    /// Decides on Redis, shared by every replica.
    #[cfg(feature = "redis")]
    pub fn redis(mut self, backend: crate::RedisBackend) -> Self {
        self.redis = Some(backend);
        self
    }

    /// The key of the pseudonyms that stand for users and custom keys in
    /// `security.rate_limited` events; use the one the log scrubber uses
    /// (default: a random key).
    pub fn pseudonymizer(mut self, pseudonymizer: Pseudonymizer) -> Self {
        self.pseudonymizer = Some(pseudonymizer);
        self
    }

    /// Decides on the service's shared Redis connection (a
    /// [`RedisBackend`](crate::RedisBackend) on it); without the `redis`
    /// feature this is [`RateLimitError::RedisUnavailable`].
    pub fn redis_connection(self, redis: RedisConnection) -> Result<Self, RateLimitError> {
        #[cfg(feature = "redis")]
        return Ok(self.redis(crate::RedisBackend::new(redis)));
        #[cfg(not(feature = "redis"))]
        {
            let _ = redis;
            Err(RateLimitError::RedisUnavailable)
        }
    }

    /// What to do when Redis fails (default: decide locally).
    pub fn on_redis_error(mut self, choice: OnRedisError) -> Self {
        self.on_redis_error = choice;
        self
    }

    /// Checks every policy and builds the layer.
    pub fn build(self) -> Result<RateLimitLayer, RateLimitError> {
        let max_keys = self.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
        let headers = self.headers.unwrap_or(true);
        if let Some(bad) = self.exempt.iter().find(|e| !is_exempt_pattern(e)) {
            return Err(RateLimitError::Exempt {
                pattern: bad.clone(),
            });
        }
        if max_keys == 0 {
            return Err(RateLimitError::MaxKeys);
        }
        let mut policies = Vec::with_capacity(self.policies.len());
        for policy in self.policies {
            policy.validate().map_err(|source| RateLimitError::Policy {
                name: policy.name.clone(),
                source,
            })?;
            if policies
                .iter()
                .any(|c: &Compiled| c.policy.name == policy.name)
            {
                return Err(RateLimitError::DuplicatePolicy { name: policy.name });
            }
            let name = policy.name.clone();
            policies.push(Compiled {
                local: MemoryLimiter::new(
                    &policy,
                    max_keys,
                    self.clock,
                    metrics::gauge!(guardrail_core::metric::RATELIMIT_KEYS, "policy" => name.clone()),
                    headers,
                ),
                policy_header: policy_header(&policy),
                everywhere: policy.routes.is_empty() && policy.methods.is_empty(),
                allowed: metrics::counter!(guardrail_core::metric::RATELIMIT_DECISIONS_TOTAL, "policy" => name.clone(), "outcome" => "allowed"),
                limited: metrics::counter!(guardrail_core::metric::RATELIMIT_DECISIONS_TOTAL, "policy" => name.clone(), "outcome" => "limited"),
                policy,
            });
        }
        Ok(RateLimitLayer {
            shared: Arc::new(Shared {
                by_ip: policies.iter().all(|c| c.policy.by_client_ip),
                everywhere: policies.iter().all(|c| c.everywhere),
                policies,
                headers,
                exempt: self.exempt,
                #[cfg(feature = "redis")]
                redis: self.redis,
                on_redis_error: self.on_redis_error,
                pseudonymizer: self.pseudonymizer.unwrap_or_else(Pseudonymizer::random),
            }),
        })
    }
}

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

/// Middleware that rate-limits requests; see [`RateLimitLayer`].
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    shared: Arc<Shared>,
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

/// An exempt path: exact, or `/prefix/*` (never `/*`, which would exempt
/// everything).
pub(crate) fn is_exempt_pattern(e: &str) -> bool {
    e.starts_with('/') && e != "/*" && (!e.contains('*') || e.ends_with("/*"))
}

impl Shared {
    fn is_exempt(&self, path: &str) -> bool {
        self.exempt.iter().any(|e| match e.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == e,
        })
    }

    /// Records a decision and folds it into the verdict so far.
    fn record(
        &self,
        index: usize,
        key: &Key,
        decision: Decision,
        verdict: &mut Verdict,
        extensions: &http::Extensions,
    ) {
        let c = &self.policies[index];
        if decision.allowed {
            c.allowed.increment(1);
        } else {
            c.limited.increment(1);
            emit!(
                WARN,
                EventName::SECURITY_RATE_LIMITED,
                from = extensions,
                policy = %c.policy.name,
                key_type = key.kind(),
                key = %key.masked(&self.pseudonymizer),
                retry_after_s = ceil_secs(decision.retry_after),
            );
        }
        if decision.allowed {
            if self.headers {
                write_headers(
                    &mut verdict.headers,
                    &c.policy.name,
                    &c.policy_header,
                    &decision,
                );
            }
        } else {
            write_headers(
                &mut verdict.denied_headers,
                &c.policy.name,
                &c.policy_header,
                &decision,
            );
            verdict.retry_after = verdict
                .retry_after
                .max(ceil_secs(decision.retry_after).max(1));
            verdict.denied = true;
        }
    }

    fn local(&self, index: usize, key: &Key) -> Decision {
        self.policies[index].local.decide(key)
    }
}

/// The combined outcome of every applicable policy.
#[derive(Default)]
struct Verdict {
    denied: bool,
    retry_after: u64,
    /// Headers for an allowed response (empty until a policy writes one).
    headers: Headers,
    denied_headers: Headers,
    unavailable: bool,
}

impl Verdict {
    fn problem(self, extensions: &http::Extensions) -> Problem {
        // A real 429 (with its longer wait) wins over "unavailable".
        let mut problem = if self.unavailable && self.denied_headers.is_empty() {
            Problem::service_unavailable(1)
                .detail("Rate limiting is temporarily unavailable. Try again shortly.")
        } else {
            Problem::too_many_requests(self.retry_after)
                .detail("Too many requests. Retry after the number of seconds in Retry-After.")
        };
        for (name, value) in self.denied_headers {
            problem = problem.header(name, value);
        }
        problem.request_id_from(extensions)
    }
}

type Decide = Pin<Box<dyn Future<Output = Verdict> + Send>>;

/// The key of a request with nothing to key on. All such requests share one
/// bucket (limited, never free); that usually means the server was started
/// without peer addresses, so it is said once, loudly.
#[cold]
fn unknown_key() -> Key {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            "rate limit: a request had no key (no ClientIp, no peer address); all such requests share one bucket. \
             Serve with into_make_service_with_connect_info::<SocketAddr>() and ResolveClientIpLayer"
        );
    });
    Key::Unknown
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

/// The first policy that refused, on the fast path.
struct Denied {
    index: usize,
    decision: Decision,
    headers: Headers,
}

impl Shared {
    /// [`decide_locally`](Self::decide_locally) when every policy is keyed
    /// by the client address `ip`. `route` (method and path) is `None`
    /// only when no policy has a matcher.
    #[inline(always)]
    fn decide_by_ip(
        &self,
        route: Option<(&http::Method, &str)>,
        ip: IpAddr,
    ) -> Result<Headers, Denied> {
        debug_assert!(route.is_some() || self.everywhere);
        let mut headers = Headers::new();
        for (index, c) in self.policies.iter().enumerate() {
            if let Some((method, path)) = route
                && !c.everywhere
                && !c.policy.matches(method, path)
            {
                continue;
            }
            let decision = c.local.decide_ip(ip);
            if !decision.allowed {
                return Err(Denied {
                    index,
                    decision,
                    headers,
                });
            }
            self.pass(c, &decision, &mut headers);
        }
        Ok(headers)
    }

    /// The rejection after [`decide_by_ip`](Self::decide_by_ip) refused;
    /// takes the request so that nothing on the fast path borrows it.
    #[cold]
    #[inline(never)]
    fn reject_by_ip<B>(&self, denied: Denied, ip: IpAddr, req: Request<B>) -> Problem {
        let Denied {
            index,
            decision,
            headers,
        } = denied;
        self.deny_locally(
            index,
            &Key::Ip(ip),
            decision,
            headers,
            &RequestParts::from(&req),
        )
    }

    /// Every applicable policy, in memory: the headers for an allowed
    /// response, or the rejection.
    ///
    /// The allowed path (nearly every request) builds no verdict: it only
    /// counts and, when asked to, writes headers.
    // The error goes straight into the response future's one box; boxing
    // it here too would allocate twice per 429.
    #[allow(clippy::result_large_err)]
    #[inline]
    fn decide_locally(&self, parts: &RequestParts<'_>) -> Result<Headers, Problem> {
        let mut headers = Headers::new();
        for (index, c) in self.policies.iter().enumerate() {
            if !c.everywhere && !c.policy.applies_to(parts) {
                continue;
            }
            // Client IP keys (the common case) are decided without
            // building a `Key`.
            if c.policy.by_client_ip
                && let Some(ip) = ClientIpKey::ip(parts)
            {
                let decision = c.local.decide_ip(ip);
                if !decision.allowed {
                    return Err(self.deny_locally(index, &Key::Ip(ip), decision, headers, parts));
                }
                self.pass(c, &decision, &mut headers);
                continue;
            }
            let key = c.policy.key.key(parts).unwrap_or_else(unknown_key);
            let decision = c.local.decide(&key);
            if !decision.allowed {
                return Err(self.deny_locally(index, &key, decision, headers, parts));
            }
            self.pass(c, &decision, &mut headers);
        }
        Ok(headers)
    }

    /// Counts an allowed decision and writes its headers if asked to.
    #[inline(always)]
    fn pass(&self, c: &Compiled, decision: &Decision, headers: &mut Headers) {
        c.allowed.increment(1);
        if self.headers {
            write_headers(headers, &c.policy.name, &c.policy_header, decision);
        }
    }

    /// A policy refused: the remaining policies still count the request
    /// (as they would have had it been allowed), then the rejection.
    #[cold]
    #[inline(never)]
    fn deny_locally(
        &self,
        index: usize,
        key: &Key,
        decision: Decision,
        headers: Headers,
        parts: &RequestParts<'_>,
    ) -> Problem {
        let mut verdict = Verdict {
            headers,
            ..Verdict::default()
        };
        self.record(index, key, decision, &mut verdict, parts.extensions);
        for (index, c) in self.policies.iter().enumerate().skip(index + 1) {
            if c.policy.applies_to(parts) {
                let key = c.policy.key.key(parts).unwrap_or_else(unknown_key);
                let decision = self.local(index, &key);
                self.record(index, &key, decision, &mut verdict, parts.extensions);
            }
        }
        verdict.problem(parts.extensions)
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
            for (index, key) in keys {
                let decision = match redis.decide(&shared.policies[index].policy, &key).await {
                    Ok(d) => d,
                    Err(_) => match shared.on_redis_error {
                        OnRedisError::Local => shared.local(index, &key),
                        OnRedisError::Allow => continue,
                        OnRedisError::Deny => {
                            verdict.unavailable = true;
                            verdict.denied = true;
                            continue;
                        }
                    },
                };
                shared.record(index, &key, decision, &mut verdict, &extensions);
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

/// Response future for [`RateLimit`]: core's one guard future, with the
/// inner future and its headers flat (an allowed request, the common case)
/// and waiting on Redis or rejecting behind one box.
pub type ResponseFuture<S, ReqBody> =
    GuardFuture<<S as Service<Request<ReqBody>>>::Future, Deciding<S, ReqBody>>;

/// The decision of [`RateLimit`] while Redis answers; the inner service
/// (already ready) and the request wait with it.
pub struct Deciding<S, ReqBody> {
    decide: Decide,
    pending: Option<(S, Request<ReqBody>)>,
}

impl<S, ReqBody> fmt::Debug for Deciding<S, ReqBody> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deciding").finish_non_exhaustive()
    }
}

impl<S, ReqBody> PendingDecision for Deciding<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    type Future = S::Future;

    fn poll_decide(&mut self, cx: &mut Context<'_>) -> Poll<Result<Pass<S::Future>, Problem>> {
        let verdict = ready!(self.decide.as_mut().poll(cx));
        let Some((mut inner, req)) = self.pending.take() else {
            return Poll::Ready(Err(Problem::internal_error()));
        };
        Poll::Ready(if verdict.denied {
            Err(verdict.problem(req.extensions()))
        } else {
            Ok(Pass {
                future: inner.call(req),
                headers: verdict.headers,
            })
        })
    }
}

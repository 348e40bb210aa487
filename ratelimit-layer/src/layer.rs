//! [`RateLimitLayer`]: applies policies to requests, answers 429s, reports
//! quota in headers.

use std::{
    fmt,
    future::Future,
    mem::ManuallyDrop,
    net::IpAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use guardrail_core::{ClientIp, EventName, Problem, RejectionBody, emit};
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    RateLimitPolicy,
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
    on_redis_error: OnRedisError,
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

    /// What to do when Redis fails (default: decide locally).
    pub fn on_redis_error(mut self, choice: OnRedisError) -> Self {
        self.on_redis_error = choice;
        self
    }

    /// Checks every policy and builds the layer.
    pub fn build(self) -> Result<RateLimitLayer, String> {
        let max_keys = self.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
        let headers = self.headers.unwrap_or(true);
        if let Some(bad) = self.exempt.iter().find(|e| {
            !e.starts_with('/') || e.as_str() == "/*" || (e.contains('*') && !e.ends_with("/*"))
        }) {
            return Err(format!(
                "exempt `{bad}`: use a path or `/prefix/*` (not `/*`)"
            ));
        }
        if max_keys == 0 {
            return Err("max_keys must be at least 1".into());
        }
        let mut policies = Vec::with_capacity(self.policies.len());
        for policy in self.policies {
            policy
                .validate()
                .map_err(|e| format!("policy `{}`: {e}", policy.name))?;
            if policies
                .iter()
                .any(|c: &Compiled| c.policy.name == policy.name)
            {
                return Err(format!("policy `{}` is defined twice", policy.name));
            }
            let name = policy.name.clone();
            policies.push(Compiled {
                local: MemoryLimiter::new(
                    &policy,
                    max_keys,
                    self.clock,
                    metrics::gauge!("guardrails_ratelimit_keys", "policy" => name.clone()),
                    headers,
                ),
                policy_header: policy_header(&policy),
                everywhere: policy.routes.is_empty() && policy.methods.is_empty(),
                allowed: metrics::counter!("guardrails_ratelimit_decisions_total", "policy" => name.clone(), "outcome" => "allowed"),
                limited: metrics::counter!("guardrails_ratelimit_decisions_total", "policy" => name.clone(), "outcome" => "limited"),
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

    /// One in-memory policy with the defaults.
    pub fn new(policy: RateLimitPolicy) -> Result<Self, String> {
        Self::builder().policy(policy).build()
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
    /// Gets a reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Gets a mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
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
                policy = %c.policy.name,
                key_type = key.kind(),
                key = %key.masked(),
                retry_after_s = ceil_secs(decision.retry_after),
                client = extensions.get::<ClientIp>().map(|ip| tracing::field::display(ip.masked())),
                request_id = extensions.get::<guardrail_core::RequestId>().map(tracing::field::display),
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
            return ResponseFuture::inner(self.inner.call(req), Vec::new());
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
                Ok(headers) => ResponseFuture::inner(self.inner.call(req), headers),
                Err(denied) => ResponseFuture::slow(Slow::Reject {
                    problem: self.shared.reject_by_ip(denied, ip, req),
                }),
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
            Ok(headers) => ResponseFuture::inner(self.inner.call(req), headers),
            Err(problem) => ResponseFuture::slow(Slow::Reject { problem }),
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
            return ResponseFuture::inner(self.inner.call(req), Vec::new());
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
            return ResponseFuture::inner(self.inner.call(req), Vec::new());
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
        ResponseFuture::slow(Slow::Deciding {
            decide,
            pending: Some((inner, req)),
        })
    }
}

pin_project! {
    /// Response future for [`RateLimit`].
    ///
    /// Laid out for the common case, an allowed request: the inner future
    /// and its headers, flat. Waiting on Redis and rejecting live behind one
    /// box.
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        future: Option<S::Future>,
        headers: HeaderList,
        slow: Option<Box<Slow<S, ReqBody>>>,
    }
}

/// The states of a request that is not simply passed on.
// Always boxed (see `ResponseFuture::slow`): variant sizes don't matter.
#[allow(clippy::large_enum_variant)]
enum Slow<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    /// Waiting for Redis; the inner service (already ready) and the request
    /// wait too.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Deciding {
        decide: Decide,
        pending: Option<(S, Request<ReqBody>)>,
    },
    /// Refused.
    Reject { problem: Problem },
    /// Nothing left to do (the rejection was sent, or Redis allowed and the
    /// inner future took over).
    Done,
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    #[inline(always)]
    fn inner(future: S::Future, headers: Headers) -> Self {
        Self {
            future: Some(future),
            headers: HeaderList::new(headers),
            slow: None,
        }
    }

    fn slow(state: Slow<S, ReqBody>) -> Self {
        Self {
            future: None,
            headers: HeaderList::new(Headers::new()),
            slow: Some(Box::new(state)),
        }
    }
}

impl<S, ReqBody> fmt::Debug for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: RejectionBody,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if let Some(future) = this.future.as_mut().as_pin_mut() {
                // The inner response is passed on as it is: no body wrapper,
                // and without headers to add, not even a copy (the inner
                // future writes straight into our output).
                if this.headers.0.is_empty() {
                    return future.poll(cx);
                }
                let mut res = ready!(future.poll(cx))?;
                add_headers(&mut res, this.headers);
                return Poll::Ready(Ok(res));
            }
            let Some(slow) = this.slow.as_mut() else {
                return Poll::Ready(Ok(Problem::internal_error().into_response_with()));
            };
            match ready!(slow_poll(slow, cx)) {
                // Allowed after all: the inner future is polled next.
                Some((future, headers)) => {
                    *this.headers = HeaderList::new(headers);
                    this.future.set(Some(future));
                }
                None => {
                    let problem = match std::mem::replace(&mut **slow, Slow::Done) {
                        Slow::Reject { problem } => problem,
                        _ => Problem::internal_error(),
                    };
                    return Poll::Ready(Ok(problem.into_response_with()));
                }
            }
        }
    }
}

#[inline(never)]
fn add_headers<B>(res: &mut Response<B>, headers: &mut HeaderList) {
    for (name, value) in std::mem::take(&mut *headers.0) {
        res.headers_mut().append(name, value);
    }
}

/// Headers waiting for the response. Dropping an empty list (nearly always)
/// costs one comparison.
struct HeaderList(ManuallyDrop<Headers>);

impl HeaderList {
    #[inline(always)]
    fn new(headers: Headers) -> Self {
        Self(ManuallyDrop::new(headers))
    }
}

impl Drop for HeaderList {
    #[inline(always)]
    fn drop(&mut self) {
        if self.0.capacity() != 0 {
            drop(std::mem::take(&mut *self.0));
        }
    }
}

/// Drives the rare states: `Some` when the request may go on (with the
/// inner future and headers), `None` when it is refused (the state is then
/// `Reject`).
#[cold]
fn slow_poll<S, ReqBody>(
    slow: &mut Slow<S, ReqBody>,
    cx: &mut Context<'_>,
) -> Poll<Option<(S::Future, Headers)>>
where
    S: Service<Request<ReqBody>>,
{
    match slow {
        Slow::Deciding { decide, pending } => {
            let verdict = ready!(decide.as_mut().poll(cx));
            let Some((mut inner, req)) = pending.take() else {
                *slow = Slow::Done;
                return Poll::Ready(None);
            };
            if verdict.denied {
                let problem = verdict.problem(req.extensions());
                *slow = Slow::Reject { problem };
                Poll::Ready(None)
            } else {
                let future = inner.call(req);
                *slow = Slow::Done;
                Poll::Ready(Some((future, verdict.headers)))
            }
        }
        Slow::Reject { .. } | Slow::Done => Poll::Ready(None),
    }
}

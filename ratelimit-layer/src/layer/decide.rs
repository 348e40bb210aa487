//! The in-memory decision: every applicable policy, on the limiters of this
//! replica, folded into the headers of an allowed response or a rejection.

use std::net::IpAddr;

use guardrail_core::{EventName, Problem, Pseudonymizer, emit};
use http::Request;

use super::OnRedisError;
use crate::{
    RateLimitPolicy,
    decision::{Decision, Headers, ceil_secs, write_headers},
    key::{ClientIpKey, Key, RequestParts},
    memory::MemoryLimiter,
};

/// One policy, ready to decide: its limiter, counters and header.
pub(super) struct Compiled {
    pub(super) policy: RateLimitPolicy,
    /// No route or method matcher: applies to every request.
    pub(super) everywhere: bool,
    pub(super) local: MemoryLimiter,
    pub(super) allowed: metrics::Counter,
    /// Rejections, or for a shadow policy the requests it would have
    /// rejected (outcome `shadow_limited`).
    pub(super) limited: metrics::Counter,
    /// A shadow policy: reports, never rejects, sends no headers.
    pub(super) shadow: bool,
    /// `RateLimit-Policy` never changes: built once.
    pub(super) policy_header: http::HeaderValue,
}

/// The compiled layer, shared by every copy of the middleware.
pub(super) struct Shared {
    pub(super) policies: Vec<Compiled>,
    /// Every policy is keyed by client IP: requests with a `ClientIp` take
    /// the fast path.
    pub(super) by_ip: bool,
    /// No policy has a route or method matcher.
    pub(super) everywhere: bool,
    pub(super) headers: bool,
    pub(super) exempt: Vec<String>,
    #[cfg(feature = "redis")]
    pub(super) redis: Option<crate::RedisBackend>,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(super) on_redis_error: OnRedisError,
    pub(super) pseudonymizer: Pseudonymizer,
}

impl Shared {
    pub(super) fn is_exempt(&self, path: &str) -> bool {
        self.exempt.iter().any(|e| match e.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == e,
        })
    }

    /// Records a decision and folds it into the verdict so far.
    pub(super) fn record(
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
            self.limited(c, key, &decision, extensions);
        }
        if c.shadow {
            return;
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

    /// Counts and reports a refusal (for a shadow policy: one it would
    /// have made).
    #[cold]
    #[inline(never)]
    fn limited(&self, c: &Compiled, key: &Key, decision: &Decision, extensions: &http::Extensions) {
        c.limited.increment(1);
        emit!(
            WARN,
            EventName::SECURITY_RATE_LIMITED,
            from = extensions,
            policy = %c.policy.name,
            key_type = key.kind(),
            key = %key.masked(&self.pseudonymizer),
            retry_after_s = ceil_secs(decision.retry_after),
            shadow = c.shadow,
        );
    }

    pub(super) fn local(&self, index: usize, key: &Key) -> Decision {
        self.policies[index].local.decide(key)
    }
}

/// The combined outcome of every applicable policy.
#[derive(Default)]
pub(super) struct Verdict {
    pub(super) denied: bool,
    pub(super) retry_after: u64,
    /// Headers for an allowed response (empty until a policy writes one).
    pub(super) headers: Headers,
    pub(super) denied_headers: Headers,
    pub(super) unavailable: bool,
}

impl Verdict {
    pub(super) fn problem(self, extensions: &http::Extensions) -> Problem {
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

/// The key of a request with nothing to key on. All such requests share one
/// bucket (limited, never free); that usually means the server was started
/// without peer addresses, so it is said once, loudly.
#[cold]
pub(super) fn unknown_key() -> Key {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            "rate limit: a request had no key (no ClientIp, no peer address); all such requests share one bucket. \
             Serve with into_make_service_with_connect_info::<SocketAddr>() and ResolveClientIpLayer"
        );
    });
    Key::Unknown
}

/// The first policy that refused, on the fast path.
pub(super) struct Denied {
    index: usize,
    decision: Decision,
    headers: Headers,
}

impl Shared {
    /// [`decide_locally`](Self::decide_locally) when every policy is keyed
    /// by the client address `ip`. `route` (method and path) is `None`
    /// only when no policy has a matcher.
    #[inline(always)]
    pub(super) fn decide_by_ip(
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
    pub(super) fn reject_by_ip<B>(&self, denied: Denied, ip: IpAddr, req: Request<B>) -> Problem {
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
    pub(super) fn decide_locally(&self, parts: &RequestParts<'_>) -> Result<Headers, Problem> {
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
                    if c.shadow {
                        self.limited(c, &Key::Ip(ip), &decision, parts.extensions);
                        continue;
                    }
                    return Err(self.deny_locally(index, &Key::Ip(ip), decision, headers, parts));
                }
                self.pass(c, &decision, &mut headers);
                continue;
            }
            let key = c.policy.key.key(parts).unwrap_or_else(unknown_key);
            let decision = c.local.decide(&key);
            if !decision.allowed {
                if c.shadow {
                    self.limited(c, &key, &decision, parts.extensions);
                    continue;
                }
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
        if self.headers && !c.shadow {
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

//! Rate-limit policies: a named quota, a key, and where it applies.
//!
//! A quota is "`burst` requests at once, refilling at `rate` per `period`":
//! `RateLimitPolicy::per_minute(600).burst(50)` allows 50 requests in a
//! burst and 600 a minute sustained (one every 100 ms). The names say what
//! they mean — unlike tower_governor's `per_second(n)`, which means one
//! request every *n* seconds.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use ratelimit_layer::{RateLimitPolicy, key::PrincipalKey};
//!
//! let per_user = RateLimitPolicy::per_minute(120)
//!     .burst(20)
//!     .name("per_user")
//!     .key(PrincipalKey)
//!     .routes(["/api/"]);
//! assert_eq!(per_user.emission_interval(), Duration::from_millis(500));
//! assert_eq!(per_user.burst_size(), 20);
//! assert!(RateLimitPolicy::new(0, Duration::from_secs(1)).validate().is_err());
//! ```

use std::{fmt, sync::Arc, time::Duration};

use http::Method;

use crate::{
    PolicyError,
    key::{ClientIpKey, KeyExtractor, RequestParts},
};

/// A named quota with its key and scope.
#[derive(Clone)]
pub struct RateLimitPolicy {
    pub(crate) name: String,
    pub(crate) rate: u32,
    pub(crate) period: Duration,
    pub(crate) burst: u32,
    pub(crate) key: Arc<dyn KeyExtractor>,
    /// The key is the built-in [`ClientIpKey`]: decided without building a
    /// [`Key`](crate::key::Key) (the hot path).
    pub(crate) by_client_ip: bool,
    pub(crate) routes: Vec<String>,
    pub(crate) methods: Vec<Method>,
    pub(crate) mode: PolicyMode,
}

/// Whether a policy rejects or only reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    /// Over the limit → 429 (the default).
    #[default]
    Enforce,
    /// Decides and counts as usual, but never rejects: over the limit, the
    /// request goes on and a `security.rate_limited` event with
    /// `shadow = true` says what would have happened (metric outcome
    /// `shadow_limited`). Its `RateLimit` headers are not sent. How a new
    /// limit is tried on real traffic before it is enforced.
    Shadow,
}

impl RateLimitPolicy {
    /// `rate` requests per `period`, with a burst of `rate` (set another
    /// with [`burst`](Self::burst)), keyed by client IP, on every route.
    pub fn new(rate: u32, period: Duration) -> Self {
        Self {
            name: "default".into(),
            rate,
            period,
            burst: rate,
            key: Arc::new(ClientIpKey),
            by_client_ip: true,
            routes: Vec::new(),
            methods: Vec::new(),
            mode: PolicyMode::Enforce,
        }
    }

    /// `rate` requests per second.
    pub fn per_second(rate: u32) -> Self {
        Self::new(rate, Duration::from_secs(1))
    }

    /// `rate` requests per minute.
    pub fn per_minute(rate: u32) -> Self {
        Self::new(rate, Duration::from_secs(60))
    }

    /// `rate` requests per hour.
    pub fn per_hour(rate: u32) -> Self {
        Self::new(rate, Duration::from_secs(3600))
    }

    /// Requests allowed at once (the bucket size).
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// The name used in `RateLimit-Policy` headers, events and metrics.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// What requests are counted by.
    pub fn key(mut self, key: impl KeyExtractor) -> Self {
        self.by_client_ip = (&key as &dyn std::any::Any).is::<ClientIpKey>();
        self.key = Arc::new(key);
        self
    }

    /// Applies only to paths starting with one of `prefixes` (default: all).
    pub fn routes<I, P>(mut self, prefixes: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.routes = prefixes.into_iter().map(Into::into).collect();
        self
    }

    /// Enforce (the default) or only report ([`PolicyMode::Shadow`]).
    pub fn mode(mut self, mode: PolicyMode) -> Self {
        self.mode = mode;
        self
    }

    /// Applies only to these methods (default: all).
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = methods.into_iter().collect();
        self
    }

    /// The time one request's worth of quota takes to refill.
    pub fn emission_interval(&self) -> Duration {
        self.period / self.rate.max(1)
    }

    /// The bucket size.
    pub fn burst_size(&self) -> u32 {
        self.burst
    }

    /// The policy name.
    pub fn policy_name(&self) -> &str {
        &self.name
    }

    /// The time an empty bucket takes to refill completely.
    pub fn window(&self) -> Duration {
        self.emission_interval() * self.burst
    }

    /// Why this policy can't be used, if it can't.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.rate == 0 {
            return Err(PolicyError::new("rate must be at least 1"));
        }
        if self.burst == 0 {
            return Err(PolicyError::new("burst must be at least 1"));
        }
        if self.period < Duration::from_millis(1)
            || self.period > Duration::from_secs(7 * 24 * 3600)
        {
            return Err(PolicyError::new("period must be between 1ms and 7 days"));
        }
        if self.emission_interval().is_zero() {
            return Err(PolicyError::new(
                "rate is too high for the period (less than 1ns per request)",
            ));
        }
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(PolicyError::new(
                "name must be 1-64 characters of [A-Za-z0-9_-]",
            ));
        }
        if self
            .routes
            .iter()
            .any(|r| !r.starts_with('/') || r.contains('*'))
        {
            return Err(PolicyError::new(
                "routes are plain path prefixes starting with `/` (no `*`: `/api/` covers everything below)",
            ));
        }
        if self.window() > Duration::from_secs(366 * 24 * 3600) {
            return Err(PolicyError::new(
                "burst × (period / rate) must be at most a year",
            ));
        }
        const STANDARD: [Method; 9] = [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::HEAD,
            Method::OPTIONS,
            Method::CONNECT,
            Method::TRACE,
        ];
        if let Some(m) = self.methods.iter().find(|m| !STANDARD.contains(m)) {
            return Err(PolicyError::new(format!(
                "`{m}` is not a standard HTTP method"
            )));
        }
        Ok(())
    }

    pub(crate) fn applies_to(&self, req: &RequestParts<'_>) -> bool {
        self.matches(req.method, req.uri.path())
    }

    /// Whether the policy covers `method` on `path`.
    #[inline(always)]
    pub(crate) fn matches(&self, method: &Method, path: &str) -> bool {
        (self.methods.is_empty() || self.methods.contains(method))
            && (self.routes.is_empty() || self.routes.iter().any(|r| path.starts_with(r.as_str())))
    }
}

impl fmt::Debug for RateLimitPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitPolicy")
            .field("name", &self.name)
            .field("rate", &self.rate)
            .field("period", &self.period)
            .field("burst", &self.burst)
            .field("routes", &self.routes)
            .field("methods", &self.methods)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

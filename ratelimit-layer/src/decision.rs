//! One policy's verdict on one request, and the headers that report it.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

/// `RateLimit-Policy` (IETF draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (IETF draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// What a policy decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The bucket size.
    pub limit: u32,
    /// Requests still allowed right now, after this one.
    pub remaining: u32,
    /// Time until a denied request would be allowed (zero when allowed).
    pub retry_after: Duration,
    /// Time until the bucket is full again.
    pub reset: Duration,
}

impl Decision {
    pub(crate) fn allow(limit: u32, remaining: u32, reset: Duration) -> Self {
        Self {
            allowed: true,
            limit,
            remaining,
            retry_after: Duration::ZERO,
            reset,
        }
    }

    pub(crate) fn deny(limit: u32, retry_after: Duration, reset: Duration) -> Self {
        Self {
            allowed: false,
            limit,
            remaining: 0,
            retry_after,
            reset,
        }
    }
}

/// Whole seconds, rounded up: a client told to wait never retries early.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Adds `RateLimit-Policy: "name";q=…;w=…` and `RateLimit: "name";r=…;t=…`.
pub(crate) fn write_headers(headers: &mut HeaderMap, name: &str, window: Duration, d: &Decision) {
    let policy = format!("\"{name}\";q={};w={}", d.limit, ceil_secs(window).max(1));
    let state = format!("\"{name}\";r={};t={}", d.remaining, ceil_secs(d.reset));
    if let (Ok(p), Ok(s)) = (
        HeaderValue::from_str(&policy),
        HeaderValue::from_str(&state),
    ) {
        headers.append(RATELIMIT_POLICY, p);
        headers.append(RATELIMIT, s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_up() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(2001)), 3);
        assert_eq!(ceil_secs(Duration::ZERO), 0);
    }
}

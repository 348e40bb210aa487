//! One policy's verdict on one request, and the headers that report it.

use std::time::Duration;

use http::{HeaderName, HeaderValue};

use crate::RateLimitPolicy;

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

/// Headers to add to a response: a plain list, so none is allocated when
/// no policy writes any.
pub(crate) type Headers = Vec<(HeaderName, HeaderValue)>;

/// `"name";q=…;w=…`: the constant `RateLimit-Policy` value of a policy.
pub(crate) fn policy_header(policy: &RateLimitPolicy) -> HeaderValue {
    let value = format!(
        "\"{}\";q={};w={}",
        policy.policy_name(),
        policy.burst_size(),
        ceil_secs(policy.window()).max(1)
    );
    // Names are validated to [A-Za-z0-9_-], so this is always a valid value.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("\"policy\""))
}

/// Adds `RateLimit-Policy` (precomputed) and `RateLimit: "name";r=…;t=…`.
pub(crate) fn write_headers(headers: &mut Headers, name: &str, policy: &HeaderValue, d: &Decision) {
    use std::io::Write;
    // Formatted on the stack; the header value is the one allocation.
    let mut buf = [0u8; 128];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    if write!(
        cursor,
        "\"{name}\";r={};t={}",
        d.remaining,
        ceil_secs(d.reset)
    )
    .is_ok()
    {
        let len = cursor.position() as usize;
        if let Ok(state) = HeaderValue::from_bytes(&buf[..len]) {
            headers.push((RATELIMIT_POLICY, policy.clone()));
            headers.push((RATELIMIT, state));
        }
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

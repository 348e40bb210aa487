//! What a rate limit counts by: the key of a request.
//!
//! A [`KeyExtractor`] reads a request and returns a [`Key`]. The built-ins
//! cover the common cases, closures cover the rest:
//!
//! | extractor | key | when it can't find one |
//! |---|---|---|
//! | [`ClientIpKey`] | `ClientIp::group()` (trusted-proxy rules applied; IPv6 by /64) | the raw peer address |
//! | [`PrincipalKey`] | the authenticated subject | the client IP (so unauthenticated floods are still limited) |
//! | [`ApiKeyHeader`] | a SHA-256 digest of the header value, never the raw key | the client IP |
//! | [`GlobalKey`] | one bucket for everyone | — |
//!
//! A request with no key at all (no header, no principal, no peer address)
//! shares one fallback bucket per policy: limited, never unlimited, never a
//! 500.
//!
//! # Example
//!
//! ```
//! use ratelimit_layer::key::{ClientIpKey, Key, KeyExtractor, RequestParts};
//! use guardrail_core::ClientIp;
//! use http::Request;
//!
//! let mut req = Request::new(());
//! req.extensions_mut().insert(ClientIp::new("2001:db8:1:2::7".parse().unwrap()));
//! let (parts, ()) = req.into_parts();
//! let key = ClientIpKey.key(&RequestParts::from(&parts)).unwrap();
//! assert_eq!(key, Key::Ip("2001:db8:1:2::".parse().unwrap()));
//!
//! // A closure is an extractor too.
//! let by_tenant = |req: &RequestParts<'_>| {
//!     req.headers.get("x-tenant").and_then(|v| v.to_str().ok()).map(|t| Key::Custom(t.to_owned()))
//! };
//! assert_eq!(by_tenant.key(&RequestParts::from(&parts)), None);
//! ```

use std::{fmt, net::IpAddr};

use guardrail_core::{ClientIp, Principal, client_ip::peer_addr};
use http::{Extensions, HeaderMap, HeaderName, Method, Uri, request::Parts};
use sha2::{Digest, Sha256};

/// The parts of a request an extractor may read.
#[derive(Clone, Copy, Debug)]
pub struct RequestParts<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URI.
    pub uri: &'a Uri,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The extensions (`ClientIp`, `Principal`, …).
    pub extensions: &'a Extensions,
}

impl<'a> From<&'a Parts> for RequestParts<'a> {
    fn from(parts: &'a Parts) -> Self {
        Self {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            extensions: &parts.extensions,
        }
    }
}

impl<'a, B> From<&'a http::Request<B>> for RequestParts<'a> {
    fn from(req: &'a http::Request<B>) -> Self {
        Self {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            extensions: req.extensions(),
        }
    }
}

/// What a request is counted by.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// A client address (already grouped).
    Ip(IpAddr),
    /// An authenticated subject.
    Subject(String),
    /// The SHA-256 digest of an API key (the key itself is never kept).
    ApiKey([u8; 32]),
    /// One bucket for all requests.
    Global,
    /// Anything else.
    Custom(String),
    /// The request had nothing to key on; all such requests share a bucket.
    Unknown,
}

impl Key {
    /// The key type, for events and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Ip(_) => "ip",
            Self::Subject(_) => "subject",
            Self::ApiKey(_) => "api_key",
            Self::Global => "global",
            Self::Custom(_) => "custom",
            Self::Unknown => "unknown",
        }
    }

    /// The key as it may appear in logs: IPs masked, subjects pseudonymized,
    /// API keys as a digest prefix, custom keys as a pseudonym.
    pub fn masked(&self, p: &guardrail_core::Pseudonymizer) -> String {
        match self {
            Self::Ip(ip) => ClientIp::new(*ip).masked().to_string(),
            Self::Subject(s) => p.user(s),
            Self::ApiKey(digest) => format!("key_{}", hex::encode(&digest[..4])),
            Self::Global => "global".into(),
            Self::Custom(c) => p.pseudonym("key", c),
            Self::Unknown => "unknown".into(),
        }
    }

    /// A stable id of the key, the same on every replica (the Redis
    /// backend names buckets by a keyed hash of it, never by the id
    /// itself).
    pub fn storage_id(&self) -> String {
        let digest = |kind: &str, value: &[u8]| {
            let mut h = Sha256::new();
            h.update(kind.as_bytes());
            h.update([0]);
            h.update(value);
            hex::encode(&h.finalize()[..16])
        };
        match self {
            Self::Ip(ip) => format!("ip:{ip}"),
            Self::Subject(s) => format!("sub:{}", digest("sub", s.as_bytes())),
            Self::ApiKey(d) => format!("key:{}", hex::encode(&d[..16])),
            Self::Global => "global".into(),
            Self::Custom(c) => format!("custom:{}", digest("custom", c.as_bytes())),
            Self::Unknown => "unknown".into(),
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No pseudonymizer here: addresses are masked, and the storage id
        // of every other key is a digest that hides it as well.
        match self {
            Self::Ip(ip) => write!(f, "Key(ip: {})", ClientIp::new(*ip).masked()),
            _ => write!(f, "Key({}: {})", self.kind(), self.storage_id()),
        }
    }
}

/// Finds the key of a request; `None` when it has none of the kind sought.
pub trait KeyExtractor: Send + Sync + 'static {
    /// The key of `req`.
    fn key(&self, req: &RequestParts<'_>) -> Option<Key>;
}

impl<F> KeyExtractor for F
where
    F: Fn(&RequestParts<'_>) -> Option<Key> + Send + Sync + 'static,
{
    fn key(&self, req: &RequestParts<'_>) -> Option<Key> {
        self(req)
    }
}

/// The client address: the resolved `ClientIp` (grouped), else the peer.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientIpKey;

impl ClientIpKey {
    /// The grouped address, without building a [`Key`].
    #[inline]
    pub(crate) fn ip(req: &RequestParts<'_>) -> Option<IpAddr> {
        match req.extensions.get::<ClientIp>() {
            Some(ip) => Some(ip.group()),
            None => peer_addr(req.extensions).map(|peer| ClientIp::new(peer.ip()).group()),
        }
    }
}

impl KeyExtractor for ClientIpKey {
    fn key(&self, req: &RequestParts<'_>) -> Option<Key> {
        Self::ip(req).map(Key::Ip)
    }
}

/// The authenticated subject, else the client IP.
#[derive(Clone, Copy, Debug, Default)]
pub struct PrincipalKey;

impl KeyExtractor for PrincipalKey {
    fn key(&self, req: &RequestParts<'_>) -> Option<Key> {
        match req.extensions.get::<Principal>() {
            Some(p) => Some(Key::Subject(p.subject().to_owned())),
            None => ClientIpKey.key(req),
        }
    }
}

/// An API key header, hashed; else the client IP.
#[derive(Clone, Debug)]
pub struct ApiKeyHeader {
    header: HeaderName,
}

impl ApiKeyHeader {
    /// Reads `header` (e.g. `x-api-key`).
    pub fn new(header: HeaderName) -> Self {
        Self { header }
    }
}

impl KeyExtractor for ApiKeyHeader {
    fn key(&self, req: &RequestParts<'_>) -> Option<Key> {
        // Exactly one non-empty value; several are ambiguous.
        match guardrail_core::single_header(req.headers, &self.header) {
            Ok(Some(v)) if !v.is_empty() => Some(Key::ApiKey(Sha256::digest(v.as_bytes()).into())),
            _ => ClientIpKey.key(req),
        }
    }
}

/// One bucket for every request.
#[derive(Clone, Copy, Debug, Default)]
pub struct GlobalKey;

impl KeyExtractor for GlobalKey {
    fn key(&self, _req: &RequestParts<'_>) -> Option<Key> {
        Some(Key::Global)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn parts(f: impl FnOnce(&mut http::Request<()>)) -> Parts {
        let mut req = http::Request::new(());
        f(&mut req);
        req.into_parts().0
    }

    #[test]
    fn client_ip_key_prefers_resolved_ip_then_peer() {
        let p = parts(|r| {
            r.extensions_mut()
                .insert(ClientIp::new("203.0.113.9".parse().unwrap()));
            r.extensions_mut()
                .insert(SocketAddr::from(([10, 0, 0, 1], 1)));
        });
        assert_eq!(
            ClientIpKey.key(&(&p).into()),
            Some(Key::Ip("203.0.113.9".parse().unwrap()))
        );
        let p = parts(|r| {
            r.extensions_mut()
                .insert(SocketAddr::from(([10, 0, 0, 1], 1)));
        });
        assert_eq!(
            ClientIpKey.key(&(&p).into()),
            Some(Key::Ip("10.0.0.1".parse().unwrap()))
        );
        assert_eq!(ClientIpKey.key(&(&parts(|_| {})).into()), None);
    }

    #[test]
    fn principal_key_falls_back_to_ip() {
        let p = parts(|r| {
            r.extensions_mut().insert(Principal::new("u-1"));
            r.extensions_mut()
                .insert(ClientIp::new("203.0.113.9".parse().unwrap()));
        });
        assert_eq!(
            PrincipalKey.key(&(&p).into()),
            Some(Key::Subject("u-1".into()))
        );
        let p = parts(|r| {
            r.extensions_mut()
                .insert(ClientIp::new("203.0.113.9".parse().unwrap()));
        });
        assert_eq!(
            PrincipalKey.key(&(&p).into()),
            Some(Key::Ip("203.0.113.9".parse().unwrap()))
        );
    }

    #[test]
    fn api_keys_are_hashed_and_never_shown() {
        let p = parts(|r| {
            r.headers_mut()
                .insert("x-api-key", "sk_live_abcdef123456".parse().unwrap());
        });
        let key = ApiKeyHeader::new(HeaderName::from_static("x-api-key"))
            .key(&(&p).into())
            .unwrap();
        assert!(matches!(key, Key::ApiKey(_)));
        for shown in [
            format!("{key:?}"),
            key.masked(&guardrail_core::Pseudonymizer::random()),
            key.storage_id(),
        ] {
            assert!(!shown.contains("sk_live"), "{shown}");
        }
    }

    #[test]
    fn storage_ids_hide_subjects_and_are_stable() {
        let k = Key::Subject("alice@example.com".into());
        assert!(!k.storage_id().contains("alice"));
        assert_eq!(
            k.storage_id(),
            Key::Subject("alice@example.com".into()).storage_id()
        );
        assert_eq!(
            Key::Ip("203.0.113.9".parse().unwrap())
                .masked(&guardrail_core::Pseudonymizer::random()),
            "203.0.113.0/24"
        );
    }
}

//! Client IP resolution that a client cannot spoof.
//!
//! The peer address of the connection is the truth. Forwarding headers
//! (`X-Forwarded-For`, `Forwarded` or `X-Real-IP`, one of them, chosen in
//! config) are read **only** when the peer is a configured trusted proxy, and
//! then walked **right to left**, skipping trusted hops: the first untrusted
//! address is the client. Entries left of it were written by the client and
//! are never read, so `X-Forwarded-For: 1.2.3.4` sent by a client changes
//! nothing. A malformed entry stops the walk at the last trusted hop.
//!
//! [`ResolveClientIpLayer`] puts the result in request extensions as a
//! [`ClientIp`], so later layers read it once. The peer address comes from
//! axum's `ConnectInfo<SocketAddr>` (feature `axum`) or a plain
//! [`SocketAddr`] extension (for hyper services). Without a peer address no
//! [`ClientIp`] is inserted; layers that key on it document their fallback.
//!
//! # Example
//!
//! ```
//! use std::net::SocketAddr;
//! use guardrail_core::{ClientIp, ClientIpConfig, ResolveClientIpLayer};
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let config = ClientIpConfig::default().trusted_proxies(["10.0.0.0/8".parse().unwrap()]);
//! let svc = ServiceBuilder::new()
//!     .layer(ResolveClientIpLayer::new(config))
//!     .service(service_fn(|req: Request<()>| async move {
//!         let ip = req.extensions().get::<ClientIp>().unwrap().addr();
//!         Ok::<_, std::convert::Infallible>(Response::new(ip.to_string()))
//!     }));
//!
//! // Through the trusted load balancer 10.0.0.5: the rightmost untrusted entry.
//! let mut req = Request::builder()
//!     .header("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.9")
//!     .body(()).unwrap();
//! req.extensions_mut().insert(SocketAddr::from(([10, 0, 0, 5], 443)));
//! assert_eq!(svc.clone().oneshot(req).await.unwrap().body(), "203.0.113.7");
//!
//! // Directly from the internet: the header is ignored.
//! let mut req = Request::builder().header("x-forwarded-for", "6.6.6.6").body(()).unwrap();
//! req.extensions_mut().insert(SocketAddr::from(([198, 51, 100, 1], 5000)));
//! assert_eq!(svc.oneshot(req).await.unwrap().body(), "198.51.100.1");
//! # }
//! ```

use std::{
    fmt,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderMap, HeaderName, Request, header::FORWARDED};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Deserialize;
use tower_layer::Layer;
use tower_service::Service;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// The default prefix length by which IPv6 clients are grouped: one /64 is
/// what a single subscriber usually gets.
pub const DEFAULT_IPV6_GROUP_PREFIX: u8 = 64;

/// The resolved address of the client, in request extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientIp {
    addr: IpAddr,
    ipv6_group_prefix: u8,
}

impl ClientIp {
    /// A client address; IPv4-mapped IPv6 addresses become IPv4. IPv6 is
    /// grouped by [`DEFAULT_IPV6_GROUP_PREFIX`].
    pub fn new(addr: IpAddr) -> Self {
        Self {
            addr: addr.to_canonical(),
            ipv6_group_prefix: DEFAULT_IPV6_GROUP_PREFIX,
        }
    }

    /// Sets the IPv6 grouping prefix length (clamped to 128).
    pub fn with_ipv6_group_prefix(mut self, prefix: u8) -> Self {
        self.ipv6_group_prefix = prefix.min(128);
        self
    }

    /// The client's address.
    #[inline]
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The address to key on (rate limits, counters): IPv4 as is, IPv6
    /// truncated to its group prefix, so the addresses one subscriber
    /// rotates through share a key.
    #[inline]
    pub fn group(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(_) => self.addr,
            IpAddr::V6(v6) => IpAddr::V6(truncate_v6(v6, self.ipv6_group_prefix)),
        }
    }

    /// The address masked for logs: IPv4 to its /24, IPv6 to its /48.
    pub fn masked(&self) -> IpNet {
        match self.addr {
            IpAddr::V4(v4) => IpNet::V4(Ipv4Net::new_assert(v4, 24).trunc()),
            IpAddr::V6(v6) => IpNet::V6(Ipv6Net::new_assert(v6, 48).trunc()),
        }
    }
}

fn truncate_v6(addr: Ipv6Addr, prefix: u8) -> Ipv6Addr {
    Ipv6Net::new(addr, prefix.min(128))
        .map(|n| n.network())
        .unwrap_or(addr)
}

/// Which forwarding header a trusted proxy writes.
///
/// Exactly one is read: reading several lets a client pick the one its proxy
/// does not overwrite.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (the default).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client;proto=https, for=proxy1`.
    Forwarded,
    /// `X-Real-IP: client`, a single address set by the proxy.
    XRealIp,
    /// No header: the peer address is always the client.
    None,
}

/// Settings of client IP resolution: `[client_ip]` in the config file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientIpConfig {
    trusted_proxies: Vec<IpNet>,
    header: ForwardedHeader,
    ipv6_group_prefix: u8,
}

impl Default for ClientIpConfig {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            header: ForwardedHeader::default(),
            ipv6_group_prefix: DEFAULT_IPV6_GROUP_PREFIX,
        }
    }
}

impl ClientIpConfig {
    /// Sets the CIDR blocks of the proxies whose forwarding headers are
    /// believed. Empty (the default) means headers are never read.
    pub fn trusted_proxies(mut self, nets: impl IntoIterator<Item = IpNet>) -> Self {
        self.trusted_proxies = nets.into_iter().map(|n| n.trunc()).collect();
        self
    }

    /// Sets the forwarding header to read.
    pub fn header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// Sets the prefix length by which IPv6 clients are grouped (default 64).
    pub fn ipv6_group_prefix(mut self, prefix: u8) -> Self {
        self.ipv6_group_prefix = prefix;
        self
    }

    /// The trusted proxy blocks.
    pub fn trusted_proxy_list(&self) -> &[IpNet] {
        &self.trusted_proxies
    }

    /// The forwarding header read from trusted proxies.
    pub fn forwarded_header(&self) -> ForwardedHeader {
        self.header
    }

    /// The IPv6 grouping prefix length.
    pub fn ipv6_group_prefix_len(&self) -> u8 {
        self.ipv6_group_prefix
    }

    /// Whether `addr` is inside a trusted proxy block.
    pub fn is_trusted(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        self.trusted_proxies.iter().any(|net| net.contains(&addr))
    }

    /// Resolves the client address of a request that arrived from `peer`.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> ClientIp {
        let peer = peer.to_canonical();
        let addr = if self.is_trusted(peer) {
            match self.header {
                ForwardedHeader::XForwardedFor => {
                    self.walk(peer, headers, &X_FORWARDED_FOR, parse_node)
                }
                ForwardedHeader::Forwarded => {
                    self.walk(peer, headers, &FORWARDED, parse_forwarded_element)
                }
                ForwardedHeader::XRealIp => single_value(headers, &X_REAL_IP).unwrap_or(peer),
                ForwardedHeader::None => peer,
            }
        } else {
            peer
        };
        ClientIp::new(addr).with_ipv6_group_prefix(self.ipv6_group_prefix)
    }

    /// Walks the header's entries right to left (later header lines first),
    /// returning the first untrusted address; stops at the last trusted hop
    /// on anything malformed.
    fn walk(
        &self,
        peer: IpAddr,
        headers: &HeaderMap,
        name: &HeaderName,
        parse: fn(&str) -> Option<IpAddr>,
    ) -> IpAddr {
        let mut last_trusted = peer;
        for value in headers.get_all(name).iter().rev() {
            let Ok(text) = value.to_str() else {
                return last_trusted;
            };
            for entry in text.rsplit(',').map(str::trim) {
                if entry.is_empty() {
                    continue;
                }
                let Some(addr) = parse(entry) else {
                    return last_trusted;
                };
                if !self.is_trusted(addr) {
                    return addr;
                }
                last_trusted = addr;
            }
        }
        last_trusted
    }
}

/// One address from a header that must appear exactly once.
fn single_value(headers: &HeaderMap, name: &HeaderName) -> Option<IpAddr> {
    let value = crate::single_header(headers, name).ok()??;
    parse_node(value.to_str().ok()?.trim())
}

/// An address, optionally with a port, IPv6 optionally in brackets.
fn parse_node(text: &str) -> Option<IpAddr> {
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Some(addr.to_canonical());
    }
    if let Ok(sock) = text.parse::<SocketAddr>() {
        return Some(sock.ip().to_canonical());
    }
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    inner
        .parse::<Ipv6Addr>()
        .ok()
        .map(|a| IpAddr::V6(a).to_canonical())
}

/// The `for=` node of one RFC 7239 forwarded-element. `unknown` and
/// obfuscated identifiers count as malformed: they name no address.
fn parse_forwarded_element(element: &str) -> Option<IpAddr> {
    let value = element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then_some(value.trim())
    })?;
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    parse_node(value)
}

/// Layer that applies [`ResolveClientIp`], which puts the [`ClientIp`] in
/// request extensions.
#[derive(Clone, Debug)]
pub struct ResolveClientIpLayer {
    config: Arc<ClientIpConfig>,
}

impl ResolveClientIpLayer {
    /// Resolves with `config`.
    pub fn new(config: ClientIpConfig) -> Self {
        Self {
            config: Arc::new(config),
        }
    }
}

impl<S> Layer<S> for ResolveClientIpLayer {
    type Service = ResolveClientIp<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResolveClientIp {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// Middleware that resolves the client address of each request and puts it
/// in extensions as a [`ClientIp`].
#[derive(Clone)]
pub struct ResolveClientIp<S> {
    inner: S,
    config: Arc<ClientIpConfig>,
}

impl<S> fmt::Debug for ResolveClientIp<S>
where
    S: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolveClientIp")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

impl<S> ResolveClientIp<S> {
    /// Wraps `inner`, resolving with `config`.
    pub fn new(inner: S, config: ClientIpConfig) -> Self {
        ResolveClientIpLayer::new(config).layer(inner)
    }

    /// Returns a new [`Layer`] that wraps services with a [`ResolveClientIp`].
    pub fn layer(config: ClientIpConfig) -> ResolveClientIpLayer {
        ResolveClientIpLayer::new(config)
    }

    crate::inner_service_accessors!();
}

/// The connection's peer address, from axum's `ConnectInfo` or a plain
/// `SocketAddr` extension.
pub fn peer_addr(extensions: &http::Extensions) -> Option<SocketAddr> {
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) =
        extensions.get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(*addr);
    }
    extensions.get::<SocketAddr>().copied()
}

impl<S, B> Service<Request<B>> for ResolveClientIp<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(peer) = peer_addr(req.extensions()) {
            let client = self.config.resolve(peer.ip(), req.headers());
            req.extensions_mut().insert(client);
        } else {
            tracing::debug!(
                "no peer address in request extensions; client IP left unresolved \
                 (serve with ConnectInfo<SocketAddr> or insert a SocketAddr)"
            );
        }
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        h
    }

    fn behind_lb() -> ClientIpConfig {
        ClientIpConfig::default()
            .trusted_proxies(["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()])
    }

    #[test]
    fn spoofed_xff_from_untrusted_peer_is_ignored() {
        let h = headers(&[
            ("x-forwarded-for", b"1.2.3.4"),
            ("x-real-ip", b"1.2.3.4"),
            ("forwarded", b"for=1.2.3.4"),
        ]);
        for header in [
            ForwardedHeader::XForwardedFor,
            ForwardedHeader::Forwarded,
            ForwardedHeader::XRealIp,
        ] {
            let c = behind_lb().header(header).resolve(ip("198.51.100.9"), &h);
            assert_eq!(c.addr(), ip("198.51.100.9"), "{header:?}");
        }
    }

    #[test]
    fn no_trusted_proxies_means_headers_are_never_read() {
        let h = headers(&[("x-forwarded-for", b"1.2.3.4")]);
        let c = ClientIpConfig::default().resolve(ip("10.0.0.1"), &h);
        assert_eq!(c.addr(), ip("10.0.0.1"));
    }

    #[test]
    fn chain_through_trusted_proxies_yields_rightmost_untrusted() {
        // Client-written "6.6.6.6" on the left must never be chosen.
        let h = headers(&[(
            "x-forwarded-for",
            b"6.6.6.6, 203.0.113.7, 10.1.1.1, 10.2.2.2",
        )]);
        let c = behind_lb().resolve(ip("10.0.0.5"), &h);
        assert_eq!(c.addr(), ip("203.0.113.7"));
    }

    #[test]
    fn several_xff_lines_are_one_list_in_order() {
        let h = headers(&[
            ("x-forwarded-for", b"6.6.6.6"),
            ("x-forwarded-for", b"203.0.113.7, 10.1.1.1"),
        ]);
        let c = behind_lb().resolve(ip("10.0.0.5"), &h);
        assert_eq!(c.addr(), ip("203.0.113.7"));
    }

    #[test]
    fn all_trusted_chain_yields_leftmost_hop() {
        let h = headers(&[("x-forwarded-for", b"10.9.9.9, 10.1.1.1")]);
        let c = behind_lb().resolve(ip("10.0.0.5"), &h);
        assert_eq!(c.addr(), ip("10.9.9.9"));
    }

    #[test]
    fn trusted_peer_without_header_is_the_client() {
        let c = behind_lb().resolve(ip("10.0.0.5"), &HeaderMap::new());
        assert_eq!(c.addr(), ip("10.0.0.5"));
    }

    #[test]
    fn garbage_headers_never_let_the_client_choose() {
        let cases: &[&[u8]] = &[
            b"not-an-ip",
            b"1.2.3.4, garbage",
            b"999.1.1.1",
            b",,,",
            b"",
            b"1.2.3.4 5.6.7.8",
            b"\xff\xfe",
            b"[::1",
            b"1.2.3.4:99999",
            b"unknown",
        ];
        for raw in cases {
            let h = headers(&[("x-forwarded-for", raw)]);
            let c = behind_lb().resolve(ip("10.0.0.5"), &h);
            assert_eq!(
                c.addr(),
                ip("10.0.0.5"),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        // Garbage left of the first untrusted entry is never read.
        let h = headers(&[("x-forwarded-for", b"<script>, 203.0.113.7")]);
        assert_eq!(
            behind_lb().resolve(ip("10.0.0.5"), &h).addr(),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn ports_and_brackets_are_accepted() {
        for (raw, want) in [
            ("203.0.113.7:5123", "203.0.113.7"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("::ffff:203.0.113.7", "203.0.113.7"),
        ] {
            let h = headers(&[("x-forwarded-for", raw.as_bytes())]);
            assert_eq!(
                behind_lb().resolve(ip("10.0.0.5"), &h).addr(),
                ip(want),
                "{raw}"
            );
        }
    }

    #[test]
    fn forwarded_header_is_walked_right_to_left() {
        let cfg = behind_lb().header(ForwardedHeader::Forwarded);
        let h = headers(&[(
            "forwarded",
            b"for=6.6.6.6, for=\"[2001:db8:cafe::17]:4711\";proto=https, For=10.1.1.1;by=10.0.0.5",
        )]);
        assert_eq!(
            cfg.resolve(ip("10.0.0.5"), &h).addr(),
            ip("2001:db8:cafe::17")
        );

        for raw in [
            &b"for=unknown"[..],
            b"for=_hidden",
            b"proto=https",
            b"for=\"[::1\"",
            b"for",
        ] {
            let h = headers(&[("forwarded", raw)]);
            assert_eq!(cfg.resolve(ip("10.0.0.5"), &h).addr(), ip("10.0.0.5"));
        }
    }

    #[test]
    fn x_real_ip_is_read_only_when_single() {
        let cfg = behind_lb().header(ForwardedHeader::XRealIp);
        let one = headers(&[("x-real-ip", b"203.0.113.7")]);
        assert_eq!(cfg.resolve(ip("10.0.0.5"), &one).addr(), ip("203.0.113.7"));
        let two = headers(&[("x-real-ip", b"203.0.113.7"), ("x-real-ip", b"6.6.6.6")]);
        assert_eq!(cfg.resolve(ip("10.0.0.5"), &two).addr(), ip("10.0.0.5"));
    }

    #[test]
    fn mapped_peer_addresses_are_canonical() {
        let cfg = ClientIpConfig::default().trusted_proxies(["10.0.0.0/8".parse().unwrap()]);
        let h = headers(&[("x-forwarded-for", b"203.0.113.7")]);
        let c = cfg.resolve(ip("::ffff:10.0.0.5"), &h);
        assert_eq!(c.addr(), ip("203.0.113.7"));
    }

    #[test]
    fn ipv6_clients_group_by_64() {
        let a = ClientIp::new(ip("2001:db8:1:2:aaaa::1"));
        let b = ClientIp::new(ip("2001:db8:1:2:ffff:1:2:3"));
        let other = ClientIp::new(ip("2001:db8:1:3::1"));
        assert_eq!(a.group(), b.group());
        assert_eq!(a.group(), ip("2001:db8:1:2::"));
        assert_ne!(a.group(), other.group());
        assert_eq!(a.with_ipv6_group_prefix(128).group(), a.addr());
        let v4 = ClientIp::new(ip("203.0.113.7"));
        assert_eq!(v4.group(), v4.addr());
    }

    #[test]
    fn configured_group_prefix_is_carried() {
        let cfg = ClientIpConfig::default().ipv6_group_prefix(48);
        let c = cfg.resolve(ip("2001:db8:1:2::1"), &HeaderMap::new());
        assert_eq!(c.group(), ip("2001:db8:1::"));
    }

    #[test]
    fn masked_hides_the_host_part() {
        assert_eq!(
            ClientIp::new(ip("203.0.113.77")).masked().to_string(),
            "203.0.113.0/24"
        );
        assert_eq!(
            ClientIp::new(ip("2001:db8:1:2::1")).masked().to_string(),
            "2001:db8:1::/48"
        );
    }

    #[cfg(feature = "axum")]
    #[tokio::test]
    async fn layer_reads_connect_info_and_plain_socket_addr() {
        use tower::{ServiceExt, service_fn};
        let svc = ResolveClientIpLayer::new(ClientIpConfig::default()).layer(service_fn(
            |req: Request<()>| async move {
                Ok::<_, std::convert::Infallible>(
                    req.extensions().get::<ClientIp>().map(ClientIp::addr),
                )
            },
        ));
        let mut req = Request::new(());
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(SocketAddr::from((
                [192, 0, 2, 1],
                1,
            ))));
        assert_eq!(
            svc.clone().oneshot(req).await.unwrap(),
            Some(ip("192.0.2.1"))
        );

        let mut req = Request::new(());
        req.extensions_mut()
            .insert(SocketAddr::from(([192, 0, 2, 2], 1)));
        assert_eq!(
            svc.clone().oneshot(req).await.unwrap(),
            Some(ip("192.0.2.2"))
        );

        assert_eq!(svc.oneshot(Request::new(())).await.unwrap(), None);
    }
}

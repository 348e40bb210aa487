//! W3C Trace Context: the `traceparent` / `tracestate` headers that carry
//! one trace across services.
//!
//! The trace layer reads them from each request ([`TraceContext::from_headers`];
//! a malformed `traceparent` is never trusted: the request starts a fresh
//! trace, and its `tracestate` is dropped with it), gives the request a span
//! id of its own ([`TraceContext::child`]), writes `trace_id` and `span_id`
//! on its `api.request` line and makes the context current while the
//! request is handled ([`TraceContext::enter`]), so the outbound stack can
//! send it on to upstreams ([`TraceContext::current`],
//! [`TraceContext::inject`]).
//!
//! # Example
//!
//! ```
//! use guardrail_core::TraceContext;
//! use http::HeaderMap;
//!
//! let mut headers = HeaderMap::new();
//! headers.insert(
//!     "traceparent",
//!     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap(),
//! );
//! headers.insert("tracestate", "congo=t61rcWkgMzE".parse().unwrap());
//! let incoming = TraceContext::from_headers(&headers).unwrap();
//! assert_eq!(incoming.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
//! assert!(incoming.sampled());
//!
//! // This service's span: same trace, a span id of its own.
//! let ours = incoming.child();
//! assert_eq!(ours.trace_id(), incoming.trace_id());
//! assert_ne!(ours.span_id(), incoming.span_id());
//!
//! // Sent on to an upstream while the request is handled.
//! let _entered = ours.enter();
//! let mut outgoing = HeaderMap::new();
//! TraceContext::current().unwrap().child().inject(&mut outgoing);
//! let traceparent = outgoing["traceparent"].to_str().unwrap();
//! assert!(traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
//! assert_eq!(outgoing["tracestate"], "congo=t61rcWkgMzE");
//!
//! // Not a traceparent: not trusted.
//! headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01".parse().unwrap());
//! assert!(TraceContext::from_headers(&headers).is_none());
//! ```

use std::{cell::RefCell, fmt};

use http::{HeaderMap, HeaderName, HeaderValue};

/// `traceparent`.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `tracestate`.
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The most `tracestate` this accepts (the spec's 32 members of at most 256
/// bytes each would be more; 512 bytes is what it asks vendors to keep).
const MAX_TRACESTATE: usize = 512;

/// A 16-byte trace id, printed as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 16]);

/// An 8-byte span id, printed as 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId([u8; 8]);

/// One span's place in a trace: trace id, span id, flags and the vendors'
/// `tracestate`.
#[derive(Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: TraceId,
    span_id: SpanId,
    flags: u8,
    state: Option<HeaderValue>,
}

thread_local! {
    static CURRENT: RefCell<Option<TraceContext>> = const { RefCell::new(None) };
}

impl TraceContext {
    /// A new trace (random ids), sampled.
    pub fn new_root() -> Self {
        Self {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            flags: 0x01,
            state: None,
        }
    }

    /// The context of `traceparent` (and `tracestate`) in `headers`, or
    /// `None` when there is none or it is malformed: not exactly one
    /// header, an unknown layout, version `ff`, upper-case or non-hex
    /// digits, an all-zero id. Later versions are read as version 00, as
    /// the spec asks. A `tracestate` longer than 512 bytes or not printable
    /// ASCII is dropped; the context stays.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let mut values = headers.get_all(&TRACEPARENT).iter();
        let value = values.next()?;
        if values.next().is_some() {
            return None;
        }
        let mut ctx = Self::parse_traceparent(value.as_bytes())?;
        // Several tracestate headers are one list, joined with commas.
        let mut states = headers.get_all(&TRACESTATE).iter();
        ctx.state = match (states.next(), states.next()) {
            (None, _) => None,
            (Some(state), None) => Some(state.clone()),
            (Some(first), Some(second)) => {
                let mut joined = first.as_bytes().to_vec();
                for next in std::iter::once(second).chain(states) {
                    joined.push(b',');
                    joined.extend_from_slice(next.as_bytes());
                }
                HeaderValue::from_bytes(&joined).ok()
            }
        }
        .filter(|state| valid_tracestate(state.as_bytes()));
        Some(ctx)
    }

    /// Parses a `traceparent` value.
    fn parse_traceparent(v: &[u8]) -> Option<Self> {
        // version "-" trace-id "-" parent-id "-" flags: 2+1+32+1+16+1+2.
        if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
            return None;
        }
        let version = hex_byte(&v[0..2])?;
        // Version 00 is exactly 55 bytes; a later one may add fields after
        // another dash. ff is forbidden.
        match version {
            0x00 if v.len() == 55 => {}
            0xff | 0x00 => return None,
            _ if v.len() > 55 && v[55] != b'-' => return None,
            _ => {}
        }
        let mut trace_id = [0u8; 16];
        for (i, byte) in trace_id.iter_mut().enumerate() {
            *byte = hex_byte(&v[3 + 2 * i..5 + 2 * i])?;
        }
        let mut span_id = [0u8; 8];
        for (i, byte) in span_id.iter_mut().enumerate() {
            *byte = hex_byte(&v[36 + 2 * i..38 + 2 * i])?;
        }
        // Only `sampled` is defined for version 00, which is what this
        // writes on: the other bits are not passed on.
        let flags = hex_byte(&v[53..55])? & 0x01;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id: TraceId(trace_id),
            span_id: SpanId(span_id),
            flags,
            state: None,
        })
    }

    /// A span in the same trace with a new span id (this service's span
    /// under an incoming one, or an outgoing call under this service's),
    /// the same flags and `tracestate`.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: SpanId::random(),
            flags: self.flags,
            state: self.state.clone(),
        }
    }

    /// A context of these ids and flags (only `sampled` is kept), with
    /// this one's `tracestate`: to adopt what a tracer gave the span, e.g.
    /// OpenTelemetry's. `None` for an all-zero id.
    pub fn with_ids(&self, trace_id: [u8; 16], span_id: [u8; 8], flags: u8) -> Option<Self> {
        (trace_id != [0; 16] && span_id != [0; 8]).then(|| Self {
            trace_id: TraceId(trace_id),
            span_id: SpanId(span_id),
            flags: flags & 0x01,
            state: self.state.clone(),
        })
    }

    /// The flags byte (`01`: sampled).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// The trace id.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// This span's id.
    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// Whether the caller sampled the trace (flag `01`).
    pub fn sampled(&self) -> bool {
        self.flags & 0x01 != 0
    }

    /// The `tracestate` carried along, if any.
    pub fn tracestate(&self) -> Option<&HeaderValue> {
        self.state.as_ref()
    }

    /// The `traceparent` value of this span: version 00.
    pub fn traceparent(&self) -> HeaderValue {
        let text = format!("00-{}-{}-{:02x}", self.trace_id, self.span_id, self.flags);
        HeaderValue::from_str(&text).expect("hex digits and dashes are a valid header value")
    }

    /// Writes `traceparent` (and `tracestate`, if any) into `headers`,
    /// replacing what was there.
    pub fn inject(&self, headers: &mut HeaderMap) {
        headers.insert(TRACEPARENT.clone(), self.traceparent());
        match &self.state {
            Some(state) => headers.insert(TRACESTATE.clone(), state.clone()),
            None => headers.remove(&TRACESTATE),
        };
    }

    /// Makes this the current context on this thread until the guard is
    /// dropped (then the previous one is current again). The trace layer
    /// enters the request's context each time it polls the handler, as it
    /// enters its span.
    pub fn enter(&self) -> Entered {
        let previous = CURRENT.with(|c| c.replace(Some(self.clone())));
        Entered {
            previous,
            _not_send: std::marker::PhantomData,
        }
    }

    /// The context of the request being handled on this thread, if any.
    pub fn current() -> Option<Self> {
        CURRENT.with(|c| c.borrow().clone())
    }
}

/// Restores the previous current [`TraceContext`] when dropped. Not
/// `Send`: it must be dropped on the thread that entered (don't hold it
/// across an `.await`).
#[must_use = "the context is current only while the guard lives"]
pub struct Entered {
    previous: Option<TraceContext>,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

impl fmt::Debug for Entered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entered").finish_non_exhaustive()
    }
}

fn hex_byte(two: &[u8]) -> Option<u8> {
    // Lowercase only: the spec forbids upper case.
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(digit(two[0])? << 4 | digit(two[1])?)
}

fn valid_tracestate(v: &[u8]) -> bool {
    v.len() <= MAX_TRACESTATE && v.iter().all(|&c| (0x20..0x7f).contains(&c))
}

impl TraceId {
    /// The 16 bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    fn random() -> Self {
        // A v4 UUID: 122 random bits, the right-most 7 bytes all random
        // (what Trace Context level 2 asks of a random trace id).
        Self(*uuid::Uuid::new_v4().as_bytes())
    }
}

impl SpanId {
    /// The 8 bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0
    }

    fn random() -> Self {
        // Eight of a v4 UUID's random bytes (not the version or variant).
        let b = uuid::Uuid::new_v4().into_bytes();
        let id = [b[0], b[1], b[2], b[3], b[4], b[5], b[10], b[11]];
        if id == [0; 8] { Self([1; 8]) } else { Self(id) }
    }
}

/// Writes `bytes` as lowercase hex in one `write_str` (ids are on every
/// request's log line: a formatter call per byte costs a microsecond).
fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 32];
    for (pair, b) in buf.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0x0f)];
    }
    let text = std::str::from_utf8(&buf[..bytes.len() * 2]).map_err(|_| fmt::Error)?;
    f.write_str(text)
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // tracestate is the vendors' opaque data: its length only.
        f.debug_struct("TraceContext")
            .field("trace_id", &self.trace_id)
            .field("span_id", &self.span_id)
            .field("flags", &self.flags)
            .field("tracestate_len", &self.state.as_ref().map(HeaderValue::len))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    const VALID: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn accepts_the_specs_example_and_round_trips() {
        let ctx = TraceContext::from_headers(&headers(&[("traceparent", VALID)])).unwrap();
        assert_eq!(ctx.traceparent(), VALID);
        assert_eq!(ctx.span_id().to_string(), "b7ad6b7169203331");
        let unsampled = VALID.replace("-01", "-00");
        let ctx = TraceContext::from_headers(&headers(&[("traceparent", &unsampled)])).unwrap();
        assert!(!ctx.sampled());
        assert_eq!(ctx.child().traceparent().to_str().unwrap()[53..], *"00");
        // Bits other than `sampled` are not passed on.
        let other = VALID.replace("-01", "-ff");
        let ctx = TraceContext::from_headers(&headers(&[("traceparent", &other)])).unwrap();
        assert_eq!(ctx.traceparent(), VALID);
    }

    #[test]
    fn refuses_every_malformed_traceparent() {
        let bad = [
            "",
            "00",
            // upper case
            "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",
            // all-zero ids
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            // version ff, and 00 with more fields
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            // wrong lengths and separators
            "00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01",
            "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333g-01",
            "0x-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            // a later version must still put a dash after the flags
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x",
        ];
        for value in bad {
            assert!(
                TraceContext::from_headers(&headers(&[("traceparent", value)])).is_none(),
                "{value:?}"
            );
        }
        // Two traceparent headers: which one? Neither.
        assert!(
            TraceContext::from_headers(&headers(&[("traceparent", VALID), ("traceparent", VALID)]))
                .is_none()
        );
        // A later version is read as 00.
        let later = "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-the-future-adds";
        let ctx = TraceContext::from_headers(&headers(&[("traceparent", later)])).unwrap();
        assert_eq!(ctx.traceparent(), VALID);
    }

    #[test]
    fn tracestate_rides_along_only_when_sane() {
        let with = |state: &str| {
            TraceContext::from_headers(&headers(&[("traceparent", VALID), ("tracestate", state)]))
                .unwrap()
        };
        assert_eq!(
            with("rojo=00f067aa0ba902b7").tracestate().unwrap(),
            "rojo=00f067aa0ba902b7"
        );
        assert!(with(&"a=b,".repeat(200)).tracestate().is_none(), "too long");
        // Two headers are one list.
        let two = TraceContext::from_headers(&headers(&[
            ("traceparent", VALID),
            ("tracestate", "a=1"),
            ("tracestate", "b=2"),
        ]))
        .unwrap();
        assert_eq!(two.tracestate().unwrap(), "a=1,b=2");
        // The state alone (no traceparent) is not a context.
        assert!(TraceContext::from_headers(&headers(&[("tracestate", "a=b")])).is_none());
    }

    #[test]
    fn new_ids_are_random_and_current_nests() {
        let a = TraceContext::new_root();
        let b = TraceContext::new_root();
        assert_ne!(a.trace_id(), b.trace_id());
        assert_ne!(a.span_id(), a.child().span_id());
        assert!(TraceContext::current().is_none());
        {
            let _a = a.enter();
            {
                let _b = b.enter();
                assert_eq!(TraceContext::current(), Some(b.clone()));
            }
            assert_eq!(TraceContext::current(), Some(a.clone()));
        }
        assert!(TraceContext::current().is_none());
    }
}

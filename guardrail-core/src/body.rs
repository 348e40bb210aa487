//! Response bodies and rejections.
//!
//! Every guardrail layer answers with the inner service's own body type: a
//! response that passes is returned as it is, and a rejection (a
//! problem+json document) is written into that body type through
//! [`RejectionBody`]. axum's `Body`, `http_body_util::Full<Bytes>`, its
//! boxed bodies and `String` implement it. An inner service with a body
//! that can't hold bytes of our choosing (a custom stream) is wrapped once
//! in [`GuardBody`], which is either that body or a small in-memory one.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use guardrail_core::GuardBody;
//! use http_body_util::{BodyExt, Full};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let passed: GuardBody<Full<Bytes>> = GuardBody::new(Full::new(Bytes::from("hello")));
//! assert_eq!(passed.collect().await.unwrap().to_bytes(), "hello");
//!
//! let own: GuardBody<Full<Bytes>> = GuardBody::full(Bytes::from_static(b"{}"));
//! assert_eq!(own.collect().await.unwrap().to_bytes(), "{}");
//! # }
//! ```

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// A body that is either an inner service's body or a small in-memory
    /// one: wrap a body type that doesn't implement [`RejectionBody`] in it
    /// (`MapResponseBodyLayer::new(GuardBody::new)`) to put it behind the
    /// guardrail layers.
    pub struct GuardBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Full { data: Option<Bytes> },
    }
}

impl<B> GuardBody<B> {
    /// Wraps the inner service's body.
    pub fn new(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    /// A body produced by the layer itself, sent as one frame.
    pub fn full(data: Bytes) -> Self {
        let data = (!data.is_empty()).then_some(data);
        Self {
            kind: Kind::Full { data },
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self {
            kind: Kind::Full { data: None },
        }
    }
}

/// A response body a layer can write its own answer into (a problem+json
/// rejection), so the layer can return the inner service's body type as is.
///
/// Every guardrail layer answers with `Response<B>` for any
/// `B: RejectionBody` instead of wrapping every passing response: the body
/// of a response that passes is returned as it is, without a copy of the
/// response. Implemented for [`GuardBody`] (the adapter for any other
/// body), axum's `Body`, `http_body_util::Full<Bytes>`, its boxed bodies,
/// and `String`.
///
/// ```
/// use bytes::Bytes;
/// use guardrail_core::{GuardBody, RejectionBody};
/// use http_body_util::Full;
///
/// let _full: Full<Bytes> = RejectionBody::from_bytes(Bytes::from_static(b"{}"));
/// let guard: GuardBody<Full<Bytes>> = RejectionBody::from_bytes(Bytes::from_static(b"{}"));
/// assert_eq!(format!("{guard:?}"), "GuardBody::Full { len: 2 }");
/// ```
pub trait RejectionBody: Sized {
    /// A body holding `data`, sent as is.
    fn from_bytes(data: Bytes) -> Self;
}

impl<B> RejectionBody for GuardBody<B> {
    fn from_bytes(data: Bytes) -> Self {
        Self::full(data)
    }
}

impl RejectionBody for http_body_util::Full<Bytes> {
    fn from_bytes(data: Bytes) -> Self {
        Self::new(data)
    }
}

/// Layers only write JSON they produced, which is UTF-8; anything else
/// would be replaced lossily (`U+FFFD`), never dropped.
impl RejectionBody for String {
    fn from_bytes(data: Bytes) -> Self {
        String::from_utf8(Vec::from(data))
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

impl<E: 'static> RejectionBody for http_body_util::combinators::BoxBody<Bytes, E> {
    fn from_bytes(data: Bytes) -> Self {
        use http_body_util::BodyExt;
        http_body_util::Full::new(data)
            .map_err(|never| match never {})
            .boxed()
    }
}

impl<E: 'static> RejectionBody for http_body_util::combinators::UnsyncBoxBody<Bytes, E> {
    fn from_bytes(data: Bytes) -> Self {
        use http_body_util::BodyExt;
        http_body_util::Full::new(data)
            .map_err(|never| match never {})
            .boxed_unsync()
    }
}

#[cfg(feature = "axum")]
impl RejectionBody for axum::body::Body {
    fn from_bytes(data: Bytes) -> Self {
        Self::from(data)
    }
}

/// The most bytes a request's body may carry (a request extension), set by
/// the body limit guard for the request's route. A layer that buffers the
/// body itself (webhook verification) reads no more than this, so one
/// setting limits every reader.
///
/// ```
/// use guardrail_core::BodyLimit;
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(BodyLimit::new(1024));
/// assert_eq!(req.extensions().get::<BodyLimit>().map(|l| l.max_bytes()), Some(1024));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BodyLimit(u64);

impl BodyLimit {
    /// At most `max_bytes`.
    pub fn new(max_bytes: u64) -> Self {
        Self(max_bytes)
    }

    /// The limit in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.0
    }

    /// The limit as a `usize` (saturating), for buffers.
    pub fn max_len(&self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl<B> Default for GuardBody<B> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<B> fmt::Debug for GuardBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Inner { .. } => f.write_str("GuardBody::Inner"),
            Kind::Full { data } => f
                .debug_struct("GuardBody::Full")
                .field("len", &data.as_ref().map_or(0, Bytes::len))
                .finish(),
        }
    }
}

impl<B> Body for GuardBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Full { data } => SizeHint::with_exact(data.as_ref().map_or(0, Bytes::len) as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Empty};

    #[tokio::test]
    async fn full_body_reports_exact_size_and_ends() {
        let body: GuardBody<Empty<Bytes>> = GuardBody::full(Bytes::from_static(b"abc"));
        assert_eq!(body.size_hint().exact(), Some(3));
        assert!(!body.is_end_stream());
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "abc");
    }

    #[test]
    fn empty_body_is_at_end() {
        let body: GuardBody<Empty<Bytes>> = GuardBody::full(Bytes::new());
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
    }

    #[test]
    fn inner_body_passes_through_hints() {
        let body = GuardBody::new(Empty::<Bytes>::new());
        assert!(body.is_end_stream());
    }
}

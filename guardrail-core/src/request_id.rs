//! Request ids: generated, or accepted from the client only when well formed,
//! stored in request extensions and echoed on the response.
//!
//! Unlike a plain "propagate the header" middleware, a client-supplied id is
//! accepted only if it is 1 to 128 characters of `[A-Za-z0-9._-]`; anything
//! else (too long, control characters, several headers) is replaced by a
//! fresh UUID v7, so a client can't inject text into logs through it.
//!
//! # Example
//!
//! ```
//! use guardrail_core::{RequestId, SetRequestIdLayer};
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(SetRequestIdLayer::new())
//!     .service(service_fn(|req: Request<()>| async move {
//!         // The handler sees the id in extensions.
//!         let id = req.extensions().get::<RequestId>().unwrap().clone();
//!         Ok::<_, std::convert::Infallible>(Response::new(id.to_string()))
//!     }));
//!
//! let req = Request::builder().header("x-request-id", "abc-123").body(()).unwrap();
//! let res = svc.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.headers()["x-request-id"], "abc-123");
//! assert_eq!(res.body(), "abc-123");
//!
//! // A malformed id is replaced.
//! let req = Request::builder().header("x-request-id", "evil\tid").body(()).unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! assert_ne!(res.headers()["x-request-id"], "evil\tid");
//! assert_eq!(res.headers()["x-request-id"].len(), 36);
//! # }
//! ```

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

/// The default request id header, `x-request-id`.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client-supplied request id that is accepted.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A request id: a validated header value, cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// A new random, time-ordered id (UUID v7).
    pub fn generate() -> Self {
        let mut buf = uuid::Uuid::encode_buffer();
        let text = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buf);
        Self(HeaderValue::from_str(text).expect("a UUID is a valid header value"))
    }

    /// Accepts `value` if it is 1 to 128 characters of `[A-Za-z0-9._-]`.
    pub fn parse(value: &str) -> Option<Self> {
        if !Self::is_valid(value.as_bytes()) {
            return None;
        }
        HeaderValue::from_str(value).ok().map(Self)
    }

    /// Accepts a header value under the same rule as [`RequestId::parse`].
    pub fn from_header_value(value: &HeaderValue) -> Option<Self> {
        Self::is_valid(value.as_bytes()).then(|| Self(value.clone()))
    }

    fn is_valid(bytes: &[u8]) -> bool {
        !bytes.is_empty()
            && bytes.len() <= MAX_REQUEST_ID_LEN
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only validated ASCII ever gets in.
        self.0.to_str().unwrap_or_default()
    }

    /// The id as a header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RequestId").field(&self.as_str()).finish()
    }
}

/// Layer that applies [`SetRequestId`], which gives every request a
/// [`RequestId`] and echoes it on the response.
#[derive(Clone, Debug)]
pub struct SetRequestIdLayer {
    header: HeaderName,
    trust_incoming: bool,
}

impl SetRequestIdLayer {
    /// Uses `x-request-id` and accepts well-formed client ids.
    pub fn new() -> Self {
        Self {
            header: X_REQUEST_ID,
            trust_incoming: true,
        }
    }

    /// Uses another header name.
    pub fn header(mut self, header: HeaderName) -> Self {
        self.header = header;
        self
    }

    /// Whether a well-formed client id is kept (`true`, the default) or
    /// every request gets a fresh one.
    pub fn trust_incoming(mut self, trust: bool) -> Self {
        self.trust_incoming = trust;
        self
    }
}

impl Default for SetRequestIdLayer {
    fn default() -> Self {
        Self::new()
    }
}

/// `[request_id]`: the request id header and whether a client's id is kept.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RequestIdConfig {
    /// The header carrying the id (default `"x-request-id"`).
    #[serde(deserialize_with = "crate::config::header_name")]
    pub header: HeaderName,
    /// Keep a well-formed id sent by the client (default `true`); otherwise
    /// every request gets a fresh one.
    pub trust_incoming: bool,
}

impl Default for RequestIdConfig {
    fn default() -> Self {
        Self {
            header: X_REQUEST_ID,
            trust_incoming: true,
        }
    }
}

impl SetRequestIdLayer {
    /// The layer of a `[request_id]` section (it has nothing that can fail).
    pub fn from_config(config: &RequestIdConfig) -> Self {
        Self::new()
            .header(config.header.clone())
            .trust_incoming(config.trust_incoming)
    }
}

impl<S> Layer<S> for SetRequestIdLayer {
    type Service = SetRequestId<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SetRequestId {
            inner,
            layer: self.clone(),
        }
    }
}

/// Middleware that gives every request a [`RequestId`] (in extensions and in
/// the request header) and echoes it on the response.
#[derive(Clone, Debug)]
pub struct SetRequestId<S> {
    inner: S,
    layer: SetRequestIdLayer,
}

impl<S> SetRequestId<S> {
    /// Wraps `inner` with the default settings.
    pub fn new(inner: S) -> Self {
        SetRequestIdLayer::new().layer(inner)
    }

    /// Returns a new [`Layer`] that wraps services with a [`SetRequestId`].
    pub fn layer() -> SetRequestIdLayer {
        SetRequestIdLayer::new()
    }

    crate::inner_service_accessors!();

    fn incoming(&self, headers: &HeaderMap) -> Option<RequestId> {
        if !self.layer.trust_incoming {
            return None;
        }
        // Absent, or several (ambiguous): a fresh id.
        crate::single_header(headers, &self.layer.header)
            .ok()
            .flatten()
            .and_then(RequestId::from_header_value)
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SetRequestId<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let id = self
            .incoming(req.headers())
            .unwrap_or_else(RequestId::generate);
        req.headers_mut()
            .insert(self.layer.header.clone(), id.header_value().clone());
        req.extensions_mut().insert(id.clone());
        ResponseFuture {
            inner: self.inner.call(req),
            echo: Some((self.layer.header.clone(), id)),
        }
    }
}

pin_project! {
    /// Response future for [`SetRequestId`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        echo: Option<(HeaderName, RequestId)>,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = std::task::ready!(this.inner.poll(cx))?;
        if let Some((header, id)) = this.echo.take() {
            res.headers_mut().insert(header, id.0);
        }
        Poll::Ready(Ok(res))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{ServiceExt, service_fn};

    /// Runs one request; returns the id the handler saw and the response.
    async fn run(layer: SetRequestIdLayer, req: Request<()>) -> (String, Response<String>) {
        let svc = layer.layer(service_fn(|req: Request<()>| async move {
            let seen = req.extensions().get::<RequestId>().unwrap().to_string();
            let header = req.headers()["x-request-id"].to_str().unwrap().to_owned();
            assert_eq!(seen, header, "extension and request header agree");
            Ok::<_, Infallible>(Response::new(seen))
        }));
        let res = svc.oneshot(req).await.unwrap();
        (res.body().clone(), res)
    }

    fn req(ids: &[&str]) -> Request<()> {
        let mut b = Request::builder();
        for id in ids {
            b = b.header("x-request-id", *id);
        }
        b.body(()).unwrap()
    }

    #[tokio::test]
    async fn missing_id_is_generated_as_uuid_v7_and_echoed() {
        let (seen, res) = run(SetRequestIdLayer::new(), req(&[])).await;
        let uuid = uuid::Uuid::parse_str(&seen).unwrap();
        assert_eq!(uuid.get_version_num(), 7);
        assert_eq!(res.headers()["x-request-id"], seen.as_str());
    }

    #[tokio::test]
    async fn well_formed_client_id_is_accepted() {
        let id = "Req_1.2-abc";
        let (seen, res) = run(SetRequestIdLayer::new(), req(&[id])).await;
        assert_eq!(seen, id);
        assert_eq!(res.headers()["x-request-id"], id);
    }

    #[tokio::test]
    async fn malformed_client_ids_are_replaced() {
        let long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        for bad in [
            "",
            "has space",
            "semi;colon",
            "quote\"",
            "new\nline",
            "ünïcode",
            long.as_str(),
        ] {
            let Ok(value) = HeaderValue::from_bytes(bad.as_bytes()) else {
                continue;
            };
            let mut r = req(&[]);
            r.headers_mut().insert("x-request-id", value);
            let (seen, _) = run(SetRequestIdLayer::new(), r).await;
            assert_ne!(seen, bad);
            assert!(
                uuid::Uuid::parse_str(&seen).is_ok(),
                "{bad:?} replaced by a uuid"
            );
        }
    }

    #[tokio::test]
    async fn id_of_exactly_max_length_is_accepted() {
        let id = "x".repeat(MAX_REQUEST_ID_LEN);
        let (seen, _) = run(SetRequestIdLayer::new(), req(&[&id])).await;
        assert_eq!(seen, id);
    }

    #[tokio::test]
    async fn several_id_headers_are_replaced() {
        let (seen, res) = run(SetRequestIdLayer::new(), req(&["one", "two"])).await;
        assert!(seen != "one" && seen != "two");
        assert_eq!(res.headers().get_all("x-request-id").iter().count(), 1);
    }

    #[tokio::test]
    async fn untrusting_layer_always_generates() {
        let (seen, _) = run(
            SetRequestIdLayer::new().trust_incoming(false),
            req(&["mine"]),
        )
        .await;
        assert_ne!(seen, "mine");
    }

    #[tokio::test]
    async fn response_id_overrides_one_set_by_the_handler() {
        let svc = SetRequestIdLayer::new().layer(service_fn(|_req: Request<()>| async {
            let mut res = Response::new(());
            res.headers_mut()
                .insert("x-request-id", HeaderValue::from_static("spoofed"));
            Ok::<_, Infallible>(res)
        }));
        let res = svc.oneshot(req(&["real"])).await.unwrap();
        assert_eq!(res.headers()["x-request-id"], "real");
    }
}

//! Request body limits: a body over the limit gets a 413 problem before
//! the handler reads past it.
//!
//! [`RequestBodyLimitLayer`] refuses a request whose `Content-Length` is
//! over the limit before the inner service is called (so with
//! `Expect: 100-continue` the client never sends the body), and wraps
//! every other body in a [`LimitedBody`] that ends with an error at the
//! limit; when a streaming body is cut off that way, whatever the handler
//! answers is replaced by the same 413 problem. The limit is the default
//! (1 MiB) or a per-prefix override, and it is put in the request's
//! extensions as a [`BodyLimit`] so a layer that buffers the body itself
//! (webhook verification) reads no more than this one setting allows.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use timeout_retry_layer::{LimitedBody, RequestBodyLimitLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(RequestBodyLimitLayer::new(16).route("/upload/", 1024))
//!     .service(service_fn(|req: Request<LimitedBody<Full<Bytes>>>| async move {
//!         let n = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
//!         Ok::<_, Infallible>(Response::new(format!("{n} bytes")))
//!     }));
//!
//! let big = || Full::new(Bytes::from(vec![b'x'; 100]));
//! let res = svc.clone().oneshot(Request::post("/api/notes").header("content-length", "100").body(big()).unwrap()).await.unwrap();
//! assert_eq!(res.status(), 413);
//! assert_eq!(res.headers()["content-type"], "application/problem+json");
//!
//! let res = svc.oneshot(Request::post("/upload/a").header("content-length", "100").body(big()).unwrap()).await.unwrap();
//! assert_eq!(res.body(), "100 bytes");
//! # }
//! ```

use std::{
    error::Error as StdError,
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, ready},
};

use bytes::Buf;
use guardrail_core::{BodyLimit, EventName, GuardFuture, Problem, RejectionBody, RequestId, emit};
use http::{Request, Response, header};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::{BodyLimitConfig, config::DEFAULT_MAX_BODY_BYTES, routes::RouteOverrides};

type BoxError = Box<dyn StdError + Send + Sync>;

/// Layer that applies [`RequestBodyLimit`].
#[derive(Clone)]
pub struct RequestBodyLimitLayer {
    settings: Arc<Settings>,
}

#[derive(Clone, Debug)]
struct Settings {
    limits: RouteOverrides<u64>,
    rejected: metrics::Counter,
}

impl fmt::Debug for RequestBodyLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBodyLimitLayer")
            .field("limits", &self.settings.limits)
            .finish()
    }
}

impl Default for RequestBodyLimitLayer {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BODY_BYTES)
    }
}

impl RequestBodyLimitLayer {
    /// Request bodies may carry at most `max_bytes`.
    pub fn new(max_bytes: u64) -> Self {
        Self {
            settings: Arc::new(Settings {
                limits: RouteOverrides::new(max_bytes),
                rejected: metrics::counter!(guardrail_core::metric::BODY_LIMIT_REJECTED_TOTAL),
            }),
        }
    }

    /// The layer of a validated `[body_limit]` section.
    pub fn from_config(config: &BodyLimitConfig) -> Self {
        config
            .routes
            .iter()
            .fold(Self::new(config.max_bytes), |layer, route| {
                layer.route(route.prefix.clone(), route.max_bytes)
            })
    }

    /// Bodies of requests whose path starts with `prefix` may carry at
    /// most `max_bytes` (the longest matching prefix wins).
    pub fn route(mut self, prefix: impl Into<String>, max_bytes: u64) -> Self {
        Arc::make_mut(&mut self.settings)
            .limits
            .insert(prefix.into(), max_bytes);
        self
    }
}

impl<S> Layer<S> for RequestBodyLimitLayer {
    type Service = RequestBodyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestBodyLimit {
            inner,
            settings: Arc::clone(&self.settings),
        }
    }
}

/// Middleware that refuses request bodies over a limit with 413
/// problem+json; see [`RequestBodyLimitLayer`].
#[derive(Clone)]
pub struct RequestBodyLimit<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> RequestBodyLimit<S> {
    /// Wraps `inner` with `layer`'s limits.
    pub fn new(inner: S, layer: &RequestBodyLimitLayer) -> Self {
        layer.layer(inner)
    }

    guardrail_core::inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for RequestBodyLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBodyLimit")
            .field("inner", &self.inner)
            .field("limits", &self.settings.limits)
            .finish()
    }
}

impl<S, B, ResB> Service<Request<B>> for RequestBodyLimit<S>
where
    S: Service<Request<LimitedBody<B>>, Response = Response<ResB>>,
    B: Body,
    ResB: RejectionBody,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = GuardFuture<Tripwire<S::Future>>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut limit = self.settings.limits.get(req.uri().path());
        // A smaller limit set further out stays.
        if let Some(outer) = req.extensions().get::<BodyLimit>() {
            limit = limit.min(outer.max_bytes());
        }
        let declared = content_length(&req);
        if declared.is_some_and(|len| len > limit) {
            let request_id = req.extensions().get::<RequestId>().cloned();
            return GuardFuture::reject(too_large(&self.settings, limit, request_id));
        }
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(BodyLimit::new(limit));
        // Any body that may still send data gets the tripwire that turns the
        // handler's answer into 413 when it is cut off (hyper holds a body
        // to its declared length, other transports may not).
        let trip = (!body.is_end_stream()).then(|| {
            Arc::new(Trip {
                tripped: AtomicBool::new(false),
                request_id: parts.extensions.get::<RequestId>().cloned(),
            })
        });
        let body = LimitedBody {
            inner: body,
            remaining: limit,
            limit,
            trip: trip.clone(),
        };
        let future = self.inner.call(Request::from_parts(parts, body));
        GuardFuture::pass(Tripwire {
            inner: future,
            trip: trip.map(|trip| (trip, Arc::clone(&self.settings), limit)),
        })
    }
}

/// The declared `Content-Length`, when it is one valid number.
fn content_length<B>(req: &Request<B>) -> Option<u64> {
    let mut values = req.headers().get_all(header::CONTENT_LENGTH).iter();
    let first = values.next()?;
    // Several or unparsable values: not trusted; the body is counted.
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok()?.trim().parse().ok()
}

#[cold]
fn too_large(settings: &Settings, limit: u64, request_id: Option<RequestId>) -> Problem {
    settings.rejected.increment(1);
    emit!(
        WARN,
        EventName::API_BODY_TOO_LARGE,
        max_bytes = limit,
        request_id = request_id.as_ref().map(tracing::field::display),
    );
    let problem = Problem::payload_too_large()
        .title("Request body too large")
        .detail("The request body is larger than this endpoint accepts.")
        .extension("max_bytes", limit);
    match request_id {
        Some(id) => problem.request_id(id),
        None => problem,
    }
}

/// Shared by a streaming body and the response future: whether the body
/// was cut off at the limit.
#[derive(Debug)]
struct Trip {
    tripped: AtomicBool,
    request_id: Option<RequestId>,
}

pin_project! {
    /// A request body that ends with [`BodyTooLarge`] instead of yielding
    /// more than its limit.
    pub struct LimitedBody<B> {
        #[pin]
        inner: B,
        remaining: u64,
        limit: u64,
        trip: Option<Arc<Trip>>,
    }
}

impl<B> LimitedBody<B> {
    /// `inner`, cut off after `max_bytes`.
    pub fn new(inner: B, max_bytes: u64) -> Self {
        Self {
            inner,
            remaining: max_bytes,
            limit: max_bytes,
            trip: None,
        }
    }
}

impl<B> fmt::Debug for LimitedBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimitedBody")
            .field("limit", &self.limit)
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
            None => return Poll::Ready(None),
        };
        if let Some(data) = frame.data_ref() {
            let len = data.remaining() as u64;
            if len > *this.remaining {
                *this.remaining = 0;
                if let Some(trip) = this.trip {
                    trip.tripped.store(true, Ordering::Release);
                }
                return Poll::Ready(Some(Err(BodyTooLarge { limit: *this.limit }.into())));
            }
            *this.remaining -= len;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        if inner.lower() <= self.remaining {
            return inner;
        }
        // More than the limit is coming: at most `remaining` bytes arrive,
        // then the error, so promise no exact length.
        let mut hint = SizeHint::new();
        hint.set_upper(self.remaining);
        hint
    }
}

/// The error a [`LimitedBody`] ends with at its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyTooLarge {
    limit: u64,
}

impl BodyTooLarge {
    /// The limit that was reached.
    pub fn limit(&self) -> u64 {
        self.limit
    }
}

impl fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request body over the limit of {} bytes", self.limit)
    }
}

impl StdError for BodyTooLarge {}

pin_project! {
    /// Response future for [`RequestBodyLimit`]: the inner future; when a
    /// streaming body was cut off at the limit, its answer is replaced by
    /// the 413 problem.
    pub struct Tripwire<F> {
        #[pin]
        inner: F,
        trip: Option<(Arc<Trip>, Arc<Settings>, u64)>,
    }
}

impl<F> fmt::Debug for Tripwire<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tripwire")
            .field("streaming", &self.trip.is_some())
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for Tripwire<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: RejectionBody,
{
    type Output = Result<Response<B>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = ready!(this.inner.poll(cx));
        if let Some((trip, settings, limit)) = this.trip.take()
            && trip.tripped.load(Ordering::Acquire)
        {
            let problem = too_large(&settings, limit, trip.request_id.clone());
            return Poll::Ready(Ok(problem.into_response()));
        }
        Poll::Ready(out)
    }
}

#[cfg(test)]
mod tests {
    use std::{convert::Infallible, sync::atomic::AtomicUsize};

    use bytes::Bytes;
    use guardrails_testkit::capture;
    use http_body_util::{BodyExt, Full, StreamBody};
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    use super::*;

    type Chunks = StreamBody<SyncIter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

    /// A body of `chunks` with no declared length.
    fn streaming(chunks: &[usize]) -> Chunks {
        let frames: Vec<_> = chunks
            .iter()
            .map(|n| Ok(Frame::data(Bytes::from(vec![b'a'; *n]))))
            .collect();
        StreamBody::new(SyncIter(frames.into_iter()))
    }

    /// A `Stream` over an iterator, always ready.
    struct SyncIter<I>(I);

    impl<I: Iterator + Unpin> futures_core::Stream for SyncIter<I> {
        type Item = I::Item;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<I::Item>> {
            Poll::Ready(self.0.next())
        }
    }

    /// Reads the whole body and answers 400 when reading fails (as an
    /// extractor would), counting calls.
    fn reader<B>(
        calls: Arc<AtomicUsize>,
    ) -> impl Service<Request<LimitedBody<B>>, Response = Response<String>, Error = Infallible> + Clone
    where
        B: Body<Error: Into<BoxError>> + Send + 'static,
        B::Data: Send,
    {
        service_fn(move |req: Request<LimitedBody<B>>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                let limit = req
                    .extensions()
                    .get::<BodyLimit>()
                    .map(BodyLimit::max_bytes);
                Ok::<_, Infallible>(match req.into_body().collect().await {
                    Ok(b) => Response::new(format!("read {} of {limit:?}", b.to_bytes().len())),
                    Err(_) => Response::builder()
                        .status(400)
                        .body("could not read".into())
                        .unwrap(),
                })
            }
        })
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_413_before_the_handler_runs() {
        let (_guard, logs) = capture::json();
        let calls = Arc::new(AtomicUsize::new(0));
        let svc = ServiceBuilder::new()
            .layer(RequestBodyLimitLayer::new(1024))
            .service(reader::<Full<Bytes>>(Arc::clone(&calls)));
        let mut req = Request::post("/api/notes")
            .header("content-length", "2097152")
            .body(Full::new(Bytes::new()))
            .unwrap();
        req.extensions_mut()
            .insert(RequestId::parse("req-9").unwrap());
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.status(), 413);
        assert_eq!(calls.load(Ordering::SeqCst), 0, "the handler never ran");
        let body: serde_json::Value =
            serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(body["max_bytes"], 1024);
        assert_eq!(body["request_id"], "req-9");
        let lines = logs.lines();
        assert!(
            lines
                .iter()
                .any(|l| l["event"] == "api.body_too_large" && l["max_bytes"] == 1024)
        );
    }

    #[tokio::test]
    async fn a_streaming_body_is_cut_off_at_the_limit_and_answered_413() {
        // Every test that reaches an event's callsite has a subscriber, so no
        // thread caches the callsite as disabled for the others.
        let (_guard, _logs) = capture::json();
        let calls = Arc::new(AtomicUsize::new(0));
        let svc = ServiceBuilder::new()
            .layer(RequestBodyLimitLayer::new(100))
            .service(reader::<Chunks>(Arc::clone(&calls)));
        let res = svc
            .clone()
            .oneshot(Request::post("/").body(streaming(&[60, 60])).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), 413, "the handler's 400 is replaced");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        // At the limit exactly: read in full.
        let res = svc
            .oneshot(Request::post("/").body(streaming(&[60, 40])).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.body(), "read 100 of Some(100)");
    }

    #[tokio::test]
    async fn a_body_longer_than_its_declared_length_is_still_answered_413() {
        let (_guard, _logs) = capture::json();
        let calls = Arc::new(AtomicUsize::new(0));
        let svc = ServiceBuilder::new()
            .layer(RequestBodyLimitLayer::new(100))
            .service(reader::<Chunks>(Arc::clone(&calls)));
        // Declares 10 bytes, sends 150 (no hyper framing in between).
        let req = Request::post("/")
            .header("content-length", "10")
            .body(streaming(&[50, 50, 50]))
            .unwrap();
        assert_eq!(svc.oneshot(req).await.unwrap().status(), 413);
    }

    #[tokio::test]
    async fn a_smaller_limit_set_further_out_stays() {
        let (_guard, _logs) = capture::json();
        let calls = Arc::new(AtomicUsize::new(0));
        let svc = ServiceBuilder::new()
            .layer(RequestBodyLimitLayer::new(1000))
            .service(reader::<Full<Bytes>>(Arc::clone(&calls)));
        let mut req = Request::post("/")
            .header("content-length", "30")
            .body(Full::new(Bytes::from(vec![b'x'; 30])))
            .unwrap();
        req.extensions_mut().insert(BodyLimit::new(20));
        assert_eq!(svc.oneshot(req).await.unwrap().status(), 413);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn the_size_hint_never_promises_more_than_the_limit() {
        let body = LimitedBody::new(Full::new(Bytes::from(vec![b'x'; 30])), 20);
        assert_eq!(body.size_hint().exact(), None);
        assert_eq!(body.size_hint().upper(), Some(20));
        let body = LimitedBody::new(Full::new(Bytes::from(vec![b'x'; 10])), 20);
        assert_eq!(body.size_hint().exact(), Some(10));
    }

    #[tokio::test]
    async fn the_limited_body_never_hands_over_more_than_the_limit() {
        // Every test that reaches an event's callsite has a subscriber, so no
        // thread caches the callsite as disabled for the others.
        let (_guard, _logs) = capture::json();
        let mut body = LimitedBody::new(streaming(&[10, 10, 10]), 25);
        let mut seen = 0;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => seen += f.into_data().unwrap().len(),
                Err(e) => {
                    assert_eq!(e.downcast_ref::<BodyTooLarge>().unwrap().limit(), 25);
                    break;
                }
            }
        }
        assert_eq!(seen, 20);
    }

    #[tokio::test]
    async fn route_overrides_and_the_extension_follow_the_path() {
        // Every test that reaches an event's callsite has a subscriber, so no
        // thread caches the callsite as disabled for the others.
        let (_guard, _logs) = capture::json();
        let calls = Arc::new(AtomicUsize::new(0));
        let svc = ServiceBuilder::new()
            .layer(RequestBodyLimitLayer::from_config(&BodyLimitConfig {
                max_bytes: 10,
                routes: vec![crate::config::BodyLimitRoute {
                    prefix: "/api/webhooks/".into(),
                    max_bytes: 50,
                }],
            }))
            .service(reader::<Full<Bytes>>(Arc::clone(&calls)));
        let post = |path: &str| {
            Request::post(path)
                .header("content-length", "30")
                .body(Full::new(Bytes::from(vec![b'x'; 30])))
                .unwrap()
        };
        let res = svc.clone().oneshot(post("/api/notes")).await.unwrap();
        assert_eq!(res.status(), 413);
        let res = svc.oneshot(post("/api/webhooks/stripe")).await.unwrap();
        assert_eq!(res.body(), "read 30 of Some(50)");
    }

    #[tokio::test]
    async fn bad_or_repeated_content_lengths_are_not_trusted_and_the_body_is_counted() {
        // Every test that reaches an event's callsite has a subscriber, so no
        // thread caches the callsite as disabled for the others.
        let (_guard, _logs) = capture::json();
        let calls = Arc::new(AtomicUsize::new(0));
        let svc = ServiceBuilder::new()
            .layer(RequestBodyLimitLayer::new(10))
            .service(reader::<Chunks>(Arc::clone(&calls)));
        for lengths in [&["abc"][..], &["5", "5"][..]] {
            let mut req = Request::post("/").body(streaming(&[8, 8])).unwrap();
            for l in lengths {
                req.headers_mut()
                    .append("content-length", l.parse().unwrap());
            }
            let res = svc.clone().oneshot(req).await.unwrap();
            assert_eq!(res.status(), 413, "{lengths:?}");
        }
    }
}

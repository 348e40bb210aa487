//! An error boundary: a handler's panic becomes a 500 problem and the
//! service keeps serving; a handler's bare 5xx becomes a problem too.
//!
//! [`ErrorBoundaryLayer`] catches a panic in the inner service's `call` or
//! while its future is polled, answers `500` problem+json with the request
//! id, and logs an `error.panic` event with the panic message scrubbed and
//! where it happened. With [`sanitize_5xx`](ErrorBoundaryLayer::sanitize_5xx)
//! (on by default, and in the production profile), a 5xx response whose
//! body is not problem+json — a stack trace, an SQL error, an upstream's
//! page — is replaced by a problem with the same status before it reaches
//! the client; its body is logged (`error.response_replaced`), scrubbed
//! and cut to 1 KiB. Unlike tower-http's `CatchPanicLayer`, a response that
//! passes keeps its body type: nothing is boxed.
//!
//! Text the handler wrote (the panic message, the body) is logged through
//! the [`Scrub`] given with [`scrubber`](ErrorBoundaryLayer::scrubber); with
//! none, it is not logged at all. Rust's default panic hook prints every
//! panic's message to stderr, unscrubbed: [`install_panic_hook`] makes
//! panics inside a boundary silent there (the boundary logs them), and
//! leaves other panics to the hook that was set before.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use timeout_retry_layer::ErrorBoundaryLayer;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! timeout_retry_layer::install_panic_hook();
//! let svc = ServiceBuilder::new()
//!     .layer(ErrorBoundaryLayer::new())
//!     .service(service_fn(|req: Request<()>| async move {
//!         match req.uri().path() {
//!             "/panic" => panic!("index out of bounds"),
//!             "/db" => Ok::<_, Infallible>(
//!                 Response::builder()
//!                     .status(StatusCode::INTERNAL_SERVER_ERROR)
//!                     .body(String::from("ERROR: relation \"users\" does not exist"))
//!                     .unwrap(),
//!             ),
//!             _ => Ok(Response::new(String::from("fine"))),
//!         }
//!     }));
//!
//! let res = svc.clone().oneshot(Request::get("/panic").body(()).unwrap()).await.unwrap();
//! assert_eq!(res.status(), 500);
//! assert_eq!(res.headers()["content-type"], "application/problem+json");
//!
//! let res = svc.clone().oneshot(Request::get("/db").body(()).unwrap()).await.unwrap();
//! assert_eq!(res.status(), 500);
//! assert!(!res.body().contains("relation"));
//!
//! let res = svc.oneshot(Request::get("/").body(()).unwrap()).await.unwrap();
//! assert_eq!(res.body(), "fine");
//! # }
//! ```

use std::{
    any::Any,
    cell::{Cell, RefCell},
    fmt,
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::{Arc, Once},
    task::{Context, Poll},
};

use bytes::Buf;
use guardrail_core::{
    EventName, GuardFuture, Problem, RejectionBody, RequestId, Scrub, config::Profile, emit,
    problem::PROBLEM_JSON,
};
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::ErrorBoundaryConfig;

/// Most bytes of a panic message or a replaced body that are logged.
const LOGGED_BYTES: usize = 1024;
/// Bytes read (and scrubbed) before cutting to [`LOGGED_BYTES`]: a secret
/// that straddles the cut is scrubbed whole first, never logged as a
/// fragment the scrubber would no longer recognise.
const READ_BYTES: usize = 4 * LOGGED_BYTES;
/// Most bytes of a panic message that are scrubbed.
const MAX_MESSAGE_BYTES: usize = 64 * LOGGED_BYTES;

/// Layer that applies [`ErrorBoundary`].
#[derive(Clone)]
pub struct ErrorBoundaryLayer {
    settings: Arc<Settings>,
}

#[derive(Clone)]
struct Settings {
    sanitize_5xx: bool,
    scrubber: Option<Arc<dyn Scrub>>,
    panics: metrics::Counter,
}

impl fmt::Debug for ErrorBoundaryLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorBoundaryLayer")
            .field("sanitize_5xx", &self.settings.sanitize_5xx)
            .field("scrubber", &self.settings.scrubber.is_some())
            .finish()
    }
}

impl Default for ErrorBoundaryLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ErrorBoundaryLayer {
    /// Catches panics and replaces bare 5xx bodies; logs no handler text
    /// until given a [`scrubber`](Self::scrubber).
    pub fn new() -> Self {
        Self {
            settings: Arc::new(Settings {
                sanitize_5xx: true,
                scrubber: None,
                panics: metrics::counter!(guardrail_core::metric::PANICS_TOTAL),
            }),
        }
    }

    /// The layer of an `[error_boundary]` section under `profile`.
    pub fn from_config(config: &ErrorBoundaryConfig, profile: Profile) -> Self {
        Self::new().sanitize_5xx(config.sanitize_5xx_for(profile))
    }

    /// Whether a 5xx response that is not problem+json is replaced by a
    /// problem with the same status (default: yes).
    pub fn sanitize_5xx(mut self, on: bool) -> Self {
        self.settings_mut().sanitize_5xx = on;
        self
    }

    /// Scrubs the panic messages and response bodies this layer logs.
    pub fn scrubber(mut self, scrubber: Arc<dyn Scrub>) -> Self {
        self.settings_mut().scrubber = Some(scrubber);
        self
    }

    fn settings_mut(&mut self) -> &mut Settings {
        Arc::make_mut(&mut self.settings)
    }
}

impl<S> Layer<S> for ErrorBoundaryLayer {
    type Service = ErrorBoundary<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ErrorBoundary {
            inner,
            settings: Arc::clone(&self.settings),
        }
    }
}

/// Middleware that turns the inner service's panics (and, optionally,
/// bare 5xx responses) into problem+json answers; see the
/// [`ErrorBoundaryLayer`].
#[derive(Clone)]
pub struct ErrorBoundary<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> ErrorBoundary<S> {
    /// Wraps `inner` with `layer`'s settings.
    pub fn new(inner: S, layer: &ErrorBoundaryLayer) -> Self {
        layer.layer(inner)
    }

    guardrail_core::inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for ErrorBoundary<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorBoundary")
            .field("inner", &self.inner)
            .field("sanitize_5xx", &self.settings.sanitize_5xx)
            .finish()
    }
}

impl<S, B, ResB> Service<Request<B>> for ErrorBoundary<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    ResB: Body + RejectionBody,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = GuardFuture<Caught<S::Future>>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let request_id = req.extensions().get::<RequestId>().cloned();
        let inner = &mut self.inner;
        match guarded(move || inner.call(req)) {
            Ok(future) => GuardFuture::pass(Caught {
                inner: Some(future),
                request_id,
                settings: Arc::clone(&self.settings),
            }),
            Err(panic) => GuardFuture::reject(panicked(&self.settings, &*panic, request_id)),
        }
    }
}

pin_project! {
    /// Response future for [`ErrorBoundary`]: the inner future, polled —
    /// and dropped — inside the boundary.
    pub struct Caught<F> {
        #[pin]
        inner: Option<F>,
        request_id: Option<RequestId>,
        settings: Arc<Settings>,
    }

    impl<F> PinnedDrop for Caught<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut inner = this.project().inner;
            if inner.is_some() {
                // A cancelled request: the handler's future may panic in
                // its destructor; that stays inside the boundary too.
                let _ = guarded(|| inner.set(None));
            }
        }
    }
}

impl<F> fmt::Debug for Caught<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caught")
            .field("done", &self.inner.is_none())
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for Caught<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body + RejectionBody,
{
    type Output = Result<Response<B>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            // Polled after it finished (or panicked): never the handler again.
            return Poll::Ready(Ok(Problem::internal_error().into_response()));
        };
        let polled = match guarded(|| inner.poll(&mut *cx)) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(out)) => Ok(out),
            Err(panic) => Err(panic),
        };
        // Done: the handler's future is dropped inside the boundary.
        let dropped = guarded(|| this.inner.set(None));
        let settings = this.settings;
        let request_id = this.request_id.take();
        let out = match (polled, dropped) {
            (Ok(Ok(res)), Ok(()))
                if settings.sanitize_5xx
                    && res.status().is_server_error()
                    && !is_problem(res.headers()) =>
            {
                let fallback = request_id.clone();
                guarded(|| replace(settings, res, cx, request_id))
                    .unwrap_or_else(|panic| panicked(settings, &*panic, fallback).into_response())
            }
            (Ok(out), Ok(())) => return Poll::Ready(out),
            (Err(panic), _) | (_, Err(panic)) => {
                panicked(settings, &*panic, request_id).into_response()
            }
        };
        Poll::Ready(Ok(out))
    }
}

fn is_problem(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON))
}

/// Logs a caught panic and says what the client gets.
#[cold]
fn panicked(
    settings: &Settings,
    panic: &(dyn Any + Send),
    request_id: Option<RequestId>,
) -> Problem {
    settings.panics.increment(1);
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str));
    let logged = message.and_then(|m| scrubbed(settings, m));
    let location = PANIC_LOCATION
        .try_with(|l| l.borrow_mut().take())
        .ok()
        .flatten();
    emit!(
        ERROR,
        EventName::ERROR_PANIC,
        message = logged.as_ref().map(|(m, _)| m.as_str()),
        message_withheld = message.is_some() && logged.is_none(),
        location = location.as_deref(),
        request_id = request_id.as_ref().map(tracing::field::display),
    );
    let problem = Problem::internal_error()
        .detail("Something went wrong on our side. Please try again later.");
    match request_id {
        Some(id) => problem.request_id(id),
        None => problem,
    }
}

/// The problem that stands for a handler's bare 5xx, after logging what
/// of its body is ready (at most 1 KiB; a body still streaming is not
/// waited for).
#[cold]
fn replace<B: Body + RejectionBody>(
    settings: &Settings,
    res: Response<B>,
    cx: &mut Context<'_>,
    request_id: Option<RequestId>,
) -> Response<B> {
    let (parts, body) = res.into_parts();
    let (bytes, complete) = read_ready(body, cx);
    let text = String::from_utf8_lossy(&bytes);
    let logged = scrubbed(settings, &text);
    let cut = logged.as_ref().is_some_and(|(_, cut)| *cut);
    emit!(
        ERROR,
        EventName::ERROR_RESPONSE_REPLACED,
        status = parts.status.as_u16(),
        body = logged.as_ref().map(|(b, _)| b.as_str()),
        body_withheld = !text.is_empty() && logged.is_none(),
        body_truncated = !complete || cut,
        request_id = request_id.as_ref().map(tracing::field::display),
    );
    let problem = match parts.status {
        StatusCode::SERVICE_UNAVAILABLE => {
            let retry_after = parts
                .headers
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            Problem::service_unavailable(retry_after)
        }
        StatusCode::GATEWAY_TIMEOUT => Problem::gateway_timeout(),
        StatusCode::INTERNAL_SERVER_ERROR => Problem::internal_error(),
        status => Problem::new(status).with_type(guardrail_core::problem::types::INTERNAL),
    };
    let problem =
        problem.detail("The server could not complete the request. Please try again later.");
    match request_id {
        Some(id) => problem.request_id(id),
        None => problem,
    }
    .into_response()
}

/// What of `body` is ready now, up to [`READ_BYTES`], and whether that
/// is all of it.
fn read_ready<B: Body>(body: B, cx: &mut Context<'_>) -> (Vec<u8>, bool) {
    let mut body = std::pin::pin!(body);
    let mut bytes = Vec::new();
    while bytes.len() < READ_BYTES {
        let polled = guarded(|| body.as_mut().poll_frame(cx));
        match polled {
            Ok(Poll::Ready(Some(Ok(frame)))) => {
                if let Ok(mut data) = frame.into_data() {
                    while data.has_remaining() && bytes.len() < READ_BYTES {
                        let chunk = data.chunk();
                        let take = chunk.len().min(READ_BYTES - bytes.len());
                        bytes.extend_from_slice(&chunk[..take]);
                        data.advance(take);
                    }
                    if data.has_remaining() {
                        return (bytes, false);
                    }
                }
            }
            Ok(Poll::Ready(None)) => return (bytes, true),
            // An error, a panic or a body still streaming: what we have.
            _ => return (bytes, false),
        }
    }
    let complete = body.is_end_stream();
    (bytes, complete)
}

/// `text` scrubbed, then cut to [`LOGGED_BYTES`] (with whether it was
/// cut), or `None` without a scrubber: handler text is never logged
/// unscrubbed.
fn scrubbed(settings: &Settings, text: &str) -> Option<(String, bool)> {
    let scrubber = settings.scrubber.as_ref()?;
    let scrubbed = scrubber.scrub(prefix(text, MAX_MESSAGE_BYTES));
    let cut = prefix(&scrubbed, LOGGED_BYTES);
    Some((
        cut.to_owned(),
        cut.len() < scrubbed.len() || text.len() > MAX_MESSAGE_BYTES,
    ))
}

/// The longest prefix of `text` of at most `max` bytes on a char boundary.
fn prefix(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

thread_local! {
    /// Whether this thread is running code inside a boundary.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
    /// Where the last panic inside a boundary happened (set by the hook).
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f`, catching a panic.
#[inline]
fn guarded<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    let was = INSIDE.replace(true);
    let out = std::panic::catch_unwind(AssertUnwindSafe(f));
    INSIDE.set(was);
    out
}

/// Installs (once per process) a panic hook that keeps panics inside an
/// [`ErrorBoundary`] off stderr — the boundary logs them, scrubbed, as
/// `error.panic` with where they happened — and passes every other panic
/// to the hook that was set before (Rust's default prints it to stderr).
pub fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // With panic = "abort" nothing unwinds to a boundary: the
            // message must not be lost.
            let caught = !cfg!(panic = "abort") && INSIDE.try_with(Cell::get).unwrap_or(false);
            if caught {
                let location = info
                    .location()
                    .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
                let _ = PANIC_LOCATION.try_with(|l| {
                    if let Ok(mut slot) = l.try_borrow_mut() {
                        *slot = location;
                    }
                });
            } else {
                previous(info);
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use std::{borrow::Cow, convert::Infallible};

    use guardrails_testkit::capture;
    use http_body_util::{BodyExt, Full, StreamBody};
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    use super::*;

    /// Hides every digit.
    struct Digits;

    impl Scrub for Digits {
        fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
            Cow::Owned(text.replace(|c: char| c.is_ascii_digit(), "#"))
        }
    }

    fn request(path: &str) -> Request<()> {
        let mut req = Request::get(path).body(()).unwrap();
        req.extensions_mut()
            .insert(RequestId::parse("req-7").unwrap());
        req
    }

    async fn json<B: Body<Error: fmt::Debug>>(res: Response<B>) -> serde_json::Value {
        serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap()
    }

    fn answer(status: u16, content_type: &str, body: &'static str) -> Response<Full<bytes::Bytes>> {
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .header("retry-after", "7")
            .body(Full::new(bytes::Bytes::from_static(body.as_bytes())))
            .unwrap()
    }

    #[tokio::test]
    async fn a_panic_while_polled_is_a_500_problem_logged_scrubbed_and_the_service_serves_on() {
        install_panic_hook();
        let (_guard, logs) = capture::json();
        let svc = ServiceBuilder::new()
            .layer(ErrorBoundaryLayer::new().scrubber(Arc::new(Digits)))
            .service(service_fn(|req: Request<()>| async move {
                tokio::task::yield_now().await;
                if req.uri().path() == "/panic" {
                    panic!("card 4111 1111 declined");
                }
                Ok::<_, Infallible>(answer(200, "text/plain", "ok"))
            }));
        let res = svc.clone().oneshot(request("/panic")).await.unwrap();
        assert_eq!(res.status(), 500);
        assert_eq!(res.headers()["content-type"], PROBLEM_JSON);
        let body = json(res).await;
        assert_eq!(body["request_id"], "req-7");
        assert_eq!(body["status"], 500);
        assert!(!body.to_string().contains("4111"));

        let res = svc.oneshot(request("/")).await.unwrap();
        assert_eq!(res.status(), 200);

        let lines = logs.lines();
        let panic = lines
            .iter()
            .find(|l| l["event"] == "error.panic")
            .expect("logged");
        assert_eq!(panic["message"], "card #### #### declined");
        assert_eq!(panic["request_id"], "req-7");
        assert_eq!(panic["level"], "ERROR");
        assert!(
            panic["location"].as_str().unwrap().contains("boundary.rs"),
            "{panic}"
        );
        assert!(!logs.text().contains("4111"));
    }

    #[tokio::test]
    async fn a_panic_in_call_is_caught_too_and_without_a_scrubber_the_message_is_withheld() {
        install_panic_hook();
        let (_guard, logs) = capture::json();
        #[derive(Clone)]
        struct PanicsInCall;
        impl Service<Request<()>> for PanicsInCall {
            type Response = Response<String>;
            type Error = Infallible;
            type Future = std::future::Ready<Result<Response<String>, Infallible>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, _: Request<()>) -> Self::Future {
                panic!("secret sk_live_123")
            }
        }
        let res = ErrorBoundaryLayer::new()
            .layer(PanicsInCall)
            .oneshot(request("/"))
            .await
            .unwrap();
        assert_eq!(res.status(), 500);
        assert!(res.body().contains("\"request_id\":\"req-7\""));
        let lines = logs.lines();
        let panic = lines
            .iter()
            .find(|l| l["event"] == "error.panic")
            .expect("logged");
        assert_eq!(panic["message_withheld"], true);
        assert!(!logs.text().contains("sk_live"));
    }

    #[tokio::test]
    async fn a_bare_5xx_is_replaced_with_its_status_and_its_body_logged_scrubbed() {
        let (_guard, logs) = capture::json();
        let svc = ServiceBuilder::new()
            .layer(ErrorBoundaryLayer::new().scrubber(Arc::new(Digits)))
            .service(service_fn(|req: Request<()>| async move {
                Ok::<_, Infallible>(match req.uri().path() {
                    "/500" => answer(
                        500,
                        "text/plain",
                        "ERROR: user 42 not found at db.internal:5432",
                    ),
                    "/503" => answer(503, "text/html", "<h1>down</h1>"),
                    "/problem" => answer(502, PROBLEM_JSON, "{\"status\":502}"),
                    _ => answer(404, "text/plain", "no such thing"),
                })
            }));
        let res = svc.clone().oneshot(request("/500")).await.unwrap();
        assert_eq!(res.status(), 500);
        assert_eq!(res.headers()["content-type"], PROBLEM_JSON);
        let body = json(res).await;
        assert_eq!(body["request_id"], "req-7");
        assert!(!body.to_string().contains("db.internal"));

        let res = svc.clone().oneshot(request("/503")).await.unwrap();
        assert_eq!(res.status(), 503);
        assert_eq!(
            res.headers()["retry-after"],
            "7",
            "the handler's Retry-After is kept"
        );

        // A problem document and a 4xx pass as they are.
        let res = svc.clone().oneshot(request("/problem")).await.unwrap();
        assert_eq!(res.status(), 502);
        assert_eq!(
            res.into_body().collect().await.unwrap().to_bytes(),
            "{\"status\":502}"
        );
        let res = svc.oneshot(request("/404")).await.unwrap();
        assert_eq!(
            res.into_body().collect().await.unwrap().to_bytes(),
            "no such thing"
        );

        let lines = logs.lines();
        let replaced: Vec<_> = lines
            .iter()
            .filter(|l| l["event"] == "error.response_replaced")
            .collect();
        assert_eq!(replaced.len(), 2);
        assert_eq!(
            replaced[0]["body"],
            "ERROR: user ## not found at db.internal:####"
        );
        assert_eq!(replaced[0]["status"], 500);
        assert_eq!(replaced[0]["body_truncated"], false);
    }

    #[tokio::test]
    async fn a_long_or_streaming_5xx_body_is_logged_truncated_without_waiting() {
        let (_guard, logs) = capture::json();
        let svc = ServiceBuilder::new()
            .layer(ErrorBoundaryLayer::new().scrubber(Arc::new(Digits)))
            .service(service_fn(|req: Request<()>| async move {
                let body: http_body_util::combinators::BoxBody<bytes::Bytes, Infallible> =
                    if req.uri().path() == "/long" {
                        Full::new(bytes::Bytes::from("x".repeat(5000))).boxed()
                    } else {
                        // One chunk, then a stream that never ends.
                        let chunks = futures_stream();
                        StreamBody::new(chunks).boxed()
                    };
                Ok::<_, Infallible>(Response::builder().status(500).body(body).unwrap())
            }));
        let res = svc.clone().oneshot(request("/long")).await.unwrap();
        assert_eq!(res.status(), 500);
        let res = svc.oneshot(request("/stream")).await.unwrap();
        assert_eq!(res.status(), 500);
        let lines = logs.lines();
        let replaced: Vec<_> = lines
            .iter()
            .filter(|l| l["event"] == "error.response_replaced")
            .collect();
        assert_eq!(replaced[0]["body"].as_str().unwrap().len(), LOGGED_BYTES);
        assert_eq!(replaced[0]["body_truncated"], true);
        assert_eq!(replaced[1]["body"], "partial");
        assert_eq!(replaced[1]["body_truncated"], true);
    }

    /// Knows one secret, and only whole.
    struct WholeToken;

    impl Scrub for WholeToken {
        fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
            Cow::Owned(text.replace("SECRET-TOKEN-XYZ", "[secret]"))
        }
    }

    #[tokio::test]
    async fn a_secret_across_the_1_kib_cut_is_scrubbed_whole_before_cutting() {
        let (_guard, logs) = capture::json();
        let svc = ServiceBuilder::new()
            .layer(ErrorBoundaryLayer::new().scrubber(Arc::new(WholeToken)))
            .service(service_fn(|_req: Request<()>| async move {
                let text = "a".repeat(LOGGED_BYTES - 9) + "SECRET-TOKEN-XYZ and more";
                Ok::<_, Infallible>(Response::builder().status(500).body(text).unwrap())
            }));
        let res = svc.oneshot(request("/")).await.unwrap();
        assert_eq!(res.status(), 500);
        let lines = logs.lines();
        let replaced = lines
            .iter()
            .find(|l| l["event"] == "error.response_replaced")
            .unwrap();
        let body = replaced["body"].as_str().unwrap();
        assert!(!body.contains("SECRET"), "a fragment was logged: {body}");
        assert!(body.len() <= LOGGED_BYTES);
        assert_eq!(replaced["body_truncated"], true);
    }

    /// A stream with one frame ready and then pending forever.
    fn futures_stream()
    -> impl futures_core::Stream<Item = Result<http_body::Frame<bytes::Bytes>, Infallible>> + Send + Sync
    {
        struct OneThenPending(bool);
        impl futures_core::Stream for OneThenPending {
            type Item = Result<http_body::Frame<bytes::Bytes>, Infallible>;
            fn poll_next(
                mut self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Self::Item>> {
                if std::mem::replace(&mut self.0, true) {
                    Poll::Pending
                } else {
                    Poll::Ready(Some(Ok(http_body::Frame::data(bytes::Bytes::from_static(
                        b"partial",
                    )))))
                }
            }
        }
        OneThenPending(false)
    }

    #[tokio::test]
    async fn with_sanitizing_off_a_5xx_passes_as_it_is() {
        let svc = ServiceBuilder::new()
            .layer(ErrorBoundaryLayer::from_config(
                &ErrorBoundaryConfig::default(),
                Profile::Development,
            ))
            .service(service_fn(|_req: Request<()>| async move {
                Ok::<_, Infallible>(answer(500, "text/plain", "stack trace here"))
            }));
        let res = svc.oneshot(request("/")).await.unwrap();
        assert_eq!(
            res.into_body().collect().await.unwrap().to_bytes(),
            "stack trace here"
        );
    }
}

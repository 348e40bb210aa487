//! Retries for outbound calls: full-jitter exponential backoff, a retry
//! budget, `Retry-After`, per-try timeouts and the request's deadline.
//!
//! [`RetryLayer`] sends a request again when an attempt fails in a way
//! worth retrying — by default an error (connection refused, reset), a
//! per-try timeout, or a `502`, `503`, `504` or `429` answer;
//! [`retry_when`](RetryLayer::retry_when) changes that — up to `attempts`
//! in all, waiting a random time between zero and `base × 2ⁿ` (capped)
//! before each retry (AWS's "full jitter"). Only idempotent requests are
//! retried: `GET`, `HEAD`, `PUT`, `DELETE`, `OPTIONS`, `TRACE`, or any
//! request carrying an `Idempotency-Key` header or the [`Idempotent`]
//! extension. A `Retry-After` (seconds or an HTTP date) is honoured up to
//! a cap; one beyond it ends the retries. A budget keeps retries to a
//! share of requests (plus a floor per second), so a failing upstream
//! sees at most that much extra load instead of a retry storm. No retry
//! starts that would end past the request's [`Deadline`].
//!
//! The body is kept for the next attempt when it is at most
//! `max_replay_bytes`; a larger body is sent once, whole, and the request
//! is not retried — never sent with a part missing.
//!
//! # Example
//!
//! ```
//! use std::{sync::{Arc, atomic::{AtomicUsize, Ordering}}, time::Duration};
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use timeout_retry_layer::{ReplayBody, RetryLayer};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! tokio::time::pause();
//! let calls = Arc::new(AtomicUsize::new(0));
//! let seen = Arc::clone(&calls);
//! let upstream = service_fn(move |_req: Request<ReplayBody<Full<Bytes>>>| {
//!     let n = seen.fetch_add(1, Ordering::SeqCst);
//!     async move {
//!         let mut res = Response::new(());
//!         if n == 0 { *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE; }
//!         Ok::<_, std::io::Error>(res)
//!     }
//! });
//! let client = RetryLayer::new("weather").attempts(3).layer(upstream);
//! let res = client.oneshot(Request::get("http://upstream.test/").body(Full::new(Bytes::new())).unwrap()).await.unwrap();
//! assert_eq!(res.status(), 200);
//! assert_eq!(calls.load(Ordering::SeqCst), 2);
//! # }
//! ```

use std::{
    collections::VecDeque,
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
    time::{Duration, SystemTime},
};

use bytes::{Buf, Bytes, BytesMut};
use guardrail_core::{Deadline, EventName, emit};
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::{BoxError, Classify, OutboundError};

/// Marks a request as safe to send twice (as an `Idempotency-Key` header
/// does), so a `POST` may be retried.
#[derive(Clone, Copy, Debug, Default)]
pub struct Idempotent;

#[derive(Clone)]
struct Settings {
    name: Arc<str>,
    attempts: u32,
    base: Duration,
    cap: Duration,
    retry_after_cap: Duration,
    per_try_timeout: Option<Duration>,
    /// All attempts and waits together, from the call.
    overall: Option<Duration>,
    max_replay_bytes: usize,
    retry_when: Classify,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("name", &self.name)
            .field("attempts", &self.attempts)
            .field("base", &self.base)
            .field("cap", &self.cap)
            .field("retry_after_cap", &self.retry_after_cap)
            .field("per_try_timeout", &self.per_try_timeout)
            .field("overall", &self.overall)
            .field("max_replay_bytes", &self.max_replay_bytes)
            .finish_non_exhaustive()
    }
}

/// Layer that applies [`Retry`]. Clones share one budget.
#[derive(Clone)]
pub struct RetryLayer {
    settings: Arc<Settings>,
    budget: Arc<Budget>,
}

impl fmt::Debug for RetryLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl RetryLayer {
    /// Retries for the upstream `name` (in events): 3 attempts in all,
    /// backoff from 100 ms capped at 2 s, `Retry-After` up to 30 s, no
    /// per-try timeout, bodies up to 64 KiB kept for replay, and a budget
    /// of 20 % of requests plus 10 retries a second.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            settings: Arc::new(Settings {
                name: name.into(),
                attempts: 3,
                base: Duration::from_millis(100),
                cap: Duration::from_secs(2),
                retry_after_cap: Duration::from_secs(30),
                per_try_timeout: None,
                overall: None,
                max_replay_bytes: 64 * 1024,
                retry_when: Arc::new(|status| status.is_none_or(is_retryable_status)),
            }),
            budget: Arc::new(Budget::new(0.2, 10)),
        }
    }

    fn set(mut self, f: impl FnOnce(&mut Settings)) -> Self {
        f(Arc::make_mut(&mut self.settings));
        self
    }

    /// Attempts in all, the first included (at least 1).
    pub fn attempts(self, attempts: u32) -> Self {
        self.set(|s| s.attempts = attempts.max(1))
    }

    /// The backoff: a random wait up to `base × 2ⁿ` before retry `n + 1`,
    /// never more than `cap`.
    pub fn backoff(self, base: Duration, cap: Duration) -> Self {
        self.set(|s| {
            s.base = base;
            s.cap = cap.max(base);
        })
    }

    /// The longest `Retry-After` waited for; a longer one ends the
    /// retries (the answer goes back to the caller).
    pub fn retry_after_cap(self, cap: Duration) -> Self {
        self.set(|s| s.retry_after_cap = cap)
    }

    /// How long each attempt may take; one that runs over fails with
    /// [`OutboundError::Timeout`] and may be retried.
    pub fn per_try_timeout(self, timeout: Duration) -> Self {
        self.set(|s| s.per_try_timeout = Some(timeout))
    }

    /// All attempts and the waits between them end within `deadline` of
    /// the call (or the request's own [`Deadline`], if earlier); past it
    /// the call fails with [`OutboundError::Timeout`].
    pub fn deadline(self, deadline: Duration) -> Self {
        self.set(|s| s.overall = Some(deadline))
    }

    /// Which failed attempts are worth another: `f(Some(status))` for a
    /// 4xx or 5xx answer, `f(None)` for an error or a per-try timeout (an
    /// answer below 400 is never retried). Default: errors, timeouts, 429,
    /// 502, 503 and 504. Only idempotent requests are retried whatever it
    /// says.
    pub fn retry_when(
        self,
        f: impl Fn(Option<StatusCode>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.set(|s| s.retry_when = Arc::new(f))
    }

    /// Bodies up to this many bytes are kept to send again.
    pub fn max_replay_bytes(self, max: usize) -> Self {
        self.set(|s| s.max_replay_bytes = max)
    }

    /// Retries may be at most `ratio` of the requests of the last 10 s,
    /// plus `min_per_s` a second (tower's `TpsBudget` idea).
    pub fn budget(mut self, ratio: f64, min_per_s: u32) -> Self {
        self.budget = Arc::new(Budget::new(ratio.max(0.0), min_per_s));
        self
    }
}

/// Requests and retries over the last ten seconds, a bucket a second.
#[derive(Debug)]
struct Budget {
    ratio: f64,
    min_per_s: u32,
    buckets: Mutex<VecDeque<(Instant, u32, u32)>>,
}

const BUDGET_SECS: u32 = 10;

impl Budget {
    fn new(ratio: f64, min_per_s: u32) -> Self {
        Self {
            ratio,
            min_per_s,
            buckets: Mutex::new(VecDeque::new()),
        }
    }

    fn with_current<R>(&self, f: impl FnOnce(&mut (Instant, u32, u32), u32, u32) -> R) -> R {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let window = Duration::from_secs(u64::from(BUDGET_SECS));
        while buckets
            .front()
            .is_some_and(|(start, _, _)| now.saturating_duration_since(*start) >= window)
        {
            buckets.pop_front();
        }
        if !buckets.back().is_some_and(|(start, _, _)| {
            now.saturating_duration_since(*start) < Duration::from_secs(1)
        }) {
            buckets.push_back((now, 0, 0));
        }
        let (requests, retries) = buckets
            .iter()
            .fold((0, 0), |(q, r), (_, bq, br)| (q + bq, r + br));
        let current = buckets.back_mut().expect("just ensured");
        f(current, requests, retries)
    }

    fn deposit(&self) {
        self.with_current(|bucket, _, _| bucket.1 += 1);
    }

    /// Takes a retry from the budget, if there is one left.
    fn withdraw(&self) -> bool {
        self.with_current(|bucket, requests, retries| {
            let allowed =
                f64::from(self.min_per_s * BUDGET_SECS) + self.ratio * f64::from(requests);
            if f64::from(retries) + 1.0 <= allowed {
                bucket.2 += 1;
                true
            } else {
                false
            }
        })
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry {
            inner,
            settings: Arc::clone(&self.settings),
            budget: Arc::clone(&self.budget),
        }
    }
}

/// Middleware that retries failed idempotent calls; see [`RetryLayer`].
#[derive(Clone)]
pub struct Retry<S> {
    inner: S,
    settings: Arc<Settings>,
    budget: Arc<Budget>,
}

impl<S> Retry<S> {
    guardrail_core::inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for Retry<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("settings", &self.settings)
            .finish()
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, ResB> Service<Request<B>> for Retry<S>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    ResB: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = OutboundError;
    type Future = BoxFuture<Result<Response<ResB>, OutboundError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(OutboundError::from_inner)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The ready service takes the first attempt; a clone the others.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let settings = Arc::clone(&self.settings);
        let budget = Arc::clone(&self.budget);
        Box::pin(run(inner, req, settings, budget))
    }
}

/// What a retry needs of the request: everything but the body and the
/// extensions (of which the deadline is carried over).
struct Head {
    method: Method,
    uri: http::Uri,
    version: http::Version,
    headers: HeaderMap,
    deadline: Option<Deadline>,
}

impl Head {
    fn request<B>(&self, body: ReplayBody<B>) -> Request<ReplayBody<B>> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        if let Some(deadline) = self.deadline {
            req.extensions_mut().insert(deadline);
        }
        req
    }
}

fn is_idempotent<B>(req: &Request<B>) -> bool {
    matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    ) || req.headers().contains_key("idempotency-key")
        || req.extensions().get::<Idempotent>().is_some()
}

async fn run<S, B, ResB>(
    mut inner: S,
    req: Request<B>,
    settings: Arc<Settings>,
    budget: Arc<Budget>,
) -> Result<Response<ResB>, OutboundError>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResB>> + Clone,
    S::Error: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    budget.deposit();
    let retryable = is_idempotent(&req) && settings.attempts > 1;
    let (parts, body) = req.into_parts();
    let head = Head {
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        headers: parts.headers,
        deadline: match (
            parts.extensions.get::<Deadline>().copied(),
            settings.overall.map(Deadline::after),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        },
    };
    // Kept whole for replay, or (too large, not retryable) sent once.
    let (first_body, replay) = if retryable {
        match buffer(body, settings.max_replay_bytes).await? {
            Buffered::Whole(bytes) => (ReplayBody::full(bytes.clone()), Some(bytes)),
            Buffered::TooLarge { prefix, rest } => (ReplayBody::rest(prefix, rest), None),
        }
    } else {
        (ReplayBody::rest(Bytes::new(), Box::pin(body)), None)
    };
    let mut body = Some(first_body);
    let mut attempt = 1;
    loop {
        let this_body = match body.take() {
            Some(b) => b,
            None => ReplayBody::full(replay.clone().unwrap_or_default()),
        };
        let outcome = attempt_once(
            &mut inner,
            head.request(this_body),
            &settings,
            head.deadline,
        )
        .await;
        let (status, reason) = match &outcome {
            Ok(res) => (Some(res.status()), res.status().as_str().to_owned()),
            Err(OutboundError::Timeout) => (None, "timeout".to_owned()),
            Err(OutboundError::Upstream(_)) => (None, "error".to_owned()),
            // Refused by a breaker or bulkhead further in: fail fast.
            Err(_) => return outcome,
        };
        if status.is_some_and(|s| s.as_u16() < 400) || !(settings.retry_when)(status) {
            return outcome;
        }
        if attempt >= settings.attempts || replay.is_none() {
            return outcome;
        }
        let retry_after = outcome
            .as_ref()
            .ok()
            .and_then(|res| retry_after(res.headers()));
        let delay = match retry_after {
            Some(wait) if wait > settings.retry_after_cap => return outcome,
            Some(wait) => wait,
            None => backoff(&settings, attempt),
        };
        if head
            .deadline
            .is_some_and(|deadline| deadline.remaining() <= delay)
        {
            return outcome;
        }
        if !budget.withdraw() {
            emit!(
                WARN,
                EventName::INTEGRATION_RETRY,
                upstream = &*settings.name,
                attempt = attempt + 1,
                reason = reason.as_str(),
                budget_exhausted = true,
            );
            return outcome;
        }
        emit!(
            INFO,
            EventName::INTEGRATION_RETRY,
            upstream = &*settings.name,
            attempt = attempt + 1,
            reason = reason.as_str(),
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        );
        drop(outcome);
        tokio::time::sleep(delay).await;
        std::future::poll_fn(|cx| inner.poll_ready(cx))
            .await
            .map_err(OutboundError::from_inner)?;
        attempt += 1;
    }
}

/// One attempt, within the per-try timeout and the request's deadline.
async fn attempt_once<S, B, ResB>(
    inner: &mut S,
    req: Request<ReplayBody<B>>,
    settings: &Settings,
    deadline: Option<Deadline>,
) -> Result<Response<ResB>, OutboundError>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
{
    let limit = match (settings.per_try_timeout, deadline.map(|d| d.remaining())) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let call = inner.call(req);
    match limit {
        Some(limit) => match tokio::time::timeout(limit, call).await {
            Ok(out) => out.map_err(OutboundError::from_inner),
            Err(_) => {
                emit!(
                    WARN,
                    EventName::INTEGRATION_TIMEOUT,
                    upstream = &*settings.name,
                    timeout_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
                );
                Err(OutboundError::Timeout)
            }
        },
        None => call.await.map_err(OutboundError::from_inner),
    }
}

fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

/// Full jitter: a random wait in `[0, min(cap, base × 2^(attempt - 1))]`.
fn backoff(settings: &Settings, attempt: u32) -> Duration {
    let exp = settings.base.saturating_mul(
        1u32.checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX),
    );
    let ceiling = exp.min(settings.cap);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

/// `Retry-After` as seconds or an HTTP date (RFC 9110).
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

enum Buffered<B> {
    Whole(Bytes),
    TooLarge { prefix: Bytes, rest: Pin<Box<B>> },
}

/// Reads `body` whole if it is at most `max` bytes; otherwise what was
/// read so far and the rest, to send once.
async fn buffer<B>(body: B, max: usize) -> Result<Buffered<B>, OutboundError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let mut body = Box::pin(body);
    let mut bytes = BytesMut::new();
    loop {
        if bytes.len() > max {
            return Ok(Buffered::TooLarge {
                prefix: bytes.freeze(),
                rest: body,
            });
        }
        match std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            None => return Ok(Buffered::Whole(bytes.freeze())),
            Some(Err(e)) => return Err(OutboundError::from_inner(e)),
            Some(Ok(frame)) => {
                if let Ok(mut data) = frame.into_data() {
                    while data.has_remaining() {
                        let chunk = data.chunk();
                        bytes.extend_from_slice(chunk);
                        let n = chunk.len();
                        data.advance(n);
                    }
                }
            }
        }
    }
}

/// The request body the retry layer hands on: kept bytes (sent again on
/// a retry), or — for a body too large to keep, or a request that is not
/// retried — what was read of it followed by the rest, sent once.
pub struct ReplayBody<B> {
    prefix: Option<Bytes>,
    rest: Option<Pin<Box<B>>>,
}

impl<B> ReplayBody<B> {
    fn full(bytes: Bytes) -> Self {
        Self {
            prefix: (!bytes.is_empty()).then_some(bytes),
            rest: None,
        }
    }

    fn rest(prefix: Bytes, rest: Pin<Box<B>>) -> Self {
        Self {
            prefix: (!prefix.is_empty()).then_some(prefix),
            rest: Some(rest),
        }
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayBody")
            .field("kept", &self.prefix.as_ref().map_or(0, Bytes::len))
            .field("streaming", &self.rest.is_some())
            .finish()
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(prefix) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        let Some(rest) = this.rest.as_mut() else {
            return Poll::Ready(None);
        };
        match rest.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(
                frame.map_data(|mut d| d.copy_to_bytes(d.remaining()))
            ))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let kept = self.prefix.as_ref().map_or(0, |b| b.len() as u64);
        match &self.rest {
            None => SizeHint::with_exact(kept),
            Some(rest) => {
                let inner = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(kept + inner.lower());
                if let Some(upper) = inner.upper() {
                    hint.set_upper(kept + upper);
                }
                hint
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use guardrails_testkit::capture;
    use http_body_util::{BodyExt, Full, StreamBody};
    use tower::{ServiceExt, service_fn};

    use super::*;

    /// What the scripted upstream does on one call.
    #[derive(Clone, Copy)]
    enum Step {
        Answer(u16),
        AnswerRetryAfter(u16, &'static str),
        Hang,
        Refuse,
    }

    /// An upstream that plays `steps` in order (the last one repeats),
    /// recording each body it read.
    #[derive(Clone)]
    struct Scripted {
        steps: Arc<Vec<Step>>,
        calls: Arc<AtomicUsize>,
        bodies: Arc<Mutex<Vec<Bytes>>>,
    }

    impl Scripted {
        fn new(steps: &[Step]) -> Self {
            Self {
                steps: Arc::new(steps.to_vec()),
                calls: Arc::default(),
                bodies: Arc::default(),
            }
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }

        fn service<B>(
            &self,
        ) -> impl Service<
            Request<ReplayBody<B>>,
            Response = Response<()>,
            Error = std::io::Error,
            Future: Send,
        > + Clone
        + Send
        + use<B>
        where
            B: Body + Send + 'static,
            B::Data: Send,
            B::Error: Into<BoxError>,
        {
            let me = self.clone();
            service_fn(move |req: Request<ReplayBody<B>>| {
                let me = me.clone();
                async move {
                    let n = me.calls.fetch_add(1, Ordering::SeqCst);
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    me.bodies.lock().unwrap().push(body);
                    let step = me.steps[n.min(me.steps.len() - 1)];
                    let status = match step {
                        Step::Answer(s) | Step::AnswerRetryAfter(s, _) => s,
                        Step::Hang => std::future::pending().await,
                        Step::Refuse => {
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::ConnectionRefused,
                                "refused",
                            ));
                        }
                    };
                    let mut res = Response::new(());
                    *res.status_mut() = StatusCode::from_u16(status).unwrap();
                    if let Step::AnswerRetryAfter(_, after) = step {
                        res.headers_mut()
                            .insert(header::RETRY_AFTER, after.parse().unwrap());
                    }
                    Ok(res)
                }
            })
        }
    }

    fn get() -> Request<Full<Bytes>> {
        Request::get("http://upstream.test/x")
            .body(Full::new(Bytes::new()))
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_then_success_calls_the_upstream_exactly_twice() {
        let (_guard, logs) = capture::json();
        let up = Scripted::new(&[Step::Answer(503), Step::Answer(200)]);
        let client = RetryLayer::new("weather").layer(up.service());
        let res = client.oneshot(get()).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(up.calls(), 2);
        let lines = logs.lines();
        let retry = lines
            .iter()
            .find(|l| l["event"] == "integration.retry")
            .unwrap();
        assert_eq!(retry["upstream"], "weather");
        assert_eq!(retry["attempt"], 2);
        assert_eq!(retry["reason"], "503");
    }

    #[tokio::test(start_paused = true)]
    async fn the_classifier_decides_which_failures_are_retried() {
        let (_guard, _logs) = capture::json();
        // By default a 500 is not retried (it is rarely transient)...
        let up = Scripted::new(&[Step::Answer(500), Step::Answer(200)]);
        let res = RetryLayer::new("x")
            .layer(up.service())
            .oneshot(get())
            .await;
        assert_eq!(res.unwrap().status(), 500);
        assert_eq!(up.calls(), 1);
        // ...unless the classifier says so; and one that declines 429 and
        // errors sends them back at once.
        let up = Scripted::new(&[Step::Answer(500), Step::Answer(200)]);
        let on_500 = RetryLayer::new("x").retry_when(|s| s.is_none_or(|s| s.is_server_error()));
        let res = on_500.layer(up.service()).oneshot(get()).await;
        assert_eq!(res.unwrap().status(), 200);
        assert_eq!(up.calls(), 2);
        // Answers below 400 are never failures, whatever it says.
        let always = RetryLayer::new("x").retry_when(|_| true);
        let up = Scripted::new(&[Step::Answer(304), Step::Answer(200)]);
        let res = always.layer(up.service()).oneshot(get()).await;
        assert_eq!(res.unwrap().status(), 304);
        assert_eq!(up.calls(), 1);
        let never = RetryLayer::new("x").retry_when(|_| false);
        let up = Scripted::new(&[Step::Answer(429), Step::Answer(200)]);
        let res = never.layer(up.service()).oneshot(get()).await;
        assert_eq!(res.unwrap().status(), 429);
        let up = Scripted::new(&[Step::Refuse, Step::Answer(200)]);
        let res = never.layer(up.service()).oneshot(get()).await;
        assert!(matches!(res, Err(OutboundError::Upstream(_))));
        assert_eq!(up.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn connection_errors_are_retried_and_the_last_failure_is_returned() {
        let (_guard, _logs) = capture::json();
        let up = Scripted::new(&[Step::Refuse]);
        let client = RetryLayer::new("weather").attempts(4).layer(up.service());
        let err = client.oneshot(get()).await.unwrap_err();
        assert!(matches!(err, OutboundError::Upstream(_)), "{err:?}");
        assert_eq!(err.to_problem().status(), 502);
        assert_eq!(up.calls(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn per_try_timeouts_exhausting_the_attempts_are_a_timeout() {
        let (_guard, logs) = capture::json();
        let up = Scripted::new(&[Step::Hang]);
        let client = RetryLayer::new("weather")
            .attempts(3)
            .per_try_timeout(Duration::from_secs(1))
            .backoff(Duration::from_millis(10), Duration::from_millis(10))
            .layer(up.service());
        let start = Instant::now();
        let err = client.oneshot(get()).await.unwrap_err();
        assert!(matches!(err, OutboundError::Timeout), "{err:?}");
        assert_eq!(err.to_problem().status(), 504);
        assert_eq!(up.calls(), 3);
        let timeouts = logs
            .lines()
            .into_iter()
            .filter(|l| l["event"] == "integration.timeout" && l["timeout_ms"] == 1000)
            .count();
        assert_eq!(timeouts, 3, "one event per attempt that ran out of time");
        assert!(start.elapsed() >= Duration::from_secs(3));
        assert!(start.elapsed() <= Duration::from_millis(3020));
    }

    #[tokio::test(start_paused = true)]
    async fn a_post_without_an_idempotency_key_is_sent_once() {
        let (_guard, _logs) = capture::json();
        let up = Scripted::new(&[Step::Answer(503), Step::Answer(503), Step::Answer(200)]);
        let client = RetryLayer::new("weather").layer(up.service());
        let post = Request::post("http://upstream.test/x")
            .body(Full::new(Bytes::from("{}")))
            .unwrap();
        let res = client.clone().oneshot(post).await.unwrap();
        assert_eq!(res.status(), 503);
        assert_eq!(up.calls(), 1);
        // With a key (or the Idempotent marker) it is retried, body and all.
        let keyed = Request::post("http://upstream.test/x")
            .header("idempotency-key", "k-1")
            .body(Full::new(Bytes::from("{\"a\":1}")))
            .unwrap();
        let res = client.oneshot(keyed).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(up.calls(), 3);
        let bodies = up.bodies.lock().unwrap();
        assert_eq!(bodies[1], "{\"a\":1}");
        assert_eq!(bodies[2], "{\"a\":1}", "the body is sent again whole");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_too_large_to_keep_is_sent_once_whole() {
        let (_guard, _logs) = capture::json();
        let up = Scripted::new(&[Step::Answer(503), Step::Answer(200)]);
        let client = RetryLayer::new("weather")
            .max_replay_bytes(8)
            .layer(up.service());
        let chunks: Vec<Result<Frame<Bytes>, std::io::Error>> = ["0123456789", "abcdef"]
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from(*c))))
            .collect();
        let req = Request::put("http://upstream.test/x")
            .body(StreamBody::new(futures_stream(chunks)))
            .unwrap();
        let res = client.oneshot(req).await.unwrap();
        assert_eq!(res.status(), 503, "not retried");
        assert_eq!(up.calls(), 1);
        assert_eq!(
            up.bodies.lock().unwrap()[0],
            "0123456789abcdef",
            "nothing dropped"
        );
    }

    fn futures_stream<T: Unpin>(items: Vec<T>) -> impl futures_core::Stream<Item = T> + Unpin {
        struct Iter<T>(std::vec::IntoIter<T>);
        impl<T: Unpin> futures_core::Stream for Iter<T> {
            type Item = T;
            fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<T>> {
                Poll::Ready(self.0.next())
            }
        }
        Iter(items.into_iter())
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_and_capped() {
        let (_guard, _logs) = capture::json();
        let up = Scripted::new(&[Step::AnswerRetryAfter(503, "5"), Step::Answer(200)]);
        let client = RetryLayer::new("weather").layer(up.service());
        let start = Instant::now();
        assert_eq!(client.oneshot(get()).await.unwrap().status(), 200);
        assert_eq!(start.elapsed(), Duration::from_secs(5));

        let up = Scripted::new(&[Step::AnswerRetryAfter(429, "120"), Step::Answer(200)]);
        let client = RetryLayer::new("weather")
            .retry_after_cap(Duration::from_secs(30))
            .layer(up.service());
        let res = client.oneshot(get()).await.unwrap();
        assert_eq!(res.status(), 429, "a wait beyond the cap ends the retries");
        assert_eq!(up.calls(), 1);

        let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3600));
        let mut headers = HeaderMap::new();
        headers.insert(header::RETRY_AFTER, date.parse().unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(wait > Duration::from_secs(3500) && wait <= Duration::from_secs(3600));
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_stops_a_retry_storm() {
        let (_guard, logs) = capture::json();
        let up = Scripted::new(&[Step::Answer(503)]);
        // 20 % of requests, no floor: 10 failing requests earn 2 retries.
        let client = RetryLayer::new("weather")
            .attempts(5)
            .budget(0.2, 0)
            .layer(up.service());
        for _ in 0..10 {
            assert_eq!(client.clone().oneshot(get()).await.unwrap().status(), 503);
        }
        assert_eq!(up.calls(), 12, "10 requests and the budget's 2 retries");
        let exhausted = logs
            .lines()
            .iter()
            .filter(|l| l["event"] == "integration.retry" && l["budget_exhausted"] == true)
            .count();
        assert!(exhausted >= 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_overall_deadline_bounds_every_attempt_and_wait() {
        let (_guard, _logs) = capture::json();
        let up = Scripted::new(&[Step::Hang]);
        let client = RetryLayer::new("weather")
            .attempts(10)
            .per_try_timeout(Duration::from_secs(2))
            .deadline(Duration::from_secs(5))
            .backoff(Duration::from_millis(1), Duration::from_millis(1))
            .layer(up.service());
        let start = Instant::now();
        let err = client.oneshot(get()).await.unwrap_err();
        assert!(matches!(err, OutboundError::Timeout), "{err:?}");
        assert!(
            start.elapsed() <= Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(up.calls(), 3, "2 s + 2 s + what was left");
    }

    #[tokio::test(start_paused = true)]
    async fn no_retry_starts_that_would_end_past_the_deadline() {
        let (_guard, _logs) = capture::json();
        let up = Scripted::new(&[Step::AnswerRetryAfter(503, "10"), Step::Answer(200)]);
        let client = RetryLayer::new("weather").layer(up.service());
        let mut req = get();
        req.extensions_mut()
            .insert(Deadline::after(Duration::from_secs(5)));
        let res = client.oneshot(req).await.unwrap();
        assert_eq!(res.status(), 503);
        assert_eq!(up.calls(), 1);
    }

    #[test]
    fn backoff_is_full_jitter_under_the_cap() {
        let layer = RetryLayer::new("x")
            .attempts(10)
            .backoff(Duration::from_millis(100), Duration::from_secs(1));
        let settings = &*layer.settings;
        for attempt in 1..40 {
            let ceiling = (Duration::from_millis(100) * 2u32.saturating_pow(attempt - 1))
                .min(Duration::from_secs(1));
            for _ in 0..50 {
                assert!(backoff(settings, attempt) <= ceiling);
            }
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| backoff(settings, 4)).collect();
        assert!(spread.len() > 10, "random, not fixed");
    }
}

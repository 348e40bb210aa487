//! Scrubbed request tracing: a span per request and exactly one
//! `api.request` event, with nothing sensitive in either.
//!
//! The event is the complete record (every field below); the span carries
//! `request_id`, `http.request.method` and `http.route`, so events the
//! handler emits are tied to the request.
//!
//! Unlike tower-http's `TraceLayer`, which logs the raw URI (query tokens
//! included) and whatever request id a client sends, [`TraceLayer`]:
//!
//! - names fields by the OpenTelemetry HTTP conventions:
//!   `http.request.method`, `http.route` (axum's `MatchedPath`, else
//!   `unmatched`), `url.path` (only for unmatched routes: a matched one's
//!   concrete path would carry ids; scrubbed) and `url.query` (scrubbed:
//!   values under secret keys removed, identities pseudonymized), `http.response.status_code`,
//!   `client.address` (masked to /24 or /48), `user_agent.original`
//!   (scrubbed), `request_id` (the validated id from
//!   [`SetRequestIdLayer`](guardrail_core::SetRequestIdLayer)),
//!   `enduser.pseudo.id` (the caller's keyed pseudonym, filled by
//!   authentication through a [`CallerSlot`]), `latency_ms`, and
//!   `trace_id` / `span_id` (W3C Trace Context);
//! - continues the caller's trace from a valid `traceparent` (this
//!   request gets a span id of its own) and starts a fresh one otherwise —
//!   a malformed header is never trusted; the request's
//!   [`TraceContext`] is in its extensions and current while the handler
//!   runs, so the outbound stack sends it on to upstreams;
//! - logs no header unless it is allow-listed, and never `Authorization`,
//!   `Cookie`, `Set-Cookie`, `Proxy-Authorization` or API-key headers;
//! - writes the event at INFO for 1xx–3xx, WARN for 4xx and ERROR for 5xx
//!   (configurable).
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use guardrail_core::Pseudonymizer;
//! use http::{Request, Response};
//! use pii_trace_layer::{Scrubber, TraceLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let scrubber = Arc::new(Scrubber::new(Pseudonymizer::new(b"key")));
//! let svc = ServiceBuilder::new()
//!     .layer(TraceLayer::new(scrubber))
//!     .service(service_fn(|_req: Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(()))
//!     }));
//! let req = Request::get("/api/invite?email=ann%40example.com&token=abc123").body(()).unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 200);
//! # }
//! ```

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Instant,
};

use guardrail_core::{
    CallerSlot, ClientIp, EventName, RequestId, TraceContext, emit,
    semconv::{UNMATCHED_ROUTE as UNMATCHED, method_name},
};
use http::{HeaderName, Request, Response, header};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use tracing::{Level, Span};

use crate::Scrubber;

/// Headers never logged, even when allow-listed.
const NEVER_LOGGED: [&str; 6] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-auth-token",
];

/// Whether a header may carry a credential: the fixed list, or a name with
/// a secret word in it (`stripe-signature`, `x-csrf-token`,
/// `x-amz-security-token`, …).
fn is_credential_header(name: &str) -> bool {
    const WORDS: [&str; 10] = [
        "auth",
        "token",
        "secret",
        "signature",
        "password",
        "cookie",
        "session",
        "key",
        "csrf",
        "credential",
    ];
    NEVER_LOGGED.contains(&name) || WORDS.iter().any(|w| name.contains(w))
}

/// Layer that applies [`Trace`].
#[derive(Clone)]
pub struct TraceLayer {
    shared: Arc<Shared>,
}

#[derive(Clone)]
struct Shared {
    scrubber: Arc<Scrubber>,
    headers: Vec<HeaderName>,
    levels: [Level; 3],
    trust_traceparent: bool,
}

impl fmt::Debug for TraceLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceLayer")
            .field("headers", &self.shared.headers)
            .field("levels", &self.shared.levels)
            .finish_non_exhaustive()
    }
}

impl TraceLayer {
    /// Traces with `scrubber`, logging no headers, INFO/WARN/ERROR by status.
    pub fn new(scrubber: Arc<Scrubber>) -> Self {
        Self {
            shared: Arc::new(Shared {
                scrubber,
                headers: Vec::new(),
                levels: [Level::INFO, Level::WARN, Level::ERROR],
                trust_traceparent: true,
            }),
        }
    }

    fn shared_mut(&mut self) -> &mut Shared {
        // Copied if this layer was cloned before being configured.
        Arc::make_mut(&mut self.shared)
    }

    /// Logs these request headers (scrubbed) in `http.request.headers`.
    /// Headers that may carry credentials (`Authorization`, `Cookie`, any
    /// name with `token`, `key`, `signature`, `secret`, `session`, … in it)
    /// are never logged, even when listed.
    pub fn headers(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        self.shared_mut().headers = names
            .into_iter()
            .filter(|n| !is_credential_header(n.as_str()))
            .collect();
        self
    }

    /// Levels for 1xx–3xx, 4xx and 5xx (and inner errors).
    pub fn levels(mut self, success: Level, client_error: Level, server_error: Level) -> Self {
        self.shared_mut().levels = [success, client_error, server_error];
        self
    }

    /// Whether a caller's well-formed `traceparent` is continued (the
    /// default); with `false` every request starts a trace of its own.
    pub fn trust_traceparent(mut self, trust: bool) -> Self {
        self.shared_mut().trust_traceparent = trust;
        self
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Trace {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Middleware that traces requests; see [`TraceLayer`].
#[derive(Clone)]
pub struct Trace<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for Trace<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trace")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Trace<S> {
    /// Wraps `inner`, tracing with `scrubber` and the default settings.
    pub fn new(inner: S, scrubber: Arc<Scrubber>) -> Self {
        TraceLayer::new(scrubber).layer(inner)
    }

    /// Returns a new [`Layer`] that wraps services with a [`Trace`].
    pub fn layer(scrubber: Arc<Scrubber>) -> TraceLayer {
        TraceLayer::new(scrubber)
    }

    guardrail_core::inner_service_accessors!();
}

/// What the event reports, gathered when the request arrives.
struct Facts {
    method: &'static str,
    route: String,
    path: Option<String>,
    query: Option<String>,
    client: Option<String>,
    user_agent: Option<String>,
    request_id: String,
    trace_id: guardrail_core::trace_context::TraceId,
    span_id: guardrail_core::trace_context::SpanId,
    headers: Vec<(HeaderName, String)>,
    /// The length of the span's formatted fields once made (with
    /// [`JsonFields`](crate::JsonFields)), when the span has no parent (no
    /// span was current as the request arrived), so its line prints no one
    /// else's fields: a value recorded on the span later, by anyone,
    /// changes the length, and the line is scanned again. `None`: scanned.
    span_fields: Option<usize>,
    /// Which scrubber scrubbed these facts (its address).
    scrubber: usize,
}

thread_local! {
    /// Set while this layer writes an `api.request` whose span has no
    /// parent (see [`is_prescrubbed`]).
    static PRESCRUBBED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn scrubber_id(scrubber: &Arc<Scrubber>) -> usize {
    Arc::as_ptr(scrubber) as usize
}

/// The length of `span`'s fields as [`JsonFields`](crate::JsonFields)
/// formatted them; `None` when they weren't (another formatter, another
/// subscriber, a disabled span).
fn formatted_len(span: &Span) -> Option<usize> {
    use tracing_subscriber::registry::{LookupSpan, SpanData};
    let id = span.id()?;
    tracing::dispatcher::get_default(|dispatch| {
        let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
        let data = registry.span_data(&id)?;
        let extensions = data.extensions();
        extensions
            .get::<tracing_subscriber::fmt::FormattedFields<crate::JsonFields>>()
            .map(|fields| fields.fields.len())
    })
}

/// Whether the event being written is this layer's own `api.request`, in
/// this layer's span and no other: then every value on the line was
/// scrubbed (or is a route template, a standard method, a status, a
/// duration, a masked address or a pseudonym) when the layer gathered it,
/// and the log writer need not scan the line again. Known from the
/// callsite and a flag the layer sets around the event on this thread —
/// out of band, never from text a client could write. Inside any other
/// span (whose fields the line would print) the writer scans as usual.
pub(crate) fn is_prescrubbed(meta: &tracing::Metadata<'_>, scrubber: &Arc<Scrubber>) -> bool {
    // Scrubbed by the writer's own scrubber (the same rules), not another.
    PRESCRUBBED.get() == scrubber_id(scrubber)
        && meta.is_event()
        && meta.module_path() == Some(module_path!())
        && meta.target() == guardrail_core::event::TARGET
        && meta.fields().field("latency_ms").is_some()
}

fn route_of<B>(req: &Request<B>) -> String {
    #[cfg(feature = "axum")]
    if let Some(matched) = req.extensions().get::<axum::extract::MatchedPath>() {
        return matched.as_str().to_owned();
    }
    let _ = req;
    UNMATCHED.to_owned()
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Trace<S>
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
        let start = Instant::now();
        let s = &self.shared;
        let scrub = |text: &str| s.scrubber.scrub(text).into_owned();
        // Authentication, further in, fills this with the caller's pseudonym.
        let caller = CallerSlot::default();
        req.extensions_mut().insert(caller.clone());
        let request_id = match req.extensions().get::<RequestId>() {
            Some(id) => id.clone(),
            None => {
                let id = RequestId::generate();
                req.extensions_mut().insert(id.clone());
                id
            }
        };
        // The caller's trace, if it sent a well-formed one; this request's
        // span under it. Anything else starts a trace here.
        let incoming = s
            .trust_traceparent
            .then(|| TraceContext::from_headers(req.headers()))
            .flatten();
        let context = match &incoming {
            Some(incoming) => incoming.child(),
            None => TraceContext::new_root(),
        };
        let route = route_of(&req);
        let alone = Span::current().is_none();
        let mut facts = Facts {
            method: method_name(req.method()),
            // With a matched route, its template says it all; the concrete
            // path would carry ids (`/users/8c1f…/profile`) no pattern can
            // recognise as personal. Unmatched paths are logged scrubbed.
            path: (route == UNMATCHED).then(|| scrub(req.uri().path())),
            route,
            query: req.uri().query().map(scrub),
            client: req
                .extensions()
                .get::<ClientIp>()
                .map(|ip| ip.masked().to_string()),
            user_agent: req
                .headers()
                .get(header::USER_AGENT)
                .map(|v| scrub(&String::from_utf8_lossy(v.as_bytes()))),
            // A client may choose its request id (`trust_incoming`): it is
            // scrubbed like any other text it sends.
            request_id: scrub(request_id.as_str()),
            trace_id: context.trace_id(),
            span_id: context.span_id(),
            headers: s
                .headers
                .iter()
                .filter_map(|name| {
                    let v = req.headers().get(name)?;
                    Some((name.clone(), scrub(&String::from_utf8_lossy(v.as_bytes()))))
                })
                .collect(),
            span_fields: None,
            scrubber: scrubber_id(&s.scrubber),
        };
        // The event carries every field; the span only what correlates the
        // handler's own events with it (formatting fields twice is most of
        // a trace layer's cost).
        let span = tracing::info_span!(
            target: guardrail_core::event::TARGET,
            "api.request",
            request_id = %facts.request_id,
            "http.request.method" = facts.method,
            "http.route" = %facts.route,
        );
        // With OpenTelemetry export, the exported span's own ids.
        #[cfg(feature = "otel")]
        let context = crate::otel::adopt(&span, incoming.as_ref(), context);
        #[cfg(not(feature = "otel"))]
        let _ = incoming;
        facts.trace_id = context.trace_id();
        facts.span_id = context.span_id();
        req.extensions_mut().insert(context.clone());
        if alone {
            facts.span_fields = formatted_len(&span);
        }
        let future = {
            let _context = context.enter();
            span.in_scope(|| self.inner.call(req))
        };
        ResponseFuture {
            inner: future,
            context,
            span,
            start,
            facts: Some(Box::new(facts)),
            caller,
            shared: Arc::clone(&self.shared),
        }
    }
}

pin_project! {
    /// Response future for [`Trace`].
    ///
    /// Dropped before completion (the client went away), it still writes
    /// the request's one `api.request`, with `error = "cancelled"`.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        context: TraceContext,
        span: Span,
        start: Instant,
        facts: Option<Box<Facts>>,
        caller: CallerSlot,
        shared: Arc<Shared>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(facts) = this.facts.take() {
                let _entered = this.span.enter();
                let level = this.shared.levels[1];
                record(&facts, this.span, level, None, this.start, this.caller, Some("cancelled"));
            }
        }
    }
}

/// Writes the request's `api.request` event.
fn record(
    f: &Facts,
    span: &Span,
    level: Level,
    status: Option<u16>,
    start: &Instant,
    caller: &CallerSlot,
    error: Option<&str>,
) {
    // Whole microseconds: enough precision, and a short number.
    let latency_ms = start.elapsed().as_micros() as f64 / 1000.0;
    let headers = (!f.headers.is_empty()).then(|| {
        f.headers
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    });
    // Only this layer's values on the line: its own span is the current
    // one, with no parent, and nothing was recorded on it since it was made.
    let prescrubbed = f.span_fields.is_some()
        && Span::current().id() == span.id()
        && formatted_len(span) == f.span_fields;
    PRESCRUBBED.set(if prescrubbed { f.scrubber } else { 0 });
    emit!(
        level = level,
        EventName::API_REQUEST,
        "http.request.method" = f.method,
        "http.route" = %f.route,
        "url.path" = f.path.as_deref(),
        "url.query" = f.query.as_deref(),
        "http.response.status_code" = status,
        "client.address" = f.client.as_deref(),
        "user_agent.original" = f.user_agent.as_deref(),
        "enduser.pseudo.id" = caller.pseudonym(),
        "http.request.headers" = headers.as_deref(),
        request_id = %f.request_id,
        trace_id = %f.trace_id,
        span_id = %f.span_id,
        latency_ms = latency_ms,
        "error.type" = error,
    );
    PRESCRUBBED.set(0);
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
        let _entered = this.span.enter();
        let _context = this.context.enter();
        let result = ready!(this.inner.poll(cx));
        // An inner error has no status (OpenTelemetry: `error.type` only).
        let status = result.as_ref().ok().map(|res| res.status().as_u16());
        let [ok, client, server] = this.shared.levels;
        let level = match status {
            Some(400..=499) => client,
            Some(500..) | None => server,
            Some(_) => ok,
        };
        if let Some(f) = this.facts.take() {
            let error = result.is_err().then_some("service_error");
            record(&f, this.span, level, status, this.start, this.caller, error);
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guardrail_core::{Pseudonymizer, SetRequestIdLayer};
    use guardrails_testkit::capture;
    use http::StatusCode;
    use std::{convert::Infallible, sync::Arc};
    use tower::{ServiceBuilder, ServiceExt, service_fn};

    /// Runs one request through request id + trace layers with a plain
    /// (not scrubbing) JSON subscriber; returns the response and the lines.
    async fn run(
        layer: TraceLayer,
        req: Request<()>,
        status: StatusCode,
    ) -> (Response<()>, Vec<serde_json::Value>) {
        let (_guard, logs) = capture::json();
        let svc = ServiceBuilder::new()
            .layer(SetRequestIdLayer::new())
            .layer(layer)
            .service(service_fn(move |_req: Request<()>| async move {
                tracing::debug!("inside the handler");
                let mut res = Response::new(());
                *res.status_mut() = status;
                Ok::<_, Infallible>(res)
            }));
        let res = svc.oneshot(req).await.unwrap();
        (res, logs.lines())
    }

    fn layer() -> TraceLayer {
        TraceLayer::new(Arc::new(Scrubber::new(Pseudonymizer::new(b"k"))))
    }

    fn api_requests(lines: &[serde_json::Value]) -> Vec<&serde_json::Value> {
        lines
            .iter()
            .filter(|l| l["event"] == "api.request")
            .collect()
    }

    #[tokio::test]
    async fn continues_a_valid_traceparent_and_replaces_a_malformed_one() {
        const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (_guard, logs) = capture::json();
        let svc = ServiceBuilder::new().layer(layer()).service(service_fn({
            let seen = Arc::clone(&seen);
            move |req: Request<()>| {
                // What the handler (and an outbound call made in it) sees.
                let ext = req.extensions().get::<TraceContext>().cloned();
                seen.lock().unwrap().push((ext, TraceContext::current()));
                async { Ok::<_, Infallible>(Response::new(())) }
            }
        }));
        let send = |traceparent: Option<&str>| {
            let mut req = Request::get("/").body(()).unwrap();
            if let Some(value) = traceparent {
                req.headers_mut()
                    .insert("traceparent", value.parse().unwrap());
            }
            svc.clone().oneshot(req)
        };
        send(Some(PARENT)).await.unwrap();
        // Not trusted: a trace of its own.
        let untrusting = ServiceBuilder::new()
            .layer(layer().trust_traceparent(false))
            .service(service_fn(|_req: Request<()>| async {
                Ok::<_, Infallible>(Response::new(()))
            }));
        let mut req = Request::get("/").body(()).unwrap();
        req.headers_mut()
            .insert("traceparent", PARENT.parse().unwrap());
        untrusting.oneshot(req).await.unwrap();
        let malformed = "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01";
        send(Some(malformed)).await.unwrap();
        send(None).await.unwrap();

        let lines = logs.lines();
        let mut events = api_requests(&lines);
        assert_eq!(events.len(), 4);
        let untrusted = events.remove(1);
        assert_ne!(untrusted["trace_id"], "0af7651916cd43dd8448eb211c80319c");
        let ids = |e: &serde_json::Value| {
            (
                e["trace_id"].as_str().unwrap().to_owned(),
                e["span_id"].as_str().unwrap().to_owned(),
            )
        };
        // The caller's trace, a span of this request's own.
        let (trace, span) = ids(events[0]);
        assert_eq!(trace, "0af7651916cd43dd8448eb211c80319c");
        assert_ne!(span, "b7ad6b7169203331");
        assert_eq!(span.len(), 16);
        // Malformed (upper case): a fresh trace, not the header's.
        let (fresh, _) = ids(events[1]);
        assert_ne!(fresh.to_lowercase(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(fresh.len(), 32);
        assert!(
            fresh
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        let (none, _) = ids(events[2]);
        assert_ne!(none, fresh);

        let seen = seen.lock().unwrap();
        let (ext, current) = &seen[0];
        let ext = ext.as_ref().expect("the context in the extensions");
        assert_eq!(ext.trace_id().to_string(), trace);
        assert_eq!(ext.span_id().to_string(), span);
        assert_eq!(current.as_ref(), Some(ext), "current while handled");
        assert!(TraceContext::current().is_none(), "and not after");
    }

    #[tokio::test]
    async fn pii_in_path_query_and_headers_never_reaches_the_log() {
        let mut req = Request::get(
            "/api/users/ann@example.com/invite?email=bob%40example.org&token=s3cr3tT0ken&page=2",
        )
        .header(
            "authorization",
            "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1LTEifQ.c2lnbmF0dXJl",
        )
        .header("cookie", "session=abcdef123456")
        .header("user-agent", "curl/8.5 (contact carol@example.net)")
        .header("x-tenant", "acme")
        .body(())
        .unwrap();
        req.extensions_mut()
            .insert(ClientIp::new("203.0.113.77".parse().unwrap()));
        let layer = layer().headers([
            HeaderName::from_static("x-tenant"),
            HeaderName::from_static("authorization"),
        ]);
        let (_, lines) = run(layer, req, StatusCode::OK).await;
        let all = serde_json::to_string(&lines).unwrap();
        for leaked in [
            "ann@example.com",
            "bob%40example.org",
            "s3cr3tT0ken",
            "eyJhbGci",
            "abcdef123456",
            "carol@",
            "203.0.113.77",
        ] {
            assert!(!all.contains(leaked), "{leaked} in {all}");
        }
        let events = api_requests(&lines);
        assert_eq!(events.len(), 1, "exactly one api.request per request");
        let e = events[0];
        assert_eq!(e["http.route"], "unmatched");
        assert_eq!(e["client.address"], "203.0.113.0/24");
        assert_eq!(e["http.response.status_code"], 200);
        assert!(e["url.query"].as_str().unwrap().contains("page=2"));
        assert_eq!(
            e["http.request.headers"], "x-tenant=acme",
            "authorization is never logged"
        );
        assert_eq!(e["level"], "INFO");
    }

    #[tokio::test]
    async fn no_credential_header_is_logged_even_when_allow_listed() {
        // Values shaped like nothing the scrubber knows: only the header
        // rule keeps them out.
        let credentials = [
            ("authorization", "Digest plainvalue1"),
            ("proxy-authorization", "Basic plainvalue2"),
            ("cookie", "sid=plainvalue3; theme=dark"),
            ("set-cookie", "sid=plainvalue4; Path=/; HttpOnly"),
            ("x-api-key", "plainvalue5"),
            ("x-auth-token", "plainvalue6"),
            ("x-csrf-token", "plainvalue7"),
        ];
        let mut req = Request::get("/api/me").header("x-tenant", "acme");
        for (name, value) in credentials {
            req = req.header(name, value);
        }
        let layer = layer().headers(
            credentials
                .iter()
                .map(|(name, _)| HeaderName::from_static(name))
                .chain([HeaderName::from_static("x-tenant")]),
        );
        let (_, lines) = run(layer, req.body(()).unwrap(), StatusCode::OK).await;
        let all = serde_json::to_string(&lines).unwrap();
        for (name, value) in credentials {
            let secret = value
                .split(['=', ' ', ';'])
                .find(|p| p.starts_with("plainvalue"));
            assert!(!all.contains(secret.unwrap()), "{name} logged: {all}");
        }
        assert_eq!(
            api_requests(&lines)[0]["http.request.headers"],
            "x-tenant=acme"
        );
    }

    #[tokio::test]
    async fn level_follows_the_status() {
        for (status, level) in [
            (StatusCode::NOT_MODIFIED, "INFO"),
            (StatusCode::NOT_FOUND, "WARN"),
            (StatusCode::BAD_GATEWAY, "ERROR"),
        ] {
            let (_, lines) = run(layer(), Request::new(()), status).await;
            let events = api_requests(&lines);
            assert_eq!(events.len(), 1);
            assert_eq!(events[0]["level"], level, "{status}");
            assert_eq!(events[0]["http.response.status_code"], status.as_u16());
        }
        let quiet = layer().levels(Level::DEBUG, Level::INFO, Level::WARN);
        let (_, lines) = run(quiet, Request::new(()), StatusCode::NOT_FOUND).await;
        assert_eq!(api_requests(&lines)[0]["level"], "INFO");
    }

    #[tokio::test]
    async fn the_event_carries_the_request_id_the_client_gets() {
        let req = Request::get("/x")
            .header("x-request-id", "client-chosen.id-1")
            .body(())
            .unwrap();
        let (res, lines) = run(layer(), req, StatusCode::OK).await;
        assert_eq!(res.headers()["x-request-id"], "client-chosen.id-1");
        assert_eq!(api_requests(&lines)[0]["request_id"], "client-chosen.id-1");

        let req = Request::get("/x")
            .header("x-request-id", "has space; and <script>")
            .body(())
            .unwrap();
        let (res, lines) = run(layer(), req, StatusCode::OK).await;
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(id.len(), 36, "a malformed id is replaced");
        assert_eq!(api_requests(&lines)[0]["request_id"], id.as_str());
    }

    #[tokio::test]
    async fn the_caller_appears_as_a_pseudonym_only() {
        let (_guard, logs) = capture::json();
        // Stands in for authentication: fills the slot as auth-layer does.
        let svc = layer().layer(service_fn(|req: Request<()>| async move {
            let slot = req.extensions().get::<CallerSlot>().unwrap();
            slot.set_pseudonym(Pseudonymizer::new(b"k").user("user-42"));
            Ok::<_, Infallible>(Response::new(()))
        }));
        svc.oneshot(Request::new(())).await.unwrap();
        let out = logs.text();
        let line = logs.lines().pop().unwrap();
        assert_eq!(
            line["enduser.pseudo.id"],
            Pseudonymizer::new(b"k").user("user-42")
        );
        assert!(!out.contains("user-42"));
    }

    #[tokio::test]
    async fn a_cancelled_request_still_gets_its_one_event() {
        let (_guard, logs) = capture::json();
        let mut svc = layer().layer(service_fn(|_req: Request<()>| {
            std::future::pending::<Result<Response<()>, Infallible>>()
        }));
        let fut = tower::Service::call(&mut svc, Request::new(()));
        drop(fut); // the client went away
        let out = logs.text();
        let events = logs.lines();
        let requests: Vec<_> = events
            .iter()
            .filter(|e| e["event"] == "api.request")
            .collect();
        assert_eq!(requests.len(), 1, "{out}");
        assert_eq!(requests[0]["error.type"], "cancelled");
        assert!(requests[0].get("http.response.status_code").is_none());
    }

    #[tokio::test]
    async fn handler_events_happen_inside_the_request_span() {
        let (_, lines) = run(
            layer(),
            Request::get("/x").body(()).unwrap(),
            StatusCode::OK,
        )
        .await;
        let inside = lines
            .iter()
            .find(|l| l["message"] == "inside the handler")
            .expect("handler event");
        assert_eq!(inside["span"]["name"], "api.request");
    }
}

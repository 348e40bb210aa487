//! Webhook signature verification: HMAC-SHA256, timestamped, replay-protected.
//!
//! [`VerifyWebhookLayer`] buffers the body (up to a cap), checks the
//! signature header against every configured secret (so secrets rotate
//! without downtime), refuses timestamps outside the tolerance window and
//! signatures it has already accepted, and passes the **intact** body on to
//! the handler. Comparison is constant-time. Failures are a 400 problem+json
//! (413 over the size cap) and a `security.webhook_rejected` event.
//!
//! The header format is a [`SignatureScheme`]: [`Stripe`]
//! (`Stripe-Signature: t=…,v1=…`, signed `"{t}.{body}"`) and [`GitHub`]
//! (`X-Hub-Signature-256: sha256=…`, signed body, no timestamp) are built in.
//!
//! # Example
//!
//! ```
//! use auth_layer::VerifyWebhookLayer;
//! use bytes::Bytes;
//! use guardrail_core::Secret;
//! use http_body_util::Full;
//! use http::{Request, Response, StatusCode};
//! use hmac::{Hmac, Mac};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(VerifyWebhookLayer::stripe([Secret::new("whsec_test")]))
//!     .service(service_fn(|req: Request<Full<Bytes>>| async move {
//!         Ok::<_, std::convert::Infallible>(Response::new(req.into_body()))
//!     }));
//!
//! let body = r#"{"type":"invoice.paid"}"#;
//! let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
//! let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"whsec_test").unwrap();
//! mac.update(format!("{t}.{body}").as_bytes());
//! let sig = hex::encode(mac.finalize().into_bytes());
//!
//! let req = Request::post("/api/webhooks/stripe")
//!     .header("stripe-signature", format!("t={t},v1={sig}"))
//!     .body(Full::new(Bytes::from(body))).unwrap();
//! let res = svc.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//!
//! let forged = Request::post("/api/webhooks/stripe")
//!     .header("stripe-signature", format!("t={t},v1={}", "00".repeat(32)))
//!     .body(Full::new(Bytes::from(body))).unwrap();
//! assert_eq!(svc.oneshot(forged).await.unwrap().status(), StatusCode::BAD_REQUEST);
//! # }
//! ```

use std::{
    collections::{HashSet, VecDeque},
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, ready},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use guardrail_core::{
    BoxDecision, EventName, GuardFuture, Pass, Problem, RejectionBody, Secret, emit,
};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use pin_project_lite::pin_project;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tower_layer::Layer;
use tower_service::Service;

type HmacSha256 = Hmac<Sha256>;

/// The default body cap: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// The default timestamp tolerance: 5 minutes.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
/// The default number of remembered signatures.
pub const DEFAULT_REPLAY_CAPACITY: usize = 10_000;

const MAX_SIGNATURES: usize = 16;

/// Why a webhook was refused; the reason code of its event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WebhookError {
    /// No signature header.
    MissingSignature,
    /// A signature header that can't be parsed (or several).
    MalformedSignature,
    /// The timestamp is outside the tolerance window.
    StaleTimestamp,
    /// No signature matches any secret.
    BadSignature,
    /// This signature was accepted before.
    Replayed,
    /// The body exceeds the cap.
    TooLarge,
    /// The body could not be read.
    UnreadableBody,
}

impl WebhookError {
    /// The stable reason code.
    pub fn reason(self) -> &'static str {
        match self {
            Self::MissingSignature => "missing_signature",
            Self::MalformedSignature => "malformed_signature",
            Self::StaleTimestamp => "stale_timestamp",
            Self::BadSignature => "bad_signature",
            Self::Replayed => "replayed",
            Self::TooLarge => "too_large",
            Self::UnreadableBody => "unreadable_body",
        }
    }

    fn problem(self, extensions: &http::Extensions) -> Problem {
        emit!(
            WARN,
            EventName::SECURITY_WEBHOOK_REJECTED,
            from = extensions,
            reason = self.reason(),
        );
        let problem = match self {
            Self::TooLarge => {
                Problem::payload_too_large().detail("The webhook payload is too large.")
            }
            _ => Problem::bad_request().detail("Webhook signature verification failed."),
        };
        problem.request_id_from(extensions)
    }
}

/// The signed parts of a delivery, read from its headers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignatureHeader {
    /// The signed timestamp (Unix seconds), if the scheme has one.
    pub timestamp: Option<i64>,
    /// Candidate signatures; one must match.
    pub signatures: Vec<Vec<u8>>,
}

/// A webhook signature header format.
pub trait SignatureScheme: Send + Sync + 'static {
    /// Reads the timestamp and signatures from the headers.
    fn read(&self, headers: &HeaderMap) -> Result<SignatureHeader, WebhookError>;
    /// Feeds the signed content into `mac`.
    fn signed_content(&self, timestamp: Option<i64>, body: &[u8], mac: &mut HmacSha256);
}

fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<&'a str, WebhookError> {
    guardrail_core::single_header(headers, name)
        .map_err(|_| WebhookError::MalformedSignature)?
        .ok_or(WebhookError::MissingSignature)?
        .to_str()
        .map_err(|_| WebhookError::MalformedSignature)
}

fn sha256_hex(text: &str) -> Result<Vec<u8>, WebhookError> {
    let bytes = hex::decode(text.trim()).map_err(|_| WebhookError::MalformedSignature)?;
    if bytes.len() == 32 {
        Ok(bytes)
    } else {
        Err(WebhookError::MalformedSignature)
    }
}

/// Stripe's `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`, over
/// `"{t}.{body}"`. Other schemes (`v0`) are ignored.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stripe;

impl SignatureScheme for Stripe {
    fn read(&self, headers: &HeaderMap) -> Result<SignatureHeader, WebhookError> {
        let value = single(headers, &HeaderName::from_static("stripe-signature"))?;
        let mut out = SignatureHeader::default();
        for item in value.split(',') {
            let (key, val) = item
                .trim()
                .split_once('=')
                .ok_or(WebhookError::MalformedSignature)?;
            match key {
                "t" if out.timestamp.is_none() => {
                    out.timestamp =
                        Some(val.parse().map_err(|_| WebhookError::MalformedSignature)?);
                }
                "t" => return Err(WebhookError::MalformedSignature),
                "v1" if out.signatures.len() < MAX_SIGNATURES => {
                    out.signatures.push(sha256_hex(val)?)
                }
                "v1" => return Err(WebhookError::MalformedSignature),
                _ => {}
            }
        }
        if out.timestamp.is_none() || out.signatures.is_empty() {
            return Err(WebhookError::MalformedSignature);
        }
        Ok(out)
    }

    fn signed_content(&self, timestamp: Option<i64>, body: &[u8], mac: &mut HmacSha256) {
        mac.update(timestamp.unwrap_or_default().to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
    }
}

/// GitHub's `X-Hub-Signature-256: sha256=<hex>`, over the body. GitHub
/// signs no timestamp, so only the replay cache protects against replays.
#[derive(Clone, Copy, Debug, Default)]
pub struct GitHub;

impl SignatureScheme for GitHub {
    fn read(&self, headers: &HeaderMap) -> Result<SignatureHeader, WebhookError> {
        let value = single(headers, &HeaderName::from_static("x-hub-signature-256"))?;
        let hex = value
            .strip_prefix("sha256=")
            .ok_or(WebhookError::MalformedSignature)?;
        Ok(SignatureHeader {
            timestamp: None,
            signatures: vec![sha256_hex(hex)?],
        })
    }

    fn signed_content(&self, _timestamp: Option<i64>, body: &[u8], mac: &mut HmacSha256) {
        mac.update(body);
    }
}

/// Signatures already accepted, oldest first, bounded.
#[derive(Debug, Default)]
struct ReplayCache {
    seen: HashSet<Vec<u8>>,
    order: VecDeque<Vec<u8>>,
}

impl ReplayCache {
    fn remove(&mut self, id: &[u8]) {
        if self.seen.remove(id) {
            self.order.retain(|x| x.as_slice() != id);
        }
    }

    /// Records `sig`; `false` if it was already there.
    fn insert(&mut self, sig: &[u8], capacity: usize) -> bool {
        if self.seen.contains(sig) {
            return false;
        }
        while self.order.len() >= capacity.max(1) {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(sig.to_vec());
        self.order.push_back(sig.to_vec());
        true
    }
}

/// Layer that applies [`VerifyWebhook`].
pub struct VerifyWebhookLayer<Sch = Stripe> {
    shared: Arc<Shared<Sch>>,
}

struct Shared<Sch> {
    scheme: Arc<Sch>,
    secrets: Vec<HmacSha256>,
    tolerance: Duration,
    max_body_bytes: usize,
    replay_capacity: usize,
    /// Shared by every copy of the layer, whatever its settings.
    replay: Arc<Mutex<ReplayCache>>,
}

impl<Sch> Clone for Shared<Sch> {
    fn clone(&self) -> Self {
        Self {
            scheme: Arc::clone(&self.scheme),
            secrets: self.secrets.clone(),
            tolerance: self.tolerance,
            max_body_bytes: self.max_body_bytes,
            replay_capacity: self.replay_capacity,
            replay: Arc::clone(&self.replay),
        }
    }
}

impl<Sch> Clone for VerifyWebhookLayer<Sch> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<Sch: fmt::Debug> fmt::Debug for VerifyWebhookLayer<Sch> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyWebhookLayer")
            .field("scheme", &self.shared.scheme)
            .field(
                "secrets",
                &format_args!("[{} redacted]", self.shared.secrets.len()),
            )
            .field("tolerance", &self.shared.tolerance)
            .field("max_body_bytes", &self.shared.max_body_bytes)
            .field("replay_capacity", &self.shared.replay_capacity)
            .finish()
    }
}

impl VerifyWebhookLayer<Stripe> {
    /// Verifies Stripe deliveries against any of `secrets`.
    pub fn stripe(secrets: impl IntoIterator<Item = Secret>) -> Self {
        Self::new(Stripe, secrets)
    }
}

impl VerifyWebhookLayer<GitHub> {
    /// Verifies GitHub deliveries against any of `secrets`.
    pub fn github(secrets: impl IntoIterator<Item = Secret>) -> Self {
        Self::new(GitHub, secrets)
    }
}

impl<Sch: SignatureScheme> VerifyWebhookLayer<Sch> {
    /// Verifies with `scheme` against any of `secrets` (none: every
    /// delivery is refused).
    pub fn new(scheme: Sch, secrets: impl IntoIterator<Item = Secret>) -> Self {
        let secrets = secrets
            .into_iter()
            .filter(|s| !s.expose().is_empty())
            .filter_map(|s| HmacSha256::new_from_slice(s.expose()).ok())
            .collect();
        Self {
            shared: Arc::new(Shared {
                scheme: Arc::new(scheme),
                secrets,
                tolerance: DEFAULT_TOLERANCE,
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
                replay_capacity: DEFAULT_REPLAY_CAPACITY,
                replay: Arc::new(Mutex::new(ReplayCache::default())),
            }),
        }
    }

    fn shared_mut(&mut self) -> &mut Shared<Sch> {
        // Copied if this layer was cloned before being configured, so a
        // setting never silently fails to apply.
        Arc::make_mut(&mut self.shared)
    }

    /// How far a timestamp may be from now (default 5 minutes).
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        let s = self.shared_mut();
        s.tolerance = tolerance;
        self
    }

    /// The largest accepted body (default 1 MiB).
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        let s = self.shared_mut();
        s.max_body_bytes = max;
        self
    }

    /// How many accepted signatures are remembered to refuse replays
    /// (default 10 000).
    pub fn replay_capacity(mut self, capacity: usize) -> Self {
        let s = self.shared_mut();
        s.replay_capacity = capacity.max(1);
        self
    }
}

impl<Sch: SignatureScheme> Shared<Sch> {
    /// Verifies and records the delivery; returns its replay id.
    fn verify(&self, header: &SignatureHeader, body: &[u8]) -> Result<[u8; 32], WebhookError> {
        if let Some(t) = header.timestamp {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            if now.abs_diff(t) > self.tolerance.as_secs() {
                return Err(WebhookError::StaleTimestamp);
            }
        }
        let matched = self.secrets.iter().find_map(|keyed| {
            let mut mac = keyed.clone();
            self.scheme.signed_content(header.timestamp, body, &mut mac);
            let expected = mac.finalize().into_bytes();
            header
                .signatures
                .iter()
                .find(|sig| bool::from(expected[..].ct_eq(&sig[..])))
        });
        if matched.is_none() {
            return Err(WebhookError::BadSignature);
        }
        // Remember the delivery, not the signature that matched: while
        // secrets rotate one delivery carries several valid signatures.
        let id = delivery_id(header.timestamp, body);
        let mut replay = self.replay.lock().unwrap_or_else(|e| e.into_inner());
        if replay.insert(&id, self.replay_capacity) {
            Ok(id)
        } else {
            Err(WebhookError::Replayed)
        }
    }

    /// Forgets a delivery the handler did not accept, so its retry is not a
    /// "replay".
    fn forget(&self, id: &[u8; 32]) {
        let mut replay = self.replay.lock().unwrap_or_else(|e| e.into_inner());
        replay.remove(id);
    }
}

/// What identifies one delivery whatever secret signed it.
fn delivery_id(timestamp: Option<i64>, body: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = Sha256::new();
    if let Some(t) = timestamp {
        h.update(t.to_string().as_bytes());
    }
    h.update(b".");
    h.update(body);
    h.finalize().into()
}

impl<S, Sch> Layer<S> for VerifyWebhookLayer<Sch> {
    type Service = VerifyWebhook<S, Sch>;

    fn layer(&self, inner: S) -> Self::Service {
        VerifyWebhook {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Middleware that verifies webhook signatures; see [`VerifyWebhookLayer`].
pub struct VerifyWebhook<S, Sch = Stripe> {
    inner: S,
    shared: Arc<Shared<Sch>>,
}

impl<S: Clone, Sch> Clone for VerifyWebhook<S, Sch> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, Sch: fmt::Debug> fmt::Debug for VerifyWebhook<S, Sch> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyWebhook")
            .field("inner", &self.inner)
            .field("scheme", &self.shared.scheme)
            .finish_non_exhaustive()
    }
}

impl<S, Sch> VerifyWebhook<S, Sch> {
    /// Gets a reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Gets a mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// Response future for [`VerifyWebhook`]: core's one guard future. The
/// body must be read before the decision, so the decision is boxed;
/// webhooks are not a hot path.
pub type ResponseFuture<F, Sch> = GuardFuture<Delivered<F, Sch>, BoxDecision<Delivered<F, Sch>>>;

pin_project! {
    /// The inner service's response future for a verified delivery: a
    /// delivery the service did not accept (not a 2xx) is forgotten, so the
    /// sender's retry is not refused as a replay.
    pub struct Delivered<F, Sch> {
        #[pin]
        future: F,
        id: [u8; 32],
        shared: Arc<Shared<Sch>>,
    }
}

impl<F, Sch> fmt::Debug for Delivered<F, Sch> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivered").finish_non_exhaustive()
    }
}

impl<F, Sch, B, E> Future for Delivered<F, Sch>
where
    F: Future<Output = Result<Response<B>, E>>,
    Sch: SignatureScheme,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.future.poll(cx));
        if !result.as_ref().is_ok_and(|res| res.status().is_success()) {
            this.shared.forget(this.id);
        }
        Poll::Ready(result)
    }
}

impl<S, Sch, ReqBody, ResBody> Service<Request<ReqBody>> for VerifyWebhook<S, Sch>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    Sch: SignatureScheme,
    ReqBody: Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResBody: RejectionBody,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, Sch>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    // The rejection goes straight into the guard future's one box.
    #[allow(clippy::result_large_err)]
    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        GuardFuture::pending(Box::pin(async move {
            let (parts, body) = req.into_parts();
            let reject = |e: WebhookError| Err(e.problem(&parts.extensions));
            let header = match shared.scheme.read(&parts.headers) {
                Ok(header) => header,
                Err(e) => return reject(e),
            };
            let bytes = match Limited::new(body, shared.max_body_bytes).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                    return reject(WebhookError::TooLarge);
                }
                Err(_) => return reject(WebhookError::UnreadableBody),
            };
            let id = match shared.verify(&header, &bytes) {
                Ok(id) => id,
                Err(e) => return reject(e),
            };
            let future = inner.call(Request::from_parts(parts, ReqBody::from(bytes)));
            Ok(Pass::new(Delivered { future, id, shared }))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use std::convert::Infallible;
    use tower::{ServiceExt, service_fn};

    fn now() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn stripe_sig(secret: &[u8], t: i64, body: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(secret).unwrap();
        mac.update(format!("{t}.{body}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// A layer-wrapped echo service; returns (status, body the handler saw).
    async fn deliver(
        layer: &VerifyWebhookLayer<impl SignatureScheme>,
        header: (&str, String),
        body: &str,
    ) -> (u16, String) {
        let svc = layer.layer(service_fn(|req: Request<Full<Bytes>>| async move {
            Ok::<_, Infallible>(Response::new(req.into_body()))
        }));
        let req = Request::post("/hook")
            .header(header.0, header.1)
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let res = svc.oneshot(req).await.unwrap();
        let status = res.status().as_u16();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    const BODY: &str = r#"{"id":"evt_1","type":"invoice.paid","data":{"amount":1200}}"#;

    #[tokio::test]
    async fn valid_signature_passes_the_body_intact() {
        let layer = VerifyWebhookLayer::stripe([Secret::new("whsec_a")]);
        let t = now();
        let (status, seen) = deliver(
            &layer,
            (
                "stripe-signature",
                format!("t={t},v1={}", stripe_sig(b"whsec_a", t, BODY)),
            ),
            BODY,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(seen, BODY);
    }

    #[tokio::test]
    async fn wrong_secret_is_rejected_with_problem() {
        let layer = VerifyWebhookLayer::stripe([Secret::new("whsec_a")]);
        let t = now();
        let (status, body) = deliver(
            &layer,
            (
                "stripe-signature",
                format!("t={t},v1={}", stripe_sig(b"whsec_b", t, BODY)),
            ),
            BODY,
        )
        .await;
        assert_eq!(status, 400);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["detail"], "Webhook signature verification failed.");
    }

    #[tokio::test]
    async fn timestamps_outside_tolerance_are_rejected_both_ways() {
        let layer = VerifyWebhookLayer::stripe([Secret::new("whsec_a")]);
        for t in [now() - 301, now() + 301] {
            let sig = stripe_sig(b"whsec_a", t, BODY);
            assert_eq!(
                deliver(
                    &layer,
                    ("stripe-signature", format!("t={t},v1={sig}")),
                    BODY
                )
                .await
                .0,
                400
            );
        }
        let t = now() - 290;
        let sig = stripe_sig(b"whsec_a", t, BODY);
        assert_eq!(
            deliver(
                &layer,
                ("stripe-signature", format!("t={t},v1={sig}")),
                BODY
            )
            .await
            .0,
            200
        );
    }

    #[tokio::test]
    async fn replayed_delivery_is_rejected() {
        let layer = VerifyWebhookLayer::stripe([Secret::new("whsec_a")]);
        let t = now();
        let header = format!("t={t},v1={}", stripe_sig(b"whsec_a", t, BODY));
        assert_eq!(
            deliver(&layer, ("stripe-signature", header.clone()), BODY)
                .await
                .0,
            200
        );
        assert_eq!(
            deliver(&layer, ("stripe-signature", header), BODY).await.0,
            400
        );
    }

    #[tokio::test]
    async fn rotated_secret_verifies_with_either_and_any_v1() {
        let layer =
            VerifyWebhookLayer::stripe([Secret::new("whsec_new"), Secret::new("whsec_old")]);
        let t = now();
        let old = stripe_sig(b"whsec_old", t, BODY);
        assert_eq!(
            deliver(
                &layer,
                ("stripe-signature", format!("t={t},v1={old}")),
                BODY
            )
            .await
            .0,
            200
        );
        // Stripe sends one v1 per active secret; one match is enough.
        let t = now() - 1;
        let new = stripe_sig(b"whsec_new", t, BODY);
        let junk = "ab".repeat(32);
        assert_eq!(
            deliver(
                &layer,
                (
                    "stripe-signature",
                    format!("t={t},v1={junk},v1={new},v0=xyz")
                ),
                BODY
            )
            .await
            .0,
            200
        );
    }

    #[tokio::test]
    async fn replay_with_the_other_rotated_signature_is_rejected() {
        let layer =
            VerifyWebhookLayer::stripe([Secret::new("whsec_new"), Secret::new("whsec_old")]);
        let t = now();
        let new = stripe_sig(b"whsec_new", t, BODY);
        let old = stripe_sig(b"whsec_old", t, BODY);
        let both = format!("t={t},v1={new},v1={old}");
        assert_eq!(
            deliver(&layer, ("stripe-signature", both), BODY).await.0,
            200
        );
        let old_only = format!("t={t},v1={old}");
        assert_eq!(
            deliver(&layer, ("stripe-signature", old_only), BODY)
                .await
                .0,
            400
        );
    }

    #[tokio::test]
    async fn delivery_the_handler_refused_can_be_retried() {
        let layer = VerifyWebhookLayer::stripe([Secret::new("whsec_a")]);
        let failing = layer.layer(service_fn(|_req: Request<Full<Bytes>>| async {
            let mut res = Response::new(Full::new(Bytes::new()));
            *res.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            Ok::<_, Infallible>(res)
        }));
        let t = now();
        let header = format!("t={t},v1={}", stripe_sig(b"whsec_a", t, BODY));
        let req = Request::post("/hook")
            .header("stripe-signature", header.clone())
            .body(Full::new(Bytes::from(BODY)))
            .unwrap();
        assert_eq!(failing.oneshot(req).await.unwrap().status(), 500);
        assert_eq!(
            deliver(&layer, ("stripe-signature", header), BODY).await.0,
            200,
            "the retry is accepted"
        );
    }

    #[tokio::test]
    async fn tampered_body_is_rejected() {
        let layer = VerifyWebhookLayer::stripe([Secret::new("whsec_a")]);
        let t = now();
        let sig = stripe_sig(b"whsec_a", t, BODY);
        let tampered = BODY.replace("1200", "1");
        assert_eq!(
            deliver(
                &layer,
                ("stripe-signature", format!("t={t},v1={sig}")),
                &tampered
            )
            .await
            .0,
            400
        );
    }

    #[tokio::test]
    async fn malformed_headers_are_rejected_not_panicking() {
        let layer = VerifyWebhookLayer::stripe([Secret::new("whsec_a")]);
        for header in [
            "",
            "t=",
            "v1=abc",
            "t=abc,v1=00",
            "t=1,t=2,v1=00",
            "garbage",
            "t=1,v1=zz",
            &format!("t={},v1=", now()),
        ] {
            assert_eq!(
                deliver(&layer, ("stripe-signature", header.to_owned()), BODY)
                    .await
                    .0,
                400,
                "{header:?}"
            );
        }
        assert_eq!(deliver(&layer, ("x-other", "1".into()), BODY).await.0, 400);
    }

    #[tokio::test]
    async fn oversized_body_is_413() {
        let layer = VerifyWebhookLayer::stripe([Secret::new("whsec_a")]).max_body_bytes(16);
        let t = now();
        let sig = stripe_sig(b"whsec_a", t, BODY);
        assert_eq!(
            deliver(
                &layer,
                ("stripe-signature", format!("t={t},v1={sig}")),
                BODY
            )
            .await
            .0,
            413
        );
    }

    #[tokio::test]
    async fn no_secrets_refuses_everything() {
        let layer = VerifyWebhookLayer::stripe([]);
        let t = now();
        let sig = stripe_sig(b"", t, BODY);
        assert_eq!(
            deliver(
                &layer,
                ("stripe-signature", format!("t={t},v1={sig}")),
                BODY
            )
            .await
            .0,
            400
        );
    }

    #[tokio::test]
    async fn github_scheme_verifies_body_signature() {
        let layer = VerifyWebhookLayer::github([Secret::new("gh-secret")]);
        let mut mac = HmacSha256::new_from_slice(b"gh-secret").unwrap();
        mac.update(BODY.as_bytes());
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(
            deliver(&layer, ("x-hub-signature-256", sig.clone()), BODY)
                .await
                .0,
            200
        );
        assert_eq!(
            deliver(&layer, ("x-hub-signature-256", sig), BODY).await.0,
            400,
            "replay"
        );
        assert_eq!(
            deliver(&layer, ("x-hub-signature-256", "sha1=00".into()), BODY)
                .await
                .0,
            400
        );
    }

    #[tokio::test]
    async fn settings_apply_to_a_cloned_layer_too() {
        let base = VerifyWebhookLayer::stripe([Secret::new("whsec_a")]);
        let strict = base.clone().tolerance(Duration::from_secs(10));
        let t = now() - 60;
        let header = format!("t={t},v1={}", stripe_sig(b"whsec_a", t, BODY));
        assert_eq!(
            deliver(&strict, ("stripe-signature", header.clone()), BODY)
                .await
                .0,
            400,
            "60 s old > 10 s"
        );
        assert_eq!(
            deliver(&base, ("stripe-signature", header), BODY).await.0,
            200,
            "the original keeps 5 min"
        );
    }

    #[test]
    fn replay_cache_is_bounded() {
        let mut cache = ReplayCache::default();
        for i in 0..100u32 {
            assert!(cache.insert(&i.to_be_bytes(), 10));
        }
        assert_eq!(cache.order.len(), 10);
        assert_eq!(cache.seen.len(), 10);
        assert!(!cache.insert(&99u32.to_be_bytes(), 10));
    }
}

//! [`VerifyWebhook`]: reads the body, verifies it, hands it on intact.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use guardrail_core::{GuardFuture, Pass, RejectionBody};
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tower_service::Service;

use super::{
    Delivered, ResponseFuture, SignatureScheme, Stripe, VerifyWebhookLayer, WebhookError,
    layer::Shared,
};
use tower_layer::Layer;

/// Middleware that verifies webhook signatures; see
/// [`VerifyWebhookLayer`](super::VerifyWebhookLayer).
pub struct VerifyWebhook<S, Sch = Stripe> {
    pub(super) inner: S,
    pub(super) shared: Arc<Shared<Sch>>,
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
    /// Wraps `inner`, verifying deliveries as `verifier` says (a configured
    /// [`VerifyWebhookLayer`], e.g. `VerifyWebhookLayer::stripe(secrets)`).
    pub fn new(inner: S, verifier: VerifyWebhookLayer<Sch>) -> Self {
        verifier.layer(inner)
    }

    /// The layer that applies `verifier` (the same value: a
    /// [`VerifyWebhookLayer`] is the verifier).
    pub fn layer(verifier: VerifyWebhookLayer<Sch>) -> VerifyWebhookLayer<Sch> {
        verifier
    }

    guardrail_core::inner_service_accessors!();
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
            // The request's limit (the body limit layer's, per route) and
            // this layer's own, whichever is smaller.
            let request_limit = parts
                .extensions
                .get::<guardrail_core::BodyLimit>()
                .map(guardrail_core::BodyLimit::max_len);
            let max = VerifyWebhookLayer::body_limit_for(&shared, request_limit);
            let bytes = match Limited::new(body, max).collect().await {
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
            let in_shared_store = match shared.record(&id).await {
                Ok(in_shared_store) => in_shared_store,
                Err(e) => return reject(e),
            };
            let future = inner.call(Request::from_parts(parts, ReqBody::from(bytes)));
            Ok(Pass::new(Delivered {
                future,
                id,
                in_shared_store,
                shared,
            }))
        }))
    }
}

//! The response future of [`VerifyWebhook`](super::VerifyWebhook).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use guardrail_core::{BoxDecision, GuardFuture};
use http::Response;
use pin_project_lite::pin_project;

use super::{SignatureScheme, layer::Shared};

/// Response future for [`VerifyWebhook`](super::VerifyWebhook): core's one
/// guard future. The body must be read before the decision, so the decision
/// is boxed; webhooks are not a hot path.
pub type ResponseFuture<F, Sch> = GuardFuture<Delivered<F, Sch>, BoxDecision<Delivered<F, Sch>>>;

pin_project! {
    /// The inner service's response future for a verified delivery: a
    /// delivery the service did not accept (not a 2xx) is forgotten, so the
    /// sender's retry is not refused as a replay.
    pub struct Delivered<F, Sch> {
        #[pin]
        pub(super) future: F,
        pub(super) id: [u8; 32],
        pub(super) in_shared_store: bool,
        pub(super) shared: Arc<Shared<Sch>>,
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
            this.shared.forget(this.id, *this.in_shared_store);
        }
        Poll::Ready(result)
    }
}

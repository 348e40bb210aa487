//! The response future of [`RateLimit`](super::RateLimit): core's guard
//! future, with the Redis decision as its pending state.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use guardrail_core::{GuardFuture, Pass, PendingDecision, Problem};
use http::Request;
use tower_service::Service;

use super::decide::Verdict;

/// The verdict of every applicable policy, decided on Redis.
pub(super) type Decide = Pin<Box<dyn Future<Output = Verdict> + Send>>;

/// Response future for [`RateLimit`](super::RateLimit): core's one guard
/// future, with the inner future and its headers flat (an allowed request,
/// the common case) and waiting on Redis or rejecting behind one box.
pub type ResponseFuture<S, ReqBody> =
    GuardFuture<<S as Service<Request<ReqBody>>>::Future, Deciding<S, ReqBody>>;

/// The decision of [`RateLimit`](super::RateLimit) while Redis answers; the
/// inner service (already ready) and the request wait with it.
pub struct Deciding<S, ReqBody> {
    pub(super) decide: Decide,
    pub(super) pending: Option<(S, Request<ReqBody>)>,
}

impl<S, ReqBody> fmt::Debug for Deciding<S, ReqBody> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deciding").finish_non_exhaustive()
    }
}

impl<S, ReqBody> PendingDecision for Deciding<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    type Future = S::Future;

    fn poll_decide(&mut self, cx: &mut Context<'_>) -> Poll<Result<Pass<S::Future>, Problem>> {
        let verdict = ready!(self.decide.as_mut().poll(cx));
        let Some((mut inner, req)) = self.pending.take() else {
            return Poll::Ready(Err(Problem::internal_error()));
        };
        Poll::Ready(if verdict.denied {
            Err(verdict.problem(req.extensions()))
        } else {
            Ok(Pass {
                future: inner.call(req),
                headers: verdict.headers,
            })
        })
    }
}

//! The one response future of every guardrail that can refuse a request:
//! the inner service's response (optionally with headers added), or the
//! guard's own problem+json rejection, written into the inner body type.
//!
//! Authentication, level requirements, webhook verification and rate
//! limiting all return [`GuardFuture`]; the inbound guards still to come
//! (flag gate, deadline, body limit, load shedding) will too. A guard decides
//! in `call` when it can ([`GuardFuture::pass`], [`GuardFuture::reject`]);
//! when it has to wait first (Redis, a key fetch, the request body) it hands
//! over a [`PendingDecision`] ([`GuardFuture::pending`]), which resolves to
//! the inner future or a rejection.
//!
//! Outbound layers (retry, circuit breaker, bulkhead on a client) are the
//! one exception: they don't answer for the service, so they return a
//! typed error that the caller maps to a problem response (504, 502, or
//! 503 with `Retry-After`).
//!
//! Laid out for the common case, a request that passes: the inner future
//! sits flat in the guard's future and is polled straight into its output,
//! with no body wrapper and no copy of the response. Waiting and rejecting
//! live behind one box.
//!
//! # Example
//!
//! ```
//! use guardrail_core::{GuardFuture, Problem};
//! use http::{HeaderName, HeaderValue, Response, StatusCode};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! type Inner = std::future::Ready<Result<Response<String>, ()>>;
//! let ok: Inner = std::future::ready(Ok(Response::new(String::from("hi"))));
//! let pass = GuardFuture::<Inner>::pass(ok);
//! assert_eq!(pass.await.unwrap().body(), "hi");
//!
//! let ok: Inner = std::future::ready(Ok(Response::new(String::from("hi"))));
//! let quota = vec![(HeaderName::from_static("ratelimit"), HeaderValue::from_static("r=1"))];
//! let res = GuardFuture::<Inner>::pass_with_headers(ok, quota).await.unwrap();
//! assert_eq!(res.headers()["ratelimit"], "r=1");
//!
//! let reject = GuardFuture::<Inner>::reject(Problem::forbidden());
//! let res = reject.await.unwrap();
//! assert_eq!(res.status(), StatusCode::FORBIDDEN);
//! assert!(res.body().contains("\"status\":403"));
//! # }
//! ```

use std::{
    convert::Infallible,
    fmt,
    future::Future,
    marker::PhantomData,
    mem::ManuallyDrop,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::{HeaderName, HeaderValue, Response};
use pin_project_lite::pin_project;

use crate::{Problem, RejectionBody};

/// Headers a guard adds to a response that passes (a rate limiter's quota).
pub type PassHeaders = Vec<(HeaderName, HeaderValue)>;

/// What a [`PendingDecision`] resolves to when the request may go on: the
/// inner service's response future, and headers to add to its response.
#[derive(Debug)]
pub struct Pass<F> {
    /// The inner service's response future (the inner service was called).
    pub future: F,
    /// Headers added to the response when it arrives.
    pub headers: PassHeaders,
}

impl<F> Pass<F> {
    /// The inner future, with no headers to add.
    pub fn new(future: F) -> Self {
        Self {
            future,
            headers: PassHeaders::new(),
        }
    }
}

/// A decision a guard must wait for (Redis, a key fetch, reading the body)
/// before the request may reach the inner service.
///
/// It is polled through `&mut self` inside the guard future's box, so an
/// implementation needs no pinning of its own: a future it waits on is kept
/// boxed (`Pin<Box<dyn Future>>`), and the ready inner service and the
/// request wait in plain fields until the decision calls the inner service.
pub trait PendingDecision {
    /// The inner service's response future.
    type Future;

    /// Polls the decision: `Ok` once the inner service has been called,
    /// `Err` with the rejection. Not polled again after it is ready.
    fn poll_decide(&mut self, cx: &mut Context<'_>) -> Poll<Result<Pass<Self::Future>, Problem>>;
}

/// A boxed decision future, for guards whose decision is an `async` block
/// off the hot path (webhook verification reads the body first).
pub type BoxDecision<F> = Pin<Box<dyn Future<Output = Result<Pass<F>, Problem>> + Send>>;

impl<F> PendingDecision for BoxDecision<F> {
    type Future = F;

    fn poll_decide(&mut self, cx: &mut Context<'_>) -> Poll<Result<Pass<F>, Problem>> {
        self.as_mut().poll(cx)
    }
}

/// The [`PendingDecision`] of a guard that always decides in `call`: it
/// cannot be built.
pub struct Decided<F> {
    never: Infallible,
    _future: PhantomData<fn() -> F>,
}

impl<F> fmt::Debug for Decided<F> {
    fn fmt(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.never {}
    }
}

impl<F> PendingDecision for Decided<F> {
    type Future = F;

    fn poll_decide(&mut self, _cx: &mut Context<'_>) -> Poll<Result<Pass<F>, Problem>> {
        match self.never {}
    }
}

pin_project! {
    /// Response future of every guardrail layer that can refuse a request.
    ///
    /// `F` is the inner service's response future; `P` the decision a
    /// guard may wait for (none: [`Decided`]). Its output is the inner
    /// service's response type: a rejection is written into the inner body
    /// type through [`RejectionBody`], and the error is the inner service's.
    pub struct GuardFuture<F, P = Decided<F>> {
        #[pin]
        future: Option<F>,
        headers: HeaderList,
        slow: Option<Box<Slow<P>>>,
    }
}

/// The states of a request that is not simply passed on.
// Always boxed (see `GuardFuture::slow`): variant sizes don't matter.
#[allow(clippy::large_enum_variant)]
enum Slow<P> {
    Deciding(P),
    Reject(Problem),
    Done,
}

impl<F, P> GuardFuture<F, P> {
    /// Passes the inner service's response through as it is.
    #[inline(always)]
    pub fn pass(future: F) -> Self {
        Self::pass_with_headers(future, PassHeaders::new())
    }

    /// Passes the inner service's response through, adding `headers`.
    #[inline(always)]
    pub fn pass_with_headers(future: F, headers: PassHeaders) -> Self {
        Self {
            future: Some(future),
            headers: HeaderList::new(headers),
            slow: None,
        }
    }

    /// Answers with `problem` instead of calling the inner service.
    pub fn reject(problem: Problem) -> Self {
        Self::slow(Slow::Reject(problem))
    }

    /// Waits for `decision`, then passes or rejects as it says.
    pub fn pending(decision: P) -> Self {
        Self::slow(Slow::Deciding(decision))
    }

    fn slow(state: Slow<P>) -> Self {
        Self {
            future: None,
            headers: HeaderList::new(PassHeaders::new()),
            slow: Some(Box::new(state)),
        }
    }
}

impl<F, P> fmt::Debug for GuardFuture<F, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match (&self.future, self.slow.as_deref()) {
            (Some(_), _) => "pass",
            (None, Some(Slow::Deciding(_))) => "deciding",
            (None, Some(Slow::Reject(_))) => "reject",
            (None, _) => "done",
        };
        f.debug_struct("GuardFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<F, P, B, E> Future for GuardFuture<F, P>
where
    F: Future<Output = Result<Response<B>, E>>,
    P: PendingDecision<Future = F>,
    B: RejectionBody,
{
    type Output = Result<Response<B>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if let Some(future) = this.future.as_mut().as_pin_mut() {
                // Without headers to add, the inner future writes straight
                // into our output: no copy of the response.
                if this.headers.0.is_empty() {
                    return future.poll(cx);
                }
                let mut res = ready!(future.poll(cx))?;
                add_headers(&mut res, this.headers);
                return Poll::Ready(Ok(res));
            }
            let Some(slow) = this.slow.as_mut() else {
                // Every constructor sets the inner future or the slow state;
                // should that ever change, a 500 beats a panic.
                return Poll::Ready(Ok(Problem::internal_error().into_response()));
            };
            match ready!(poll_slow(slow, cx)) {
                Some(pass) => {
                    *this.headers = HeaderList::new(pass.headers);
                    this.future.set(Some(pass.future));
                }
                None => {
                    let problem = match std::mem::replace(&mut **slow, Slow::Done) {
                        Slow::Reject(problem) => problem,
                        _ => Problem::internal_error(),
                    };
                    return Poll::Ready(Ok(problem.into_response()));
                }
            }
        }
    }
}

/// Drives the rare states: `Some` when the request may go on, `None` when
/// it is refused (the state is then `Reject`, or `Done` if polled again).
#[cold]
fn poll_slow<P: PendingDecision>(
    slow: &mut Slow<P>,
    cx: &mut Context<'_>,
) -> Poll<Option<Pass<P::Future>>> {
    match slow {
        Slow::Deciding(decision) => match ready!(decision.poll_decide(cx)) {
            Ok(pass) => {
                *slow = Slow::Done;
                Poll::Ready(Some(pass))
            }
            Err(problem) => {
                *slow = Slow::Reject(problem);
                Poll::Ready(None)
            }
        },
        Slow::Reject(_) | Slow::Done => Poll::Ready(None),
    }
}

#[inline(never)]
fn add_headers<B>(res: &mut Response<B>, headers: &mut HeaderList) {
    for (name, value) in std::mem::take(&mut *headers.0) {
        res.headers_mut().append(name, value);
    }
}

/// Headers waiting for the response. Dropping an empty list (nearly always)
/// costs one comparison.
struct HeaderList(ManuallyDrop<PassHeaders>);

impl HeaderList {
    #[inline(always)]
    fn new(headers: PassHeaders) -> Self {
        Self(ManuallyDrop::new(headers))
    }
}

impl Drop for HeaderList {
    #[inline(always)]
    fn drop(&mut self) {
        if self.0.capacity() != 0 {
            drop(std::mem::take(&mut *self.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::{Ready, ready};

    type Inner = Ready<Result<Response<String>, ()>>;

    fn ok() -> Inner {
        ready(Ok(Response::new(String::from("inner"))))
    }

    /// A decision that answers after being polled `polls` times.
    struct After {
        polls: usize,
        allow: bool,
    }

    impl PendingDecision for After {
        type Future = Inner;

        fn poll_decide(&mut self, cx: &mut Context<'_>) -> Poll<Result<Pass<Inner>, Problem>> {
            if self.polls > 0 {
                self.polls -= 1;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if self.allow {
                let mut pass = Pass::new(ok());
                pass.headers.push((
                    HeaderName::from_static("x-quota"),
                    HeaderValue::from_static("7"),
                ));
                Poll::Ready(Ok(pass))
            } else {
                Poll::Ready(Err(Problem::too_many_requests(3)))
            }
        }
    }

    #[tokio::test]
    async fn pending_decision_that_allows_reaches_the_inner_future_with_headers() {
        let res = GuardFuture::pending(After {
            polls: 2,
            allow: true,
        })
        .await
        .unwrap();
        assert_eq!(res.body(), "inner");
        assert_eq!(res.headers()["x-quota"], "7");
    }

    #[tokio::test]
    async fn pending_decision_that_refuses_answers_its_problem() {
        let res = GuardFuture::pending(After {
            polls: 1,
            allow: false,
        })
        .await
        .unwrap();
        assert_eq!(res.status(), 429);
        assert_eq!(res.headers()["retry-after"], "3");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }

    #[tokio::test]
    async fn boxed_decision_is_a_pending_decision() {
        let decision: BoxDecision<Inner> = Box::pin(async { Ok(Pass::new(ok())) });
        let res = GuardFuture::pending(decision).await.unwrap();
        assert_eq!(res.body(), "inner");
    }

    #[test]
    fn polled_again_after_a_rejection_answers_500_instead_of_panicking() {
        let mut fut = Box::pin(GuardFuture::<Inner>::reject(Problem::forbidden()));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let Poll::Ready(Ok(first)) = fut.as_mut().poll(&mut cx) else {
            panic!("a rejection is ready at once")
        };
        assert_eq!(first.status(), 403);
        let Poll::Ready(Ok(again)) = fut.as_mut().poll(&mut cx) else {
            panic!("ready again")
        };
        assert_eq!(again.status(), 500);
    }
}

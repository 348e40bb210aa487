//! The response future of a guard: either the inner service's response, or
//! the guard's own problem+json rejection.
//!
//! Every layer that decides synchronously in `call` (a rate limit, a level
//! requirement, a flag gate) returns this future, so none of them boxes or
//! repeats the same state machine.
//!
//! # Example
//!
//! ```
//! use guardrail_core::{GuardFuture, Problem};
//! use http::{Response, StatusCode};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let pass = GuardFuture::inner(async { Ok::<_, ()>(Response::new(String::from("hi"))) });
//! assert_eq!(pass.await.unwrap().status(), StatusCode::OK);
//!
//! let reject = GuardFuture::<std::future::Ready<Result<Response<String>, ()>>>::reject(Problem::forbidden());
//! assert_eq!(reject.await.unwrap().status(), StatusCode::FORBIDDEN);
//! # }
//! ```

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::Response;
use pin_project_lite::pin_project;

use crate::{GuardBody, Problem};

pin_project! {
    /// Response future of a guard layer.
    pub struct GuardFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        // Boxed: a rejection allocates anyway, and the pass-through future
        // stays small to move.
        Reject { problem: Option<Box<Problem>> },
    }
}

impl<F> GuardFuture<F> {
    /// Passes the inner service's response through.
    pub fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }

    /// Answers with `problem` instead.
    pub fn reject(problem: Problem) -> Self {
        Self {
            kind: Kind::Reject {
                problem: Some(Box::new(problem)),
            },
        }
    }
}

impl<F> fmt::Debug for GuardFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Inner { .. } => f.write_str("GuardFuture::Inner"),
            Kind::Reject { problem } => {
                f.debug_tuple("GuardFuture::Reject").field(problem).finish()
            }
        }
    }
}

impl<F, B, E> Future for GuardFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<GuardBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => {
                let res = ready!(future.poll(cx))?;
                Poll::Ready(Ok(res.map(GuardBody::new)))
            }
            KindProj::Reject { problem } => {
                // Polled again after completion: answer 500 rather than panic.
                let problem = problem.take().map_or_else(Problem::internal_error, |p| *p);
                Poll::Ready(Ok(problem.into_response()))
            }
        }
    }
}

//! Gating a route behind a flag: the caller it is off for gets the same
//! 404 as a path no route matches, so the feature stays hidden.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use flag_layer::{Flag, FlagLayer, FlagStore};
//! use guardrail_core::Principal;
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let flags = FlagStore::builder(vec![
//!     Flag::new("ai_recommendations").enabled(true).target(["alice"]),
//! ])
//! .build()
//! .unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(FlagLayer::new(flags, "ai_recommendations"))
//!     .service(service_fn(|_req: Request<()>| async {
//!         Ok::<_, Infallible>(Response::new(String::from("recommendations")))
//!     }));
//! let as_user = |who: &str| {
//!     let mut req = Request::new(());
//!     req.extensions_mut().insert(Principal::new(who));
//!     req
//! };
//! let res = svc.clone().oneshot(as_user("alice")).await.unwrap();
//! assert_eq!(res.body(), "recommendations");
//! let res = svc.oneshot(as_user("bob")).await.unwrap();
//! assert_eq!(res.status(), 404);
//! assert_eq!(res.headers()["content-type"], "application/problem+json");
//! # }
//! ```

use std::{
    fmt,
    future::{Future, Ready, ready},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use guardrail_core::{Principal, Problem, RejectionBody};
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::util::Oneshot;
use tower_layer::Layer;
use tower_service::Service;

use crate::{FlagContext, FlagStore};

/// Layer that applies [`FlagGate`]: the route answers only callers the
/// flag is on for (evaluated for the request's [`Principal`], or
/// anonymously on a public route); the others get a 404 problem — or,
/// with [`fallback`](Self::fallback), another service's answer.
#[derive(Clone, Debug)]
pub struct FlagLayer<O = NotFound> {
    store: FlagStore,
    flag: Arc<str>,
    off: O,
}

impl FlagLayer {
    /// Gates on the flag `flag` of `store` (an unknown flag is off: the
    /// route answers 404 to everyone).
    pub fn new(store: FlagStore, flag: impl Into<Arc<str>>) -> Self {
        Self {
            store,
            flag: flag.into(),
            off: NotFound,
        }
    }

    /// Callers the flag is off for are answered by `service` (the old
    /// version of the feature, say) instead of a 404. It is called once
    /// per request, on a clone.
    pub fn fallback<F: Clone>(self, service: F) -> FlagLayer<Fallback<F>> {
        FlagLayer {
            store: self.store,
            flag: self.flag,
            off: Fallback(service),
        }
    }
}

impl<S, O: Clone> Layer<S> for FlagLayer<O> {
    type Service = FlagGate<S, O>;

    fn layer(&self, inner: S) -> Self::Service {
        FlagGate {
            inner,
            store: self.store.clone(),
            flag: Arc::clone(&self.flag),
            off: self.off.clone(),
        }
    }
}

/// What a gate does for a caller the flag is off for: [`NotFound`] (the
/// default) or [`Fallback`].
pub trait OffBranch<Req, Res, E> {
    /// The answer's future.
    type Future: Future<Output = Result<Res, E>>;

    /// Answers `req`.
    fn answer(&mut self, req: Req) -> Self::Future;
}

/// The 404 problem of a path no route matches, so a hidden feature can't
/// be told from a missing one.
#[derive(Clone, Copy, Debug, Default)]
pub struct NotFound;

impl<B, ResBody: RejectionBody, E> OffBranch<Request<B>, Response<ResBody>, E> for NotFound {
    type Future = Ready<Result<Response<ResBody>, E>>;

    fn answer(&mut self, req: Request<B>) -> Self::Future {
        let problem = Problem::not_found().request_id_from(req.extensions());
        ready(Ok(problem.into_response()))
    }
}

/// Another service answers the callers the flag is off for.
#[derive(Clone, Debug)]
pub struct Fallback<F>(F);

impl<F, Req> OffBranch<Req, F::Response, F::Error> for Fallback<F>
where
    F: Service<Req> + Clone,
{
    type Future = Oneshot<F, Req>;

    fn answer(&mut self, req: Req) -> Self::Future {
        Oneshot::new(self.0.clone(), req)
    }
}

/// Middleware that calls the inner service only when a flag is on for the
/// caller, and its off branch otherwise; see [`FlagLayer`].
#[derive(Clone)]
pub struct FlagGate<S, O = NotFound> {
    inner: S,
    store: FlagStore,
    flag: Arc<str>,
    off: O,
}

impl<S, O> FlagGate<S, O> {
    guardrail_core::inner_service_accessors!();
}

impl<S: fmt::Debug, O> fmt::Debug for FlagGate<S, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlagGate")
            .field("inner", &self.inner)
            .field("flag", &self.flag)
            .finish_non_exhaustive()
    }
}

impl<S, O, ReqBody, ResBody> Service<Request<ReqBody>> for FlagGate<S, O>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    O: OffBranch<Request<ReqBody>, Response<ResBody>, S::Error>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, O::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let on = match req.extensions().get::<Principal>() {
            Some(principal) => self.store.is_enabled(&self.flag, principal),
            None => self.store.is_enabled(&self.flag, &FlagContext::anonymous()),
        };
        if on {
            ResponseFuture::on(self.inner.call(req))
        } else {
            ResponseFuture::off(self.off.answer(req))
        }
    }
}

pin_project! {
    /// Response future for [`FlagGate`]: the route's answer, or the off
    /// branch's.
    pub struct ResponseFuture<On, Off> {
        #[pin]
        kind: Kind<On, Off>,
    }
}

pin_project! {
    #[project = Projected]
    enum Kind<On, Off> {
        On { #[pin] future: On },
        Off { #[pin] future: Off },
    }
}

impl<On, Off> ResponseFuture<On, Off> {
    fn on(future: On) -> Self {
        Self {
            kind: Kind::On { future },
        }
    }

    fn off(future: Off) -> Self {
        Self {
            kind: Kind::Off { future },
        }
    }
}

impl<On, Off> fmt::Debug for ResponseFuture<On, Off> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let branch = match self.kind {
            Kind::On { .. } => "on",
            Kind::Off { .. } => "off",
        };
        f.debug_struct("ResponseFuture")
            .field("branch", &branch)
            .finish()
    }
}

impl<On, Off, T, E> Future for ResponseFuture<On, Off>
where
    On: Future<Output = Result<T, E>>,
    Off: Future<Output = Result<T, E>>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            Projected::On { future } => future.poll(cx),
            Projected::Off { future } => future.poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use guardrails_testkit::capture;
    use http::StatusCode;
    use tower::{ServiceExt, service_fn};

    use super::*;
    use crate::{Flag, FlagUpdate};

    #[tokio::test]
    async fn the_gate_follows_the_flag_as_it_changes_and_never_calls_the_route_when_off() {
        let (_guard, _logs) = capture::json();
        let flags = FlagStore::builder(vec![Flag::new("ai_recs").enabled(true).rollout(100)])
            .build()
            .unwrap();
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = std::sync::Arc::clone(&calls);
        let svc = FlagLayer::new(flags.clone(), "ai_recs").layer(service_fn(move |_req| {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(String::from("on"))) }
        }));
        let ask = || async {
            let mut req = Request::new(());
            req.extensions_mut().insert(Principal::new("user-1"));
            svc.clone().oneshot(req).await.unwrap()
        };
        assert_eq!(ask().await.status(), StatusCode::OK);
        let ops = Principal::new("ops");
        flags.kill("ai_recs", &ops).await.unwrap();
        let res = ask().await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        assert!(res.body().contains("No resource matches this path."));
        flags
            .set(
                "ai_recs",
                FlagUpdate {
                    enabled: Some(true),
                    ..FlagUpdate::default()
                },
                &ops,
            )
            .await
            .unwrap();
        assert_eq!(ask().await.status(), StatusCode::OK);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
        // Anonymous callers are bucketed by nothing: off below 100 %.
        flags
            .set(
                "ai_recs",
                FlagUpdate {
                    rollout_percentage: Some(99),
                    ..FlagUpdate::default()
                },
                &ops,
            )
            .await
            .unwrap();
        let res = svc.clone().oneshot(Request::new(())).await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn callers_the_flag_is_off_for_can_get_a_fallback_instead() {
        let (_guard, _logs) = capture::json();
        let flags = FlagStore::builder(vec![Flag::new("ai_recs").enabled(true).target(["alice"])])
            .build()
            .unwrap();
        let old = service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::from("classic")))
        });
        let svc = FlagLayer::new(flags, "ai_recs")
            .fallback(old)
            .layer(service_fn(|_req: Request<()>| async {
                Ok::<_, Infallible>(Response::new(String::from("ai")))
            }));
        let ask = |who: &str| {
            let mut req = Request::new(());
            req.extensions_mut().insert(Principal::new(who));
            svc.clone().oneshot(req)
        };
        assert_eq!(ask("alice").await.unwrap().body(), "ai");
        let res = ask("bob").await.unwrap();
        assert_eq!(
            (res.status(), res.body().as_str()),
            (StatusCode::OK, "classic")
        );
    }
}

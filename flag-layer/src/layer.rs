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
    sync::Arc,
    task::{Context, Poll},
};

use guardrail_core::{GuardFuture, Principal, Problem, RejectionBody};
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::{FlagContext, FlagStore};

/// Layer that applies [`FlagGate`]: the route answers only callers the
/// flag is on for (evaluated for the request's [`Principal`], or
/// anonymously on a public route); the others get a 404 problem.
#[derive(Clone, Debug)]
pub struct FlagLayer {
    store: FlagStore,
    flag: Arc<str>,
}

impl FlagLayer {
    /// Gates on the flag `flag` of `store` (an unknown flag is off: the
    /// route answers 404 to everyone).
    pub fn new(store: FlagStore, flag: impl Into<Arc<str>>) -> Self {
        Self {
            store,
            flag: flag.into(),
        }
    }
}

impl<S> Layer<S> for FlagLayer {
    type Service = FlagGate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FlagGate {
            inner,
            store: self.store.clone(),
            flag: Arc::clone(&self.flag),
        }
    }
}

/// Middleware that calls the inner service only when a flag is on for the
/// caller; see [`FlagLayer`].
#[derive(Clone)]
pub struct FlagGate<S> {
    inner: S,
    store: FlagStore,
    flag: Arc<str>,
}

impl<S> FlagGate<S> {
    guardrail_core::inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for FlagGate<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlagGate")
            .field("inner", &self.inner)
            .field("flag", &self.flag)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for FlagGate<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: RejectionBody,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = GuardFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let on = match req.extensions().get::<Principal>() {
            Some(principal) => self.store.is_enabled(&self.flag, principal),
            None => self.store.is_enabled(&self.flag, &FlagContext::anonymous()),
        };
        if on {
            GuardFuture::pass(self.inner.call(req))
        } else {
            GuardFuture::reject(Problem::not_found().request_id_from(req.extensions()))
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
}

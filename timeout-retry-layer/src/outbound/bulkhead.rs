//! A bulkhead: at most so many calls to one upstream at once; one more is
//! refused at once with [`OutboundError::BulkheadFull`], never queued
//! (tower's `ConcurrencyLimit` waits for a permit instead — tower#793).
//!
//! # Example
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//! use timeout_retry_layer::{BulkheadLayer, OutboundError};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let bulkhead = BulkheadLayer::new(1);
//! let mut client = ServiceBuilder::new()
//!     .layer(bulkhead.clone())
//!     .service(service_fn(|_req: ()| async {
//!         tokio::time::sleep(Duration::from_millis(5)).await;
//!         Ok::<_, Infallible>("answer")
//!     }));
//! let first = client.ready().await.unwrap().call(());
//! let second = client.ready().await.unwrap().call(());
//! let (first, second) = tokio::join!(first, second);
//! assert_eq!(first.unwrap(), "answer");
//! assert!(matches!(second, Err(OutboundError::BulkheadFull)));
//! assert_eq!(bulkhead.in_flight(), 0);
//! # }
//! ```

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{BoxError, OutboundError};
use crate::slots::{Slot, Slots};

/// Layer that applies [`Bulkhead`]. Clones share one count.
#[derive(Clone)]
pub struct BulkheadLayer {
    slots: Arc<Slots>,
}

impl fmt::Debug for BulkheadLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadLayer")
            .field("max_concurrent", &self.slots.max())
            .field("in_flight", &self.slots.in_flight())
            .finish()
    }
}

impl BulkheadLayer {
    /// At most `max_concurrent` calls at once (at least 1).
    pub fn new(max_concurrent: usize) -> Self {
        Self {
            slots: Slots::new(
                max_concurrent.max(1),
                metrics::gauge!(guardrail_core::metric::OUTBOUND_IN_FLIGHT),
            ),
        }
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        self.slots.in_flight()
    }

    /// The most calls at once.
    pub fn max_concurrent(&self) -> usize {
        self.slots.max()
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = Bulkhead<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Bulkhead {
            inner,
            slots: Arc::clone(&self.slots),
        }
    }
}

/// Middleware that refuses calls beyond a number in flight; see the
/// [`BulkheadLayer`].
#[derive(Clone)]
pub struct Bulkhead<S> {
    inner: S,
    slots: Arc<Slots>,
}

impl<S> Bulkhead<S> {
    guardrail_core::inner_service_accessors!();
}

impl<S: fmt::Debug> fmt::Debug for Bulkhead<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("inner", &self.inner)
            .field("max_concurrent", &self.slots.max())
            .finish()
    }
}

impl<S, R> Service<R> for Bulkhead<S>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = OutboundError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(OutboundError::from_inner)
    }

    fn call(&mut self, req: R) -> Self::Future {
        match self.slots.try_take() {
            Some(slot) => ResponseFuture {
                inner: Some(self.inner.call(req)),
                slot: Some(slot),
            },
            None => ResponseFuture {
                inner: None,
                slot: None,
            },
        }
    }
}

pin_project! {
    /// Response future for [`Bulkhead`]: the call, holding its place until
    /// it completes or is dropped; or the refusal.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
        slot: Option<Slot>,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("refused", &self.inner.is_none())
            .finish_non_exhaustive()
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, OutboundError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(Err(OutboundError::BulkheadFull));
        };
        let out = ready!(inner.poll(cx));
        drop(this.slot.take());
        Poll::Ready(out.map_err(OutboundError::from_inner))
    }
}

#[cfg(test)]
mod tests {
    use std::{convert::Infallible, time::Duration};

    use tower::{ServiceExt, service_fn};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_call_beyond_the_size_is_refused_at_once_and_places_come_back() {
        let bulkhead = BulkheadLayer::new(2);
        let client = bulkhead.layer(service_fn(|_req: ()| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, Infallible>(())
        }));
        let a = tokio::spawn(client.clone().oneshot(()));
        let b = tokio::spawn(client.clone().oneshot(()));
        tokio::task::yield_now().await;
        assert_eq!(bulkhead.in_flight(), 2);
        let start = tokio::time::Instant::now();
        let third = client.clone().oneshot(()).await;
        assert!(matches!(third, Err(OutboundError::BulkheadFull)));
        assert_eq!(start.elapsed(), Duration::ZERO);
        a.await.unwrap().unwrap();
        b.await.unwrap().unwrap();
        assert_eq!(bulkhead.in_flight(), 0);
        client.oneshot(()).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_call_gives_its_place_back() {
        let bulkhead = BulkheadLayer::new(1);
        let client = bulkhead.layer(service_fn(|_req: ()| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, Infallible>(())
        }));
        let pending = tokio::spawn(client.clone().oneshot(()));
        tokio::task::yield_now().await;
        assert_eq!(bulkhead.in_flight(), 1);
        pending.abort();
        let _ = pending.await;
        assert_eq!(bulkhead.in_flight(), 0);
    }
}

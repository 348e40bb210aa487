//! The benches' driver: a service whose futures never wait is called and
//! completed in place with a no-op waker, so what a bench times is the
//! service's own work, with no executor around it.
//!
//! [`status`] is `#[inline]`: a generic from another crate is otherwise
//! compiled in a codegen unit of its own, out of the inliner's reach, and a
//! bench would time a call its own copy of the driver never made. Request
//! builders stay plain calls, as the benches' own copies were.
//!
//! # Example
//!
//! ```
//! use guardrail_core::ClientIp;
//! use guardrails_testkit::bench::{client, respond_with, status, with_client_ip};
//! use http::Request;
//!
//! let mut svc = respond_with(String::new);
//! let req = with_client_ip(Request::new(()), client(1_001));
//! assert_eq!(req.extensions().get::<ClientIp>().unwrap().addr().to_string(), "203.0.113.1");
//! assert_eq!(status(&mut svc, req), 200);
//! ```

use std::{
    convert::Infallible,
    future::{Ready, ready},
    net::{IpAddr, Ipv4Addr},
    pin::pin,
    task::{Context, Poll, Waker},
};

use guardrail_core::ClientIp;
use http::{Request, Response};
use tower::{Service, service_fn};

/// Calls `svc` with `req` and completes the call in place, polling it once
/// with a no-op waker; returns the response status.
///
/// # Panics
///
/// If the call is pending: nothing would ever wake it.
// `#[inline]` puts a copy in the caller's codegen unit, where the benches'
// own copies were, so it is inlined into the timed loop as they were
// (without it, some 60 more instructions per request).
#[inline]
pub fn status<S, Req, B>(svc: &mut S, req: Req) -> u16
where
    S: Service<Req, Response = Response<B>, Error = Infallible>,
{
    let mut cx = Context::from_waker(Waker::noop());
    let mut fut = pin!(svc.call(req));
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(res)) => res.status().as_u16(),
        Poll::Ready(Err(e)) => match e {},
        Poll::Pending => unreachable!("benched services never wait"),
    }
}

/// The inner service of every bench: answers `200 OK` at once, with the
/// body `body` makes.
pub fn respond_with<Req, B, F>(
    body: F,
) -> impl Service<
    Req,
    Response = Response<B>,
    Error = Infallible,
    Future = Ready<Result<Response<B>, Infallible>>,
> + Clone
+ Send
+ 'static
where
    Req: 'static,
    B: Send + 'static,
    F: Fn() -> B + Clone + Send + 'static,
{
    service_fn(move |_req: Req| ready(Ok::<_, Infallible>(Response::new(body()))))
}

/// The `i`-th of 1 000 client addresses (203.0.113.0 upwards, then round
/// again), so per-client state sees many keys.
pub fn client(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0xCB00_7100 + (i % 1000)))
}

/// `req` with `ip` as its [`ClientIp`], as `ResolveClientIpLayer` leaves it.
pub fn with_client_ip<B>(mut req: Request<B>, ip: IpAddr) -> Request<B> {
    req.extensions_mut().insert(ClientIp::new(ip));
    req
}

/// A current-thread runtime with a clock, for layers that start background
/// work (the limiter's sweeps) when built: enter it before building them.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime builds")
}

/// The median of `samples` (the upper one of an even count).
///
/// # Panics
///
/// If `samples` is empty.
pub fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "never wait")]
    fn a_service_that_waits_is_refused() {
        let mut svc =
            service_fn(|_req: ()| std::future::pending::<Result<Response<()>, Infallible>>());
        status(&mut svc, ());
    }

    #[test]
    fn clients_cycle_through_a_thousand_addresses() {
        assert_eq!(client(0).to_string(), "203.0.113.0");
        assert_eq!(client(999).to_string(), "203.0.116.231");
        assert_eq!(client(1_000), client(0));
    }

    #[test]
    fn the_median_of_an_even_count_is_the_upper_middle() {
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 3.0);
        assert_eq!(median(vec![5.0, 1.0, 3.0]), 3.0);
    }
}

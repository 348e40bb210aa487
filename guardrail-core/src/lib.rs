//! The shared vocabulary of the guardrail crates. No policy lives here: only
//! the types and conventions that let independent layers work together.
//!
//! - [`Problem`]: the RFC 9457 `application/problem+json` body of every
//!   rejection, returned as a [`GuardBody`] for any inner body type.
//! - [`ClientIp`]: the client address, resolved by [`ResolveClientIpLayer`]
//!   with trusted proxies, never chosen by the client.
//! - [`RequestId`]: generated or validated by [`SetRequestIdLayer`], echoed
//!   on the response.
//! - [`Principal`]: who the caller is, inserted by authentication.
//! - [`event`]: the event taxonomy and the [`emit!`] macro.
//! - [`config`], [`SecretRef`]: what every layer's config section shares.
//!
//! # Example
//!
//! ```
//! use std::net::SocketAddr;
//! use guardrail_core::{ClientIp, ClientIpConfig, RequestId, ResolveClientIpLayer, SetRequestIdLayer};
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(SetRequestIdLayer::new())
//!     .layer(ResolveClientIpLayer::new(ClientIpConfig::default()))
//!     .service(service_fn(|req: Request<()>| async move {
//!         let ip = req.extensions().get::<ClientIp>().unwrap();
//!         let id = req.extensions().get::<RequestId>().unwrap();
//!         Ok::<_, std::convert::Infallible>(Response::new(format!("{} {}", ip.masked(), id.as_str().len())))
//!     }));
//!
//! let mut req = Request::new(());
//! req.extensions_mut().insert(SocketAddr::from(([203, 0, 113, 9], 4000)));
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.body(), "203.0.113.0/24 36");
//! assert!(res.headers().contains_key("x-request-id"));
//! # }
//! ```

#![deny(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod body;
pub mod client_ip;
pub mod config;
pub mod event;
mod future;
mod principal;
pub mod problem;
mod pseudonym;
pub mod request_id;
mod secret;

pub use body::{GuardBody, RejectionBody};
pub use client_ip::{
    ClientIp, ClientIpConfig, ForwardedHeader, ResolveClientIp, ResolveClientIpLayer,
};
pub use event::EventName;
pub use future::GuardFuture;
pub use principal::{AssuranceLevel, CallerSlot, Principal};
pub use problem::Problem;
pub use pseudonym::Pseudonymizer;
pub use request_id::{RequestId, SetRequestId, SetRequestIdLayer};
pub use secret::{Secret, SecretError, SecretRef};

#[doc(hidden)]
pub mod __private {
    pub use tracing;
}

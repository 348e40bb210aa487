//! Webhook signature verification: HMAC-SHA256, timestamped, replay-protected.
//!
//! [`VerifyWebhookLayer`] buffers the body (up to a cap), checks the
//! signature header against every configured secret (so secrets rotate
//! without downtime), refuses timestamps outside the tolerance window and
//! signatures it has already accepted, and passes the **intact** body on to
//! the handler. Comparison is constant-time. Failures are a 400 problem+json
//! (413 over the size cap) and a `security.webhook_rejected` event.
//!
//! The header format is a [`SignatureScheme`]: [`Stripe`]
//! (`Stripe-Signature: t=…,v1=…`, signed `"{t}.{body}"`) and [`GitHub`]
//! (`X-Hub-Signature-256: sha256=…`, signed body, no timestamp) are built in.
//!
//! # Example
//!
//! ```
//! use auth_layer::VerifyWebhookLayer;
//! use bytes::Bytes;
//! use guardrail_core::Secret;
//! use http_body_util::Full;
//! use http::{Request, Response, StatusCode};
//! use hmac::{Hmac, Mac};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(VerifyWebhookLayer::stripe([Secret::new("whsec_test")]))
//!     .service(service_fn(|req: Request<Full<Bytes>>| async move {
//!         Ok::<_, std::convert::Infallible>(Response::new(req.into_body()))
//!     }));
//!
//! let body = r#"{"type":"invoice.paid"}"#;
//! let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
//! let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"whsec_test").unwrap();
//! mac.update(format!("{t}.{body}").as_bytes());
//! let sig = hex::encode(mac.finalize().into_bytes());
//!
//! let req = Request::post("/api/webhooks/stripe")
//!     .header("stripe-signature", format!("t={t},v1={sig}"))
//!     .body(Full::new(Bytes::from(body))).unwrap();
//! let res = svc.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//!
//! let forged = Request::post("/api/webhooks/stripe")
//!     .header("stripe-signature", format!("t={t},v1={}", "00".repeat(32)))
//!     .body(Full::new(Bytes::from(body))).unwrap();
//! assert_eq!(svc.oneshot(forged).await.unwrap().status(), StatusCode::BAD_REQUEST);
//! # }
//! ```

mod error;
mod future;
mod layer;
mod replay;
mod scheme;
mod service;
#[cfg(test)]
mod tests;

pub use error::WebhookError;
pub use future::{Delivered, ResponseFuture};
pub use layer::{
    DEFAULT_MAX_BODY_BYTES, DEFAULT_REPLAY_CAPACITY, DEFAULT_TOLERANCE, VerifyWebhookLayer,
};
pub use replay::{ReplayFallback, ReplayStore};
pub use scheme::{GitHub, SignatureHeader, SignatureScheme, Stripe};
pub use service::VerifyWebhook;

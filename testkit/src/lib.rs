//! Scaffolding shared by the guardrails crates' tests and benches, written
//! once. Dev-only: never published, never a normal dependency.
//!
//! - [`capture`]: a log sink that keeps what a JSON subscriber writes, for
//!   tests asserting the events a layer emits.
//! - [`mod@bench`]: driving a service whose futures never wait with a no-op
//!   waker, an always-200 inner service, requests from many clients.
//! - [`redis`]: a Redis server or a Redis Cluster of a test's own.
//! - [`promtool`]: Prometheus's checker for expositions and rules.
//! - [`otlp`]: a stand-in OpenTelemetry collector.
//! - `ratelimit` (feature `ratelimit`): the rate-limit comparison's requests
//!   (with axum's `ConnectInfo`) and its one quota, for guardrails and
//!   tower_governor alike.
//!
//! # Example
//!
//! ```
//! use guardrails_testkit::{bench, capture};
//! use http::Request;
//! use tower::service_fn;
//!
//! let (_guard, logs) = capture::json();
//! let mut svc = service_fn(|req: Request<()>| {
//!     tracing::info!(path = req.uri().path(), "seen");
//!     std::future::ready(Ok::<_, std::convert::Infallible>(http::Response::new(())))
//! });
//! assert_eq!(bench::status(&mut svc, Request::get("/items").body(()).unwrap()), 200);
//! assert_eq!(logs.lines()[0]["path"], "/items");
//! ```

pub mod bench;
pub mod capture;
pub mod otlp;
pub mod promtool;

/// A real PostgreSQL for the tests: `DATABASE_URL`, else the local server
/// (`scripts/test.sh` starts one if none answers). Tests that need one are
/// never skipped.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}
#[cfg(feature = "ratelimit")]
pub mod ratelimit;
pub mod redis;

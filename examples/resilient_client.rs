//! A standalone outbound-client template: one call to a third-party API
//! through a status check, a bulkhead, retries (backoff, budget,
//! `Retry-After`, per-try timeout, overall deadline) and a circuit
//! breaker, over hyper_util's client; a failure — a 4xx/5xx after the
//! retries included — becomes the problem a service would answer. (From
//! a config file, `UpstreamConfig::layers` builds the same stack.)
//!
//! ```text
//! cargo run --example resilient_client -- http://127.0.0.1:18089/weather
//! ```
//!
//! Prints the upstream's status and body, or the problem (status and
//! JSON) and exits 1. In a service, build the client once and share it:
//! the breaker's and the budget's state live in it.

use std::{process::ExitCode, time::Duration};

use bytes::Bytes;
use guardrails::timeout_retry_layer::{
    BulkheadLayer, CheckStatusLayer, CircuitBreakerLayer, ReplayBody, RetryLayer,
};
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> ExitCode {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:18089/weather".into());
    let Ok(uri) = url.parse::<http::Uri>() else {
        eprintln!("resilient_client: not a URL: {url}");
        return ExitCode::from(2);
    };
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<ReplayBody<Full<Bytes>>>();
    // Outermost first: the final answer's status is checked once (a 4xx
    // or 5xx becomes an error, reported as `integration.backend_failed`);
    // the bulkhead limits calls (with their retries) in flight; every
    // attempt passes the breaker, whose refusal is not retried.
    let client = ServiceBuilder::new()
        .layer(CheckStatusLayer::new("api"))
        .layer(BulkheadLayer::new(16))
        .layer(
            RetryLayer::new("api")
                .attempts(3)
                .backoff(Duration::from_millis(100), Duration::from_secs(1))
                .per_try_timeout(Duration::from_secs(2))
                .deadline(Duration::from_secs(5)),
        )
        .layer(CircuitBreakerLayer::new("api").min_calls(5))
        .service(http);
    let req = http::Request::get(uri)
        .body(Full::new(Bytes::new()))
        .expect("a GET to a parsed URI");
    match client.oneshot(req).await {
        Ok(res) => {
            let status = res.status();
            let body = res
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            println!("{status}");
            println!("{}", String::from_utf8_lossy(&body));
            ExitCode::SUCCESS
        }
        Err(err) => {
            let problem = err.to_problem();
            println!("{}", problem.status());
            println!("{}", String::from_utf8_lossy(&problem.to_json()));
            ExitCode::FAILURE
        }
    }
}

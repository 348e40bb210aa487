//! The health report and readiness as HTTP answers, in the IETF
//! health-check draft's shape (`application/health+json`): 200 while every
//! component passes or warns, 503 when one fails.
//!
//! - [`readiness`]: the status only (`{"status":"pass"}`), for a load
//!   balancer or a kubelet — public, so it says nothing more;
//! - [`health_report`]: every component with its details, under `checks`
//!   — for operators (behind an admin requirement).
//!
//! # Example
//!
//! ```
//! use guardrail_core::health::{ComponentHealth, HealthRegistry, HealthSource};
//! use monitor_layer::{health_report, readiness};
//!
//! #[derive(Debug)]
//! struct Database;
//! impl HealthSource for Database {
//!     fn name(&self) -> &str { "database" }
//!     fn check(&self) -> ComponentHealth {
//!         ComponentHealth::fail(serde_json::json!({ "in_use": 10, "size": 10 }))
//!     }
//! }
//!
//! let registry = HealthRegistry::new();
//! registry.register(Database);
//! let ready = readiness::<String>(&registry);
//! assert_eq!(ready.status(), 503);
//! assert_eq!(ready.headers()["content-type"], "application/health+json");
//! assert_eq!(ready.body(), r#"{"status":"fail"}"#);
//! let report: serde_json::Value = serde_json::from_str(health_report::<String>(&registry).body()).unwrap();
//! assert_eq!(report["checks"]["database"][0]["details"]["in_use"], 10);
//! ```

use guardrail_core::health::{ComponentHealth, HealthRegistry, HealthSource, HealthStatus};
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Map, Value, json};

use crate::{RequestStats, Window, WindowStats};

/// `application/health+json`.
pub const HEALTH_JSON: &str = "application/health+json";

fn answer<B: From<String>>(status: HealthStatus, body: &Value) -> Response<B> {
    let mut res = Response::new(B::from(body.to_string()));
    *res.status_mut() = match status {
        HealthStatus::Pass | HealthStatus::Warn => StatusCode::OK,
        HealthStatus::Fail => StatusCode::SERVICE_UNAVAILABLE,
    };
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(HEALTH_JSON));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn word(status: HealthStatus) -> Value {
    serde_json::to_value(status).unwrap_or(Value::Null)
}

/// Readiness: `{"status": …}` and nothing else; 503 when a component
/// fails.
pub fn readiness<B: From<String>>(registry: &HealthRegistry) -> Response<B> {
    let status = registry.report().status;
    answer(status, &json!({ "status": word(status) }))
}

/// The whole report: `{"status": …, "checks": {"<component>": [{"status":
/// …, "details": {…}}]}}`; 503 when a component fails.
pub fn health_report<B: From<String>>(registry: &HealthRegistry) -> Response<B> {
    let report = registry.report();
    let mut checks = Map::new();
    for component in &report.components {
        checks.insert(
            component.name.clone(),
            json!([{
                "status": word(component.health.status),
                "details": component.health.details,
            }]),
        );
    }
    answer(
        report.status,
        &json!({ "status": word(report.status), "checks": checks }),
    )
}

fn window_json(w: &WindowStats) -> Value {
    let ms = |d: Option<std::time::Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
    json!({
        "requests": w.requests,
        "rate_per_s": w.rate_per_s,
        "server_errors": w.server_errors,
        "client_errors": w.client_errors,
        "error_rate": w.error_rate,
        "p50_ms": ms(w.p50),
        "p95_ms": ms(w.p95),
        "p99_ms": ms(w.p99),
    })
}

/// The request statistics as the `requests` component: always `pass`
/// (whether a rate is bad is the alert rules' call); the details are the
/// last minute's, 5 minutes' and hour's figures, computed at most once a
/// second (a public readiness probe asks on every call).
impl HealthSource for RequestStats {
    fn name(&self) -> &str {
        "requests"
    }

    fn check(&self) -> ComponentHealth {
        ComponentHealth::pass(self.cached_details(std::time::Duration::from_secs(1), || {
            let details: Map<String, Value> = [Window::Minute, Window::FiveMinutes, Window::Hour]
                .into_iter()
                .map(|w| (w.as_str().to_owned(), window_json(&self.window(w))))
                .collect();
            Value::Object(details)
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[derive(Debug)]
    struct Fixed(&'static str, HealthStatus);

    impl HealthSource for Fixed {
        fn name(&self) -> &str {
            self.0
        }
        fn check(&self) -> ComponentHealth {
            ComponentHealth {
                status: self.1,
                details: json!({ "secret_free": true }),
            }
        }
    }

    fn parse(res: &Response<String>) -> Value {
        serde_json::from_str(res.body()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn the_worst_component_decides_and_readiness_says_nothing_more() {
        let registry = HealthRegistry::new();
        let stats = RequestStats::new();
        stats.record(200, Duration::from_millis(8));
        registry.register(stats.clone());
        // The figures are computed at most once a second, whoever asks.
        let requests = |registry: &HealthRegistry| {
            parse(&health_report::<String>(registry))["checks"]["requests"][0]["details"]["1m"]
                ["requests"]
                .clone()
        };
        assert_eq!(requests(&registry), 1);
        stats.record(200, Duration::from_millis(8));
        assert_eq!(requests(&registry), 1, "cached");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(requests(&registry), 2);
        registry.register(Fixed("circuit:weather", HealthStatus::Warn));
        let report = health_report::<String>(&registry);
        assert_eq!(report.status(), 200, "warn is still serving");
        let json = parse(&report);
        assert_eq!(json["status"], "warn");
        assert_eq!(json["checks"]["circuit:weather"][0]["status"], "warn");
        assert_eq!(
            json["checks"]["requests"][0]["details"]["1m"]["requests"],
            2
        );
        assert_eq!(report.headers()["cache-control"], "no-store");

        registry.register(Fixed("database", HealthStatus::Fail));
        let report = health_report::<String>(&registry);
        assert_eq!(report.status(), 503);
        assert_eq!(parse(&report)["status"], "fail");
        let ready = readiness::<String>(&registry);
        assert_eq!(ready.status(), 503);
        assert_eq!(
            parse(&ready),
            json!({ "status": "fail" }),
            "no details in public"
        );

        let empty = HealthRegistry::new();
        assert_eq!(readiness::<String>(&empty).status(), 200);
    }
}

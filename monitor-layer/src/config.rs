//! `[monitor]`.

use guardrail_core::config::ConfigProblem;
use serde::Deserialize;

/// `[monitor]`: where metrics are served, and the alert rules
/// (`[monitor.alerts]`).
///
/// ```
/// use monitor_layer::MonitorConfig;
///
/// let config: MonitorConfig = serde_json::from_str("{}").unwrap();
/// assert_eq!(config.metrics_listen, "127.0.0.1:9464");
/// let mut problems = Vec::new();
/// serde_json::from_str::<MonitorConfig>(r#"{"metrics_listen": "9464"}"#)
///     .unwrap()
///     .validate(&mut problems);
/// assert_eq!(problems[0].path, "monitor.metrics_listen");
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct MonitorConfig {
    /// The address of the Prometheus listener, apart from the service's
    /// (default `"127.0.0.1:9464"`, OTel's Prometheus port; port 0 picks
    /// one). `""` serves `/metrics` on the main router instead — a route
    /// the service must make public, so anyone who reaches the service
    /// reads its metrics.
    pub metrics_listen: String,
    /// `[monitor.alerts]`: the in-process alert rules' thresholds.
    pub alerts: crate::AlertsConfig,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            metrics_listen: "127.0.0.1:9464".into(),
            alerts: crate::AlertsConfig::default(),
        }
    }
}

impl MonitorConfig {
    /// Adds every problem of `[monitor]` to `problems`.
    pub fn validate(&self, problems: &mut Vec<ConfigProblem>) {
        self.alerts.validate(problems);
        if !self.metrics_listen.is_empty()
            && self.metrics_listen.parse::<std::net::SocketAddr>().is_err()
        {
            problems.push(ConfigProblem::new(
                "monitor.metrics_listen",
                "must be an address such as \"127.0.0.1:9464\", or \"\" for /metrics on the main router",
            ));
        }
    }
}

//! Request metrics, windowed request statistics and the detailed health
//! report for tower services.
//!
//! - [`MetricsLayer`]: OTel-named request metrics through the `metrics`
//!   facade, labelled by route template; [`describe`] gives every metric
//!   of the stack its help.
//! - [`RequestStats`]: in-process sliding-window statistics — request
//!   rate, 5xx error rate, latency percentiles over 1 m, 5 m, 30 m and
//!   1 h, counts over 6 h.
//! - [`readiness`] and [`health_report`]: `application/health+json`.
//! - [`Alerts`]: the seeds' P0/P1/P2 alert rules in process.
//! - [`prometheus`] (feature `prometheus`): the recorder and `/metrics`
//!   on a listener of its own.
//! - [`sqlx`](mod@crate::sqlx) (feature `sqlx`): a database pool's health.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use monitor_layer::{RequestStats, Window};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let stats = RequestStats::new();
//! stats.record(200, Duration::from_millis(12));
//! stats.record(500, Duration::from_millis(40));
//! let minute = stats.window(Window::Minute);
//! assert_eq!((minute.requests, minute.server_errors), (2, 1));
//! assert_eq!(minute.error_rate, 0.5);
//! # }
//! ```

pub mod alerts;
mod config;
mod health;
mod metrics;
#[cfg(feature = "prometheus")]
pub mod prometheus;
#[cfg(feature = "sqlx")]
pub mod sqlx;
mod stats;

pub use alerts::{Alerts, AlertsConfig, Firing, Severity};
pub use config::MonitorConfig;
pub use health::{HEALTH_JSON, health_report, readiness};
pub use metrics::{
    ACTIVE_REQUESTS, DURATION_BUCKETS, Metrics, MetricsLayer, REQUEST_DURATION, REQUESTS_TOTAL,
    ResponseFuture, UNMATCHED, describe, publish_event_counts,
};
pub use stats::{RequestStats, Window, WindowStats};

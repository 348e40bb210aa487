//! A database pool's health (cargo feature `sqlx`): connections in use,
//! idle and at most, how long a request waits for one, and the probes that
//! waited in vain — as a [`HealthSource`] for the health report and
//! readiness, and as metrics. Works with any sqlx database.
//!
//! The pool is the service's: [`PoolHealth`] only reads it, and a
//! background probe acquires (and at once returns) one connection every
//! `probe_every` (5 s), waiting at most `probe_timeout` (1 s), as a request
//! would. The component is
//!
//! - `pass` when the probe got a connection and some are free;
//! - `warn` before the first probe, and when every connection was in use
//!   as the probe asked but one came free in time (saturated);
//! - `fail` when the latest probe got none within its timeout — every
//!   connection in use (`exhausted`), or the database could not be reached
//!   in time — or failed to connect, or the pool is closed. Readiness then fails:
//!   this instance cannot serve what needs its database.
//!
//! Details never hold the database's address or credentials (nor does
//! `Debug`: sqlx's connect options would print the password).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use guardrail_core::health::{HealthSource, HealthStatus};
//! use monitor_layer::sqlx::PoolHealth;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Nothing listens on port 1: the pool never gets a connection.
//! let pool = sqlx::postgres::PgPoolOptions::new()
//!     .max_connections(4)
//!     .connect_lazy("postgres://app:hunter2@127.0.0.1:1/app")
//!     .unwrap();
//! let health = PoolHealth::new("database", pool).probe_timeout(Duration::from_millis(200));
//! assert_eq!(health.check().status, HealthStatus::Warn, "not probed yet");
//!
//! health.probe_once().await; // what the background probe does
//! let now = health.check();
//! assert_eq!(now.status, HealthStatus::Fail);
//! assert_eq!(now.details["max"], 4);
//! assert!(!format!("{now:?}{health:?}").contains("hunter2"));
//! // Run `health.probe()` beside the service and register `health` in the
//! // service's `HealthRegistry`.
//! # }
//! ```

use std::{
    fmt,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use ::sqlx::{Database, Pool};
use guardrail_core::{
    health::{ComponentHealth, HealthSource},
    metric,
};
use metrics::{Counter, Gauge};
use serde_json::json;
use tokio::time::Instant;

/// A pool's state as a health source and metrics; clones share it.
pub struct PoolHealth<DB: Database> {
    name: Arc<str>,
    pool: Pool<DB>,
    probe_every: Duration,
    probe_timeout: Duration,
    shared: Arc<Shared>,
}

struct Shared {
    probed: Mutex<Probed>,
    idle: Gauge,
    in_use: Gauge,
    max: Gauge,
    wait: Gauge,
    timeouts: Counter,
}

#[derive(Default)]
struct Probed {
    /// The latest probe's outcome, and whether every connection was in
    /// use when it asked.
    last: Option<(Outcome, bool)>,
    timeouts: u64,
}

#[derive(Clone, Copy)]
enum Outcome {
    Acquired(Duration),
    TimedOut,
    Closed,
    Failed(&'static str),
}

impl<DB: Database> PoolHealth<DB> {
    /// The health of `pool`, reported as the component `name` (e.g.
    /// `database`) and the metrics' `pool` label.
    pub fn new(name: impl Into<String>, pool: Pool<DB>) -> Self {
        let name: Arc<str> = name.into().into();
        let label = name.to_string();
        let connections = |state: &'static str| metrics::gauge!(metric::DB_POOL_CONNECTIONS, "pool" => label.clone(), "state" => state);
        let shared = Shared {
            probed: Mutex::default(),
            idle: connections("idle"),
            in_use: connections("in_use"),
            max: metrics::gauge!(metric::DB_POOL_MAX_CONNECTIONS, "pool" => label.clone()),
            wait: metrics::gauge!(metric::DB_POOL_ACQUIRE_WAIT_SECONDS, "pool" => label.clone()),
            timeouts: metrics::counter!(metric::DB_POOL_ACQUIRE_TIMEOUTS_TOTAL, "pool" => label),
        };
        Self {
            name,
            pool,
            probe_every: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(1),
            shared: Arc::new(shared),
        }
    }

    /// How often the background probe acquires a connection (5 s).
    pub fn probe_every(mut self, every: Duration) -> Self {
        self.probe_every = every.max(Duration::from_millis(10));
        self
    }

    /// How long a probe waits for a connection before the pool counts as
    /// exhausted (1 s): what a request may wait at most.
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.probe_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The background probe: [`probe_once`](Self::probe_once) every
    /// `probe_every`, forever. Run it beside the service (e.g. in
    /// `BackgroundTasks`).
    pub fn probe(&self) -> impl Future<Output = ()> + Send + 'static {
        let this = self.clone();
        async move {
            loop {
                this.probe_once().await;
                tokio::time::sleep(this.probe_every).await;
            }
        }
    }

    /// Acquires one connection, waiting at most `probe_timeout`, returns it
    /// at once, and records what happened and the pool's numbers.
    pub async fn probe_once(&self) {
        let max = self.pool.options().get_max_connections();
        let (size, idle, _) = self.sizes();
        let full = size >= max && idle == 0;
        let start = Instant::now();
        let outcome = match tokio::time::timeout(self.probe_timeout, self.pool.acquire()).await {
            Ok(Ok(connection)) => {
                let waited = start.elapsed();
                drop(connection);
                Outcome::Acquired(waited)
            }
            Ok(Err(::sqlx::Error::PoolTimedOut)) | Err(_) => Outcome::TimedOut,
            Ok(Err(::sqlx::Error::PoolClosed)) => Outcome::Closed,
            Ok(Err(e)) => Outcome::Failed(error_kind(&e)),
        };
        let shared = &self.shared;
        match outcome {
            Outcome::Acquired(waited) => shared.wait.set(waited.as_secs_f64()),
            Outcome::TimedOut => {
                shared.wait.set(self.probe_timeout.as_secs_f64());
                shared.timeouts.increment(1);
            }
            Outcome::Closed | Outcome::Failed(_) => {}
        }
        let (_, idle, in_use) = self.sizes();
        shared.idle.set(f64::from(idle));
        shared.in_use.set(f64::from(in_use));
        shared.max.set(f64::from(max));
        let mut probed = shared.probed.lock().unwrap_or_else(|e| e.into_inner());
        probed.last = Some((outcome, full));
        if matches!(outcome, Outcome::TimedOut) {
            probed.timeouts += 1;
        }
    }

    /// (size, idle, in use) now.
    fn sizes(&self) -> (u32, u32, u32) {
        let size = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle())
            .unwrap_or(u32::MAX)
            .min(size);
        (size, idle, size - idle)
    }
}

/// What kind of error a failed connect was — never its message, which can
/// name the host.
fn error_kind(e: &::sqlx::Error) -> &'static str {
    match e {
        ::sqlx::Error::Io(_) => "io",
        ::sqlx::Error::Tls(_) => "tls",
        ::sqlx::Error::Database(_) => "database",
        ::sqlx::Error::Configuration(_) => "configuration",
        ::sqlx::Error::Protocol(_) => "protocol",
        _ => "error",
    }
}

impl<DB: Database> HealthSource for PoolHealth<DB> {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> ComponentHealth {
        let (size, idle, in_use) = self.sizes();
        let max = self.pool.options().get_max_connections();
        let probed = self.shared.probed.lock().unwrap_or_else(|e| e.into_inner());
        let mut details = json!({
            "max": max,
            "size": size,
            "idle": idle,
            "in_use": in_use,
            "acquire_timeouts": probed.timeouts,
        });
        let timeout_ms = u64::try_from(self.probe_timeout.as_millis()).unwrap_or(u64::MAX);
        let (health, reason): (fn(serde_json::Value) -> ComponentHealth, String) = match probed.last
        {
            _ if self.pool.is_closed() => (ComponentHealth::fail, "closed".into()),
            None => (ComponentHealth::warn, "not probed yet".into()),
            Some((Outcome::Closed, _)) => (ComponentHealth::fail, "closed".into()),
            Some((Outcome::Failed(kind), _)) => {
                (ComponentHealth::fail, format!("connect failed: {kind}"))
            }
            Some((Outcome::TimedOut, true)) => (
                ComponentHealth::fail,
                format!("exhausted: every connection in use, none free within {timeout_ms} ms"),
            ),
            Some((Outcome::TimedOut, false)) => (
                ComponentHealth::fail,
                format!("no connection within {timeout_ms} ms (database unreachable or slow)"),
            ),
            Some((Outcome::Acquired(waited), full)) => {
                details["acquire_wait_ms"] = json!(waited.as_secs_f64() * 1e3);
                if full {
                    (
                        ComponentHealth::warn,
                        "saturated: every connection was in use".into(),
                    )
                } else {
                    (ComponentHealth::pass, String::new())
                }
            }
        };
        if !reason.is_empty() {
            details["reason"] = json!(reason);
        }
        health(details)
    }
}

impl<DB: Database> Clone for PoolHealth<DB> {
    fn clone(&self) -> Self {
        Self {
            name: Arc::clone(&self.name),
            pool: self.pool.clone(),
            probe_every: self.probe_every,
            probe_timeout: self.probe_timeout,
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<DB: Database> fmt::Debug for PoolHealth<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the pool: its connect options hold the password.
        f.debug_struct("PoolHealth")
            .field("name", &self.name)
            .field("max", &self.pool.options().get_max_connections())
            .field("probe_every", &self.probe_every)
            .field("probe_timeout", &self.probe_timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use guardrail_core::health::{HealthSource, HealthStatus};
    use metrics_exporter_prometheus::PrometheusBuilder;
    use sqlx::postgres::PgPoolOptions;

    use super::PoolHealth;

    use guardrails_testkit::database_url;

    #[tokio::test]
    async fn an_exhausted_pool_fails_and_recovers() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let prometheus = recorder.handle();
        let _local = metrics::set_default_local_recorder(&recorder);
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(&database_url())
            .await
            .expect("a PostgreSQL at DATABASE_URL (scripts/test.sh starts one)");
        let health =
            PoolHealth::new("database", pool.clone()).probe_timeout(Duration::from_millis(300));

        health.probe_once().await;
        let now = health.check();
        assert_eq!(now.status, HealthStatus::Pass, "{now:?}");
        assert_eq!(now.details["max"], 2);

        // Two requests hold both connections (one in a query).
        let mut first = pool.acquire().await.unwrap();
        let second = pool.acquire().await.unwrap();
        let row: (i32,) = sqlx::query_as("SELECT 1")
            .fetch_one(&mut *first)
            .await
            .unwrap();
        assert_eq!(row.0, 1);
        health.probe_once().await;
        let now = health.check();
        assert_eq!(now.status, HealthStatus::Fail, "{now:?}");
        assert_eq!(now.details["in_use"], 2);
        assert_eq!(now.details["acquire_timeouts"], 1);
        assert!(
            now.details["reason"]
                .as_str()
                .unwrap()
                .starts_with("exhausted"),
            "{now:?}"
        );
        let text = prometheus.render();
        assert!(
            text.contains("guardrails_db_pool_connections{pool=\"database\",state=\"in_use\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("guardrails_db_pool_acquire_timeouts_total{pool=\"database\"} 1"),
            "{text}"
        );

        // One is returned (sqlx returns it from a task): the next probe
        // gets it at once.
        drop(second);
        idle_at_least(&pool, 1).await;
        health.probe_once().await;
        let now = health.check();
        assert_eq!(now.status, HealthStatus::Pass, "{now:?}");
        assert!(now.details["acquire_wait_ms"].as_f64().unwrap() < 300.0);
        drop(first);

        pool.close().await;
        assert_eq!(health.check().status, HealthStatus::Fail);
        assert_eq!(health.check().details["reason"], "closed");
    }

    #[tokio::test]
    async fn a_full_pool_that_frees_a_connection_in_time_warns() {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&database_url())
            .await
            .expect("a PostgreSQL at DATABASE_URL (scripts/test.sh starts one)");
        let health =
            PoolHealth::new("database", pool.clone()).probe_timeout(Duration::from_secs(10));
        health.probe_once().await;
        assert_eq!(health.check().status, HealthStatus::Pass);

        idle_at_least(&pool, 1).await;
        let held = pool.acquire().await.unwrap();
        let probe = health.probe_once();
        tokio::pin!(probe);
        // The probe asks while the only connection is held, and waits…
        let waiting =
            std::future::poll_fn(|cx| std::task::Poll::Ready(probe.as_mut().poll(cx).is_pending()))
                .await;
        assert!(waiting);
        // …until it is returned.
        drop(held);
        probe.await;
        let now = health.check();
        assert_eq!(now.status, HealthStatus::Warn, "{now:?}");
        assert_eq!(
            now.details["reason"],
            "saturated: every connection was in use"
        );
        assert_eq!(now.details["acquire_timeouts"], 0);
    }

    /// Waits (bounded) until the pool holds `n` idle connections.
    async fn idle_at_least(pool: &sqlx::PgPool, n: usize) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while pool.num_idle() < n {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("connections returned to the pool");
    }
}

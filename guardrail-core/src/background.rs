//! Background work a layer needs besides handling requests (a JWKS
//! refresh, a flag reload): built with the layer as plain futures, run by
//! the service, and stopped when it shuts down.
//!
//! # Example
//!
//! ```
//! use std::sync::{Arc, atomic::{AtomicU32, Ordering}};
//! use std::time::Duration;
//! use guardrail_core::BackgroundTasks;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let ticks = Arc::new(AtomicU32::new(0));
//! let counter = Arc::clone(&ticks);
//! let mut tasks = BackgroundTasks::new();
//! tasks.push("ticker", async move {
//!     loop {
//!         counter.fetch_add(1, Ordering::Relaxed);
//!         tokio::time::sleep(Duration::from_secs(1)).await;
//!     }
//! });
//! let running = tasks.spawn();
//! tokio::time::sleep(Duration::from_millis(2500)).await;
//! assert_eq!(running.shutdown().await, vec!["ticker"]);
//!
//! let seen = ticks.load(Ordering::Relaxed);
//! tokio::time::sleep(Duration::from_secs(10)).await;
//! assert_eq!(ticks.load(Ordering::Relaxed), seen, "stopped");
//! # }
//! ```

use std::{fmt, future::Future, pin::Pin};

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Named background futures, not yet running.
#[derive(Default)]
pub struct BackgroundTasks {
    tasks: Vec<(&'static str, Task)>,
}

impl BackgroundTasks {
    /// No tasks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a task. It may run forever: [`RunningTasks::shutdown`] stops it
    /// at its next `.await`.
    pub fn push(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.push((name, Box::pin(task)));
    }

    /// Adds every task of `other`.
    pub fn extend(&mut self, other: BackgroundTasks) {
        self.tasks.extend(other.tasks);
    }

    /// The task names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.tasks.iter().map(|(name, _)| *name).collect()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Spawns every task on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, like `tokio::spawn`.
    pub fn spawn(self) -> RunningTasks {
        RunningTasks {
            handles: self
                .tasks
                .into_iter()
                .map(|(name, task)| (name, tokio::spawn(task)))
                .collect(),
        }
    }
}

impl fmt::Debug for BackgroundTasks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackgroundTasks")
            .field("tasks", &self.names())
            .finish()
    }
}

/// Background tasks that are running.
#[derive(Debug)]
pub struct RunningTasks {
    handles: Vec<(&'static str, tokio::task::JoinHandle<()>)>,
}

impl RunningTasks {
    /// The names of the tasks still running.
    pub fn running(&self) -> Vec<&'static str> {
        self.handles
            .iter()
            .filter(|(_, h)| !h.is_finished())
            .map(|(name, _)| *name)
            .collect()
    }

    /// Stops every task and waits until each has stopped; returns their
    /// names. Each stop is logged (`background task stopped`, with the
    /// task's name); a task that panicked is logged, never propagated.
    pub async fn shutdown(self) -> Vec<&'static str> {
        let mut stopped = Vec::with_capacity(self.handles.len());
        for (name, handle) in self.handles {
            handle.abort();
            if let Err(e) = handle.await
                && e.is_panic()
            {
                tracing::error!(task = name, "background task panicked");
            }
            tracing::info!(task = name, "background task stopped");
            stopped.push(name);
        }
        stopped
    }
}

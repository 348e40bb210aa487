//! The time by which a request must be answered, as a request extension.
//!
//! The inbound deadline layer (`timeout-retry-layer`) puts a [`Deadline`]
//! in each request's extensions; anything the handler calls reads what is
//! left of it, so an outbound call never waits longer than the client
//! will. It uses tokio's clock, so tests with `tokio::time::pause()` see
//! the same time the layer does.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use guardrail_core::Deadline;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! tokio::time::pause();
//! let deadline = Deadline::after(Duration::from_secs(10));
//! tokio::time::advance(Duration::from_secs(4)).await;
//! assert_eq!(deadline.remaining(), Duration::from_secs(6));
//! tokio::time::advance(Duration::from_secs(7)).await;
//! assert_eq!(deadline.remaining(), Duration::ZERO);
//! assert!(deadline.is_past());
//! // The earlier of two deadlines wins.
//! let sooner = Deadline::after(Duration::from_secs(1)).min(Deadline::after(Duration::from_secs(5)));
//! assert_eq!(sooner.remaining(), Duration::from_secs(1));
//! # }
//! ```

use std::time::Duration;

use tokio::time::Instant;

/// When a request must be answered by (a request extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// A deadline at `at` (tokio's clock).
    pub fn at(at: Instant) -> Self {
        Self { at }
    }

    /// A deadline `timeout` from now. A duration too large for the clock
    /// is about 30 years away.
    pub fn after(timeout: Duration) -> Self {
        let now = Instant::now();
        let at = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30));
        Self { at }
    }

    /// The instant itself.
    pub fn instant(&self) -> Instant {
        self.at
    }

    /// Time left before the deadline (zero once it has passed).
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub fn is_past(&self) -> bool {
        Instant::now() >= self.at
    }

    /// The earlier of the two.
    pub fn min(self, other: Self) -> Self {
        if other.at < self.at { other } else { self }
    }
}

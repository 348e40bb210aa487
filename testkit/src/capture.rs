//! Captured log output: a [`Capture`] sink collecting what a
//! `tracing-subscriber` formatter writes, and one-call set-ups installing a
//! JSON subscriber that writes into one as the thread's default.
//!
//! # Example
//!
//! ```
//! use guardrails_testkit::capture;
//!
//! let (guard, logs) = capture::json();
//! tracing::warn!(event = "security.auth_failed", reason = "expired");
//! drop(guard);
//! let lines = logs.lines();
//! assert_eq!(lines.len(), 1);
//! assert_eq!(lines[0]["level"], "WARN");
//! assert_eq!(lines[0]["reason"], "expired");
//! ```

use std::{
    io,
    sync::{Arc, Mutex, PoisonError},
};

use tracing::subscriber::DefaultGuard;
use tracing_subscriber::fmt::MakeWriter;

/// An in-memory log sink; clones share one buffer.
///
/// It is its own [`MakeWriter`], so it goes straight into
/// `tracing_subscriber::fmt().with_writer(…)`, or behind a wrapping writer.
#[derive(Clone, Debug, Default)]
pub struct Capture {
    buf: Arc<Mutex<Vec<u8>>>,
}

impl Capture {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything written so far, as text.
    ///
    /// # Panics
    ///
    /// If what was written is not UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8(self.bytes()).expect("log output is UTF-8")
    }

    /// Everything written so far, one JSON value per line.
    ///
    /// # Panics
    ///
    /// If a line is not JSON (the subscriber was not a JSON one).
    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: not JSON: {line}"))
            })
            .collect()
    }

    fn bytes(&self) -> Vec<u8> {
        // A test that panicked while logging must not hide the lines it wrote.
        self.buf
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl io::Write for Capture {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Installs, as this thread's default until the guard drops, a subscriber
/// writing every event (all levels) as one flat JSON line: the event's
/// fields beside `level`, `target` and `span`.
pub fn json() -> (DefaultGuard, Capture) {
    json_through(|sink| sink)
}

/// Like [`json`], but the event's fields stay nested under `fields`, the
/// JSON formatter's default layout.
pub fn json_nested() -> (DefaultGuard, Capture) {
    let capture = Capture::new();
    (install(false, capture.clone()), capture)
}

/// Like [`json`], with the sink behind the writer `wrap` makes of it (a
/// scrubbing writer, say): the capture holds what that writer passed on.
pub fn json_through<M>(wrap: impl FnOnce(Capture) -> M) -> (DefaultGuard, Capture)
where
    M: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let capture = Capture::new();
    (install(true, wrap(capture.clone())), capture)
}

fn install<M>(flatten: bool, writer: M) -> DefaultGuard
where
    M: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(flatten)
        .with_max_level(tracing::Level::TRACE)
        .with_writer(writer)
        .finish();
    tracing::subscriber::set_default(subscriber)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_lines_keep_fields_under_fields() {
        let (_guard, logs) = json_nested();
        tracing::debug!(n = 3, "counted");
        let lines = logs.lines();
        assert_eq!(lines[0]["level"], "DEBUG");
        assert_eq!(lines[0]["fields"]["n"], 3);
        assert_eq!(lines[0]["fields"]["message"], "counted");
    }

    #[test]
    fn the_capture_holds_what_the_wrapping_writer_passed_on() {
        struct Upper(Capture);
        impl io::Write for Upper {
            fn write(&mut self, data: &[u8]) -> io::Result<usize> {
                self.0.write(&data.to_ascii_uppercase())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }

        // A closure making writers is a `MakeWriter` too.
        let (_guard, logs) = json_through(|sink| move || Upper(sink.clone()));
        tracing::info!(user = "ann");
        assert!(logs.text().contains(r#""USER":"ANN""#), "{}", logs.text());
    }

    #[test]
    fn events_after_the_guard_drops_are_not_captured() {
        let (guard, logs) = json();
        tracing::info!("kept");
        drop(guard);
        tracing::info!("not kept");
        assert_eq!(logs.lines().len(), 1);
    }
}

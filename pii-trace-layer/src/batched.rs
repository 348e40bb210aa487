//! Log lines written off the request path, in batches.
//!
//! [`BatchedWriter`] is a `MakeWriter` that hands each finished line to a
//! background thread, which writes what has queued up with one `write`
//! (a busy service writes hundreds of lines per system call instead of
//! one each, and a slow log consumer never stalls a request). The queue is
//! bounded: when it is full, a line at WARN or above — every `security.*`
//! event is — waits for room, so it is never lost; any other line is
//! dropped and counted (`guardrails_log_lines_dropped_total`, and
//! [`BatchedWriter::dropped`] / the `logging` health component). Dropping
//! the [`BatchedWriterGuard`] writes everything queued and flushes, so no
//! line is lost on shutdown; lines logged after that are written directly.
//!
//! # Example
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use pii_trace_layer::BatchedWriter;
//!
//! #[derive(Clone, Default)]
//! struct Sink(Arc<Mutex<Vec<u8>>>);
//! impl std::io::Write for Sink {
//!     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.0.lock().unwrap().extend_from_slice(b); Ok(b.len()) }
//!     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
//! }
//!
//! let sink = Sink::default();
//! let (writer, guard) = BatchedWriter::new(sink.clone(), 1024);
//! let subscriber = tracing_subscriber::fmt().with_writer(writer.clone()).finish();
//! tracing::subscriber::with_default(subscriber, || {
//!     tracing::info!("one");
//!     tracing::warn!("two");
//! });
//! drop(guard); // writes what is queued
//! let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
//! assert_eq!(text.lines().count(), 2);
//! assert_eq!(writer.dropped(), 0);
//! ```

use std::{
    fmt,
    io::{self, Write},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering},
        mpsc::{self, Receiver, SyncSender, TrySendError},
    },
    thread::JoinHandle,
    time::Duration,
};

use guardrail_core::health::{ComponentHealth, HealthSource};
use tracing_subscriber::fmt::MakeWriter;

/// The default queue, in lines (~8 MB of typical JSON lines).
pub const DEFAULT_QUEUE_LINES: usize = 16_384;

/// How long the writer thread lets lines gather after a write while the
/// service is busy (a line waits at most this long to be written).
const GATHER: Duration = Duration::from_millis(1);

/// A `MakeWriter` whose lines a background thread writes in batches; see
/// the [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct BatchedWriter {
    shared: Arc<Shared>,
}

struct Shared {
    tx: SyncSender<Msg>,
    /// The output; the thread locks it per batch, and after shutdown lines
    /// are written to it directly.
    out: Mutex<Box<dyn Write + Send>>,
    /// Whether lines go to the thread. A line is queued under the read
    /// lock; shutdown takes the write lock, so every line queued is queued
    /// before the shutdown message, and none after it.
    open: RwLock<bool>,
    dropped: AtomicU64,
    dropped_metric: metrics::Counter,
}

enum Msg {
    Line(Vec<u8>),
    Shutdown,
}

impl fmt::Debug for BatchedWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchedWriter")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

/// Stops the writer thread when dropped, after writing every queued line.
#[must_use = "dropping the guard stops batching; keep it until the service exits"]
pub struct BatchedWriterGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for BatchedWriterGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchedWriterGuard").finish_non_exhaustive()
    }
}

impl BatchedWriter {
    /// Writes to `out` from a background thread, queueing at most
    /// `queue_lines` lines (at least 1).
    pub fn new(out: impl Write + Send + 'static, queue_lines: usize) -> (Self, BatchedWriterGuard) {
        let (tx, rx) = mpsc::sync_channel(queue_lines.max(1));
        let shared = Arc::new(Shared {
            tx,
            out: Mutex::new(Box::new(out)),
            open: RwLock::new(true),
            dropped: AtomicU64::new(0),
            dropped_metric: metrics::counter!(guardrail_core::metric::LOG_LINES_DROPPED_TOTAL),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("guardrails-log".into())
                .spawn(move || run(&shared, &rx))
                .ok()
        };
        if thread.is_none() {
            // No thread: every line is written directly.
            *shared.open.write().unwrap_or_else(|e| e.into_inner()) = false;
        }
        (
            Self {
                shared: Arc::clone(&shared),
            },
            BatchedWriterGuard { shared, thread },
        )
    }

    /// Lines dropped because the queue was full (never WARN or above).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// The `logging` component of the health report: `warn` once a line
    /// has been dropped.
    pub fn health_source(&self) -> Arc<dyn HealthSource> {
        Arc::new(self.clone())
    }
}

impl HealthSource for BatchedWriter {
    fn name(&self) -> &str {
        "logging"
    }

    fn check(&self) -> ComponentHealth {
        let dropped = self.dropped();
        let details = serde_json::json!({ "dropped_lines": dropped });
        if dropped > 0 {
            ComponentHealth::warn(details)
        } else {
            ComponentHealth::pass(details)
        }
    }
}

/// The writer thread: waits for a line, lets more gather while the
/// service is busy, writes them all at once.
fn run(shared: &Shared, rx: &Receiver<Msg>) {
    let mut batch = Vec::with_capacity(64 * 1024);
    let mut stop = false;
    while !stop {
        // Idle: sleep until a line comes.
        match rx.recv() {
            Ok(Msg::Line(line)) => batch.extend_from_slice(&line),
            Ok(Msg::Shutdown) | Err(_) => stop = true,
        }
        // Busy: take what else is queued, write, and gather for a moment
        // (not waiting on the queue, so senders never have to wake us).
        loop {
            while let Ok(msg) = rx.try_recv() {
                match msg {
                    Msg::Line(line) => batch.extend_from_slice(&line),
                    Msg::Shutdown => stop = true,
                }
            }
            if batch.is_empty() {
                break;
            }
            write_batch(shared, &mut batch);
            if stop {
                break;
            }
            std::thread::sleep(GATHER);
        }
    }
    write_batch(shared, &mut batch);
}

fn write_batch(shared: &Shared, batch: &mut Vec<u8>) {
    write_out(shared, batch);
    batch.clear();
}

/// Writes `bytes` to the output and flushes it.
fn write_out(shared: &Shared, bytes: &[u8]) {
    let mut out = shared.out.lock().unwrap_or_else(|e| e.into_inner());
    // Nowhere to report a failed log write; losing lines beats a panic.
    let _ = out.write_all(bytes);
    let _ = out.flush();
}

impl Drop for BatchedWriterGuard {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            // Waits for lines being queued (the thread, still draining,
            // makes room for them); later ones are written directly.
            *self.shared.open.write().unwrap_or_else(|e| e.into_inner()) = false;
            let _ = self.shared.tx.send(Msg::Shutdown);
            let _ = thread.join();
        }
    }
}

impl<'a> MakeWriter<'a> for BatchedWriter {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            shared: Arc::clone(&self.shared),
            buf: Vec::new(),
            keep: true,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        LineWriter {
            shared: Arc::clone(&self.shared),
            buf: Vec::new(),
            // WARN and ERROR (every security event) are never dropped.
            keep: *meta.level() <= tracing::Level::WARN,
        }
    }
}

/// One line on its way to the queue (sent when dropped).
pub struct LineWriter {
    shared: Arc<Shared>,
    buf: Vec<u8>,
    keep: bool,
}

impl fmt::Debug for LineWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineWriter")
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl Write for LineWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.buf);
        let shared = &self.shared;
        let open = shared.open.read().unwrap_or_else(|e| e.into_inner());
        if !*open {
            drop(open);
            write_out(shared, &line);
            return;
        }
        let unsent = match shared.tx.try_send(Msg::Line(line)) {
            Ok(()) => return,
            // Waits for room; never lost.
            Err(TrySendError::Full(msg)) if self.keep => match shared.tx.send(msg) {
                Ok(()) => return,
                Err(mpsc::SendError(msg)) => msg,
            },
            Err(TrySendError::Full(_)) => {
                shared.dropped.fetch_add(1, Ordering::Relaxed);
                shared.dropped_metric.increment(1);
                return;
            }
            // The thread is gone: written here instead.
            Err(TrySendError::Disconnected(msg)) => msg,
        };
        drop(open);
        if let Msg::Line(line) = unsent {
            write_out(shared, &line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Condvar;

    /// An output that blocks every write until opened, then keeps what it
    /// is given.
    /// Whether the gate is open, what went through, and its signal.
    type GateState = (Mutex<(bool, Vec<u8>)>, Condvar);

    #[derive(Clone, Default)]
    struct Gate(Arc<GateState>);

    impl Gate {
        fn open(&self) {
            self.0.0.lock().unwrap().0 = true;
            self.0.1.notify_all();
        }
        fn text(&self) -> String {
            String::from_utf8(self.0.0.lock().unwrap().1.clone()).unwrap()
        }
    }

    impl Write for Gate {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let mut state = self.0.0.lock().unwrap();
            while !state.0 {
                state = self.0.1.wait(state).unwrap();
            }
            state.1.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_info_lines_but_never_warnings() {
        let gate = Gate::default();
        let (writer, guard) = BatchedWriter::new(gate.clone(), 4);
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(writer.clone())
            .finish();
        // The output is stuck: the queue fills, then INFO lines are
        // dropped while WARN lines wait. The warnings come from another
        // thread, which blocks until the output opens.
        let dispatch = tracing::Dispatch::new(subscriber);
        tracing::dispatcher::with_default(&dispatch, || {
            for i in 0..50 {
                tracing::info!(i, "routine");
            }
        });
        assert!(writer.dropped() >= 40, "{}", writer.dropped());
        assert_eq!(
            writer.check().status,
            guardrail_core::health::HealthStatus::Warn
        );
        let warnings = {
            let dispatch = dispatch.clone();
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    for i in 0..20 {
                        tracing::warn!(i, event = "security.auth_failed", "kept");
                    }
                });
            })
        };
        gate.open();
        warnings.join().unwrap();
        let dropped = writer.dropped();
        drop(guard);
        let text = gate.text();
        assert_eq!(
            text.matches("kept").count(),
            20,
            "every warning written: {text}"
        );
        assert_eq!(
            text.matches("routine").count() as u64 + dropped,
            50,
            "each INFO line written or counted"
        );
        // After the guard, lines are written directly.
        tracing::dispatcher::with_default(&dispatch, || tracing::info!("after shutdown"));
        assert!(gate.text().contains("after shutdown"));
    }
}

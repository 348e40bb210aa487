//! Scrub every log line before it is written, whoever emitted it.
//!
//! [`ScrubbingMakeWriter`] wraps any `tracing-subscriber` writer: each
//! formatted event (one line) is collected, passed through the [`Scrubber`]
//! and then written whole. One line is not scanned twice: the trace layer's
//! own `api.request`, when it is inside that layer's span and no other, was
//! scrubbed field by field as the layer gathered it (known from its
//! callsite, never from its text), so it is written as formatted. A `tracing::info!(email = %e)` in a dependency is
//! scrubbed like one of ours. JSON output stays valid JSON: the scrubber's
//! replacements never break it. Use it without ANSI colours (JSON output
//! has none): colour codes between a key and its value hide the pair from
//! key rules.
//!
//! [`init_json_logging`] is the one-call setup: JSON lines on stdout, an
//! `EnvFilter` (from `RUST_LOG`, default `info`), every line scrubbed.
//!
//! # Example
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use guardrail_core::Pseudonymizer;
//! use pii_trace_layer::{Scrubber, ScrubbingMakeWriter};
//!
//! #[derive(Clone, Default)]
//! struct Sink(Arc<Mutex<Vec<u8>>>);
//! impl std::io::Write for Sink {
//!     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.0.lock().unwrap().extend_from_slice(b); Ok(b.len()) }
//!     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
//! }
//!
//! let sink = Sink::default();
//! let scrubber = Arc::new(Scrubber::new(Pseudonymizer::new(b"key")));
//! let subscriber = tracing_subscriber::fmt()
//!     .json()
//!     .with_writer(ScrubbingMakeWriter::new(scrubber, { let s = sink.clone(); move || s.clone() }))
//!     .finish();
//! tracing::subscriber::with_default(subscriber, || {
//!     tracing::warn!(email = "ann@example.com", "a third party logged this");
//! });
//! let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
//! assert!(!out.contains("ann@example.com"));
//! serde_json::from_str::<serde_json::Value>(out.trim()).unwrap();
//! ```

use std::{fmt, io, sync::Arc};

use tracing_subscriber::fmt::MakeWriter;

use crate::Scrubber;

/// A `MakeWriter` whose writers scrub each line before passing it on.
#[derive(Clone)]
pub struct ScrubbingMakeWriter<M> {
    scrubber: Arc<Scrubber>,
    inner: M,
}

impl<M> ScrubbingMakeWriter<M> {
    /// Scrubs what `inner`'s writers would write.
    pub fn new(scrubber: Arc<Scrubber>, inner: M) -> Self {
        Self { scrubber, inner }
    }
}

impl<M> fmt::Debug for ScrubbingMakeWriter<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScrubbingMakeWriter")
            .finish_non_exhaustive()
    }
}

impl<'a, M> MakeWriter<'a> for ScrubbingMakeWriter<M>
where
    M: MakeWriter<'a>,
{
    type Writer = ScrubbingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        ScrubbingWriter {
            scrubber: Arc::clone(&self.scrubber),
            inner: self.inner.make_writer(),
            buf: Vec::new(),
            prescrubbed: false,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        // Keep the inner writer's per-level routing (stderr for warnings…).
        ScrubbingWriter {
            scrubber: Arc::clone(&self.scrubber),
            inner: self.inner.make_writer_for(meta),
            buf: Vec::new(),
            // The trace layer's own line, whose values it scrubbed already.
            prescrubbed: crate::trace::is_prescrubbed(meta, &self.scrubber),
        }
    }
}

/// Collects one event's output and writes it scrubbed when dropped (or
/// flushed).
pub struct ScrubbingWriter<W: io::Write> {
    scrubber: Arc<Scrubber>,
    inner: W,
    buf: Vec<u8>,
    prescrubbed: bool,
}

impl<W: io::Write> fmt::Debug for ScrubbingWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScrubbingWriter")
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl<W: io::Write> ScrubbingWriter<W> {
    fn emit(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.prescrubbed {
            let result = self.inner.write_all(&self.buf);
            self.buf.clear();
            return result;
        }
        let text = String::from_utf8_lossy(&self.buf);
        let clean = self.scrubber.scrub(&text);
        let result = self.inner.write_all(clean.as_bytes());
        self.buf.clear();
        result
    }
}

impl<W: io::Write> io::Write for ScrubbingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.emit()?;
        self.inner.flush()
    }
}

impl<W: io::Write> Drop for ScrubbingWriter<W> {
    fn drop(&mut self) {
        // Nowhere to report a failed log write; losing a line beats a panic.
        let _ = self.emit();
    }
}

/// Installs the global subscriber: JSON lines on stdout
/// ([`JsonLines`](crate::JsonLines): tracing-subscriber's JSON shape with
/// flattened events, written without re-parsing span fields), `RUST_LOG`
/// filtering (default `info`), every line scrubbed by `scrubber`, written
/// in batches off the request path ([`BatchedWriter`](crate::BatchedWriter):
/// WARN and above never dropped, other lines dropped and counted only when
/// the queue is full).
///
/// Keep the returned guard until the service exits: dropping it writes
/// every queued line.
pub fn init_json_logging(scrubber: Arc<Scrubber>) -> Result<LogGuard, crate::TraceError> {
    init_json_logging_with(scrubber, None::<tracing_subscriber::layer::Identity>)
}

/// [`init_json_logging`] with one more layer beside the log lines, such
/// as the OpenTelemetry export (feature `otel`:
/// [`otel::otlp_layer`](crate::otel)); `RUST_LOG` filters what it sees too.
pub fn init_json_logging_with<L>(
    scrubber: Arc<Scrubber>,
    layer: Option<L>,
) -> Result<LogGuard, crate::TraceError>
where
    L: tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync + 'static,
{
    use tracing_subscriber::{layer::SubscriberExt as _, util::SubscriberInitExt as _};
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) =
        crate::BatchedWriter::new(io::stdout(), crate::batched::DEFAULT_QUEUE_LINES);
    let lines = tracing_subscriber::fmt::layer()
        .event_format(crate::JsonLines::default())
        .fmt_fields(crate::JsonFields)
        .with_writer(ScrubbingMakeWriter::new(scrubber, writer.clone()));
    tracing_subscriber::registry()
        .with(layer)
        .with(filter)
        .with(lines)
        .try_init()
        .map_err(|e| crate::TraceError::Subscriber {
            message: e.to_string(),
        })?;
    Ok(LogGuard {
        writer,
        _guard: guard,
    })
}

/// The running log writer of [`init_json_logging`]; dropping it writes
/// every queued line.
#[derive(Debug)]
#[must_use = "dropping the guard stops the log writer; keep it until the service exits"]
pub struct LogGuard {
    writer: crate::BatchedWriter,
    _guard: crate::BatchedWriterGuard,
}

impl LogGuard {
    /// Lines dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.writer.dropped()
    }

    /// The `logging` component of the health report.
    pub fn health_source(&self) -> Arc<dyn guardrail_core::health::HealthSource> {
        self.writer.health_source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guardrail_core::Pseudonymizer;

    /// What `f` logs, written through a scrubbing writer.
    fn capture(f: impl FnOnce()) -> String {
        let scrubber = Arc::new(Scrubber::new(Pseudonymizer::new(b"k")));
        let (_guard, logs) = guardrails_testkit::capture::json_through(|sink| {
            ScrubbingMakeWriter::new(scrubber, sink)
        });
        f();
        logs.text()
    }

    #[test]
    fn a_third_party_event_is_scrubbed_and_stays_json() {
        let out = capture(|| {
            // As a dependency would log, with no idea about PII.
            tracing::event!(target: "some_dependency::client", tracing::Level::INFO,
                user = "bob@example.org", card = "4111 1111 1111 1111",
                "retrying request for 203.0.113.50 with Authorization: Bearer abcdefgh12345678");
        });
        for leaked in [
            "bob@example.org",
            "4111 1111",
            "203.0.113.50",
            "abcdefgh12345678",
        ] {
            assert!(!out.contains(leaked), "{leaked} in {out}");
        }
        let json: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(json["target"], "some_dependency::client");
    }

    #[test]
    fn every_line_is_scrubbed_separately() {
        let out = capture(|| {
            for i in 0..3 {
                tracing::info!(n = i, "mail carol{i}@example.com");
            }
        });
        assert_eq!(out.lines().count(), 3);
        assert!(out.lines().all(|l| l.contains("[email]")), "{out}");
    }

    /// How the request of [`traced`] goes.
    #[derive(Clone, Copy, PartialEq)]
    enum Case {
        /// Nothing around the trace layer.
        Plain,
        /// An application span with PII around the request.
        InUserSpan,
        /// The handler records raw text on the trace layer's span.
        Rerecorded,
        /// The writer and the trace layer scrub with different scrubbers.
        OtherScrubber,
    }

    /// One request through the trace layer into a scrubbing writer, both
    /// with a scrubber that also rewrites `api.request` wherever it scans
    /// (so a scanned line shows in the output), with the JSON lines of
    /// `init_json_logging`.
    async fn traced(request_id: &str, method: &str, case: Case) -> serde_json::Value {
        use guardrail_core::{Pseudonymizer, SetRequestIdLayer};
        use std::convert::Infallible;
        use std::sync::Mutex;
        use tower::{ServiceBuilder, ServiceExt, service_fn};

        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl io::Write for Sink {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }

        let mut config = crate::ScrubConfig::default();
        config
            .rules
            .push(toml::from_str("name = \"scanned\"\npattern = \"api\\\\.request\"").unwrap());
        let scrubber = Arc::new(Scrubber::with_config(Pseudonymizer::new(b"k"), &config).unwrap());
        let writer_scrubber = if case == Case::OtherScrubber {
            Arc::new(Scrubber::with_config(Pseudonymizer::new(b"k"), &config).unwrap())
        } else {
            Arc::clone(&scrubber)
        };
        let sink = Sink::default();
        let subscriber = tracing_subscriber::fmt()
            .event_format(crate::JsonLines::default())
            .fmt_fields(crate::JsonFields)
            .with_writer(ScrubbingMakeWriter::new(writer_scrubber, {
                let sink = sink.clone();
                move || sink.clone()
            }))
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let svc = ServiceBuilder::new()
            .layer(SetRequestIdLayer::new())
            .layer(crate::TraceLayer::new(scrubber))
            .service(service_fn(move |_req: http::Request<()>| async move {
                if case == Case::Rerecorded {
                    tracing::Span::current().record("http.route", "/users/jane@example.com");
                }
                Ok::<_, Infallible>(http::Response::new(()))
            }));
        let req = http::Request::builder()
            .method(method)
            .uri("/orders")
            .header("x-request-id", request_id)
            .body(())
            .unwrap();
        let span = tracing::info_span!("handler_span", customer = "jane@example.com");
        let call = svc.oneshot(req);
        if case == Case::InUserSpan {
            tracing::Instrument::instrument(call, span).await.unwrap();
        } else {
            call.await.unwrap();
        }
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("jane@example.com"), "{text}");
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|l| l["url.path"] == "/orders")
            .expect("the api.request line")
    }

    #[tokio::test]
    async fn the_trace_layers_own_line_is_not_scanned_twice_and_holds_no_pii() {
        // An SSN as the request id, a made-up method: the layer scrubbed
        // and normalised them itself, so the writer didn't scan the line.
        let line = traced("078-05-1120", "JANEDOE", Case::Plain).await;
        assert_eq!(line["event"], "api.request", "not scanned again: {line}");
        assert_eq!(line["request_id"], "[ssn]");
        assert_eq!(line["http.request.method"], "_OTHER");
    }

    #[tokio::test]
    async fn inside_another_span_the_trace_line_is_scanned_as_usual() {
        // A span of the application around the request: its fields are on
        // the line too, so the writer scans it.
        let line = traced("req-1", "GET", Case::InUserSpan).await;
        assert_eq!(line["event"], "[scanned]", "{line}");
        assert_eq!(line["http.request.method"], "GET");
    }

    #[tokio::test]
    async fn a_value_recorded_on_the_trace_span_later_gets_the_line_scanned() {
        // The handler writes raw text into the layer's span: the line
        // prints it, so the writer scans the line.
        let line = traced("req-2", "GET", Case::Rerecorded).await;
        assert_eq!(line["event"], "[scanned]", "{line}");
    }

    #[tokio::test]
    async fn with_another_scrubber_in_the_writer_the_line_is_scanned() {
        // The writer's rules may differ from the layer's: it scans.
        let line = traced("req-3", "GET", Case::OtherScrubber).await;
        assert_eq!(line["event"], "[scanned]", "{line}");
    }
}

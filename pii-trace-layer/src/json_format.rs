//! The JSON line format of [`init_json_logging`](crate::init_json_logging),
//! written straight into the line buffer.
//!
//! The shape is tracing-subscriber's JSON format with flattened events and
//! no current span: `timestamp`, `level`, the event's fields, `target`,
//! and `spans` (root first, each its fields and `name`). What differs is
//! the cost: values are escaped as they are written, without a serializer
//! per field, and a span's fields are kept as a ready JSON fragment that is
//! copied into each line, where tracing-subscriber parses the span's JSON
//! back into a value and serializes it again for every event.
//!
//! # Example
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use pii_trace_layer::{JsonFields, JsonLines};
//!
//! #[derive(Clone, Default)]
//! struct Sink(Arc<Mutex<Vec<u8>>>);
//! impl std::io::Write for Sink {
//!     fn write(&mut self, b: &[u8]) -> std::io::Result<usize> { self.0.lock().unwrap().extend_from_slice(b); Ok(b.len()) }
//!     fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
//! }
//!
//! let sink = Sink::default();
//! let subscriber = tracing_subscriber::fmt()
//!     .event_format(JsonLines::default())
//!     .fmt_fields(JsonFields)
//!     .with_writer({ let s = sink.clone(); move || s.clone() })
//!     .finish();
//! tracing::subscriber::with_default(subscriber, || {
//!     let span = tracing::info_span!("api.request", request_id = "r-1");
//!     let _entered = span.enter();
//!     tracing::info!(status = 200, "done \"quoted\"");
//! });
//! let line: serde_json::Value = serde_json::from_slice(&sink.0.lock().unwrap()).unwrap();
//! assert_eq!(line["message"], "done \"quoted\"");
//! assert_eq!(line["status"], 200);
//! assert_eq!(line["spans"][0]["request_id"], "r-1");
//! assert_eq!(line["spans"][0]["name"], "api.request");
//! ```

use std::fmt::{self, Write};

use tracing::{Event, Subscriber, field::Field};
use tracing_subscriber::{
    field::RecordFields,
    fmt::{
        FmtContext, FormatEvent, FormatFields, FormattedFields,
        format::Writer,
        time::{FormatTime, SystemTime},
    },
    registry::LookupSpan,
};

/// The event format: one JSON object per line.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonLines {
    time: SystemTime,
}

/// The field format: a span's fields as `"name":value` pairs, ready to be
/// copied into every line.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonFields;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        self.time.format_time(&mut writer)?;
        write!(writer, "\",\"level\":\"{}\"", meta.level())?;
        let mut fields = Pairs::new(&mut writer, true);
        event.record(&mut fields);
        fields.result?;
        writer.write_str(",\"target\":")?;
        write_str(&mut writer, meta.target())?;
        if let Some(scope) = ctx.event_scope() {
            writer.write_str(",\"spans\":[")?;
            for (i, span) in scope.from_root().enumerate() {
                if i > 0 {
                    writer.write_char(',')?;
                }
                writer.write_char('{')?;
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    writer.write_str(fields)?;
                    writer.write_char(',')?;
                }
                writer.write_str("\"name\":")?;
                write_str(&mut writer, span.name())?;
                writer.write_char('}')?;
            }
            writer.write_char(']')?;
        }
        writer.write_str("}\n")
    }
}

impl<'writer> FormatFields<'writer> for JsonFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut pairs = Pairs::new(&mut writer, false);
        fields.record(&mut pairs);
        pairs.result
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        // Pairs after the ones already there, comma-separated. A value
        // whose formatting fails leaves the fragment as it was, so every
        // later line of the span stays valid JSON.
        let before = current.fields.len();
        let first = before == 0;
        let mut pairs = Pairs::new(current.as_writer(), !first);
        fields.record(&mut pairs);
        let result = pairs.result;
        if result.is_err() {
            current.fields.truncate(before);
        }
        result
    }
}

/// Writes each field as `"name":value`, comma-separated.
struct Pairs<W> {
    out: W,
    /// Whether a pair is already on the line (the next one needs a comma).
    comma: bool,
    result: fmt::Result,
}

impl<W: Write> Pairs<W> {
    fn new(out: W, comma: bool) -> Self {
        Self {
            out,
            comma,
            result: Ok(()),
        }
    }

    fn pair(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        self.result = (|| {
            if self.comma {
                self.out.write_char(',')?;
            }
            self.comma = true;
            write_str(&mut self.out, field.name())?;
            self.out.write_char(':')?;
            value(&mut self.out)
        })();
    }
}

impl<W: Write> tracing::field::Visit for Pairs<W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.pair(field, |out| write_str(out, value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.pair(field, |out| write!(out, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.pair(field, |out| write!(out, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.pair(field, |out| write!(out, "{value}"));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.pair(field, |out| write!(out, "{value}"));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.pair(field, |out| write!(out, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity: null, as serde_json writes them.
        // `{:?}` keeps the point (`2.0`, not `2`), as serde_json does.
        self.pair(field, |out| {
            if value.is_finite() {
                write!(out, "{value:?}")
            } else {
                out.write_str("null")
            }
        });
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.pair(field, |out| {
            out.write_char('"')?;
            write!(Escaped(out), "{value}")?;
            out.write_char('"')
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.pair(field, |out| {
            out.write_char('"')?;
            write!(Escaped(out), "{value:?}")?;
            out.write_char('"')
        });
    }
}

/// `value` as a JSON string, quotes included.
fn write_str(out: &mut impl Write, value: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaped(&mut *out).write_str(value)?;
    out.write_char('"')
}

/// Escapes what JSON requires (`"`, `\`, control characters) as it passes
/// text on.
struct Escaped<'a, W: ?Sized>(&'a mut W);

impl<W: Write + ?Sized> Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let bytes = s.as_bytes();
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let escape = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&s[start..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            start = i + 1;
        }
        self.0.write_str(&s[start..])
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    // Read only through `Debug`, as a logged value is.
    #[derive(Debug)]
    #[allow(dead_code)]
    struct Order {
        id: u32,
        note: &'static str,
    }

    /// Every kind of value, nested spans, a field recorded on a span after
    /// it was made, and an event outside any span.
    fn events() {
        let outer = tracing::info_span!("outer", tenant = "acme", n = 3_u64);
        let _o = outer.enter();
        let inner = tracing::info_span!("api.request", user = tracing::field::Empty, ok = true);
        inner.record("user", "usr_00ff");
        let _i = inner.enter();
        let err = std::io::Error::other("disk \"full\"\n");
        tracing::warn!(
            signed = -7_i64,
            big = u64::MAX,
            ratio = 2.0_f64,
            tiny = 0.1_f64,
            nan = f64::NAN,
            flag = false,
            order = ?Order { id: 9, note: "a\tb" },
            shown = %"display \u{e9}",
            error = &err as &(dyn std::error::Error + 'static),
            "quote \" backslash \\ newline \n control \u{1} unicode \u{1F600}"
        );
        drop(_i);
        tracing::info!(target: "plain", "inside outer only");
        drop(_o);
        tracing::info!("no span at all");
    }

    fn lines(f: impl FnOnce(Sink) -> tracing::Dispatch) -> Vec<serde_json::Value> {
        let sink = Sink::default();
        tracing::dispatcher::with_default(&f(sink.clone()), events);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| {
                let mut v: serde_json::Value =
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
                v.as_object_mut().unwrap().remove("timestamp");
                v
            })
            .collect()
    }

    #[test]
    fn lines_match_tracing_subscribers_json_format() {
        let ours = lines(|sink| {
            tracing_subscriber::fmt()
                .event_format(super::JsonLines::default())
                .fmt_fields(super::JsonFields)
                .with_writer(move || sink.clone())
                .finish()
                .into()
        });
        let theirs = lines(|sink| {
            tracing_subscriber::fmt()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_writer(move || sink.clone())
                .finish()
                .into()
        });
        assert_eq!(ours.len(), 3);
        assert_eq!(ours, theirs);
        assert_eq!(ours[0]["spans"][1]["user"], "usr_00ff");
        assert_eq!(ours[0]["nan"], serde_json::Value::Null);
        assert!(ours[2].get("spans").is_none(), "{}", ours[2]);
    }
}

//! OpenTelemetry export (cargo feature `otel`, off by default): each
//! request's `api.request` span sent over OTLP/HTTP (JSON) to a collector,
//! in the caller's W3C trace.
//!
//! [`otlp_layer`] builds a `tracing` layer that exports spans through the
//! OpenTelemetry SDK (a batch processor on a thread of its own); add it to
//! the subscriber ([`init_json_logging_with`](crate::init_json_logging_with)
//! does). The [`TraceLayer`](crate::TraceLayer) then makes each request's
//! span a child of the caller's `traceparent` and writes the exported
//! span's own ids as `trace_id` / `span_id` on the `api.request` line, so
//! a log line and its span in the tracing backend are found by the same
//! ids. Without the layer in the subscriber nothing changes.
//!
//! Only the trace layer's `api.request` spans reach the exporter (a
//! per-layer filter): no other span, and no event — handler events stay
//! in the log lines, scrubbed — and no code location, thread or target
//! attributes. What is exported is the span's name and the fields the
//! trace layer gives it (request id, scrubbed; method; route template):
//! never the path, the query or headers. A value a handler later records
//! on that span (`Span::current().record("http.route", …)`) is exported as
//! recorded — the trace layer does not scrub it again.
//!
//! The caller's `traceparent` decides sampling as the SDK's sampler does
//! (parent-based by default); a span not sampled is not exported, and its
//! log line says so (`trace_flags` 00 in the ids the request carries on).
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use guardrail_core::Pseudonymizer;
//! use pii_trace_layer::{Scrubber, init_json_logging_with, otel::otlp_layer};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let scrubber = Arc::new(Scrubber::new(Pseudonymizer::random()));
//! let (layer, export) = otlp_layer("http://127.0.0.1:4318/v1/traces", "checkout")?;
//! let _logs = init_json_logging_with(scrubber, Some(layer))?;
//! // … serve; on shutdown, send what is queued:
//! export.shutdown()?;
//! # Ok(())
//! # }
//! ```

use std::fmt;

use guardrail_core::TraceContext;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer as _;

/// The `tracing` layer [`otlp_layer`] builds: OpenTelemetry's, seeing
/// only `api.request` spans.
pub type OtlpLayer = tracing_subscriber::filter::Filtered<
    tracing_opentelemetry::OpenTelemetryLayer<
        tracing_subscriber::Registry,
        opentelemetry_sdk::trace::Tracer,
    >,
    tracing_subscriber::filter::FilterFn<fn(&tracing::Metadata<'_>) -> bool>,
    tracing_subscriber::Registry,
>;

/// The running export. Call [`shutdown`](Self::shutdown) when the service
/// stops: spans still queued are sent then (dropping it sends nothing:
/// the subscriber keeps the exporter).
pub struct OtlpExport {
    provider: SdkTracerProvider,
}

impl OtlpExport {
    /// Sends every finished span still queued, then stops the export.
    /// Blocks (up to the SDK's 5 s): call it off the async runtime
    /// (`tokio::task::spawn_blocking`).
    pub fn shutdown(self) -> Result<(), String> {
        self.provider.shutdown().map_err(|e| e.to_string())
    }
}

/// The spans the export sees: the trace layer's own.
fn only_request_spans(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span() && meta.target() == guardrail_core::event::TARGET && meta.name() == "api.request"
}

impl fmt::Debug for OtlpExport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpExport").finish_non_exhaustive()
    }
}

/// Why the export could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("OTLP export to {endpoint:?}: {message}")]
pub struct OtlpError {
    endpoint: String,
    message: String,
}

/// A `tracing` layer exporting spans to `endpoint` (the collector's
/// OTLP/HTTP traces URL, such as `http://127.0.0.1:4318/v1/traces`; plain
/// http — a sidecar or node-local collector) as the service
/// `service_name`.
pub fn otlp_layer(
    endpoint: &str,
    service_name: &str,
) -> Result<(OtlpLayer, OtlpExport), OtlpError> {
    let error = |message: String| OtlpError {
        endpoint: endpoint.to_owned(),
        message,
    };
    check_endpoint(endpoint).map_err(|m| error(m.into()))?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| error(e.to_string()))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build();
    let tracer = provider.tracer("guardrails");
    let only: fn(&tracing::Metadata<'_>) -> bool = only_request_spans;
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_level(false)
        .with_filter(tracing_subscriber::filter::FilterFn::new(only));
    Ok((layer, OtlpExport { provider }))
}

/// Whether `endpoint` can be exported to: an `http://` URL with a host
/// (this build's client speaks no TLS: a sidecar or node-local collector).
pub(crate) fn check_endpoint(endpoint: &str) -> Result<(), &'static str> {
    let uri: http::Uri = endpoint.parse().map_err(|_| "not a URL")?;
    // The exporter posts to the URL as given: the traces path must be in it.
    if uri.scheme_str() != Some("http")
        || uri.host().is_none_or(str::is_empty)
        || matches!(uri.path(), "" | "/")
    {
        return Err(
            "must be an http:// URL with a host and the traces path, such as http://127.0.0.1:4318/v1/traces",
        );
    }
    Ok(())
}

/// Makes `span` a child of the caller's context (when it sent one) and
/// returns the context the trace layer writes: the exported span's ids,
/// or `fallback` when no OpenTelemetry layer tracks the span.
pub(crate) fn adopt(
    span: &tracing::Span,
    incoming: Option<&TraceContext>,
    fallback: TraceContext,
) -> TraceContext {
    if span.is_disabled() {
        return fallback;
    }
    if let Some(caller) = incoming {
        let state = caller
            .tracestate()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<TraceState>().ok())
            .unwrap_or_default();
        let remote = SpanContext::new(
            TraceId::from_bytes(caller.trace_id().to_bytes()),
            SpanId::from_bytes(caller.span_id().to_bytes()),
            TraceFlags::new(caller.flags()),
            true,
            state,
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    let context = span.context();
    let exported = context.span().span_context().clone();
    if !exported.is_valid() {
        return fallback;
    }
    fallback
        .with_ids(
            exported.trace_id().to_bytes(),
            exported.span_id().to_bytes(),
            exported.trace_flags().to_u8(),
        )
        .unwrap_or(fallback)
}

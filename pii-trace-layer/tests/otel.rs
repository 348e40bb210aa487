//! OpenTelemetry export (feature `otel`): request spans reach an OTLP/HTTP
//! receiver — a local server standing in for the collector, recording
//! what it is sent — in the caller's trace, with the ids the log line
//! carries.

use std::sync::{Arc, Mutex};

use guardrails_testkit::otlp::{collector, spans};

use guardrail_core::{Pseudonymizer, TraceContext};
use http::{Request, Response};
use pii_trace_layer::{Scrubber, TraceLayer, otel::otlp_layer};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tracing_subscriber::layer::SubscriberExt as _;

#[tokio::test(flavor = "current_thread")]
async fn request_spans_are_exported_in_the_callers_trace_with_the_logged_ids() {
    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let (url, bodies) = collector();
    let (layer, export) = otlp_layer(&url, "otel-test").unwrap();
    let subscriber = tracing_subscriber::registry().with(layer);
    let _default = tracing::subscriber::set_default(subscriber);

    let seen = Arc::new(Mutex::new(Vec::new()));
    let svc = ServiceBuilder::new()
        .layer(TraceLayer::new(Arc::new(Scrubber::new(
            Pseudonymizer::new(b"k"),
        ))))
        .service(service_fn({
            let seen = Arc::clone(&seen);
            move |req: Request<()>| {
                seen.lock()
                    .unwrap()
                    .push(req.extensions().get::<TraceContext>().cloned().unwrap());
                // A handler's own span and event with personal data: they
                // stay in the (scrubbed) logs, never exported.
                let handler = tracing::info_span!("handler", customer = "jane@example.com");
                handler.in_scope(|| tracing::warn!(email = "jane@example.com", "inside"));
                async { Ok::<_, std::convert::Infallible>(Response::new(())) }
            }
        }));
    let mut req = Request::get("/api/orders?card=4111111111111111")
        .body(())
        .unwrap();
    req.headers_mut()
        .insert("traceparent", PARENT.parse().unwrap());
    svc.clone().oneshot(req).await.unwrap();
    svc.oneshot(Request::get("/").body(()).unwrap())
        .await
        .unwrap();
    drop(_default);
    export.shutdown().unwrap();

    let bodies = bodies.lock().unwrap().clone();
    let all = bodies.concat();
    for leaked in [
        "4111111111111111",
        "jane@example.com",
        "code.file.path",
        "thread.name",
    ] {
        assert!(!all.contains(leaked), "{leaked} exported: {all}");
    }
    let spans = spans(&bodies);
    assert_eq!(spans.len(), 2, "{all}");
    let seen = seen.lock().unwrap();
    // The caller's trace; the span's own id is the one the request got
    // (and its api.request line carries).
    let (trace, span, parent, name) = &spans[0];
    assert_eq!(name, "api.request");
    assert_eq!(trace, "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(parent, "b7ad6b7169203331");
    assert_eq!(*span, seen[0].span_id().to_string());
    assert_eq!(seen[0].trace_id().to_string(), *trace);
    // No caller trace: a root span, its ids the request's.
    let (trace, span, parent, _) = &spans[1];
    assert_eq!(*trace, seen[1].trace_id().to_string());
    assert_eq!(*span, seen[1].span_id().to_string());
    assert!(parent.is_empty(), "{parent}");
}

#[test]
fn a_bad_endpoint_is_a_clear_error() {
    for endpoint in [
        "",
        "collector:4318",
        "https://collector/v1/traces",
        "http:///v1/traces",
    ] {
        let Err(err) = otlp_layer(endpoint, "x") else {
            panic!("{endpoint:?} accepted");
        };
        let err = err.to_string();
        assert!(err.contains("OTLP export to"), "{endpoint}: {err}");
    }
}

//! A stand-in for an OpenTelemetry collector: an OTLP/HTTP receiver that
//! records what it is sent, and the spans in it.
//!
//! ```no_run
//! let (url, bodies) = guardrails_testkit::otlp::collector();
//! assert!(url.ends_with("/v1/traces"));
//! assert!(guardrails_testkit::otlp::spans(&bodies.lock().unwrap()).is_empty());
//! ```

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    sync::{Arc, Mutex},
};

/// An OTLP/HTTP receiver: the body of every POST, answered 200.
pub fn collector() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&bodies);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into_owned());
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, bodies)
}

/// Every exported span, as (traceId, spanId, parentSpanId, name).
pub fn spans(bodies: &[String]) -> Vec<(String, String, String, String)> {
    let mut spans = Vec::new();
    for body in bodies {
        let json: serde_json::Value = serde_json::from_str(body).expect("OTLP JSON");
        for resource in json["resourceSpans"].as_array().into_iter().flatten() {
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    let s = |k: &str| span[k].as_str().unwrap_or_default().to_owned();
                    spans.push((s("traceId"), s("spanId"), s("parentSpanId"), s("name")));
                }
            }
        }
    }
    spans
}

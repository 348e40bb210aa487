//! OpenTelemetry's HTTP attribute values, as every layer that reports a
//! request (the trace line, the request metrics) writes them.
//!
//! # Example
//!
//! ```
//! use guardrail_core::semconv::{UNMATCHED_ROUTE, method_name};
//! use http::Method;
//!
//! assert_eq!(method_name(&Method::GET), "GET");
//! assert_eq!(method_name(&Method::from_bytes(b"BREW").unwrap()), "_OTHER");
//! assert_eq!(UNMATCHED_ROUTE, "unmatched");
//! ```

use http::Method;

/// `http.route` of a request no route matched (never its raw path, which
/// may carry ids and is free text).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// `http.request.method`: a standard method by name, any other as
/// `_OTHER` (a client's made-up method is free text, and would add a
/// metric series per word).
pub fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

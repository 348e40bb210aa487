//! Inbound request deadlines and, for outbound calls, per-try timeouts, retry with backoff, jitter and budget, circuit breaking and bulkheads.
//!
//! **Not implemented yet.** This crate reserves its place in the workspace
//! (and the `timeout-retry-layer` feature of the `guardrails` umbrella crate); it exports
//! nothing until its issue lands.
//!
//! # Example
//!
//! ```
//! // The crate links, and the shared vocabulary it will build on is reachable.
//! assert_eq!(guardrail_core::EventName::API_REQUEST.as_str(), "api.request");
//! ```

//! Request metrics through the metrics facade, the detailed health report and alert rules.
//!
//! **Not implemented yet.** This crate reserves its place in the workspace
//! (and the `monitor-layer` feature of the `guardrails` umbrella crate); it exports
//! nothing until its issue lands.
//!
//! # Example
//!
//! ```
//! // The crate links, and the shared vocabulary it will build on is reachable.
//! assert_eq!(guardrail_core::EventName::API_REQUEST.as_str(), "api.request");
//! ```

//! Feature flags (boolean, percentage rollout, targeting, kill switch) from files or Redis, an evaluation API and a layer that gates routes.
//!
//! **Not implemented yet.** This crate reserves its place in the workspace
//! (and the `flag-layer` feature of the `guardrails` umbrella crate); it exports
//! nothing until its issue lands.
//!
//! # Example
//!
//! ```
//! // The crate links, and the shared vocabulary it will build on is reachable.
//! assert_eq!(guardrail_core::EventName::API_REQUEST.as_str(), "api.request");
//! ```

//! Authentication (JWT with HS256/RS256/ES256/EdDSA, JWKS with caching and rotation) and authorization levels (public, authenticated, MFA, admin), ownership checks and webhook signature verification.
//!
//! **Not implemented yet.** This crate reserves its place in the workspace
//! (and the `auth-layer` feature of the `guardrails` umbrella crate); it exports
//! nothing until its issue lands.
//!
//! # Example
//!
//! ```
//! // The crate links, and the shared vocabulary it will build on is reachable.
//! assert_eq!(guardrail_core::EventName::API_REQUEST.as_str(), "api.request");
//! ```

#![deny(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

//! Feature flags for tower services: rollouts whose buckets match
//! Unleash's, user and organisation targeting, a kill switch that is
//! always there, a store read without locks and reloaded from its source,
//! and a layer that hides a route behind a flag.
//!
//! | piece | what it does |
//! |---|---|
//! | [`Flag`] | one definition: `enabled` (the kill switch), `rollout_percentage`, targets and denies, stickiness, group id |
//! | [`FlagStore`] | evaluates ([`evaluate`](FlagStore::evaluate) → [`Evaluation`] with a [`Reason`]), changes at runtime ([`set`](FlagStore::set), [`kill`](FlagStore::kill), [`restore`](FlagStore::restore)), reloads its source, reports health |
//! | [`FlagsConfig`] | `[flags]`: the source (`config`, `file` reloaded, `redis` shared by every replica) and the definitions |
//! | [`FlagLayer`] | a route only callers the flag is on for reach; the others get the 404 of an unknown path |
//! | [`FlagContext`] | who is asking (an axum extractor, from the caller's `Principal`) |
//!
//! Evaluation order: unknown flag → off (`ERROR`, `FLAG_NOT_FOUND`); the
//! flag off — in its source, at runtime, or by
//! `GUARDRAILS_FLAG_<NAME>=off` — → off for everyone, targets included
//! (`DISABLED`); a deny list names the caller → off; a target list names
//! them → on (`TARGETING_MATCH`); rolled out to 100 % → on (`STATIC`), to
//! 0 % → off (`DEFAULT`); otherwise the caller's bucket decides (`SPLIT`),
//! and a caller without the stickiness value (no user id) is off
//! (`DEFAULT`).
//!
//! # Example
//!
//! ```
//! use flag_layer::{Flag, FlagContext, FlagStore, Reason};
//!
//! let store = FlagStore::builder(vec![
//!     Flag::new("ai_recommendations").enabled(true).rollout(50).target(["staff-1"]),
//! ])
//! .build()
//! .unwrap();
//! let staff = store.evaluate("ai_recommendations", &FlagContext::user("staff-1"));
//! assert_eq!((staff.enabled, staff.reason), (true, Reason::TargetingMatch));
//! let anyone = store.evaluate("ai_recommendations", &FlagContext::user("user-42"));
//! assert_eq!(anyone.reason, Reason::Split);
//! // The same user always gets the same answer.
//! assert_eq!(anyone, store.evaluate("ai_recommendations", &FlagContext::user("user-42")));
//! ```

mod eval;
mod layer;
mod model;
#[cfg(feature = "openfeature")]
pub mod openfeature;
mod remote;
mod source;
mod store;

pub use eval::{ErrorCode, Evaluation, FlagContext, Reason, bucket};
pub use layer::{
    Fallback, FlagGate, FlagLayer, NotFound, OffBranch, ResponseFuture as FlagGateFuture,
};
pub use model::{Flag, FlagUpdate, Stickiness};
pub use source::{FlagSource, FlagsConfig};
pub use store::{ENV_PREFIX, EvaluationContext, FlagError, FlagStore, FlagStoreBuilder};

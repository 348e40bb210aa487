//! State for the health report: each layer that owns something that can
//! fail (a Redis connection, a key cache, a circuit, a flag store) exposes
//! it as a [`HealthSource`]; the service collects them in a
//! [`HealthRegistry`] that the monitor layer reads.
//!
//! A source is cheap to ask (it reads state it already keeps; no I/O), so a
//! readiness probe can ask every source on every call.
//!
//! # Example
//!
//! ```
//! use guardrail_core::health::{ComponentHealth, HealthRegistry, HealthSource, HealthStatus};
//!
//! #[derive(Debug)]
//! struct Cache { keys: usize }
//!
//! impl HealthSource for Cache {
//!     fn name(&self) -> &str { "cache" }
//!     fn check(&self) -> ComponentHealth {
//!         if self.keys == 0 {
//!             ComponentHealth::warn(serde_json::json!({ "keys": 0 }))
//!         } else {
//!             ComponentHealth::pass(serde_json::json!({ "keys": self.keys }))
//!         }
//!     }
//! }
//!
//! let registry = HealthRegistry::new();
//! registry.register(Cache { keys: 3 });
//! registry.register(Cache { keys: 0 });
//! let report = registry.report();
//! assert_eq!(report.status, HealthStatus::Warn);
//! assert_eq!(report.components.len(), 2);
//! let json = serde_json::to_value(&report).unwrap();
//! assert_eq!(json["status"], "warn");
//! assert_eq!(json["components"][0]["details"]["keys"], 3);
//! ```

use std::{
    fmt,
    sync::{Arc, RwLock},
};

use serde::Serialize;

/// How a component is doing, in the words of the IETF health-check draft.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Working.
    Pass,
    /// Working, degraded (serving stale keys, deciding locally).
    Warn,
    /// Not working: readiness fails.
    Fail,
}

/// One component's status and details.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ComponentHealth {
    /// The status.
    pub status: HealthStatus,
    /// What an operator needs to know (counts, ages, the backend), as JSON.
    /// Never a secret, a URL or a raw client id.
    pub details: serde_json::Value,
}

impl ComponentHealth {
    /// A working component.
    pub fn pass(details: serde_json::Value) -> Self {
        Self {
            status: HealthStatus::Pass,
            details,
        }
    }

    /// A degraded component.
    pub fn warn(details: serde_json::Value) -> Self {
        Self {
            status: HealthStatus::Warn,
            details,
        }
    }

    /// A failing component.
    pub fn fail(details: serde_json::Value) -> Self {
        Self {
            status: HealthStatus::Fail,
            details,
        }
    }
}

/// Something whose state belongs in the health report.
pub trait HealthSource: fmt::Debug + Send + Sync + 'static {
    /// The component's name in the report (`rate_limit`, `jwks`).
    fn name(&self) -> &str;

    /// The component's state now. Cheap: reads state the component keeps,
    /// never does I/O.
    fn check(&self) -> ComponentHealth;
}

impl<T: HealthSource + ?Sized> HealthSource for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn check(&self) -> ComponentHealth {
        (**self).check()
    }
}

/// One component in a [`HealthReport`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NamedHealth {
    /// The component's name.
    pub name: String,
    /// Its status and details.
    #[serde(flatten)]
    pub health: ComponentHealth,
}

/// Every registered component, and the worst status among them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HealthReport {
    /// The worst component status (`pass` with no components).
    pub status: HealthStatus,
    /// Each component, in registration order.
    pub components: Vec<NamedHealth>,
}

/// The health sources of a service; clones share one list.
#[derive(Clone, Default)]
pub struct HealthRegistry {
    sources: Arc<RwLock<Vec<Arc<dyn HealthSource>>>>,
}

impl HealthRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a source.
    pub fn register(&self, source: impl HealthSource) {
        self.register_arc(Arc::new(source));
    }

    /// Adds a shared source.
    pub fn register_arc(&self, source: Arc<dyn HealthSource>) {
        self.sources
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(source);
    }

    /// The names of the registered sources.
    pub fn names(&self) -> Vec<String> {
        self.sources
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|s| s.name().to_owned())
            .collect()
    }

    /// Asks every source.
    pub fn report(&self) -> HealthReport {
        let components: Vec<NamedHealth> = self
            .sources
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|s| NamedHealth {
                name: s.name().to_owned(),
                health: s.check(),
            })
            .collect();
        HealthReport {
            status: components
                .iter()
                .map(|c| c.health.status)
                .max()
                .unwrap_or(HealthStatus::Pass),
            components,
        }
    }
}

impl fmt::Debug for HealthRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthRegistry")
            .field("sources", &self.names())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed(&'static str, HealthStatus);

    impl HealthSource for Fixed {
        fn name(&self) -> &str {
            self.0
        }
        fn check(&self) -> ComponentHealth {
            ComponentHealth {
                status: self.1,
                details: serde_json::Value::Null,
            }
        }
    }

    #[test]
    fn one_failing_component_fails_the_report() {
        let registry = HealthRegistry::new();
        assert_eq!(registry.report().status, HealthStatus::Pass);
        registry.register(Fixed("a", HealthStatus::Pass));
        let clone = registry.clone();
        clone.register(Fixed("b", HealthStatus::Fail));
        registry.register(Fixed("c", HealthStatus::Warn));
        let report = registry.report();
        assert_eq!(report.status, HealthStatus::Fail);
        assert_eq!(registry.names(), ["a", "b", "c"]);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["components"][1]["name"], "b");
        assert_eq!(json["components"][1]["status"], "fail");
    }
}

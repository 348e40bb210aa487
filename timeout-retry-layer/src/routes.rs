//! Per-route overrides of a setting, by path prefix.

/// A default value and overrides for path prefixes; the longest matching
/// prefix wins. Prefixes match as plain string prefixes, as
/// `rate_limit.routes` do: end one with `/` to match whole segments only.
#[derive(Clone, Debug)]
pub(crate) struct RouteOverrides<T> {
    default: T,
    /// Longest prefix first.
    routes: Vec<(String, T)>,
}

impl<T: Copy> RouteOverrides<T> {
    pub(crate) fn new(default: T) -> Self {
        Self {
            default,
            routes: Vec::new(),
        }
    }

    pub(crate) fn set_default(&mut self, default: T) {
        self.default = default;
    }

    /// Adds (or replaces) the value for `prefix`.
    pub(crate) fn insert(&mut self, prefix: String, value: T) {
        self.routes.retain(|(p, _)| *p != prefix);
        let at = self
            .routes
            .iter()
            .position(|(p, _)| p.len() < prefix.len())
            .unwrap_or(self.routes.len());
        self.routes.insert(at, (prefix, value));
    }

    /// The value for `path`.
    #[inline]
    pub(crate) fn get(&self, path: &str) -> T {
        self.routes
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map_or(self.default, |(_, value)| *value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_matching_prefix_wins_whatever_the_order_added() {
        let mut routes = RouteOverrides::new(1);
        routes.insert("/api/".into(), 2);
        routes.insert("/api/reports/".into(), 3);
        routes.insert("/api/reports/big".into(), 4);
        assert_eq!(routes.get("/"), 1);
        assert_eq!(routes.get("/api/me"), 2);
        assert_eq!(routes.get("/api/reports/x"), 3);
        assert_eq!(routes.get("/api/reports/big/1"), 4);
        assert_eq!(routes.get("/api/reports"), 2);
        routes.insert("/api/".into(), 5);
        assert_eq!(routes.get("/api/me"), 5);
    }
}

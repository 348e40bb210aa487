//! The public allow-list: the only routes that skip authentication.

use std::fmt;

/// Paths that need no authentication: exact paths (`/api/health`) and
/// prefix patterns (`/api/webhooks/*`, matching every path below
/// `/api/webhooks/`).
///
/// Matching is deliberately literal and conservative: a path with `.` or
/// `..` segments, empty segments or percent-escapes is never public, so
/// `/api/webhooks/../admin/users` can't reach a protected route through a
/// public prefix.
#[derive(Clone, Default)]
pub struct PublicRoutes {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

/// Why a public route pattern was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternError(pub String);

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PatternError {}

impl PublicRoutes {
    /// No public routes: everything is authenticated.
    pub fn none() -> Self {
        Self::default()
    }

    /// Parses patterns; refuses ones that would make everything public
    /// (`/*`, `*`, `/`-prefixes) or are not absolute paths.
    pub fn new<I, P>(patterns: I) -> Result<Self, PatternError>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        let mut routes = Self::default();
        for pattern in patterns {
            let pattern = pattern.as_ref();
            if !pattern.starts_with('/') {
                return Err(PatternError(format!("`{pattern}` must start with `/`")));
            }
            if let Some(prefix) = pattern.strip_suffix("/*") {
                if prefix.is_empty() {
                    return Err(PatternError(format!(
                        "`{pattern}` would make every route public"
                    )));
                }
                if prefix.contains('*') {
                    return Err(PatternError(format!(
                        "`{pattern}`: `*` is only allowed as a final `/*`"
                    )));
                }
                routes.prefixes.push(format!("{prefix}/"));
            } else if pattern.contains('*') {
                return Err(PatternError(format!(
                    "`{pattern}`: `*` is only allowed as a final `/*`"
                )));
            } else {
                routes.exact.push(pattern.to_owned());
            }
        }
        Ok(routes)
    }

    /// Whether `path` is public.
    pub fn is_public(&self, path: &str) -> bool {
        if self.exact.iter().any(|p| p == path) {
            return true;
        }
        self.prefixes.iter().any(|prefix| {
            path.strip_prefix(prefix.as_str())
                .is_some_and(|rest| !rest.is_empty() && plain(rest))
        })
    }

    /// The patterns, for the startup coverage log.
    pub fn patterns(&self) -> impl Iterator<Item = String> + '_ {
        self.exact
            .iter()
            .cloned()
            .chain(self.prefixes.iter().map(|p| format!("{p}*")))
    }
}

/// No dot segments, empty segments or escapes.
fn plain(rest: &str) -> bool {
    !rest.contains('%')
        && rest
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

impl fmt::Debug for PublicRoutes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.patterns()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_prefix_patterns_match() {
        let r = PublicRoutes::new(["/api/health", "/api/webhooks/*"]).unwrap();
        assert!(r.is_public("/api/health"));
        assert!(!r.is_public("/api/health/"));
        assert!(!r.is_public("/api/healthz"));
        assert!(r.is_public("/api/webhooks/stripe"));
        assert!(!r.is_public("/api/webhooks/"));
        assert!(!r.is_public("/api/webhooks"));
        assert!(!r.is_public("/api/me"));
    }

    #[test]
    fn traversal_through_a_public_prefix_is_not_public() {
        let r = PublicRoutes::new(["/api/webhooks/*"]).unwrap();
        for path in [
            "/api/webhooks/../admin/users",
            "/api/webhooks/./x",
            "/api/webhooks//x",
            "/api/webhooks/%2e%2e/admin",
        ] {
            assert!(!r.is_public(path), "{path}");
        }
    }

    #[test]
    fn catch_all_patterns_are_refused() {
        for bad in ["/*", "*", "", "api/health", "/api/*/x", "/api*"] {
            assert!(PublicRoutes::new([bad]).is_err(), "{bad}");
        }
    }
}

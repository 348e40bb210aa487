//! Configuration vocabulary shared by every layer's config section: the
//! [`Profile`] a configuration is validated for, and the [`ConfigProblem`]
//! a validation reports.
//!
//! Each layer validates its own section into a list of problems; the
//! umbrella crate collects them so a service reports every problem at once.
//!
//! # Example
//!
//! ```
//! use guardrail_core::config::{ConfigProblem, Profile};
//!
//! let mut problems = Vec::new();
//! let burst = 0;
//! if burst == 0 {
//!     problems.push(ConfigProblem::new("rate_limit.burst", "must be at least 1"));
//! }
//! assert_eq!(problems[0].to_string(), "rate_limit.burst: must be at least 1");
//! assert_eq!(Profile::default(), Profile::Production);
//! ```

use std::fmt;

use serde::Deserialize;

/// Strict checks for production, or lenient ones for development.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Local development and tests: weak settings are allowed.
    Development,
    /// The default: refuses weak secrets, wildcard proxies and the like.
    #[default]
    Production,
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Development => "development",
            Self::Production => "production",
        })
    }
}

/// One invalid setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The key path, e.g. `client_ip.trusted_proxies[0]`.
    pub path: String,
    /// What is wrong and what to do instead.
    pub message: String,
}

impl ConfigProblem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Deserializes an HTTP header name, with an error naming the bad value.
pub(crate) fn header_name<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<http::HeaderName, D::Error> {
    let s = String::deserialize(d)?;
    http::HeaderName::from_bytes(s.as_bytes())
        .map_err(|_| serde::de::Error::custom(format!("`{s}` is not a valid HTTP header name")))
}

//! Profile-dependent validation that reports every problem at once.

use std::{fmt, time::Duration};

use super::{ConfigProblem, GuardrailsConfig, Profile};

/// Every problem [`GuardrailsConfig::validate`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationErrors {
    profile: Profile,
    problems: Vec<ConfigProblem>,
}

impl ValidationErrors {
    /// The problems, in key order.
    pub fn problems(&self) -> &[ConfigProblem] {
        &self.problems
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "invalid configuration for the {} profile ({n} problem{}):",
            self.profile,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {}: {}", p.path, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

const MAX_SHUTDOWN_GRACE: Duration = Duration::from_secs(300);

impl GuardrailsConfig {
    /// Checks every setting against `profile` and returns all problems.
    pub fn validate(&self, profile: Profile) -> Result<(), ValidationErrors> {
        let mut problems = Vec::new();
        let mut problem =
            |path: String, message: &str| problems.push(ConfigProblem::new(path, message));

        let grace = self.server.shutdown_grace;
        if grace.is_zero() || grace > MAX_SHUTDOWN_GRACE {
            problem(
                "server.shutdown_grace".into(),
                "must be more than 0s and at most 5m",
            );
        }

        for (i, net) in self.client_ip.trusted_proxy_list().iter().enumerate() {
            if net.prefix_len() == 0 && profile == Profile::Production {
                problem(
                    format!("client_ip.trusted_proxies[{i}]"),
                    "trusts every address, so any client could choose its own IP; list your proxies' CIDR blocks",
                );
            }
        }
        let prefix = self.client_ip.ipv6_group_prefix_len();
        if !(16..=128).contains(&prefix) {
            problem(
                "client_ip.ipv6_group_prefix".into(),
                "must be between 16 and 128 (64 groups one subscriber's addresses)",
            );
        }

        #[cfg(feature = "pii-trace-layer")]
        self.trace.validate(profile, &mut problems);
        #[cfg(feature = "ratelimit-layer")]
        self.rate_limit.validate(profile, &mut problems);
        #[cfg(feature = "auth-layer")]
        self.auth.validate(profile, &mut problems);

        if problems.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors { profile, problems })
        }
    }
}

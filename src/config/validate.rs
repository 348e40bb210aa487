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

/// Production if either is.
fn strictest(a: Profile, b: Profile) -> Profile {
    if a == Profile::Production || b == Profile::Production {
        Profile::Production
    } else {
        Profile::Development
    }
}

/// A configuration that passed [`GuardrailsConfig::validate`]: the only
/// thing [`GuardrailsLayer::from_config`](crate::GuardrailsLayer::from_config)
/// accepts, so a stack can't be built from an unchecked config (say, with a
/// missing production secret).
#[derive(Clone, Debug)]
pub struct ValidConfig {
    config: GuardrailsConfig,
    profile: Profile,
}

impl ValidConfig {
    /// The profile the stack is built for: the configuration's, or the
    /// one it was validated for if that is stricter.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The configuration.
    pub fn into_inner(self) -> GuardrailsConfig {
        self.config
    }
}

impl std::ops::Deref for ValidConfig {
    type Target = GuardrailsConfig;

    fn deref(&self) -> &GuardrailsConfig {
        &self.config
    }
}

impl GuardrailsConfig {
    /// Checks every setting against the profile the configuration names
    /// (`profile = …`, production by default) and returns all problems, or
    /// the validated configuration.
    pub fn validate(&self) -> Result<ValidConfig, ValidationErrors> {
        self.validate_for(self.profile)
    }

    /// [`validate`](Self::validate) against another profile than the one
    /// the configuration names (e.g. to check a development config would
    /// pass in production). The result keeps the stricter of the two: a
    /// production config checked as development still builds a production
    /// stack (which refuses a missing or weak secret).
    pub fn validate_for(&self, profile: Profile) -> Result<ValidConfig, ValidationErrors> {
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

        self.redis.validate(self.uses_redis(), &mut problems);
        #[cfg(feature = "pii-trace-layer")]
        self.trace.validate(profile, &mut problems);
        #[cfg(feature = "ratelimit-layer")]
        self.rate_limit.validate(profile, &mut problems);
        #[cfg(feature = "auth-layer")]
        self.auth.validate(profile, &mut problems);
        #[cfg(feature = "timeout-retry-layer")]
        {
            self.timeout.validate(&mut problems);
            self.body_limit.validate(&mut problems);
            self.load_shed.validate(&mut problems);
            for (name, upstream) in &self.upstreams {
                upstream.validate(name, strictest(profile, self.profile), &mut problems);
            }
        }
        #[cfg(feature = "monitor-layer")]
        self.monitor.validate(&mut problems);
        #[cfg(feature = "flag-layer")]
        {
            self.flags.validate(&mut problems);
            if self.flags.uses_redis() && self.redis.cluster {
                problems.push(ConfigProblem::new(
                    "flags.source",
                    "\"redis\" needs a single Redis server (changes are published with pub/sub), not a cluster",
                ));
            }
        }
        // Either profile being production refuses them: the stack is built
        // for the stricter of the two.
        if self.server.debug_routes && strictest(profile, self.profile) == Profile::Production {
            problems.push(ConfigProblem::new(
                "server.debug_routes",
                "is for development only (it adds routes that panic and stall on purpose)",
            ));
        }

        if problems.is_empty() {
            Ok(ValidConfig {
                config: self.clone(),
                profile: strictest(profile, self.profile),
            })
        } else {
            Err(ValidationErrors { profile, problems })
        }
    }

    /// Whether a layer is configured to use `[redis]`.
    pub(crate) fn uses_redis(&self) -> bool {
        #[cfg(feature = "ratelimit-layer")]
        if self.rate_limit.uses_redis() {
            return true;
        }
        #[cfg(feature = "auth-layer")]
        if self.auth.webhook.uses_redis() {
            return true;
        }
        #[cfg(feature = "flag-layer")]
        if self.flags.uses_redis() {
            return true;
        }
        false
    }
}

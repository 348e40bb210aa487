//! `[flags]`: where the definitions come from, and the reload of a flag
//! file.

use std::{path::PathBuf, time::Duration};

use guardrail_core::{BackgroundTasks, Pseudonymizer, config::ConfigProblem};
use serde::Deserialize;

use crate::{Flag, FlagError, FlagStore, model::validate_set};

/// `[flags]`: the flag definitions' source and the definitions themselves
/// (with `source = "config"`).
///
/// ```
/// use flag_layer::{FlagsConfig, FlagContext};
///
/// let config: FlagsConfig = toml::from_str(r#"
///     source = "config"
///     [[flag]]
///     name = "ai_recommendations"
///     enabled = true
///     rollout_percentage = 100
/// "#).unwrap();
/// let mut problems = Vec::new();
/// config.validate(&mut problems);
/// assert!(problems.is_empty());
/// let pseudonymizer = guardrail_core::Pseudonymizer::random();
/// let (store, tasks) = config.store(pseudonymizer, std::iter::empty(), None).unwrap();
/// assert!(tasks.is_empty(), "nothing to reload");
/// assert!(store.is_enabled("ai_recommendations", &FlagContext::user("u1")));
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct FlagsConfig {
    /// `"config"` (the `[[flags.flag]]` tables, default), `"file"` (the
    /// TOML file `file`, reloaded) or `"redis"` (the shared `[redis]`:
    /// every replica applies a change at once; the `[[flags.flag]]` tables
    /// are written there when Redis has no definition of theirs).
    pub source: FlagSource,
    /// With `source = "file"`: a TOML file of `[[flag]]` tables.
    pub file: Option<PathBuf>,
    /// How often the source is read again (default `"5s"`): the file, or
    /// with Redis the full resync behind the published changes. A change
    /// applies atomically; a bad one is refused and logged and the last
    /// good set keeps serving.
    #[serde(with = "humantime_serde")]
    pub reload: Duration,
    /// The definitions, with `source = "config"`.
    pub flag: Vec<Flag>,
}

impl Default for FlagsConfig {
    fn default() -> Self {
        Self {
            source: FlagSource::Config,
            file: None,
            reload: Duration::from_secs(5),
            flag: Vec::new(),
        }
    }
}

/// Where flag definitions come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum FlagSource {
    /// `[[flags.flag]]` in the config.
    #[default]
    Config,
    /// A TOML file, reloaded.
    File,
    /// Redis, shared by every replica.
    Redis,
}

impl FlagSource {
    fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::File => "file",
            Self::Redis => "redis",
        }
    }
}

/// A flag file: `[[flag]]` tables.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlagFile {
    #[serde(default)]
    flag: Vec<Flag>,
}

/// Reads a flag file's text; a TOML error is one problem at `flags.file`.
/// Its message and line only: TOML's own text quotes the line, which may
/// hold user ids (a `target_users` list), and this goes to logs and the
/// health report.
fn parse_file(text: &str) -> Result<Vec<Flag>, FlagError> {
    toml::from_str::<FlagFile>(text)
        .map(|file| file.flag)
        .map_err(|e| {
            let line = e
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
            let message = match line {
                Some(line) => format!("line {line}: {}", e.message()),
                None => e.message().to_owned(),
            };
            FlagError::Invalid(vec![ConfigProblem::new("flags.file", message)])
        })
}

impl FlagsConfig {
    /// Adds every problem of `[flags]` to `problems`.
    pub fn validate(&self, problems: &mut Vec<ConfigProblem>) {
        if let Err(found) = validate_set(&self.flag, "flags.flag") {
            problems.extend(found);
        }
        if self.source != FlagSource::Config && self.reload.is_zero() {
            problems.push(ConfigProblem::new("flags.reload", "must be more than 0s"));
        }
        match self.source {
            FlagSource::File if self.file.is_none() => problems.push(ConfigProblem::new(
                "flags.file",
                "is required with source = \"file\"",
            )),
            _ => {}
        }
        if self.source == FlagSource::File && !self.flag.is_empty() {
            problems.push(ConfigProblem::new(
                "flags.flag",
                "is only read with source = \"config\"; move these definitions to the source",
            ));
        }
    }

    /// Whether the flags live in Redis (the service then prepares the
    /// shared `[redis]` connection).
    pub fn uses_redis(&self) -> bool {
        self.source == FlagSource::Redis
    }

    /// The store, and its background work (the file's reload, or the
    /// Redis follower), from this section, the environment's off switches
    /// (`vars`, e.g. `std::env::vars()`) and, with `source = "redis"`, the
    /// shared connection. Fails when the file can't be read, its
    /// definitions or the switches are invalid, or Redis is needed and not
    /// given (or the crate's `redis` feature is off).
    pub fn store(
        &self,
        pseudonymizer: Pseudonymizer,
        vars: impl IntoIterator<Item = (String, String)>,
        redis: Option<guardrail_core::RedisConnection>,
    ) -> Result<(FlagStore, BackgroundTasks), FlagError> {
        let mut tasks = BackgroundTasks::new();
        let (flags, file) = match (self.source, &self.file) {
            (FlagSource::File, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    FlagError::Invalid(vec![ConfigProblem::new(
                        "flags.file",
                        format!("cannot read {}: {e}", path.display()),
                    )])
                })?;
                (parse_file(&text)?, Some((path.clone(), text)))
            }
            _ => (self.flag.clone(), None),
        };
        let remote = match self.source {
            FlagSource::Redis => Some(crate::remote::remote(redis, self.flag.clone())?),
            _ => None,
        };
        let builder = FlagStore::builder(flags)
            .pseudonymizer(pseudonymizer)
            .environment(vars)
            .source(self.source.as_str());
        let builder = match &remote {
            Some(remote) => builder.remote(remote.clone()),
            None => builder,
        };
        let store = builder.build()?;
        if let Some(remote) = remote {
            tasks.push(
                "flag_sync",
                crate::remote::sync(store.clone(), remote, self.reload),
            );
        }
        if store.has_environment_switches() {
            let report = store.clone();
            tasks.push("flag_environment_switches", async move {
                report.report_environment_switches();
            });
        }
        if let Some((path, text)) = file {
            tasks.push(
                "flag_reload",
                reload(store.clone(), path, text, self.reload),
            );
        }
        Ok((store, tasks))
    }
}

/// Reads `path` every `every`; a changed text replaces the definitions
/// (or is refused, logged, and the last good set keeps serving).
async fn reload(store: FlagStore, path: PathBuf, last: String, every: Duration) {
    // The text last applied or refused (`None` after a failed read, so
    // the same text coming back is applied again), and the last read error.
    let mut last = Some(last);
    let mut unreadable = None;
    loop {
        tokio::time::sleep(every).await;
        match tokio::fs::read_to_string(&path).await {
            Ok(text) if last.as_ref() == Some(&text) => {}
            Ok(text) => {
                match parse_file(&text) {
                    // A refused set is logged and reported by the store.
                    Ok(flags) => drop(store.replace_source(flags, "flags.file")),
                    Err(e) => store.source_unreadable(e.to_string()),
                }
                // A bad edit is reported once, not at every read.
                last = Some(text);
                unreadable = None;
            }
            Err(e) => {
                let why = format!("cannot read {}: {}", path.display(), e.kind());
                if unreadable.as_ref() != Some(&why) {
                    store.source_unreadable(why.clone());
                    unreadable = Some(why);
                }
                last = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use guardrails_testkit::capture;

    use super::*;
    use crate::{FlagContext, Reason};

    fn config(toml: &str) -> FlagsConfig {
        toml::from_str(toml).unwrap()
    }

    /// Lets the (paused) clock run until `done` holds: the reload task
    /// reads the file on the blocking pool, so each step also gives that
    /// thread a moment. Fails after 1000 steps.
    async fn until(done: impl Fn() -> bool) {
        for _ in 0..1000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("not reached");
    }

    #[tokio::test(start_paused = true)]
    async fn a_flag_file_is_reloaded_and_a_bad_edit_is_refused() {
        let (_guard, logs) = capture::json();
        let dir = std::env::temp_dir().join(format!("flags-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("flags.toml");
        let write = |text: &str| std::fs::write(&path, text).unwrap();
        write("[[flag]]\nname = \"ai_recs\"\nenabled = true\nrollout_percentage = 100\n");
        let section = config(&format!(
            "source = \"file\"\nfile = {:?}\nreload = \"1s\"\n",
            path.display().to_string()
        ));
        let mut problems = Vec::new();
        section.validate(&mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let (store, tasks) = section
            .store(Pseudonymizer::random(), std::iter::empty(), None)
            .unwrap();
        assert_eq!(tasks.names(), ["flag_reload"]);
        let running = tasks.spawn();
        let ctx = FlagContext::user("u1");
        assert!(store.is_enabled("ai_recs", &ctx));

        // An edit applies at the next read: the kill switch.
        write("[[flag]]\nname = \"ai_recs\"\nenabled = false\n");
        until(|| store.evaluate("ai_recs", &ctx).reason == Reason::Disabled).await;

        // A bad edit (TOML error, then an invalid flag) is refused; the
        // last good set serves, and the health report says why.
        let rejected = || {
            logs.lines()
                .into_iter()
                .filter(|l| l["event"] == "flag.source_rejected")
                .count()
        };
        write("[[flag]\nname = ");
        until(|| rejected() == 1).await;
        write("[[flag]]\nname = \"ai_recs\"\nenabled = true\nrollout_percentage = 300\n");
        until(|| rejected() == 2).await;
        assert_eq!(store.evaluate("ai_recs", &ctx).reason, Reason::Disabled);
        let health = store.health_source().check();
        assert_eq!(health.status, guardrail_core::health::HealthStatus::Warn);
        let why = health.details["last_reload_refused"]["problems"]
            .as_str()
            .unwrap();
        assert!(why.contains("rollout_percentage"), "{why}");
        // Each bad edit is logged once, not at every read.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(rejected(), 2);

        // Fixed: applies, and the report is clear again.
        write("[[flag]]\nname = \"ai_recs\"\nenabled = true\nrollout_percentage = 100\n");
        until(|| store.is_enabled("ai_recs", &ctx)).await;
        assert_eq!(
            store.health_source().check().status,
            guardrail_core::health::HealthStatus::Pass
        );
        running.shutdown().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_section_lists_every_problem() {
        let mut problems = Vec::new();
        config("source = \"file\"\n[[flag]]\nname = \"x\"\n").validate(&mut problems);
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["flags.flag[0].name", "flags.file", "flags.flag"]);
        let unreadable = config("source = \"file\"\nfile = \"/nonexistent/flags.toml\"\n")
            .store(Pseudonymizer::random(), std::iter::empty(), None)
            .unwrap_err();
        assert!(
            unreadable.to_string().contains("cannot read"),
            "{unreadable}"
        );
        assert!(toml::from_str::<FlagsConfig>("source = \"etcd\"").is_err());
    }
}

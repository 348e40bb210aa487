//! The flag store: an immutable snapshot read without locks, rebuilt on
//! every change from three layers — the source, runtime changes through
//! the API, and the environment's emergency off switches.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    fmt,
    sync::{Arc, Mutex, MutexGuard},
    time::SystemTime,
};

use arc_swap::ArcSwap;
use guardrail_core::{
    EventName, Principal, Pseudonymizer,
    config::ConfigProblem,
    emit,
    health::{ComponentHealth, HealthSource},
    metric,
};

use crate::{
    Evaluation, Flag, FlagUpdate, Reason, Stickiness,
    eval::bucket,
    model::{valid_name, validate_set},
    remote::Remote,
};

/// Who a flag is evaluated for: anything that can say who the caller is.
/// Implemented by [`FlagContext`](crate::FlagContext) and by core's
/// [`Principal`] (so a layer evaluates without copying the caller's ids).
pub trait EvaluationContext {
    /// The user id.
    fn user_id(&self) -> Option<&str>;
    /// The session id.
    fn session_id(&self) -> Option<&str>;
    /// The organisation id.
    fn org_id(&self) -> Option<&str>;
    /// A property, for a custom stickiness.
    fn property(&self, key: &str) -> Option<&str> {
        let _ = key;
        None
    }
}

impl EvaluationContext for crate::FlagContext {
    fn user_id(&self) -> Option<&str> {
        self.user_id()
    }
    fn session_id(&self) -> Option<&str> {
        self.session_id()
    }
    fn org_id(&self) -> Option<&str> {
        self.org_id()
    }
    fn property(&self, key: &str) -> Option<&str> {
        self.property(key)
    }
}

impl EvaluationContext for Principal {
    fn user_id(&self) -> Option<&str> {
        Some(self.subject())
    }
    fn session_id(&self) -> Option<&str> {
        Principal::session_id(self)
    }
    fn org_id(&self) -> Option<&str> {
        Principal::org_id(self)
    }
}

/// Why a set of flags or a change to one was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlagError {
    /// No flag of that name.
    NotFound(String),
    /// Every problem found, each with its place.
    Invalid(Vec<ConfigProblem>),
    /// The shared store (Redis) could not be written: nothing changed.
    Unavailable(String),
}

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound(name) => write!(f, "no flag named {name:?}"),
            Self::Unavailable(why) => write!(f, "the flag store could not be written: {why}"),
            Self::Invalid(problems) => {
                f.write_str("invalid flags:")?;
                for p in problems {
                    write!(f, " {}: {};", p.path, p.message)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for FlagError {}

/// The prefix of the environment's emergency off switches:
/// `GUARDRAILS_FLAG_AI_RECOMMENDATIONS=off`.
pub const ENV_PREFIX: &str = "GUARDRAILS_FLAG_";

/// The flags every layer and handler of a service reads: cheap to clone
/// (one `Arc`), evaluated without a lock, changed through
/// [`set`](Self::set), [`kill`](Self::kill) and [`restore`](Self::restore)
/// (runtime changes, which win over the source) and by its source's
/// reloads. Environment off switches win over both.
///
/// ```
/// use flag_layer::{Flag, FlagContext, FlagStore, Reason};
/// use guardrail_core::Principal;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = FlagStore::builder(vec![
///     Flag::new("ai_recommendations").enabled(true).rollout(100),
/// ])
/// .build()
/// .unwrap();
/// let alice = FlagContext::user("alice");
/// assert!(store.is_enabled("ai_recommendations", &alice));
///
/// // The kill switch, by an operator: off for everyone at once.
/// store.kill("ai_recommendations", &Principal::new("ops-1")).await.unwrap();
/// let off = store.evaluate("ai_recommendations", &alice);
/// assert_eq!((off.enabled, off.reason), (false, Reason::Disabled));
///
/// // An unknown flag is off, never an error the caller must handle.
/// assert_eq!(store.evaluate("ai_typo", &alice).reason, Reason::Error);
/// # }
/// ```
#[derive(Clone)]
pub struct FlagStore {
    inner: Arc<Inner>,
}

struct Inner {
    snapshot: ArcSwap<Snapshot>,
    layers: Mutex<Layers>,
    pseudonymizer: Pseudonymizer,
    source: &'static str,
    /// With the Redis source: where changes are written.
    remote: Option<Arc<Remote>>,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    stale_gauge: metrics::Gauge,
}

/// What the snapshot is built from.
struct Layers {
    source: BTreeMap<String, Flag>,
    runtime: BTreeMap<String, FlagUpdate>,
    env_off: BTreeSet<String>,
    /// The last refused reload, while the previous set keeps serving.
    rejected: Option<(SystemTime, String)>,
    /// Since when, and why, the source can't be reached.
    stale: Option<(SystemTime, String)>,
    /// When the source (Redis) was last read whole.
    synced: Option<SystemTime>,
    /// Writes to Redis made here, so far.
    writes: u64,
    /// Whether the source's failure was logged (logged once per outage).
    failure_logged: bool,
}

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type Set<K> = HashSet<K, foldhash::fast::RandomState>;

#[derive(Default)]
struct Snapshot {
    flags: Map<Box<str>, Compiled>,
}

/// One flag, ready to evaluate.
struct Compiled {
    flag: Flag,
    env_off: bool,
    target_users: Set<Box<str>>,
    target_orgs: Set<Box<str>>,
    deny_users: Set<Box<str>>,
    deny_orgs: Set<Box<str>>,
    on: metrics::Counter,
    off: metrics::Counter,
}

impl Compiled {
    fn new(flag: Flag, env_off: bool) -> Self {
        let set = |list: &[String]| list.iter().map(|s| s.as_str().into()).collect();
        let counter = |outcome: &'static str| {
            metrics::counter!(
                metric::FLAG_EVALUATIONS_TOTAL,
                "flag" => flag.name.clone(),
                "outcome" => outcome,
            )
        };
        Self {
            target_users: set(&flag.target_users),
            target_orgs: set(&flag.target_orgs),
            deny_users: set(&flag.deny_users),
            deny_orgs: set(&flag.deny_orgs),
            on: counter("on"),
            off: counter("off"),
            env_off,
            flag,
        }
    }

    fn is_on(&self) -> bool {
        self.flag.enabled && !self.env_off
    }

    /// The documented order: off switches, deny lists, targets, rollout.
    fn evaluate(&self, ctx: &(impl EvaluationContext + ?Sized)) -> Evaluation {
        if !self.is_on() {
            return Evaluation::new(false, Reason::Disabled);
        }
        let user = ctx.user_id();
        let org = ctx.org_id();
        let listed = |set: &Set<Box<str>>, id: Option<&str>| id.is_some_and(|id| set.contains(id));
        if listed(&self.deny_users, user) || listed(&self.deny_orgs, org) {
            return Evaluation::new(false, Reason::TargetingMatch);
        }
        if listed(&self.target_users, user) || listed(&self.target_orgs, org) {
            return Evaluation::new(true, Reason::TargetingMatch);
        }
        match self.flag.rollout_percentage {
            100.. => Evaluation::new(true, Reason::Static),
            0 => Evaluation::new(false, Reason::Default),
            percentage => {
                let id = match &self.flag.stickiness {
                    Stickiness::User => user,
                    Stickiness::Session => ctx.session_id(),
                    Stickiness::Org => org,
                    Stickiness::UserThenSession => user.or_else(|| ctx.session_id()),
                    Stickiness::Property(key) => ctx.property(key),
                };
                match id {
                    Some(id) => Evaluation::new(
                        bucket(self.flag.group_id(), id) <= percentage,
                        Reason::Split,
                    ),
                    None => Evaluation::new(false, Reason::Default),
                }
            }
        }
    }
}

/// Builds a [`FlagStore`]; see [`FlagStore::builder`].
pub struct FlagStoreBuilder {
    flags: Vec<Flag>,
    env: Vec<(String, String)>,
    pseudonymizer: Option<Pseudonymizer>,
    source: &'static str,
    remote: Option<Arc<Remote>>,
}

impl fmt::Debug for FlagStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlagStoreBuilder")
            .field("flags", &self.flags.len())
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl FlagStoreBuilder {
    /// The environment's variables, of which those starting
    /// `GUARDRAILS_FLAG_` are off switches (e.g. `std::env::vars()`).
    pub fn environment(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        self.env = vars
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        self
    }

    /// The key that names users in `flag.changed` events (default: a
    /// random key); use the stack's, as the request log does.
    pub fn pseudonymizer(mut self, pseudonymizer: Pseudonymizer) -> Self {
        self.pseudonymizer = Some(pseudonymizer);
        self
    }

    /// The source's name in the health report (default `"config"`).
    pub fn source(mut self, source: &'static str) -> Self {
        self.source = source;
        self
    }

    /// Changes go to Redis (and from there to every replica).
    pub(crate) fn remote(mut self, remote: Arc<Remote>) -> Self {
        self.remote = Some(remote);
        self
    }

    /// The store, or every problem of the flags and the environment's
    /// switches: an invalid name or percentage, a name twice, a user both
    /// targeted and denied, a switch other than `off` or naming no flag.
    pub fn build(self) -> Result<FlagStore, FlagError> {
        let mut problems = validate_set(&self.flags, "flags.flag")
            .err()
            .unwrap_or_default();
        let mut env_off = BTreeSet::new();
        for (key, value) in &self.env {
            let name = key[ENV_PREFIX.len()..].to_ascii_lowercase();
            if !value.trim().eq_ignore_ascii_case("off") {
                problems.push(ConfigProblem::new(
                    key.clone(),
                    "can only turn a flag off: set it to \"off\" (or unset it)",
                ));
            } else if !valid_name(&name)
                // With Redis a flag may be defined there only: the name's
                // shape is all that can be checked at start.
                || (self.remote.is_none() && !self.flags.iter().any(|f| f.name == name))
            {
                problems.push(ConfigProblem::new(
                    key.clone(),
                    format!("names no flag ({name:?})"),
                ));
            } else {
                env_off.insert(name);
            }
        }
        if !problems.is_empty() {
            return Err(FlagError::Invalid(problems));
        }
        let layers = Layers {
            source: self
                .flags
                .into_iter()
                .map(|f| (f.name.clone(), f))
                .collect(),
            runtime: BTreeMap::new(),
            env_off,
            rejected: None,
            // With Redis, stale until it is first read: a replica that
            // starts while Redis is down serves the config's flags, and
            // says so.
            stale: self
                .remote
                .is_some()
                .then(|| (SystemTime::now(), "not read from Redis yet".to_owned())),
            synced: None,
            writes: 0,
            failure_logged: false,
        };
        let store = FlagStore {
            inner: Arc::new(Inner {
                snapshot: ArcSwap::from_pointee(Snapshot::default()),
                layers: Mutex::new(layers),
                pseudonymizer: self.pseudonymizer.unwrap_or_else(Pseudonymizer::random),
                source: self.source,
                remote: self.remote,
                stale_gauge: metrics::gauge!(metric::FLAG_SOURCE_STALE, "source" => self.source),
            }),
        };
        let layers = store.layers();
        store.publish(&layers, "environment", true);
        drop(layers);
        Ok(store)
    }
}

impl FlagStore {
    /// A store over `flags` (validated by
    /// [`build`](FlagStoreBuilder::build)).
    pub fn builder(flags: Vec<Flag>) -> FlagStoreBuilder {
        FlagStoreBuilder {
            flags,
            env: Vec::new(),
            pseudonymizer: None,
            source: "config",
            remote: None,
        }
    }

    /// What `name` is for `ctx`, and why. Never fails: an unknown flag is
    /// off with [`Reason::Error`]. Counted in
    /// `guardrails_flag_evaluations_total{flag, outcome}`.
    pub fn evaluate(&self, name: &str, ctx: &(impl EvaluationContext + ?Sized)) -> Evaluation {
        let snapshot = self.inner.snapshot.load();
        let Some(flag) = snapshot.flags.get(name) else {
            return Evaluation::not_found();
        };
        let evaluation = flag.evaluate(ctx);
        if evaluation.enabled {
            flag.on.increment(1);
        } else {
            flag.off.increment(1);
        }
        evaluation
    }

    /// Whether `name` is on for `ctx` (off when unknown).
    pub fn is_enabled(&self, name: &str, ctx: &(impl EvaluationContext + ?Sized)) -> bool {
        self.evaluate(name, ctx).enabled
    }

    /// The flag as it applies now: its source's definition with the
    /// runtime changes (an environment off switch is not shown here; see
    /// [`is_switched_off_by_environment`](Self::is_switched_off_by_environment)).
    pub fn get(&self, name: &str) -> Option<Flag> {
        self.inner
            .snapshot
            .load()
            .flags
            .get(name)
            .map(|c| c.flag.clone())
    }

    /// Whether `GUARDRAILS_FLAG_<NAME>=off` holds `name` off.
    pub fn is_switched_off_by_environment(&self, name: &str) -> bool {
        self.inner
            .snapshot
            .load()
            .flags
            .get(name)
            .is_some_and(|c| c.env_off)
    }

    /// The names of every flag.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .snapshot
            .load()
            .flags
            .keys()
            .map(|k| k.to_string())
            .collect();
        names.sort();
        names
    }

    /// Changes `name` at runtime (what `PUT /api/admin/flags/{name}` does)
    /// and returns its new state. With the config or file source the
    /// change stays over the source — a reload never undoes it — until
    /// [`restore`](Self::restore); with Redis it is written there, and
    /// every replica applies it (the last write wins: it is this replica's
    /// view of the flag with the change). Refused when the flag is unknown,
    /// the result invalid, or Redis can't be written (nothing changes then).
    pub async fn set(
        &self,
        name: &str,
        update: FlagUpdate,
        by: &Principal,
    ) -> Result<Flag, FlagError> {
        let by = self.inner.pseudonymizer.user(by.subject());
        let Some(remote) = &self.inner.remote else {
            // In memory: decided and applied under one lock.
            let mut layers = self.layers();
            let Some(source) = layers.source.get(name) else {
                return Err(FlagError::NotFound(name.to_owned()));
            };
            let merged = match layers.runtime.get(name) {
                Some(earlier) => earlier.then(&update),
                None => update,
            };
            let flag = checked(merged.apply(source.clone()))?;
            layers.runtime.insert(name.to_owned(), merged);
            self.publish(&layers, &by, false);
            return Ok(flag);
        };
        let flag = {
            let layers = self.layers();
            let Some(source) = layers.source.get(name) else {
                return Err(FlagError::NotFound(name.to_owned()));
            };
            checked(update.apply(source.clone()))?
        };
        self.write_remote(remote, flag, &by).await
    }

    /// Writes `flag` to Redis, then applies it here at once (a resync that
    /// read Redis before the write is not applied over it).
    async fn write_remote(&self, remote: &Remote, flag: Flag, by: &str) -> Result<Flag, FlagError> {
        remote.write(&flag).await.map_err(FlagError::Unavailable)?;
        let mut layers = self.layers();
        layers.writes += 1;
        layers.source.insert(flag.name.clone(), flag.clone());
        self.publish(&layers, by, false);
        Ok(flag)
    }

    /// The kill switch: `name` off for everyone, until
    /// [`restore`](Self::restore)d or set on again.
    pub async fn kill(&self, name: &str, by: &Principal) -> Result<Flag, FlagError> {
        self.set(name, FlagUpdate::kill(), by).await
    }

    /// Undoes the runtime changes of `name`: its source's definition
    /// applies again (with Redis: the config's definition is written back
    /// to Redis; a flag the config does not define can't be restored).
    pub async fn restore(&self, name: &str, by: &Principal) -> Result<Flag, FlagError> {
        let by = self.inner.pseudonymizer.user(by.subject());
        if let Some(remote) = &self.inner.remote {
            let Some(seed) = remote.seed(name).cloned() else {
                return Err(FlagError::NotFound(name.to_owned()));
            };
            return self.write_remote(remote, seed, &by).await;
        }
        let mut layers = self.layers();
        let Some(source) = layers.source.get(name).cloned() else {
            return Err(FlagError::NotFound(name.to_owned()));
        };
        if layers.runtime.remove(name).is_some() {
            self.publish(&layers, &by, false);
        }
        Ok(source)
    }

    /// Replaces the source's definitions (a reload), keeping the runtime
    /// changes over them (those of flags gone from the source are
    /// dropped). An invalid set — alone, or with the runtime changes over
    /// it — is refused whole, with every problem, and the previous one
    /// keeps serving (reported in the health report until a good set
    /// arrives).
    pub fn replace_source(&self, flags: Vec<Flag>, path: &str) -> Result<(), FlagError> {
        self.replace_source_since(flags, path, None)
    }

    /// The number of this store's writes to Redis so far: a resync that
    /// read Redis before a later write must not be applied over it.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn writes(&self) -> u64 {
        self.layers().writes
    }

    /// [`replace_source`](Self::replace_source), unless a write happened
    /// since `writes` was read (then a newer read follows: skipped).
    pub(crate) fn replace_source_since(
        &self,
        flags: Vec<Flag>,
        path: &str,
        writes: Option<u64>,
    ) -> Result<(), FlagError> {
        let mut problems = validate_set(&flags, path).err().unwrap_or_default();
        let mut layers = self.layers();
        if writes.is_some_and(|w| w != layers.writes) {
            return Ok(());
        }
        let source: BTreeMap<String, Flag> =
            flags.into_iter().map(|f| (f.name.clone(), f)).collect();
        if problems.is_empty() {
            for (name, update) in &layers.runtime {
                if let Some(flag) = source.get(name) {
                    update.apply(flag.clone()).validate(
                        &format!("{path}.{name} with its runtime change"),
                        &mut problems,
                    );
                }
            }
        }
        if !problems.is_empty() {
            drop(layers);
            self.refuse_source(problems.clone());
            return Err(FlagError::Invalid(problems));
        }
        layers.runtime.retain(|name, _| source.contains_key(name));
        layers.source = source;
        layers.rejected = None;
        self.publish(&layers, self.inner.source, false);
        Ok(())
    }

    /// Refuses the source's new definitions for `problems`: logged, and
    /// reported until a good set arrives; the current set keeps serving.
    pub(crate) fn refuse_source(&self, problems: Vec<ConfigProblem>) {
        let summary = problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect::<Vec<_>>()
            .join("; ");
        self.source_unreadable(summary);
    }

    /// The source can't be reached (Redis down): the last good set keeps
    /// serving, reported STALE; logged once when it starts.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn stale(&self, reason: String) {
        let mut layers = self.layers();
        if !layers.failure_logged {
            layers.failure_logged = true;
            emit!(
                WARN,
                EventName::INTEGRATION_BACKEND_FAILED,
                backend = "redis",
                purpose = "flags",
                reason = reason.as_str(),
                fallback = "last_known_good",
            );
            self.inner.stale_gauge.set(1.0);
        }
        layers.stale = Some((SystemTime::now(), reason));
    }

    /// The source was read again: no longer stale.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn fresh(&self) {
        let mut layers = self.layers();
        layers.synced = Some(SystemTime::now());
        layers.stale = None;
        if std::mem::take(&mut layers.failure_logged) {
            emit!(
                INFO,
                EventName::INTEGRATION_BACKEND_RECOVERED,
                backend = "redis",
                purpose = "flags",
            );
            self.inner.stale_gauge.set(0.0);
        }
    }

    /// Records that the source could not be read (a file gone): the
    /// current set keeps serving, the health report says why.
    pub(crate) fn source_unreadable(&self, reason: String) {
        emit!(
            WARN,
            EventName::FLAG_SOURCE_REJECTED,
            source = self.inner.source,
            problems = reason.as_str(),
        );
        self.layers().rejected = Some((SystemTime::now(), reason));
    }

    /// Logs `flag.kill_switch_activated` (`by = "environment"`) for each
    /// flag an environment off switch holds off. Call it once logging is
    /// set up (the store is usually built before):
    /// [`FlagsConfig::store`](crate::FlagsConfig::store) does it in a
    /// background task that runs once.
    pub fn report_environment_switches(&self) {
        for name in &self.layers().env_off {
            emit!(
                WARN,
                EventName::FLAG_KILL_SWITCH_ACTIVATED,
                flag = name.as_str(),
                by = "environment",
            );
        }
    }

    /// Whether the source (Redis) can't be reached: the last good set is
    /// serving (STALE).
    pub fn is_stale(&self) -> bool {
        self.layers().stale.is_some()
    }

    pub(crate) fn has_environment_switches(&self) -> bool {
        !self.layers().env_off.is_empty()
    }

    /// The store as the `flags` health component: `pass`, or `warn` while
    /// the last reload was refused (the previous set serving) or the
    /// source (Redis) can't be reached or was not read yet (`state:
    /// "STALE"`); its details name the source, the flags, the runtime
    /// changes and the environment's off switches.
    pub fn health_source(&self) -> Arc<dyn HealthSource> {
        Arc::new(self.clone())
    }

    fn layers(&self) -> MutexGuard<'_, Layers> {
        self.inner
            .layers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Builds and swaps in the snapshot of `layers`, and reports each
    /// flag whose state changed (`by`: a pseudonym, or the source); the
    /// `initial` one reports nothing.
    fn publish(&self, layers: &Layers, by: &str, initial: bool) {
        let flags: Map<Box<str>, Compiled> = layers
            .source
            .iter()
            .map(|(name, flag)| {
                let flag = match layers.runtime.get(name) {
                    Some(update) => update.apply(flag.clone()),
                    None => flag.clone(),
                };
                let env_off = layers.env_off.contains(name);
                (name.as_str().into(), Compiled::new(flag, env_off))
            })
            .collect();
        let old = self.inner.snapshot.swap(Arc::new(Snapshot { flags }));
        if initial {
            return;
        }
        let new = self.inner.snapshot.load();
        let names: BTreeSet<&str> = old
            .flags
            .keys()
            .chain(new.flags.keys())
            .map(|k| &**k)
            .collect();
        for name in names {
            let (before, now) = (old.flags.get(name), new.flags.get(name));
            if let (Some(b), Some(n)) = (before, now)
                && b.flag == n.flag
                && b.env_off == n.env_off
            {
                continue;
            }
            let targets = |c: &Compiled| c.target_users.len() + c.target_orgs.len();
            let denies = |c: &Compiled| c.deny_users.len() + c.deny_orgs.len();
            emit!(
                INFO,
                EventName::FLAG_CHANGED,
                flag = name,
                by = by,
                removed = now.is_none(),
                old_enabled = before.map(Compiled::is_on),
                new_enabled = now.map(Compiled::is_on),
                old_rollout_percentage = before.map(|b| b.flag.rollout_percentage),
                new_rollout_percentage = now.map(|n| n.flag.rollout_percentage),
                old_targets = before.map(targets),
                new_targets = now.map(targets),
                old_denies = before.map(denies),
                new_denies = now.map(denies),
            );
            if before.is_some_and(Compiled::is_on) && !now.is_some_and(Compiled::is_on) {
                emit!(
                    WARN,
                    EventName::FLAG_KILL_SWITCH_ACTIVATED,
                    flag = name,
                    by = by,
                );
            }
        }
    }
}

/// `flag` if it is valid, else its problems.
fn checked(flag: Flag) -> Result<Flag, FlagError> {
    let mut problems = Vec::new();
    flag.validate("flag", &mut problems);
    if problems.is_empty() {
        Ok(flag)
    } else {
        Err(FlagError::Invalid(problems))
    }
}

impl fmt::Debug for FlagStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlagStore")
            .field("source", &self.inner.source)
            .field("flags", &self.inner.snapshot.load().flags.len())
            .finish_non_exhaustive()
    }
}

impl HealthSource for FlagStore {
    fn name(&self) -> &str {
        "flags"
    }

    fn check(&self) -> ComponentHealth {
        let layers = self.layers();
        let mut details = serde_json::json!({
            "source": self.inner.source,
            "flags": layers.source.len(),
            "runtime_changes": layers.runtime.keys().collect::<Vec<_>>(),
            "environment_off": layers.env_off.iter().collect::<Vec<_>>(),
        });
        if self.inner.remote.is_some() {
            // Redis: read whole yet, and how long ago.
            details["synced_seconds_ago"] = layers
                .synced
                .map(|at| at.elapsed().map(|d| d.as_secs()).unwrap_or(0))
                .into();
        }
        if let Some((since, why)) = &layers.stale {
            let secs = since.elapsed().map(|d| d.as_secs()).unwrap_or(0);
            details["state"] = "STALE".into();
            details["stale"] = serde_json::json!({ "seconds": secs, "reason": why });
            return ComponentHealth::warn(details);
        }
        match &layers.rejected {
            None => ComponentHealth::pass(details),
            Some((at, why)) => {
                let ago = at.elapsed().map(|d| d.as_secs()).unwrap_or(0);
                details["last_reload_refused"] = serde_json::json!({
                    "seconds_ago": ago,
                    "problems": why,
                });
                ComponentHealth::warn(details)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use guardrails_testkit::capture;

    use super::*;
    use crate::FlagContext;

    fn store(flags: Vec<Flag>) -> FlagStore {
        FlagStore::builder(flags).build().unwrap()
    }

    #[test]
    fn evaluation_follows_the_documented_order() {
        let (_guard, _logs) = capture::json();
        let base = || {
            Flag::new("ai_recs")
                .enabled(true)
                .rollout(100)
                .target(["t-user"])
                .deny(["d-user"])
        };
        let mut orgs = base();
        orgs.target_orgs = vec!["t-org".into()];
        orgs.deny_orgs = vec!["d-org".into()];
        let user = FlagContext::user;
        let on = |r| (true, r);
        let off = |r| (false, r);
        // (flag, context, expected)
        let table: Vec<(Flag, FlagContext, (bool, Reason))> = vec![
            // The kill switch beats targets.
            (base().enabled(false), user("t-user"), off(Reason::Disabled)),
            // A deny beats a target and a full rollout.
            (base(), user("d-user"), off(Reason::TargetingMatch)),
            (
                orgs.clone(),
                user("t-user").with_org("d-org"),
                off(Reason::TargetingMatch),
            ),
            // A target beats a rollout of 0.
            (
                base().rollout(0),
                user("t-user"),
                on(Reason::TargetingMatch),
            ),
            (
                orgs.clone().rollout(0),
                user("x").with_org("t-org"),
                on(Reason::TargetingMatch),
            ),
            (base(), user("x"), on(Reason::Static)),
            (base().rollout(0), user("x"), off(Reason::Default)),
            // No stickiness value: off unless 100 %.
            (
                base().rollout(99),
                FlagContext::anonymous(),
                off(Reason::Default),
            ),
            (base(), FlagContext::anonymous(), on(Reason::Static)),
        ];
        for (i, (flag, ctx, (enabled, reason))) in table.into_iter().enumerate() {
            let got = store(vec![flag]).evaluate("ai_recs", &ctx);
            assert_eq!((got.enabled, got.reason), (enabled, reason), "row {i}");
        }
        let unknown = store(vec![]).evaluate("ai_recs", &user("x"));
        assert_eq!(
            (unknown.enabled, unknown.reason, unknown.error),
            (false, Reason::Error, Some(crate::ErrorCode::FlagNotFound))
        );
        // A split: the bucket decides, the same way every time.
        let split = store(vec![base().rollout(50)]);
        let first = split.evaluate("ai_recs", &user("user-7"));
        assert_eq!(first.reason, Reason::Split);
        assert_eq!(first, split.evaluate("ai_recs", &user("user-7")));
    }

    #[test]
    fn a_rollout_reaches_its_share_within_a_point_and_only_grows() {
        let (_guard, _logs) = capture::json();
        let users: Vec<FlagContext> = (0..100_000)
            .map(|i| FlagContext::user(format!("user-{i}")))
            .collect();
        let mut previous: Option<Vec<bool>> = None;
        for percentage in [1, 10, 25, 50, 90, 99] {
            let flags = store(vec![Flag::new("ai_recs").enabled(true).rollout(percentage)]);
            let on: Vec<bool> = users
                .iter()
                .map(|u| flags.is_enabled("ai_recs", u))
                .collect();
            let share = on.iter().filter(|&&b| b).count() as f64 / 1000.0;
            assert!(
                (share - f64::from(percentage)).abs() <= 1.0,
                "{percentage} %: {share} %"
            );
            if let Some(before) = previous {
                // Raising the percentage only adds users.
                assert!(
                    before.iter().zip(&on).all(|(was, is)| !was || *is),
                    "{percentage} %"
                );
            }
            previous = Some(on);
        }
    }

    #[tokio::test]
    async fn the_environment_can_only_turn_a_flag_off_and_wins_over_runtime_changes() {
        let (_guard, logs) = capture::json();
        let flags = vec![Flag::new("ai_recs").enabled(true).rollout(100)];
        let env = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
        let store = FlagStore::builder(flags.clone())
            .environment(env("GUARDRAILS_FLAG_AI_RECS", "OFF"))
            .build()
            .unwrap();
        let ctx = FlagContext::user("u1");
        assert_eq!(store.evaluate("ai_recs", &ctx).reason, Reason::Disabled);
        assert!(store.is_switched_off_by_environment("ai_recs"));
        store.report_environment_switches();
        let killed = logs.lines();
        let killed: Vec<_> = killed
            .iter()
            .filter(|l| l["event"] == "flag.kill_switch_activated")
            .collect();
        assert_eq!(killed.len(), 1, "{killed:?}");
        assert_eq!(killed[0]["by"], "environment");
        // A runtime change can't turn it back on.
        let on = FlagUpdate {
            enabled: Some(true),
            ..FlagUpdate::default()
        };
        store
            .set("ai_recs", on, &Principal::new("ops"))
            .await
            .unwrap();
        assert!(!store.is_enabled("ai_recs", &ctx));
        // Anything but "off", or a name that is no flag, is refused at start.
        for (key, value, why) in [
            ("GUARDRAILS_FLAG_AI_RECS", "on", "only turn a flag off"),
            ("GUARDRAILS_FLAG_AI_RECZ", "off", "names no flag"),
        ] {
            let err = FlagStore::builder(flags.clone())
                .environment(env(key, value))
                .build()
                .unwrap_err();
            assert!(err.to_string().contains(why), "{err}");
            assert!(err.to_string().contains(key), "{err}");
        }
        // Other variables are not ours.
        FlagStore::builder(flags)
            .environment(env("GUARDRAILS__FLAGS__SOURCE", "config"))
            .build()
            .unwrap();
    }

    #[tokio::test]
    async fn runtime_changes_win_over_reloads_until_restored_and_are_logged_with_a_pseudonym() {
        let (_guard, logs) = capture::json();
        let store = FlagStore::builder(vec![Flag::new("ai_recs").enabled(true).rollout(100)])
            .pseudonymizer(Pseudonymizer::new(b"a key"))
            .build()
            .unwrap();
        let ops = Principal::new("ops-user-1");
        let ctx = FlagContext::user("u1");
        store.kill("ai_recs", &ops).await.unwrap();
        // A reload of the source (rollout changed, still enabled) keeps the
        // kill switch.
        store
            .replace_source(
                vec![Flag::new("ai_recs").enabled(true).rollout(50)],
                "flags.file",
            )
            .unwrap();
        assert!(!store.is_enabled("ai_recs", &ctx));
        assert_eq!(store.get("ai_recs").unwrap().rollout_percentage, 50);
        // An invalid reload is refused whole; the last good set serves.
        let err = store
            .replace_source(vec![Flag::new("Bad Name").rollout(500)], "flags.file")
            .unwrap_err();
        assert!(
            matches!(&err, FlagError::Invalid(p) if p.len() == 2),
            "{err}"
        );
        assert_eq!(store.names(), ["ai_recs"]);
        let health = store.health_source().check();
        assert_eq!(health.status, guardrail_core::health::HealthStatus::Warn);
        assert_eq!(health.details["runtime_changes"][0], "ai_recs");
        // Restored: the source's definition applies again.
        store.restore("ai_recs", &ops).await.unwrap();
        assert_eq!(store.evaluate("ai_recs", &ctx).reason, Reason::Split);
        assert!(matches!(
            store.kill("ai_typo", &ops).await,
            Err(FlagError::NotFound(_))
        ));
        let invalid = FlagUpdate {
            rollout_percentage: Some(101),
            ..FlagUpdate::default()
        };
        assert!(matches!(
            store.set("ai_recs", invalid, &ops).await,
            Err(FlagError::Invalid(_))
        ));

        let lines = logs.lines();
        let changed: Vec<_> = lines
            .iter()
            .filter(|l| l["event"] == "flag.changed")
            .collect();
        // kill, reload (rollout), restore.
        assert_eq!(changed.len(), 3, "{changed:?}");
        let pseudonym = Pseudonymizer::new(b"a key").user("ops-user-1");
        assert_eq!(changed[0]["by"], pseudonym.as_str());
        assert_eq!(changed[0]["old_enabled"], true);
        assert_eq!(changed[0]["new_enabled"], false);
        assert_eq!(changed[1]["by"], "config");
        assert_eq!(changed[1]["new_rollout_percentage"], 50);
        assert_eq!(changed[2]["new_enabled"], true);
        let killed: Vec<_> = lines
            .iter()
            .filter(|l| l["event"] == "flag.kill_switch_activated")
            .collect();
        assert_eq!(killed.len(), 1);
        assert_eq!(killed[0]["level"], "WARN");
        assert!(!logs.text().contains("ops-user-1"), "no raw user id logged");
        assert!(lines.iter().any(|l| {
            l["event"] == "flag.source_rejected"
                && l["problems"]
                    .as_str()
                    .unwrap()
                    .contains("rollout_percentage")
        }));
    }

    #[tokio::test]
    async fn a_reload_that_drops_a_flag_or_conflicts_with_a_runtime_change() {
        let (_guard, logs) = capture::json();
        let on = Flag::new("ai_recs").enabled(true).rollout(100);
        let store = FlagStore::builder(vec![on.clone(), Flag::new("ai_other").enabled(true)])
            .build()
            .unwrap();
        let ops = Principal::new("ops");
        let targets = FlagUpdate {
            target_users: Some(vec!["u1".into()]),
            ..FlagUpdate::default()
        };
        store.set("ai_recs", targets, &ops).await.unwrap();
        // The new source denies the user the runtime change targets: refused
        // whole, the previous set serving.
        let err = store
            .replace_source(vec![on.clone().deny(["u1"])], "flags.file")
            .unwrap_err();
        assert!(err.to_string().contains("runtime change"), "{err}");
        assert_eq!(store.names(), ["ai_other", "ai_recs"]);
        // A source without ai_recs: gone, its runtime change dropped, and
        // the loss of a flag that was on is a kill switch.
        store
            .replace_source(vec![Flag::new("ai_other").enabled(true)], "flags.file")
            .unwrap();
        assert_eq!(store.names(), ["ai_other"]);
        assert!(
            store.health_source().check().details["runtime_changes"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        let lines = logs.lines();
        let removed: Vec<_> = lines
            .iter()
            .filter(|l| l["event"] == "flag.changed" && l["removed"] == true)
            .collect();
        assert_eq!(removed.len(), 1, "{lines:?}");
        assert_eq!(removed[0]["flag"], "ai_recs");
        assert!(
            lines
                .iter()
                .any(|l| l["event"] == "flag.kill_switch_activated" && l["flag"] == "ai_recs")
        );
    }
}

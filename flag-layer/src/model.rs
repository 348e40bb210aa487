//! What a flag is, and what makes a set of flags valid.

use std::{collections::HashSet, fmt};

use guardrail_core::config::ConfigProblem;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One feature flag, as written in `[[flags.flag]]`, a flag file or Redis.
///
/// A new flag starts off: `enabled = false`, `rollout_percentage = 0`.
///
/// ```
/// use flag_layer::{Flag, Stickiness};
///
/// let flag: Flag = toml::from_str(r#"
///     name = "ai_recommendations"
///     enabled = true
///     rollout_percentage = 10
///     target_users = ["user-internal-1"]
/// "#).unwrap();
/// assert_eq!(flag.group_id(), "ai_recommendations"); // the name, by default
/// assert_eq!(flag.stickiness, Stickiness::User);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Flag {
    /// `{category}_{feature}`: lower case, digits and `_`
    /// (`^[a-z][a-z0-9]*_[a-z0-9_]+$`).
    pub name: String,
    /// `false` is the kill switch: off for everyone, targets included.
    #[serde(default)]
    pub enabled: bool,
    /// Share of callers it is on for, 0–100, by stable bucket.
    #[serde(default)]
    pub rollout_percentage: u32,
    /// Whose buckets: callers keep their bucket across flags of one group
    /// (Unleash's `groupId`); default the flag's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// What a caller is bucketed by (default the user id).
    #[serde(default)]
    pub stickiness: Stickiness,
    /// Users it is on for, whatever the rollout.
    #[serde(default)]
    pub target_users: Vec<String>,
    /// Organisations it is on for, whatever the rollout.
    #[serde(default)]
    pub target_orgs: Vec<String>,
    /// Users it is off for, whatever else says.
    #[serde(default)]
    pub deny_users: Vec<String>,
    /// Organisations it is off for, whatever else says.
    #[serde(default)]
    pub deny_orgs: Vec<String>,
    /// What it gates.
    #[serde(default)]
    pub description: String,
    /// Who answers for it.
    #[serde(default)]
    pub owner: String,
}

impl Flag {
    /// A new flag, off: `enabled = false`, `rollout_percentage = 0`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            enabled: false,
            rollout_percentage: 0,
            group_id: None,
            stickiness: Stickiness::User,
            target_users: Vec::new(),
            target_orgs: Vec::new(),
            deny_users: Vec::new(),
            deny_orgs: Vec::new(),
            description: String::new(),
            owner: String::new(),
        }
    }

    /// Turns it on or off (`false`: the kill switch).
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Sets the rollout percentage.
    pub fn rollout(mut self, percentage: u32) -> Self {
        self.rollout_percentage = percentage;
        self
    }

    /// Sets the group id buckets are drawn in.
    pub fn group(mut self, group_id: impl Into<String>) -> Self {
        self.group_id = Some(group_id.into());
        self
    }

    /// Sets what callers are bucketed by.
    pub fn sticky_on(mut self, stickiness: Stickiness) -> Self {
        self.stickiness = stickiness;
        self
    }

    /// Adds users it is on for.
    pub fn target<I: IntoIterator<Item = S>, S: Into<String>>(mut self, users: I) -> Self {
        self.target_users.extend(users.into_iter().map(Into::into));
        self
    }

    /// Adds users it is off for.
    pub fn deny<I: IntoIterator<Item = S>, S: Into<String>>(mut self, users: I) -> Self {
        self.deny_users.extend(users.into_iter().map(Into::into));
        self
    }

    /// The group id buckets are drawn in: `group_id`, or the name.
    pub fn group_id(&self) -> &str {
        self.group_id.as_deref().unwrap_or(&self.name)
    }

    /// Adds every problem of this flag to `problems`, under `path`.
    pub(crate) fn validate(&self, path: &str, problems: &mut Vec<ConfigProblem>) {
        let at = |key: &str| format!("{path}.{key}");
        if !valid_name(&self.name) {
            problems.push(ConfigProblem::new(
                at("name"),
                "must be {category}_{feature}: lower case letters, digits and _, starting with a letter (^[a-z][a-z0-9]*_[a-z0-9_]+$)",
            ));
        }
        if self.rollout_percentage > 100 {
            problems.push(ConfigProblem::new(
                at("rollout_percentage"),
                "must be between 0 and 100",
            ));
        }
        if self.group_id.as_deref().is_some_and(str::is_empty) {
            problems.push(ConfigProblem::new(at("group_id"), "must not be empty"));
        }
        if matches!(&self.stickiness, Stickiness::Property(key) if key.is_empty()) {
            problems.push(ConfigProblem::new(at("stickiness"), "must not be empty"));
        }
        for (kind, targets, denies) in [
            ("users", &self.target_users, &self.deny_users),
            ("orgs", &self.target_orgs, &self.deny_orgs),
        ] {
            let denied: HashSet<&str> = denies.iter().map(String::as_str).collect();
            if targets.iter().any(|t| denied.contains(t.as_str())) {
                problems.push(ConfigProblem::new(
                    at(&format!("target_{kind}")),
                    format!("names {kind} that deny_{kind} names too: one list or the other"),
                ));
            }
        }
    }
}

/// Whether `name` is `{category}_{feature}`: `^[a-z][a-z0-9]*_[a-z0-9_]+$`.
pub(crate) fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let Some((&first, _)) = bytes.split_first() else {
        return false;
    };
    let Some(underscore) = bytes.iter().position(|&b| b == b'_') else {
        return false;
    };
    first.is_ascii_lowercase()
        && bytes[..underscore]
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && underscore + 1 < bytes.len()
        && bytes[underscore + 1..]
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
}

/// Validates a whole set: every flag, and no name twice. Every problem
/// is listed, each under `{path}[{index}]`.
pub(crate) fn validate_set(flags: &[Flag], path: &str) -> Result<(), Vec<ConfigProblem>> {
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    for (i, flag) in flags.iter().enumerate() {
        let at = format!("{path}[{i}]");
        flag.validate(&at, &mut problems);
        if !seen.insert(flag.name.as_str()) {
            problems.push(ConfigProblem::new(
                format!("{at}.name"),
                format!("{:?} is defined twice", flag.name),
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// What a caller is put in a rollout bucket by.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stickiness {
    /// The user id (`"user"`, the default).
    #[default]
    User,
    /// The session id (`"session"`).
    Session,
    /// The organisation id (`"org"`).
    Org,
    /// The user id, else the session id (`"default"`, as Unleash's
    /// `default` stickiness).
    UserThenSession,
    /// A context property (any other word, e.g. `"tenant"`).
    Property(String),
}

impl Stickiness {
    /// Its name in config.
    pub fn as_str(&self) -> &str {
        match self {
            Self::User => "user",
            Self::Session => "session",
            Self::Org => "org",
            Self::UserThenSession => "default",
            Self::Property(key) => key,
        }
    }
}

impl From<&str> for Stickiness {
    fn from(word: &str) -> Self {
        match word {
            "user" => Self::User,
            "session" => Self::Session,
            "org" => Self::Org,
            "default" => Self::UserThenSession,
            other => Self::Property(other.to_owned()),
        }
    }
}

impl fmt::Display for Stickiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Stickiness {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Stickiness {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let word = String::deserialize(deserializer)?;
        Ok(Self::from(word.as_str()))
    }
}

/// A change to a flag where every field is optional: what `PUT
/// /api/admin/flags/{name}` takes. `enabled: false` is the kill switch.
///
/// ```
/// use flag_layer::{Flag, FlagUpdate};
///
/// let update: FlagUpdate = serde_json::from_str(r#"{"rollout_percentage": 25}"#).unwrap();
/// let flag = update.apply(Flag::new("ai_recommendations").enabled(true));
/// assert_eq!((flag.enabled, flag.rollout_percentage), (true, 25));
/// assert!(serde_json::from_str::<FlagUpdate>(r#"{"rollout": 25}"#).is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagUpdate {
    /// `false`: the kill switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// 0–100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_percentage: Option<u32>,
    /// Replaces the users it is on for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_users: Option<Vec<String>>,
    /// Replaces the organisations it is on for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_orgs: Option<Vec<String>>,
    /// Replaces the users it is off for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_users: Option<Vec<String>>,
    /// Replaces the organisations it is off for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_orgs: Option<Vec<String>>,
    /// Replaces the description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Replaces the owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl FlagUpdate {
    /// Reads a JSON body, naming each field that is wrong: a problem per
    /// unknown field or value of the wrong type or range (its `path` is
    /// the field), or one for a body that is no JSON object.
    ///
    /// ```
    /// use flag_layer::FlagUpdate;
    ///
    /// let ok = FlagUpdate::from_json(br#"{"enabled": false}"#).unwrap();
    /// assert_eq!(ok, FlagUpdate::kill());
    /// let problems = FlagUpdate::from_json(br#"{"rollout_percentage": 101, "colour": "red"}"#)
    ///     .unwrap_err();
    /// let fields: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    /// assert_eq!(fields, ["colour", "rollout_percentage"]);
    /// ```
    pub fn from_json(body: &[u8]) -> Result<Self, Vec<ConfigProblem>> {
        use serde_json::Value;
        let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
            return Err(vec![ConfigProblem::new("", "must be a JSON object")]);
        };
        let strings = |v: &Value| v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
        let mut problems = Vec::new();
        for (key, value) in &fields {
            let (fits, expected) = match key.as_str() {
                "enabled" => (value.is_boolean(), "must be true or false"),
                "rollout_percentage" => (
                    value.as_u64().is_some_and(|n| n <= 100),
                    "must be an integer from 0 to 100",
                ),
                "target_users" | "target_orgs" | "deny_users" | "deny_orgs" => {
                    (strings(value), "must be a list of strings")
                }
                "description" | "owner" => (value.is_string(), "must be a string"),
                _ => (false, "is not a field of a flag update"),
            };
            if !fits {
                let field: String = key.chars().take(64).collect();
                problems.push(ConfigProblem::new(field, expected));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        serde_json::from_value(Value::Object(fields))
            .map_err(|e| vec![ConfigProblem::new("", e.to_string())])
    }

    /// The kill switch: `enabled = false`, nothing else changed.
    pub fn kill() -> Self {
        Self {
            enabled: Some(false),
            ..Self::default()
        }
    }

    /// `flag` with this change.
    pub fn apply(&self, mut flag: Flag) -> Flag {
        if let Some(enabled) = self.enabled {
            flag.enabled = enabled;
        }
        if let Some(percentage) = self.rollout_percentage {
            flag.rollout_percentage = percentage;
        }
        for (field, list) in [
            (&self.target_users, &mut flag.target_users),
            (&self.target_orgs, &mut flag.target_orgs),
            (&self.deny_users, &mut flag.deny_users),
            (&self.deny_orgs, &mut flag.deny_orgs),
        ] {
            if let Some(new) = field {
                list.clone_from(new);
            }
        }
        if let Some(description) = &self.description {
            flag.description.clone_from(description);
        }
        if let Some(owner) = &self.owner {
            flag.owner.clone_from(owner);
        }
        flag
    }

    /// This change, then `later` (whose fields win).
    pub(crate) fn then(&self, later: &FlagUpdate) -> FlagUpdate {
        fn pick<T: Clone>(a: &Option<T>, b: &Option<T>) -> Option<T> {
            b.clone().or_else(|| a.clone())
        }
        FlagUpdate {
            enabled: later.enabled.or(self.enabled),
            rollout_percentage: later.rollout_percentage.or(self.rollout_percentage),
            target_users: pick(&self.target_users, &later.target_users),
            target_orgs: pick(&self.target_orgs, &later.target_orgs),
            deny_users: pick(&self.deny_users, &later.deny_users),
            deny_orgs: pick(&self.deny_orgs, &later.deny_orgs),
            description: pick(&self.description, &later.description),
            owner: pick(&self.owner, &later.owner),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_category_underscore_feature() {
        for good in ["ai_recommendations", "billing_v2_export", "a_b", "x1_2"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "",
            "ai",
            "ai_",
            "_ai",
            "1ai_x",
            "AI_recs",
            "ai-recs_x",
            "ai_recs!",
            "ai recs_x",
            "aï_x",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn every_problem_of_a_set_is_listed_with_its_place() {
        let flags = vec![
            Flag::new("ai_recs").rollout(150),
            Flag::new("Bad-Name"),
            Flag::new("ai_recs")
                .target(["u1", "u2"])
                .deny(["u2"])
                .group(""),
        ];
        let problems = validate_set(&flags, "flags.flag").unwrap_err();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "flags.flag[0].rollout_percentage",
                "flags.flag[1].name",
                "flags.flag[2].group_id",
                "flags.flag[2].target_users",
                "flags.flag[2].name",
            ]
        );
        assert!(problems[4].message.contains("twice"), "{problems:?}");
        assert!(validate_set(&[Flag::new("ai_recs")], "f").is_ok());
    }

    #[test]
    fn stickiness_reads_its_words_and_any_property() {
        let read = |w: &str| serde_json::from_value::<Stickiness>(serde_json::json!(w)).unwrap();
        assert_eq!(read("user"), Stickiness::User);
        assert_eq!(read("default"), Stickiness::UserThenSession);
        assert_eq!(read("tenant"), Stickiness::Property("tenant".into()));
        assert_eq!(serde_json::to_value(Stickiness::Org).unwrap(), "org");
    }

    #[test]
    fn updates_replace_only_what_they_name_and_later_ones_win() {
        let first: FlagUpdate =
            serde_json::from_str(r#"{"enabled": true, "rollout_percentage": 10}"#).unwrap();
        let second: FlagUpdate = serde_json::from_str(r#"{"rollout_percentage": 50}"#).unwrap();
        let flag = first
            .then(&second)
            .apply(Flag::new("ai_recs").target(["u1"]));
        assert_eq!((flag.enabled, flag.rollout_percentage), (true, 50));
        assert_eq!(flag.target_users, ["u1"]);
    }
}

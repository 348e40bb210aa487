//! `GUARDRAILS__SECTION__KEY=value` environment overrides.

use super::ConfigError;

/// The prefix of environment overrides: `GUARDRAILS__SECTION__KEY`.
pub const ENV_PREFIX: &str = "GUARDRAILS__";

/// Which key paths were set from which variables, to name them in errors.
#[derive(Debug, Default)]
pub(super) struct Overrides(Vec<(String, String)>);

impl Overrides {
    /// The variable that set `path`, one of its parents, or a key below
    /// it (an unknown section named by `GUARDRAILS__NOPE__KEY`).
    pub(super) fn origin_of(&self, path: &str) -> Option<String> {
        let below = |outer: &str, inner: &str| {
            inner
                .strip_prefix(outer)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        };
        self.0
            .iter()
            .find(|(key, _)| path == key || below(key, path) || below(path, key))
            .map(|(_, var)| var.clone())
    }
}

/// Applies every `GUARDRAILS__*` variable of `env` to `table`, in name order
/// so the result does not depend on the environment's order.
pub(super) fn apply<I>(table: &mut toml::Table, env: I) -> Result<Overrides, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| {
            k.len() > ENV_PREFIX.len() && k[..ENV_PREFIX.len()].eq_ignore_ascii_case(ENV_PREFIX)
        })
        .collect();
    vars.sort();
    let mut overrides = Overrides::default();
    for (var, raw) in vars {
        let segments: Vec<String> = var[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        if segments
            .iter()
            .any(|s| s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        {
            return Err(ConfigError::Env {
                var,
                message: "expected GUARDRAILS__<SECTION>__<KEY> with letters, digits and single underscores".into(),
            });
        }
        set(table, &segments, parse_value(&raw)).map_err(|message| ConfigError::Env {
            var: var.clone(),
            message,
        })?;
        overrides.0.push((segments.join("."), var));
    }
    Ok(overrides)
}

fn set(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut current = table;
    for (i, segment) in parents.iter().enumerate() {
        let entry = current
            .entry(segment.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{}` is a value, not a section", path[..=i].join(".")))?;
    }
    current.insert(last.clone(), value);
    Ok(())
}

/// A TOML value if `raw` is one (`20`, `true`, `["a"]`, `"quoted"`), else the
/// raw text as a string (`5s`, `10.0.0.0/8`).
fn parse_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn values_are_typed_when_they_parse_as_toml() {
        assert_eq!(parse_value("20"), toml::Value::Integer(20));
        assert_eq!(parse_value("true"), toml::Value::Boolean(true));
        assert_eq!(parse_value("5s"), toml::Value::String("5s".into()));
        assert_eq!(
            parse_value("10.0.0.0/8"),
            toml::Value::String("10.0.0.0/8".into())
        );
        assert!(parse_value("[\"10.0.0.0/8\", \"::1/128\"]").is_array());
    }

    #[test]
    fn nested_keys_are_created_and_named() {
        let mut t = toml::Table::new();
        let o = apply(
            &mut t,
            env(&[("GUARDRAILS__RATE_LIMIT__BURST", "20"), ("OTHER", "x")]),
        )
        .unwrap();
        assert_eq!(t["rate_limit"]["burst"].as_integer(), Some(20));
        assert_eq!(
            o.origin_of("rate_limit.burst").as_deref(),
            Some("GUARDRAILS__RATE_LIMIT__BURST")
        );
        assert_eq!(o.origin_of("rate_limit.burst_size"), None);
    }

    #[test]
    fn malformed_names_are_errors() {
        for bad in [
            "GUARDRAILS__A____B",
            "GUARDRAILS__A__B-C",
            "GUARDRAILS__A__",
        ] {
            let mut t = toml::Table::new();
            let err = apply(&mut t, env(&[(bad, "1")])).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn a_value_cannot_become_a_section() {
        let mut t: toml::Table = "profile = \"development\"".parse().unwrap();
        let err = apply(&mut t, env(&[("GUARDRAILS__PROFILE__X", "1")])).unwrap_err();
        assert!(err.to_string().contains("`profile` is a value"), "{err}");
    }
}

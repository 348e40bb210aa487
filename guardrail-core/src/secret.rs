//! References to secrets: configuration names where a secret is, never the
//! secret itself. A [`Secret`]'s `Debug` never shows its bytes.
//!
//! # Example
//!
//! ```
//! use guardrail_core::{Secret, SecretRef};
//!
//! let r = SecretRef::Env("GUARDRAILS_DOC_EXAMPLE_SECRET".into());
//! assert!(r.resolve().is_err(), "unset variables are an error, not an empty key");
//!
//! let s = Secret::new("correct horse battery staple, but random");
//! assert_eq!(format!("{s:?}"), "Secret([redacted])");
//! assert!(s.weakness(32).is_none());
//! ```

use std::{collections::HashSet, fmt, path::PathBuf};

use serde::{
    Deserialize, Deserializer,
    de::{self, MapAccess, Visitor},
};

/// Where a secret lives: `{ env = "VAR" }` or `{ file = "/run/secrets/x" }`.
///
/// A plain string in the config file is refused, so a secret can't be
/// committed with the configuration.
///
/// ```
/// use guardrail_core::SecretRef;
///
/// #[derive(Debug, serde::Deserialize)]
/// struct Section { key: SecretRef }
///
/// fn parse(text: &str) -> Result<Section, toml::de::Error> {
///     text.parse::<toml::Table>()?.try_into()
/// }
///
/// let ok = parse("key = { env = \"MY_KEY\" }").unwrap();
/// assert_eq!(ok.key, SecretRef::Env("MY_KEY".into()));
///
/// let inline = parse("key = \"hunter2hunter2\"").unwrap_err().to_string();
/// assert!(inline.contains("never written inline"));
/// assert!(!inline.contains("hunter2"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretRef {
    /// The value of an environment variable.
    Env(String),
    /// The contents of a file, without a trailing newline.
    File(PathBuf),
}

/// Why a secret could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum SecretError {
    /// The variable is unset or empty.
    MissingEnv(String),
    /// The file could not be read.
    File {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is empty.
    EmptyFile(String),
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingEnv(var) => write!(f, "environment variable {var} is not set (or empty)"),
            Self::File { path, source } => write!(f, "cannot read secret file {path}: {source}"),
            Self::EmptyFile(path) => write!(f, "secret file {path} is empty"),
        }
    }
}

impl std::error::Error for SecretError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::File { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl SecretRef {
    /// Reads the secret.
    pub fn resolve(&self) -> Result<Secret, SecretError> {
        match self {
            Self::Env(var) => match std::env::var_os(var) {
                Some(v) if !v.is_empty() => Ok(Secret(v.into_encoded_bytes())),
                _ => Err(SecretError::MissingEnv(var.clone())),
            },
            Self::File(path) => {
                let mut bytes = std::fs::read(path).map_err(|source| SecretError::File {
                    path: path.display().to_string(),
                    source,
                })?;
                while matches!(bytes.last(), Some(b'\n' | b'\r')) {
                    bytes.pop();
                }
                if bytes.is_empty() {
                    return Err(SecretError::EmptyFile(path.display().to_string()));
                }
                Ok(Secret(bytes))
            }
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(var) => write!(f, "environment variable {var}"),
            Self::File(path) => write!(f, "file {}", path.display()),
        }
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RefVisitor;

        impl<'de> Visitor<'de> for RefVisitor {
            type Value = SecretRef;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("{ env = \"VAR\" } or { file = \"/path\" }")
            }

            fn visit_str<E: de::Error>(self, _: &str) -> Result<SecretRef, E> {
                // The value is deliberately not echoed: it may be the secret.
                Err(E::custom(
                    "secrets are never written inline; use { env = \"VAR\" } or { file = \"/path\" }",
                ))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretRef, A::Error> {
                let mut found = None;
                while let Some(key) = map.next_key::<String>()? {
                    let value: String = map.next_value()?;
                    let this = match key.as_str() {
                        "env" => SecretRef::Env(value),
                        "file" => SecretRef::File(value.into()),
                        other => return Err(de::Error::unknown_field(other, &["env", "file"])),
                    };
                    if found.replace(this).is_some() {
                        return Err(de::Error::custom("give exactly one of `env` or `file`"));
                    }
                }
                found.ok_or_else(|| de::Error::custom("give exactly one of `env` or `file`"))
            }
        }

        d.deserialize_any(RefVisitor)
    }
}

/// A secret's bytes. `Debug` never shows them.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps bytes (e.g. in tests).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// 32 random bytes, e.g. a development stand-in that no caller knows.
    pub fn random() -> Self {
        let mut bytes = Vec::with_capacity(32);
        bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        Self(bytes)
    }

    /// The bytes, for the one place that needs them (a key constructor).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Why this secret is too weak to sign with in production, if it is:
    /// shorter than `min_len` bytes, or fewer than 8 distinct bytes.
    pub fn weakness(&self, min_len: usize) -> Option<String> {
        if self.0.len() < min_len {
            return Some(format!(
                "is {} bytes long; at least {min_len} are required",
                self.0.len()
            ));
        }
        let distinct = self.0.iter().collect::<HashSet<_>>().len();
        (distinct < 8).then(|| format!("has only {distinct} distinct bytes; use a random value"))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct S {
        #[allow(dead_code)]
        key: SecretRef,
    }

    #[test]
    fn both_or_neither_source_is_refused() {
        for text in [
            "key = { env = \"A\", file = \"/b\" }",
            "key = {}",
            "key = { url = \"x\" }",
            "key = 42",
        ] {
            assert!(toml::from_str::<S>(text).is_err(), "{text}");
        }
    }

    #[test]
    fn file_secrets_lose_their_trailing_newline() {
        let path = std::env::temp_dir().join(format!("guardrails-secret-{}", std::process::id()));
        std::fs::write(&path, "s3cr3t-value\n").unwrap();
        let secret = SecretRef::File(path.clone()).resolve().unwrap();
        assert_eq!(secret.expose(), b"s3cr3t-value");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            SecretRef::File(path.clone()).resolve(),
            Err(SecretError::EmptyFile(_))
        ));
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn missing_env_secret_names_the_variable() {
        let err = SecretRef::Env("GUARDRAILS_TEST_SURELY_UNSET_VAR".into())
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("GUARDRAILS_TEST_SURELY_UNSET_VAR"));
    }

    #[test]
    fn debug_redacts_and_weakness_is_explained() {
        let s = Secret::new("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
        assert!(s.weakness(32).unwrap().contains("distinct"));
        assert!(
            Secret::new("short")
                .weakness(32)
                .unwrap()
                .contains("5 bytes")
        );
        assert!(
            Secret::new("Zq8#vP2m!xL9@rT4$kW7^nB3&hJ6*cF1")
                .weakness(32)
                .is_none()
        );
    }
}

//! Keyed pseudonyms: how a user appears in logs and events.
//!
//! A pseudonym is the first 64 bits of an HMAC-SHA256 of the raw value
//! under a key the service holds (`usr_3f9a1c2b7d04e615`): collisions among
//! a service's users stay unlikely into the billions (32 bits would start
//! colliding around 77 000 users). The same user gets the same
//! pseudonym in every line, so logs stay correlatable, while the raw id or
//! email is never written and can't be recovered by hashing guesses without
//! the key.
//!
//! There is no process-wide instance: the service builds one from its
//! configured key and hands the same value to every layer that
//! pseudonymizes (authentication, rate limiting, the request log), so a
//! user has one pseudonym everywhere, stable across restarts and replicas.
//!
//! # Example
//!
//! ```
//! use guardrail_core::Pseudonymizer;
//!
//! let p = Pseudonymizer::new(b"a key from the secret store");
//! let a = p.pseudonym("usr", "alice@example.com");
//! assert_eq!(a, p.pseudonym("usr", "alice@example.com"));
//! assert_ne!(a, p.pseudonym("usr", "bob@example.com"));
//! assert!(a.starts_with("usr_") && a.len() == 4 + Pseudonymizer::HEX_DIGITS);
//! assert!(!a.contains("alice"));
//! ```

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Computes keyed pseudonyms.
#[derive(Clone)]
pub struct Pseudonymizer {
    mac: Hmac<Sha256>,
}

impl Pseudonymizer {
    /// A pseudonymizer keyed with `key`.
    pub fn new(key: &[u8]) -> Self {
        // HMAC accepts keys of any length.
        let mac = Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
        Self { mac }
    }

    /// A pseudonymizer with a random key (stable for this value only).
    pub fn random() -> Self {
        Self::new(crate::Secret::random().expose())
    }

    /// Hex digits after the prefix of every pseudonym (64 bits).
    pub const HEX_DIGITS: usize = 16;

    /// `<prefix>_<16 hex digits>` for `value`.
    pub fn pseudonym(&self, prefix: &str, value: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(prefix.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(prefix.len() + 1 + Self::HEX_DIGITS);
        out.push_str(prefix);
        out.push('_');
        out.push_str(&hex::encode(&digest[..Self::HEX_DIGITS / 2]));
        out
    }

    /// The pseudonym of a user id: `usr_…`.
    pub fn user(&self, subject: &str) -> String {
        self.pseudonym("usr", subject)
    }
}

impl fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pseudonymizer([key redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_differ_across_keys_and_prefixes() {
        let a = Pseudonymizer::new(b"k1");
        let b = Pseudonymizer::new(b"k2");
        assert_ne!(a.user("u-1"), b.user("u-1"));
        assert_ne!(a.pseudonym("usr", "x"), a.pseudonym("org", "x"));
        assert_eq!(a.user("u-1"), Pseudonymizer::new(b"k1").user("u-1"));
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(
            format!("{:?}", Pseudonymizer::new(b"secret")),
            "Pseudonymizer([key redacted])"
        );
    }
}

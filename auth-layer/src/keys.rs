//! Verification keys: each bound to one algorithm when it is configured or
//! read from its JWK, so a token never chooses how it is checked.

use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey};

/// A verification key with its one algorithm.
#[derive(Clone)]
pub struct VerificationKey {
    pub(crate) alg: Algorithm,
    pub(crate) key: DecodingKey,
}

impl VerificationKey {
    /// A key used only with `alg`.
    pub fn new(alg: Algorithm, key: DecodingKey) -> Self {
        Self { alg, key }
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// One public key in PEM (RS*/PS*: RSA; ES256/ES384: EC; EdDSA: Ed25519).
    pub(crate) fn from_pem(alg: Algorithm, pem: &[u8]) -> Result<Self, KeyError> {
        let key = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => DecodingKey::from_rsa_pem(pem),
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem),
            Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
            _ => {
                return Err(KeyError(format!(
                    "{alg:?} keys are secrets, not PEM public keys"
                )));
            }
        }
        .map_err(|_| KeyError(format!("not a valid {alg:?} public key in PEM")))?;
        // jsonwebtoken slices an Ed25519 key to 32 bytes when verifying: a
        // key of another length would panic on the first EdDSA token.
        if alg == Algorithm::EdDSA && key.try_get_as_bytes().map(<[u8]>::len).ok() != Some(32) {
            return Err(KeyError("not a 32-byte Ed25519 public key".into()));
        }
        Ok(Self::new(alg, key))
    }
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Why a configured key could not be used.
#[derive(Debug)]
pub struct KeyError(String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

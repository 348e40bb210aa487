//! JWT verification: keys from configuration, never from the token.
//!
//! The algorithm of every key is fixed when the key is configured (or read
//! from its JWK); a token whose header names another algorithm — `none`, or
//! `HS256` signed with an RSA public key as HMAC secret — is refused before
//! any cryptography runs. Headers that point elsewhere for keys (`jku`,
//! `x5u`, `jwk`, `x5c`) or demand extensions (`crit`) are refused, and `kid`
//! is only ever a lookup key. `exp` and `sub` are required, `nbf` honored,
//! and `iss`/`aud` checked when configured.
//!
//! # Example
//!
//! ```
//! use auth_layer::{JwtVerifier, KeySource, AuthError};
//! use jsonwebtoken::{EncodingKey, Header, encode};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let secret = b"a-32-byte-or-longer-random-secret!!";
//! let verifier = JwtVerifier::new(KeySource::hs256(secret)).audience("authenticated");
//!
//! let exp = jsonwebtoken::get_current_timestamp() + 600;
//! let claims = json!({"sub": "user-1", "aud": "authenticated", "exp": exp});
//! let token = encode(&Header::default(), &claims, &EncodingKey::from_secret(secret)).unwrap();
//! assert_eq!(verifier.verify(&token).await.unwrap().subject(), "user-1");
//!
//! let forged = encode(&Header::default(), &claims, &EncodingKey::from_secret(b"guess")).unwrap();
//! assert_eq!(verifier.verify(&forged).await.unwrap_err(), AuthError::BadSignature);
//! # }
//! ```

use std::{collections::HashMap, fmt, str::FromStr, sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use guardrail_core::Principal;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde_json::{Map, Value};

use crate::{
    AuthError,
    claims::{ClaimsMapper, SupabaseClaims},
    jwks::{Jwks, Lookup},
};

/// The default cap on a token's size.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
/// The default clock-skew allowance for `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

const MAX_HEADER_BYTES: usize = 1024;
const MAX_KID_LEN: usize = 256;
/// Header members that would make us fetch keys from, or trust, the token.
const FORBIDDEN_HEADERS: [&str; 5] = ["crit", "jku", "x5u", "jwk", "x5c"];

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
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Where verification keys come from.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// Keys fixed at startup: by `kid`, and a default for tokens without one.
    Static {
        /// Keys by `kid`.
        by_kid: HashMap<String, VerificationKey>,
        /// The key for tokens without a `kid`.
        default: Option<VerificationKey>,
    },
    /// A JWKS endpoint, cached.
    Jwks(Jwks),
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

impl KeySource {
    /// One HS256 secret for tokens without a `kid`.
    pub fn hs256(secret: &[u8]) -> Self {
        Self::single(VerificationKey::new(
            Algorithm::HS256,
            DecodingKey::from_secret(secret),
        ))
    }

    /// One key for tokens without a `kid`.
    pub fn single(key: VerificationKey) -> Self {
        Self::Static {
            by_kid: HashMap::new(),
            default: Some(key),
        }
    }

    /// One public key in PEM (RS*/PS*: RSA; ES256/ES384: EC; EdDSA: Ed25519).
    pub fn from_pem(alg: Algorithm, pem: &[u8]) -> Result<Self, KeyError> {
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
        Ok(Self::single(VerificationKey::new(alg, key)))
    }

    /// Adds a key under `kid` (static sources only; a JWKS source is unchanged).
    pub fn with_kid(mut self, kid: impl Into<String>, key: VerificationKey) -> Self {
        if let Self::Static { by_kid, .. } = &mut self {
            by_kid.insert(kid.into(), key);
        }
        self
    }
}

impl From<Jwks> for KeySource {
    fn from(jwks: Jwks) -> Self {
        Self::Jwks(jwks)
    }
}

/// Verifies bearer tokens and maps their claims to a [`Principal`].
///
/// Cheap to clone; share one per service.
#[derive(Clone)]
pub struct JwtVerifier {
    keys: KeySource,
    settings: Arc<Settings>,
}

#[derive(Clone)]
struct Settings {
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    max_token_bytes: usize,
    mapper: Arc<dyn ClaimsMapper>,
    /// One `Validation` per algorithm, built once.
    validations: HashMap<Algorithm, Validation>,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("keys", &self.keys)
            .field("issuer", &self.settings.issuer)
            .field("audience", &self.settings.audience)
            .field("leeway", &self.settings.leeway)
            .field("max_token_bytes", &self.settings.max_token_bytes)
            .finish_non_exhaustive()
    }
}

/// The result of verifying without waiting on the network.
pub(crate) enum Attempt {
    Done(Result<Principal, AuthError>),
    Refresh(Jwks),
}

impl JwtVerifier {
    /// Verifies with `keys`, Supabase claim mapping, a 30 s leeway, an 8 KiB
    /// cap, and no issuer or audience check (set them; production requires
    /// both).
    pub fn new(keys: impl Into<KeySource>) -> Self {
        // With exactly one backend feature enabled this is what jsonwebtoken
        // would pick; installing it explicitly keeps a second backend pulled
        // in by feature unification from turning into a panic on first use.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
        let mut settings = Settings {
            issuer: None,
            audience: None,
            leeway: DEFAULT_LEEWAY,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            mapper: Arc::new(SupabaseClaims::new()),
            validations: HashMap::new(),
        };
        settings.rebuild();
        Self {
            keys: keys.into(),
            settings: Arc::new(settings),
        }
    }

    fn update(mut self, f: impl FnOnce(&mut Settings)) -> Self {
        // Copies only if this verifier was cloned before being configured.
        let settings = Arc::make_mut(&mut self.settings);
        f(settings);
        settings.rebuild();
        self
    }

    /// Requires `iss` to equal `issuer`.
    pub fn issuer(self, issuer: impl Into<String>) -> Self {
        let issuer = issuer.into();
        self.update(|s| s.issuer = Some(issuer))
    }

    /// Requires `aud` to contain `audience`.
    pub fn audience(self, audience: impl Into<String>) -> Self {
        let audience = audience.into();
        self.update(|s| s.audience = Some(audience))
    }

    /// Sets the clock-skew allowance for `exp` and `nbf`.
    pub fn leeway(self, leeway: Duration) -> Self {
        self.update(|s| s.leeway = leeway)
    }

    /// Sets the largest accepted token, in bytes.
    pub fn max_token_bytes(self, max: usize) -> Self {
        self.update(|s| s.max_token_bytes = max)
    }

    /// Sets how claims become a [`Principal`].
    pub fn claims(self, mapper: impl ClaimsMapper) -> Self {
        let mapper: Arc<dyn ClaimsMapper> = Arc::new(mapper);
        self.update(|s| s.mapper = mapper)
    }

    /// Verifies `token`, fetching keys if the source needs to.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        match self.attempt(token, true) {
            Attempt::Done(result) => result,
            Attempt::Refresh(jwks) => {
                jwks.refresh().await;
                match self.attempt(token, false) {
                    Attempt::Done(result) => result,
                    Attempt::Refresh(_) => Err(AuthError::KeysUnavailable),
                }
            }
        }
    }

    /// Verifies with the keys at hand; asks for a refresh if they can't
    /// decide (and `may_refresh`).
    pub(crate) fn attempt(&self, token: &str, may_refresh: bool) -> Attempt {
        let header = match parse_header(token, self.settings.max_token_bytes) {
            Ok(header) => header,
            Err(e) => return Attempt::Done(Err(e)),
        };
        let key = match &self.keys {
            KeySource::Static { by_kid, default } => match header.kid.as_deref() {
                Some(kid) => by_kid.get(kid),
                None => default.as_ref(),
            }
            .cloned()
            .ok_or(AuthError::UnknownKey),
            KeySource::Jwks(jwks) => match jwks.lookup(header.kid.as_deref(), may_refresh) {
                Lookup::Found(key) => Ok(key),
                Lookup::Missing => Err(AuthError::UnknownKey),
                Lookup::Unavailable => Err(AuthError::KeysUnavailable),
                Lookup::Refresh => return Attempt::Refresh(jwks.clone()),
            },
        };
        Attempt::Done(key.and_then(|key| self.decode(token, &header, &key)))
    }

    fn decode(
        &self,
        token: &str,
        header: &TokenHeader,
        key: &VerificationKey,
    ) -> Result<Principal, AuthError> {
        // The algorithm is the key's; the header only has to agree.
        if Algorithm::from_str(&header.alg).ok() != Some(key.alg) {
            return Err(AuthError::WrongAlgorithm);
        }
        let validation = self
            .settings
            .validations
            .get(&key.alg)
            .ok_or(AuthError::WrongAlgorithm)?;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidAudience => AuthError::WrongAudience,
                ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
                ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) => {
                    AuthError::MissingClaim
                }
                ErrorKind::InvalidAlgorithm
                | ErrorKind::MissingAlgorithm
                | ErrorKind::InvalidAlgorithmName
                | ErrorKind::UnsupportedAlgorithm
                | ErrorKind::InvalidKeyFormat => AuthError::WrongAlgorithm,
                _ => AuthError::Malformed,
            })?;
        self.settings
            .mapper
            .principal(&data.claims)
            .ok_or(AuthError::InvalidClaims)
    }
}

impl Settings {
    fn rebuild(&mut self) {
        use Algorithm::*;
        let mut required = vec!["exp", "sub"];
        if self.issuer.is_some() {
            required.push("iss");
        }
        if self.audience.is_some() {
            required.push("aud");
        }
        self.validations = [
            HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
        ]
        .into_iter()
        .map(|alg| {
            let mut v = Validation::new(alg);
            v.leeway = self.leeway.as_secs();
            v.validate_exp = true;
            v.validate_nbf = true;
            v.set_required_spec_claims(&required);
            match &self.issuer {
                Some(iss) => v.set_issuer(&[iss]),
                None => v.iss = None,
            }
            match &self.audience {
                Some(aud) => v.set_audience(&[aud]),
                None => v.validate_aud = false,
            }
            (alg, v)
        })
        .collect();
    }
}

struct TokenHeader {
    alg: String,
    kid: Option<String>,
}

/// Checks the token's shape and reads its header, before any key is used.
fn parse_header(token: &str, max_bytes: usize) -> Result<TokenHeader, AuthError> {
    if token.len() > max_bytes {
        return Err(AuthError::Oversized);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    let b64url = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !(b64url(header) && b64url(payload) && b64url(signature))
        || header.len() > MAX_HEADER_BYTES * 4 / 3 + 4
    {
        return Err(AuthError::Malformed);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| AuthError::Malformed)?;
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&bytes) else {
        return Err(AuthError::Malformed);
    };
    if FORBIDDEN_HEADERS
        .iter()
        .any(|name| fields.contains_key(*name))
    {
        return Err(AuthError::ForbiddenHeader);
    }
    let alg = match fields.get("alg") {
        Some(Value::String(alg)) => alg.clone(),
        _ => return Err(AuthError::Malformed),
    };
    let kid = match fields.get("kid") {
        None => None,
        Some(Value::String(kid)) if !kid.is_empty() && kid.len() <= MAX_KID_LEN => {
            Some(kid.clone())
        }
        Some(_) => return Err(AuthError::Malformed),
    };
    Ok(TokenHeader { alg, kid })
}

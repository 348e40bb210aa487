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
use jsonwebtoken::{Algorithm, DecodingKey, errors::ErrorKind};
use serde_json::{Map, Value};

use crate::cache::{DEFAULT_TOKEN_CACHE, TokenCache, Verified};
pub use crate::keys::{KeyError, VerificationKey};
use crate::{
    AuthError,
    claims::{ClaimsMapper, OneOrMany, RawClaims, Registered, SupabaseClaims},
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
        VerificationKey::from_pem(alg, pem).map(Self::single)
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
    /// Verified tokens (see [`JwtVerifier::token_cache`]); shared by clones.
    cache: Option<Arc<TokenCache>>,
}

#[derive(Clone)]
struct Settings {
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    max_token_bytes: usize,
    mapper: Arc<dyn ClaimsMapper>,
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

/// Seconds since the epoch, now.
pub(crate) fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Whether a token with `exp` and `nbf` is usable at `now` (seconds), with
/// `leeway` either way: the check of every verification and of every
/// verified-token cache hit.
pub(crate) fn check_window(
    exp: f64,
    nbf: Option<f64>,
    leeway: Duration,
    now: f64,
) -> Result<(), AuthError> {
    let leeway = leeway.as_secs_f64();
    if exp + leeway <= now {
        return Err(AuthError::Expired);
    }
    if nbf.is_some_and(|nbf| nbf > now + leeway) {
        return Err(AuthError::NotYetValid);
    }
    Ok(())
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
        let settings = Settings {
            issuer: None,
            audience: None,
            leeway: DEFAULT_LEEWAY,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            mapper: Arc::new(SupabaseClaims::new()),
        };
        Self {
            keys: keys.into(),
            settings: Arc::new(settings),
            cache: TokenCache::new(DEFAULT_TOKEN_CACHE).map(Arc::new),
        }
    }

    /// Keeps up to `capacity` verified tokens (default 4096; 0: none), so
    /// the same token on the next request skips the signature check and
    /// the claims parse. A hit needs the whole token to be equal, the key
    /// set it was verified with to still be in use, and `exp`/`nbf` to
    /// still hold (checked on every hit); failures are never kept, tokens
    /// over 4 KiB never either. The claims mapper must depend on the
    /// claims alone (the built-in ones do). At most about `capacity` ×
    /// (token + principal) bytes: ~6 MB for 4096 typical tokens.
    pub fn token_cache(mut self, capacity: usize) -> Self {
        self.cache = TokenCache::new(capacity).map(Arc::new);
        self
    }

    /// Tokens in the verified-token cache.
    pub fn cached_tokens(&self) -> usize {
        self.cache.as_ref().map_or(0, |c| c.len())
    }

    /// The key set tokens are verified with now, for the cache (`None`:
    /// none usable, so nothing is served from the cache).
    fn key_generation(&self) -> Option<u64> {
        match &self.keys {
            KeySource::Static { .. } => Some(0),
            KeySource::Jwks(jwks) => jwks.generation(),
        }
    }

    fn update(mut self, f: impl FnOnce(&mut Settings)) -> Self {
        // Copies only if this verifier was cloned before being configured.
        let settings = Arc::make_mut(&mut self.settings);
        f(settings);
        // Tokens verified under the old settings (another audience, issuer,
        // mapper or size cap) are not this verifier's to serve.
        self.cache = self.cache.as_ref().map(|c| Arc::new(c.emptied()));
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

    /// Sets the clock-skew allowance for `exp` and `nbf`. Cached tokens are
    /// checked against it on every hit, so the cache stays shared.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        Arc::make_mut(&mut self.settings).leeway = leeway;
        self
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

    /// The JWKS source, if keys come from one.
    pub fn jwks(&self) -> Option<&Jwks> {
        match &self.keys {
            KeySource::Jwks(jwks) => Some(jwks),
            KeySource::Static { .. } => None,
        }
    }

    /// Verifies `token`, fetching keys if the source needs to.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        match self.attempt(token, true) {
            Attempt::Done(result) => result,
            Attempt::Refresh(jwks) => {
                // The fetch runs in its own task; we only wait for it.
                jwks.wait().await;
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
        let generation = self.key_generation();
        if let (Some(cache), Some(generation)) = (&self.cache, generation)
            && let Some(principal) = cache.get(token, generation, self.settings.leeway)
        {
            return Attempt::Done(Ok(principal));
        }
        let header = match parse_header(token, self.settings.max_token_bytes) {
            Ok(header) => header,
            Err(e) => return Attempt::Done(Err(e)),
        };
        let key = match &self.keys {
            KeySource::Static { by_kid, default } => match header.kid.as_deref() {
                // With no keys by id, `kid` names nothing: the one key decides
                // (Supabase puts a `kid` on HS256 tokens).
                Some(_) if by_kid.is_empty() => default.as_ref(),
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
        let verified = key.and_then(|key| self.decode(token, &header, &key));
        Attempt::Done(verified.map(|verified| {
            if let (Some(cache), Some(generation)) = (&self.cache, generation) {
                cache.insert(token, generation, &verified);
            }
            verified.principal
        }))
    }

    fn decode(
        &self,
        token: &str,
        header: &TokenHeader,
        key: &VerificationKey,
    ) -> Result<Verified, AuthError> {
        // The algorithm is the key's; the header only has to agree.
        if Algorithm::from_str(&header.alg).ok() != Some(key.alg) {
            return Err(AuthError::WrongAlgorithm);
        }
        // The signature first: nothing in an unverified payload is read.
        let (message, signature) = token.rsplit_once('.').ok_or(AuthError::Malformed)?;
        match jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key.key, key.alg) {
            Ok(true) => {}
            Ok(false) => return Err(AuthError::BadSignature),
            Err(e) => {
                return Err(match e.kind() {
                    ErrorKind::Base64(_) => AuthError::Malformed,
                    ErrorKind::InvalidSignature => AuthError::BadSignature,
                    _ => AuthError::WrongAlgorithm,
                });
            }
        }
        let payload = message
            .split_once('.')
            .map(|(_, p)| p)
            .ok_or(AuthError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| AuthError::Malformed)?;
        // One parse, borrowing from the payload; a mistyped registered claim
        // (a string `exp`, a numeric `sub`) fails it.
        match self.settings.mapper.as_supabase() {
            Some(supabase) => {
                let claims: RawClaims<'_> =
                    serde_json::from_slice(&payload).map_err(|_| AuthError::MissingClaim)?;
                let exp = self.check_registered(
                    claims.exp,
                    claims.nbf,
                    claims.iat,
                    claims.sub.as_deref(),
                    claims.iss.as_deref(),
                    claims.aud.as_ref(),
                )?;
                supabase
                    .map_raw(&claims, &payload)
                    .map(|principal| Verified {
                        principal,
                        exp,
                        nbf: claims.nbf,
                    })
            }
            None => {
                // Another issuer's shape: only the registered claims are typed.
                let registered: Registered<'_> =
                    serde_json::from_slice(&payload).map_err(|_| AuthError::MissingClaim)?;
                let r = &registered;
                let exp = self.check_registered(
                    r.exp,
                    r.nbf,
                    r.iat,
                    r.sub.as_deref(),
                    r.iss.as_deref(),
                    r.aud.as_ref(),
                )?;
                let map: Map<String, Value> =
                    serde_json::from_slice(&payload).map_err(|_| AuthError::Malformed)?;
                self.settings
                    .mapper
                    .principal(&map)
                    .map(|principal| Verified {
                        principal,
                        exp,
                        nbf: r.nbf,
                    })
            }
        }
        .ok_or(AuthError::InvalidClaims)
    }

    /// `exp` (required), `nbf`, `iat` (not after now + leeway: a token
    /// from the future is forged or from a skewed clock), `sub` (required),
    /// and `iss`/`aud` when configured (then required). Returns `exp`.
    #[allow(clippy::too_many_arguments)]
    fn check_registered(
        &self,
        exp: Option<f64>,
        nbf: Option<f64>,
        iat: Option<f64>,
        sub: Option<&str>,
        iss: Option<&str>,
        aud: Option<&OneOrMany<'_>>,
    ) -> Result<f64, AuthError> {
        let s = &self.settings;
        let now = now_secs();
        let leeway = s.leeway.as_secs_f64();
        let exp = exp.ok_or(AuthError::MissingClaim)?;
        check_window(exp, nbf, s.leeway, now)?;
        if iat.is_some_and(|iat| iat > now + leeway) {
            return Err(AuthError::IssuedInFuture);
        }
        if sub.is_none_or(str::is_empty) {
            return Err(AuthError::MissingClaim);
        }
        if let Some(issuer) = &s.issuer {
            match iss {
                None => return Err(AuthError::MissingClaim),
                Some(iss) if iss != issuer => return Err(AuthError::WrongIssuer),
                Some(_) => {}
            }
        }
        if let Some(audience) = &s.audience {
            match aud {
                None => return Err(AuthError::MissingClaim),
                Some(aud) if !aud.contains(audience) => return Err(AuthError::WrongAudience),
                Some(_) => {}
            }
        }
        Ok(exp)
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

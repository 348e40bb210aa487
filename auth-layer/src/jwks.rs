//! A cached JWKS endpoint: keys by `kid`, refreshed in the background and on
//! an unknown `kid` (rate-limited), kept through endpoint outages.
//!
//! | situation | result |
//! |---|---|
//! | cache younger than `ttl` with the token's `kid` | that key, no I/O |
//! | unknown `kid`, last fetch older than `min_refresh_interval` | one fetch (shared by concurrent requests), then decide |
//! | unknown `kid`, fetched recently | 401 (`unknown_key`) without I/O, so random `kid`s can't hammer the endpoint |
//! | cache older than `ttl`, endpoint down | cached keys, until `ttl + max_stale` |
//! | nothing usable cached, endpoint down | 503 with `Retry-After` (never 500) |
//!
//! Symmetric (`oct`) keys in a JWKS are ignored: an HMAC key published in a
//! key set would let anyone sign. Each key's algorithm comes from its `alg`
//! or, failing that, its curve (P-256 → ES256, Ed25519 → EdDSA) or type
//! (RSA → RS256).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use auth_layer::{Jwks, JwtVerifier};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let jwks = Jwks::builder("http://127.0.0.1:9/.well-known/jwks.json")
//!     .ttl(Duration::from_secs(600))
//!     .build()
//!     .unwrap();
//! let verifier = JwtVerifier::new(jwks.clone());
//! # let _ = verifier;
//! // In a service: fetch at startup and keep keys fresh in the background.
//! let task = jwks.spawn_refresh();
//! # task.abort();
//!
//! assert!(Jwks::builder("ftp://example.com/keys").build().is_err());
//! # }
//! ```

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwapOption;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use bytes::Bytes;
use guardrail_core::{
    EventName, emit,
    health::{ComponentHealth, HealthSource},
};
use http::{StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm},
};
use tokio::time::Instant;

use crate::keys::VerificationKey;

const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Why a JWKS source could not be built.
#[derive(Debug)]
pub struct JwksError(pub(crate) String);

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for JwksError {}

/// Builder for [`Jwks`].
#[derive(Debug, Clone)]
pub struct JwksBuilder {
    url: String,
    /// With OIDC discovery: the issuer the document must name.
    discovery: Option<String>,
    https_only: bool,
    ttl: Duration,
    max_stale: Duration,
    min_refresh_interval: Duration,
    timeout: Duration,
}

impl JwksBuilder {
    /// How long fetched keys are fresh (default 10 minutes).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long past `ttl` cached keys keep being used while the endpoint
    /// fails (default 1 hour).
    pub fn max_stale(mut self, max_stale: Duration) -> Self {
        self.max_stale = max_stale;
        self
    }

    /// The least time between two fetches, whatever triggers them (default
    /// 30 seconds).
    pub fn min_refresh_interval(mut self, interval: Duration) -> Self {
        self.min_refresh_interval = interval;
        self
    }

    /// How long one fetch may take (default 5 seconds).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Refuses a discovered `jwks_uri` that is not https (production).
    /// The URL given to [`Jwks::builder`] or [`Jwks::discovery`] is checked
    /// when the source is built.
    pub fn https_only(mut self, https_only: bool) -> Self {
        self.https_only = https_only;
        self
    }

    /// Checks the URL and builds the source. No request is made yet.
    pub fn build(self) -> Result<Jwks, JwksError> {
        let url: Uri = self
            .url
            .parse()
            .map_err(|_| JwksError("the JWKS URL is not a valid URL".into()))?;
        match url.scheme_str() {
            Some("http") => {}
            Some("https") if cfg!(feature = "https") => {}
            Some("https") => {
                return Err(JwksError(
                    "https JWKS URLs need the `https` feature of auth-layer".into(),
                ));
            }
            _ => {
                return Err(JwksError(format!(
                    "`{}` is not an http(s) URL",
                    redact(&url)
                )));
            }
        }
        if url.host().is_none() {
            return Err(JwksError(format!("`{}` has no host", redact(&url))));
        }
        if self.https_only && url.scheme_str() != Some("https") {
            return Err(JwksError(format!("`{}` must be https", redact(&url))));
        }
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(self.timeout));
        #[cfg(feature = "https")]
        let connector = {
            http.enforce_http(false);
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_webpki_roots(std::sync::Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .map_err(|e| JwksError(format!("cannot set up TLS: {e}")))?
                .https_or_http()
                .enable_http1()
                .wrap_connector(http)
        };
        #[cfg(not(feature = "https"))]
        let connector = http;
        Ok(Jwks {
            inner: Arc::new(Inner {
                url,
                discovery: self.discovery,
                https_only: self.https_only,
                jwks_uri: ArcSwapOption::empty(),
                client: Client::builder(TokioExecutor::new()).build(connector),
                ttl: self.ttl,
                max_stale: self.max_stale,
                min_refresh_interval: self.min_refresh_interval,
                timeout: self.timeout,
                stale_limit: self.ttl.saturating_add(self.max_stale),
                cache: ArcSwapOption::empty(),
                base: Instant::now(),
                last_attempt_ms: AtomicU64::new(0),
                in_flight: AtomicBool::new(false),
                done: tokio::sync::watch::channel(0).0,
                failing: AtomicBool::new(false),
                fetches: AtomicU64::new(0),
            }),
        })
    }
}

/// A cached JWKS key source. Cheap to clone.
#[derive(Clone)]
pub struct Jwks {
    inner: Arc<Inner>,
}

#[cfg(feature = "https")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "https"))]
type Connector = HttpConnector;

struct Inner {
    /// The key set, or with discovery the discovery document.
    url: Uri,
    /// With OIDC discovery: the issuer the document must name.
    discovery: Option<String>,
    https_only: bool,
    /// With OIDC discovery: the document's `jwks_uri`, once read.
    jwks_uri: ArcSwapOption<Uri>,
    client: Client<Connector, Empty<Bytes>>,
    ttl: Duration,
    max_stale: Duration,
    min_refresh_interval: Duration,
    timeout: Duration,
    /// `ttl + max_stale`, saturated: cached keys are never used past it.
    stale_limit: Duration,
    cache: ArcSwapOption<Snapshot>,
    base: Instant,
    /// Milliseconds since `base` of the last claimed fetch, plus one (0: never).
    last_attempt_ms: AtomicU64,
    in_flight: AtomicBool,
    /// Bumped when a fetch ends, successful or not.
    done: tokio::sync::watch::Sender<u64>,
    failing: AtomicBool,
    fetches: AtomicU64,
}

struct Snapshot {
    /// Which fetch this is (from 1): verified-token cache entries belong
    /// to one.
    generation: u64,
    by_kid: HashMap<String, VerificationKey>,
    /// The key for tokens without `kid`, when the set has exactly one key.
    only: Option<VerificationKey>,
    fetched_at: Instant,
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &redact(&self.inner.url))
            .field("ttl", &self.inner.ttl)
            .field("max_stale", &self.inner.max_stale)
            .field("min_refresh_interval", &self.inner.min_refresh_interval)
            .field(
                "keys",
                &self.inner.cache.load().as_ref().map(|s| s.by_kid.len()),
            )
            .finish()
    }
}

/// `jwks` in the health report: `pass` with fresh keys, `warn` while the
/// last fetch failed or the keys are older than `ttl` (still served), and
/// `fail` with no usable keys (every token is refused with 503).
impl HealthSource for Jwks {
    fn name(&self) -> &str {
        "jwks"
    }

    fn check(&self) -> ComponentHealth {
        let snapshot = self.inner.cache.load_full();
        let age = snapshot
            .as_ref()
            .map(|s| Instant::now().saturating_duration_since(s.fetched_at));
        let failing = self.inner.failing.load(Ordering::Relaxed);
        let details = serde_json::json!({
            "keys": self.key_count(),
            "age_s": age.map(|a| a.as_secs()),
            "fetches": self.fetch_count(),
            "last_fetch_failed": failing,
        });
        match age {
            Some(age) if age < self.inner.ttl && !failing => ComponentHealth::pass(details),
            Some(age) if age < self.inner.stale_limit => ComponentHealth::warn(details),
            _ => ComponentHealth::fail(details),
        }
    }
}

/// What the cache can say without I/O.
pub(crate) enum Lookup {
    Found(VerificationKey),
    Missing,
    Unavailable,
    Refresh,
}

impl Jwks {
    /// Starts building a source for `url`.
    pub fn builder(url: impl Into<String>) -> JwksBuilder {
        JwksBuilder {
            url: url.into(),
            discovery: None,
            https_only: false,
            ttl: Duration::from_secs(600),
            max_stale: Duration::from_secs(3600),
            min_refresh_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
        }
    }

    /// Starts building a source found by OIDC discovery: the first fetch
    /// reads `{issuer}/.well-known/openid-configuration`, refuses a
    /// document whose `issuer` is not `issuer` exactly, and follows its
    /// `jwks_uri` (https only unless [`https_only(false)`](JwksBuilder::https_only),
    /// for development). Until that succeeds, and again after a key-set
    /// fetch fails, a fetch reads the discovery document first.
    pub fn discovery(issuer: impl Into<String>) -> JwksBuilder {
        let issuer = issuer.into();
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        JwksBuilder {
            discovery: Some(issuer),
            https_only: true,
            ..Self::builder(url)
        }
    }

    /// How many fetches were attempted (for health reports and tests).
    pub fn fetch_count(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    /// How many keys are cached.
    pub fn key_count(&self) -> usize {
        self.inner.cache.load().as_ref().map_or(0, |s| {
            s.by_kid.len() + usize::from(s.by_kid.is_empty() && s.only.is_some())
        })
    }

    /// Fetches now, then again every `ttl / 2`, until every clone of this
    /// source is dropped. Call it once at startup ([`AuthConfig`] does).
    ///
    /// [`AuthConfig`]: crate::AuthConfig
    pub fn spawn_refresh(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.refresh_task())
    }

    /// The refresh loop of [`spawn_refresh`](Self::spawn_refresh), as a
    /// future to run with the service's other
    /// [`BackgroundTasks`](guardrail_core::BackgroundTasks) (the umbrella
    /// stack does): fetches now, then every `ttl / 2`, until stopped or
    /// every clone of this source is dropped.
    pub fn refresh_task(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let period = (self.inner.ttl / 2).max(Duration::from_secs(1));
        let first_retry = self.inner.min_refresh_interval.max(Duration::from_secs(1));
        async move {
            // While no key was ever had (the endpoint or discovery failing
            // at startup), retry with a doubling delay up to `period`.
            let mut retry = first_retry;
            loop {
                let delay = match weak.upgrade() {
                    Some(inner) => {
                        let jwks = Jwks { inner };
                        jwks.refresh().await;
                        if jwks.inner.cache.load().is_none() {
                            let delay = retry;
                            retry = retry.saturating_mul(2).min(period);
                            delay
                        } else {
                            retry = first_retry;
                            period
                        }
                    }
                    None => return,
                };
                tokio::time::sleep(delay).await;
            }
        }
    }

    /// The key set in use, while it is usable: tokens verified under
    /// another (older) one are verified again.
    pub(crate) fn generation(&self) -> Option<u64> {
        let now = Instant::now();
        self.inner
            .cache
            .load()
            .as_ref()
            .filter(|s| now.saturating_duration_since(s.fetched_at) < self.inner.stale_limit)
            .map(|s| s.generation)
    }

    pub(crate) fn lookup(&self, kid: Option<&str>, may_refresh: bool) -> Lookup {
        let now = Instant::now();
        let usable = self
            .inner
            .cache
            .load_full()
            .filter(|s| now.saturating_duration_since(s.fetched_at) < self.inner.stale_limit);
        let key = usable.as_ref().and_then(|s| match kid {
            Some(kid) => s.by_kid.get(kid),
            None => s.only.as_ref(),
        });
        if let (Some(snapshot), Some(key)) = (&usable, key) {
            // Serve what we have; a stale set is refreshed in the background.
            if may_refresh && now.saturating_duration_since(snapshot.fetched_at) >= self.inner.ttl {
                self.start_fetch();
            }
            return Lookup::Found(key.clone());
        }
        if may_refresh && (self.start_fetch() || self.inner.in_flight.load(Ordering::Acquire)) {
            return Lookup::Refresh;
        }
        if usable.is_some() && !self.inner.failing.load(Ordering::Relaxed) {
            Lookup::Missing
        } else {
            // Nothing usable, or a key we may have failed to fetch.
            Lookup::Unavailable
        }
    }

    /// Claims the next fetch: never two at once, never more than one per
    /// `min_refresh_interval`, whoever asks.
    fn try_claim(&self) -> bool {
        let inner = &self.inner;
        if inner.in_flight.load(Ordering::Acquire) {
            return false;
        }
        let now_ms = Instant::now()
            .saturating_duration_since(inner.base)
            .as_millis() as u64
            + 1;
        let last = inner.last_attempt_ms.load(Ordering::Acquire);
        let min_ms = inner.min_refresh_interval.as_millis() as u64;
        if last != 0 && now_ms.saturating_sub(last) < min_ms {
            return false;
        }
        if inner
            .last_attempt_ms
            .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        !inner.in_flight.swap(true, Ordering::AcqRel)
    }

    /// Starts a fetch in a task of its own if the claim succeeds. The fetch
    /// completes even if every request waiting for it goes away.
    fn start_fetch(&self) -> bool {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        if !self.try_claim() {
            return false;
        }
        let jwks = self.clone();
        runtime.spawn(async move { jwks.fetch_and_store().await });
        true
    }

    /// Waits (at most the fetch timeout) for the fetch in flight, if any.
    pub(crate) fn wait(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut done = self.inner.done.subscribe();
        let in_flight = self.inner.in_flight.load(Ordering::Acquire);
        let limit = self.inner.timeout + Duration::from_millis(100);
        async move {
            if in_flight {
                let _ = tokio::time::timeout(limit, done.changed()).await;
            }
        }
    }

    /// Fetches the key set now unless a fetch happened within
    /// `min_refresh_interval`, and waits for the fetch in flight.
    pub async fn refresh(&self) {
        self.start_fetch();
        self.wait().await;
    }

    async fn fetch_and_store(&self) {
        self.inner.fetches.fetch_add(1, Ordering::Relaxed);
        let result = match tokio::time::timeout(self.inner.timeout, self.fetch()).await {
            Ok(result) => result,
            Err(_) => Err("timed out"),
        };
        match result {
            Ok(mut snapshot) => {
                let previous = self.inner.cache.load().as_ref().map_or(0, |s| s.generation);
                snapshot.generation = previous + 1;
                self.inner.cache.store(Some(Arc::new(snapshot)));
                if self.inner.failing.swap(false, Ordering::Relaxed) {
                    emit!(
                        INFO,
                        EventName::INTEGRATION_BACKEND_RECOVERED,
                        backend = "jwks"
                    );
                }
            }
            Err(reason) => {
                self.inner.failing.store(true, Ordering::Relaxed);
                emit!(
                    WARN,
                    EventName::INTEGRATION_BACKEND_FAILED,
                    backend = "jwks",
                    reason = reason,
                    cached_keys = self.key_count(),
                );
            }
        }
        self.inner.in_flight.store(false, Ordering::Release);
        self.inner.done.send_modify(|generation| *generation += 1);
    }

    /// A GET of `url` answering 200 with a JSON body of at most
    /// `MAX_JWKS_BYTES`.
    async fn get_json(&self, url: Uri) -> Result<Bytes, &'static str> {
        let req = http::Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|_| "bad request")?;
        let res = self
            .inner
            .client
            .request(req)
            .await
            .map_err(|_| "unreachable")?;
        if res.status() != StatusCode::OK {
            return Err("unexpected status");
        }
        Ok(Limited::new(res.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|_| "body too large or interrupted")?
            .to_bytes())
    }

    /// The key set's URL: as configured, or the discovered `jwks_uri`
    /// (read once, then kept).
    async fn key_set_url(&self) -> Result<Uri, &'static str> {
        let Some(issuer) = &self.inner.discovery else {
            return Ok(self.inner.url.clone());
        };
        if let Some(uri) = self.inner.jwks_uri.load_full() {
            return Ok((*uri).clone());
        }
        #[derive(serde::Deserialize)]
        struct Document {
            issuer: String,
            jwks_uri: String,
        }
        let body = self.get_json(self.inner.url.clone()).await?;
        let document: Document =
            serde_json::from_slice(&body).map_err(|_| "not an OpenID configuration")?;
        if document.issuer != *issuer {
            return Err("discovery document names another issuer");
        }
        let uri: Uri = document
            .jwks_uri
            .parse()
            .map_err(|_| "jwks_uri is not a URL")?;
        let scheme_ok = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => !self.inner.https_only,
            _ => false,
        };
        if !scheme_ok || uri.host().is_none() {
            return Err("jwks_uri is not an allowed http(s) URL");
        }
        self.inner.jwks_uri.store(Some(Arc::new(uri.clone())));
        Ok(uri)
    }

    async fn fetch(&self) -> Result<Snapshot, &'static str> {
        let url = self.key_set_url().await?;
        let body = match self.get_json(url).await {
            Ok(body) => body,
            Err(reason) => {
                // The provider may have moved its key set: discover again.
                self.inner.jwks_uri.store(None);
                return Err(reason);
            }
        };
        let set: JwkSet = serde_json::from_slice(&body).map_err(|_| "not a JWK set")?;
        let mut by_kid = HashMap::new();
        let mut keys = Vec::new();
        for jwk in &set.keys {
            let Some(key) = verification_key(jwk) else {
                continue;
            };
            if let Some(kid) = &jwk.common.key_id {
                by_kid.insert(kid.clone(), key.clone());
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err("no usable signing keys");
        }
        let only = (keys.len() == 1).then(|| keys.remove(0));
        Ok(Snapshot {
            generation: 0,
            by_kid,
            only,
            fetched_at: Instant::now(),
        })
    }
}

/// A URL fit for logs: no credentials, no query.
fn redact(url: &Uri) -> String {
    format!(
        "{}://{}{}",
        url.scheme_str().unwrap_or("?"),
        url.host().unwrap_or(""),
        url.path()
    )
}

/// A signing key from a JWK, or `None` for keys we must not or cannot use.
fn verification_key(jwk: &Jwk) -> Option<VerificationKey> {
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| !matches!(u, jsonwebtoken::jwk::PublicKeyUse::Signature))
    {
        return None;
    }
    let alg = match (&jwk.common.key_algorithm, &jwk.algorithm) {
        (_, AlgorithmParameters::OctetKey(_)) => return None,
        (Some(ka), _) => match ka {
            KeyAlgorithm::HS256 | KeyAlgorithm::HS384 | KeyAlgorithm::HS512 => return None,
            other => Algorithm::try_from(*other).ok()?,
        },
        (None, AlgorithmParameters::EllipticCurve(ec)) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        (None, AlgorithmParameters::OctetKeyPair(_)) => Algorithm::EdDSA,
        (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
        (None, _) => return None,
    };
    // A short Ed25519 `x` would panic inside the verifier; refuse it here.
    if let AlgorithmParameters::OctetKeyPair(okp) = &jwk.algorithm
        && URL_SAFE_NO_PAD.decode(&okp.x).map(|x| x.len()).ok() != Some(32)
    {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerificationKey::new(alg, key))
}

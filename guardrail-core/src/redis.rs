//! `[redis]`: the one Redis connection every Redis user shares (the rate
//! limiter today; the webhook replay cache and the flag store next).
//!
//! The section says where Redis is (a [`SecretRef`]: the URL may hold a
//! password), how long a command may take and the prefix of every key.
//! With the `redis` feature, [`RedisConfig::connect`] prepares one
//! [`RedisConnection`] (a connection manager that reconnects by itself)
//! that the service hands to each user, so a replica holds one connection,
//! not one per layer.
//!
//! # Example
//!
//! ```
//! use std::{fmt, time::Duration};
//! use guardrail_core::RedisConfig;
//!
//! let config: RedisConfig = toml::from_str(r#"
//!     url = { env = "REDIS_URL" }
//!     timeout = "20ms"
//! "#).unwrap();
//! assert_eq!(config.timeout, Duration::from_millis(20));
//! assert_eq!(config.key_prefix, "guardrails");
//!
//! let mut problems = Vec::new();
//! let bad: RedisConfig = toml::from_str(r#"timeout = "10s""#).unwrap();
//! bad.validate(false, &mut problems);
//! assert_eq!(problems[0].path, "redis.timeout");
//! ```

use std::{fmt, time::Duration};

use serde::Deserialize;

use crate::{SecretRef, config::ConfigProblem};

/// `[redis]`: where Redis is and how it is used.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RedisConfig {
    /// The URL, `redis://[:password@]host:port/db`, from the environment or
    /// a file (default `{ env = "REDIS_URL" }`). Only read when a layer
    /// uses Redis.
    pub url: SecretRef,
    /// How long one command may take before the user's fallback applies
    /// (default `"50ms"`, at most 5 s); the connection's response timeout.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// How long connecting may take (default `"250ms"`, at most 30 s).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// The first part of every key (default `"guardrails"`); each user adds
    /// its own part (`guardrails:rl:…`).
    pub key_prefix: String,
    /// `url` is one node of a Redis Cluster (default `false`): commands go
    /// to the node owning their key's slot, found from that seed node.
    pub cluster: bool,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: SecretRef::Env("REDIS_URL".into()),
            timeout: Duration::from_millis(50),
            connect_timeout: Duration::from_millis(250),
            key_prefix: "guardrails".into(),
            cluster: false,
        }
    }
}

impl RedisConfig {
    /// Adds every problem of this section to `problems`; `needed` when some
    /// layer is configured to use Redis (the URL must then resolve).
    pub fn validate(&self, needed: bool, problems: &mut Vec<ConfigProblem>) {
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(5) {
            problems.push(ConfigProblem::new(
                "redis.timeout",
                "must be more than 0s and at most 5s",
            ));
        }
        if self.connect_timeout.is_zero() || self.connect_timeout > Duration::from_secs(30) {
            problems.push(ConfigProblem::new(
                "redis.connect_timeout",
                "must be more than 0s and at most 30s",
            ));
        }
        if self.key_prefix.is_empty()
            || !self
                .key_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-:.".contains(&b))
        {
            problems.push(ConfigProblem::new(
                "redis.key_prefix",
                "must be 1 or more characters of [A-Za-z0-9_-:.]",
            ));
        }
        if needed {
            match self.url.resolve() {
                Ok(url) if !is_redis_url(url.expose()) => problems.push(ConfigProblem::new(
                    "redis.url",
                    format!(
                        "the value of {} is not a Redis URL (redis://, rediss:// or redis+unix://)",
                        self.url
                    ),
                )),
                Ok(url)
                    if self.cluster
                        && !(url.expose().starts_with(b"redis://")
                            || url.expose().starts_with(b"rediss://")) =>
                {
                    problems.push(ConfigProblem::new(
                        "redis.url",
                        "with cluster = true the URL must be a cluster node's redis:// or rediss:// address",
                    ))
                }
                Ok(_) => {}
                Err(e) => problems.push(ConfigProblem::new("redis.url", e.to_string())),
            }
        }
    }
}

fn is_redis_url(url: &[u8]) -> bool {
    ["redis://", "rediss://", "redis+unix://", "unix://"]
        .iter()
        .any(|scheme| url.starts_with(scheme.as_bytes()) && url.len() > scheme.len())
}

/// Why the shared Redis connection could not be prepared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// The URL could not be read.
    #[error("redis.url: {0}")]
    Url(#[from] crate::SecretError),
    /// The URL is not a Redis URL (the URL itself is never shown: it may
    /// hold a password).
    #[error("redis.url: not a valid Redis URL")]
    InvalidUrl,
    /// The connection manager could not be set up.
    #[error("cannot prepare the Redis connection ({kind})")]
    Setup {
        /// What kind of failure.
        kind: String,
    },
    /// Built without the `redis` feature of `guardrail-core`.
    #[error("Redis support is not compiled in (enable the `redis` feature)")]
    Unsupported,
}

/// The connection every Redis user of a service shares: clones share one
/// connection manager, which reconnects by itself after failures.
///
/// Only [`RedisConfig::connect`] (with the `redis` feature) makes one, so a
/// layer can take an `Option<RedisConnection>` whatever its features.
#[derive(Clone)]
pub struct RedisConnection {
    #[cfg(feature = "redis")]
    handle: RedisHandle,
    /// A single server's client, for connections of their own (pub/sub).
    #[cfg(feature = "redis")]
    client: Option<redis::Client>,
    #[cfg(not(feature = "redis"))]
    never: std::convert::Infallible,
    timeout: Duration,
    key_prefix: String,
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password: it is not kept, let alone printed.
        f.debug_struct("RedisConnection")
            .field("timeout", &self.timeout)
            .field("key_prefix", &self.key_prefix)
            .finish_non_exhaustive()
    }
}

impl RedisConfig {
    /// Prepares the shared connection. Nothing is sent until the first
    /// command. Needs a tokio runtime; without the `redis` feature it is
    /// [`RedisError::Unsupported`].
    pub fn connect(&self) -> Result<RedisConnection, RedisError> {
        let url = self.url.resolve()?;
        let url = std::str::from_utf8(url.expose()).map_err(|_| RedisError::InvalidUrl)?;
        RedisConnection::open(url, self)
    }
}

impl RedisConnection {
    /// Prepares a connection to `url` with the settings of `config` (its
    /// `url` is ignored): for tests and tools that hold the URL itself.
    ///
    /// With `config.cluster`, `url` is one node of a Redis Cluster; the
    /// others are found from it on the first command.
    #[cfg(feature = "redis")]
    pub fn open(url: &str, config: &RedisConfig) -> Result<Self, RedisError> {
        let setup = |e: redis::RedisError| RedisError::Setup {
            kind: format!("{:?}", e.kind()),
        };
        let mut single = None;
        let handle = if config.cluster {
            let client = redis::cluster::ClusterClient::builder([url])
                .connection_timeout(config.connect_timeout)
                .response_timeout(config.timeout)
                .retries(2)
                .build()
                .map_err(|_| RedisError::InvalidUrl)?;
            // Connects in the background: nothing blocks or fails here.
            let connection = client.get_pending_async_connection_with_config(
                redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(config.connect_timeout)
                    .set_response_timeout(config.timeout),
            );
            RedisHandle(Conn::Cluster(connection))
        } else {
            use redis::aio::{ConnectionManager, ConnectionManagerConfig};
            let client = redis::Client::open(url).map_err(|_| RedisError::InvalidUrl)?;
            single = Some(client.clone());
            let settings = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(config.connect_timeout))
                .set_response_timeout(Some(config.timeout))
                .set_number_of_retries(2)
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(Duration::from_secs(1));
            RedisHandle(Conn::Single(
                ConnectionManager::new_lazy_with_config(client, settings).map_err(setup)?,
            ))
        };
        Ok(Self {
            handle,
            client: single,
            timeout: config.timeout,
            key_prefix: config.key_prefix.clone(),
        })
    }

    /// Without the `redis` feature: [`RedisError::Unsupported`].
    #[cfg(not(feature = "redis"))]
    pub fn open(_url: &str, _config: &RedisConfig) -> Result<Self, RedisError> {
        Err(RedisError::Unsupported)
    }

    /// A handle on the shared connection (cheap: a clone), to send
    /// commands with (`redis::cmd(…).query_async(&mut handle)`).
    #[cfg(feature = "redis")]
    pub fn connection(&self) -> RedisHandle {
        self.handle.clone()
    }

    /// A connection of its own, for pub/sub (a subscribed connection can't
    /// send other commands, so it is never the shared one). A single
    /// server only: with a cluster it fails (`InvalidClientConfig`).
    #[cfg(feature = "redis")]
    pub async fn pubsub(&self) -> redis::RedisResult<redis::aio::PubSub> {
        match &self.client {
            Some(client) => client.get_async_pubsub().await,
            None => Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "pub/sub needs a single Redis server",
            ))),
        }
    }

    /// Whether commands go to a Redis Cluster: keys one command or script
    /// touches together must then share a slot (a `{hash tag}`).
    pub fn is_cluster(&self) -> bool {
        #[cfg(not(feature = "redis"))]
        match self.never {}
        #[cfg(feature = "redis")]
        matches!(self.handle.0, Conn::Cluster(_))
    }

    /// How long one command may take.
    pub fn timeout(&self) -> Duration {
        #[cfg(not(feature = "redis"))]
        match self.never {}
        #[cfg(feature = "redis")]
        self.timeout
    }

    /// The key prefix of one user: `<key_prefix>:<part>`.
    pub fn key_prefix(&self, part: &str) -> String {
        format!("{}:{part}", self.key_prefix)
    }
}

/// A handle on the shared connection: a single server's connection manager
/// (reconnecting by itself) or a Redis Cluster connection (routing each
/// command to its key's node). Cheap to clone; send commands with
/// `query_async(&mut handle)`.
#[cfg(feature = "redis")]
#[derive(Clone)]
pub struct RedisHandle(Conn);

#[cfg(feature = "redis")]
#[derive(Clone)]
enum Conn {
    Single(redis::aio::ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

#[cfg(feature = "redis")]
impl fmt::Debug for RedisHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.0 {
            Conn::Single(_) => "single",
            Conn::Cluster(_) => "cluster",
        };
        f.debug_struct("RedisHandle")
            .field("mode", &mode)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "redis")]
impl redis::aio::ConnectionLike for RedisHandle {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match &mut self.0 {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match &mut self.0 {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

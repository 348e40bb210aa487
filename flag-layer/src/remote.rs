//! Flags in Redis, shared by every replica: definitions in one hash,
//! changes announced on a channel so each replica reloads at once, a full
//! reload every `reload` as a safety net, and the last good set serving
//! (reported STALE) while Redis can't be reached.

#[cfg(feature = "redis")]
pub(crate) use with_redis::{Remote, remote, sync};

/// Without the `redis` feature there is no remote: the type has no value.
#[cfg(not(feature = "redis"))]
#[derive(Debug)]
pub(crate) enum Remote {}

#[cfg(not(feature = "redis"))]
impl Remote {
    pub(crate) async fn write(&self, _flag: &crate::Flag) -> Result<(), String> {
        match *self {}
    }

    pub(crate) fn seed(&self, _name: &str) -> Option<&crate::Flag> {
        match *self {}
    }
}

/// Without the `redis` feature, `source = "redis"` can't be served.
#[cfg(not(feature = "redis"))]
pub(crate) fn remote(
    _redis: Option<guardrail_core::RedisConnection>,
    _seeds: Vec<crate::Flag>,
) -> Result<std::sync::Arc<Remote>, crate::FlagError> {
    Err(missing())
}

#[cfg(not(feature = "redis"))]
pub(crate) async fn sync(
    _store: crate::FlagStore,
    remote: std::sync::Arc<Remote>,
    _every: std::time::Duration,
) {
    match *remote {}
}

fn missing() -> crate::FlagError {
    crate::FlagError::Invalid(vec![guardrail_core::config::ConfigProblem::new(
        "flags.source",
        "\"redis\" needs the shared [redis] connection (and flag-layer's `redis` feature)",
    )])
}

#[cfg(feature = "redis")]
mod with_redis {
    use std::{sync::Arc, time::Duration};

    use futures_util::StreamExt;
    use guardrail_core::{RedisConnection, config::ConfigProblem};

    use crate::{Flag, FlagStore};

    /// Where a store's flags live in Redis.
    pub(crate) struct Remote {
        conn: RedisConnection,
        /// `<prefix>:flags`: a hash, flag name → its JSON.
        key: String,
        /// `<prefix>:flags:changes`: a changed flag's name is published.
        channel: String,
        /// The config's definitions, written where Redis has none.
        seeds: Vec<Flag>,
    }

    impl std::fmt::Debug for Remote {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Remote")
                .field("key", &self.key)
                .field("channel", &self.channel)
                .field("seeds", &self.seeds.len())
                .finish_non_exhaustive()
        }
    }

    fn why(e: redis::RedisError) -> String {
        // The kind and code only: never the URL (it may hold a password).
        format!("redis: {:?} {}", e.kind(), e.code().unwrap_or_default())
    }

    /// The remote of `redis` (required), seeded with the config's flags.
    pub(crate) fn remote(
        redis: Option<RedisConnection>,
        seeds: Vec<Flag>,
    ) -> Result<Arc<Remote>, crate::FlagError> {
        let conn = redis.ok_or_else(super::missing)?;
        Ok(Arc::new(Remote::new(conn, seeds)))
    }

    impl Remote {
        fn new(conn: RedisConnection, seeds: Vec<Flag>) -> Self {
            Self {
                key: conn.key_prefix("flags"),
                channel: conn.key_prefix("flags:changes"),
                conn,
                seeds,
            }
        }

        /// The config's definition of `name`, which `restore` writes back.
        pub(crate) fn seed(&self, name: &str) -> Option<&Flag> {
            self.seeds.iter().find(|f| f.name == name)
        }

        /// Writes `flag` and tells every replica.
        pub(crate) async fn write(&self, flag: &Flag) -> Result<(), String> {
            let json = serde_json::to_string(flag).map_err(|e| e.to_string())?;
            let mut conn = self.conn.connection();
            redis::pipe()
                .atomic()
                .hset(&self.key, &flag.name, json)
                .ignore()
                .publish(&self.channel, &flag.name)
                .ignore()
                .query_async::<()>(&mut conn)
                .await
                .map_err(why)
        }

        /// Writes each seed Redis does not have yet (a new flag starts as
        /// the config defines it; an existing one is Redis's).
        async fn plant_seeds(&self) -> Result<(), String> {
            if self.seeds.is_empty() {
                return Ok(());
            }
            let mut pipe = redis::pipe();
            for flag in &self.seeds {
                let json = serde_json::to_string(flag).map_err(|e| e.to_string())?;
                pipe.hset_nx(&self.key, &flag.name, json).ignore();
            }
            let mut conn = self.conn.connection();
            pipe.query_async::<()>(&mut conn).await.map_err(why)
        }

        /// Every definition in Redis; one that is no flag is a problem.
        async fn load(&self) -> Result<Result<Vec<Flag>, Vec<ConfigProblem>>, String> {
            let mut conn = self.conn.connection();
            let entries: Vec<(String, String)> = redis::cmd("HGETALL")
                .arg(&self.key)
                .query_async(&mut conn)
                .await
                .map_err(why)?;
            let mut flags = Vec::with_capacity(entries.len());
            let mut problems = Vec::new();
            for (name, json) in entries {
                match serde_json::from_str::<Flag>(&json) {
                    Ok(flag) if flag.name == name => flags.push(flag),
                    Ok(_) => problems.push(ConfigProblem::new(
                        format!("redis.flags.{name}"),
                        "holds the definition of another flag",
                    )),
                    Err(e) => problems.push(ConfigProblem::new(
                        format!("redis.flags.{name}"),
                        format!("is not a flag: {e}"),
                    )),
                }
            }
            flags.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(if problems.is_empty() {
                Ok(flags)
            } else {
                Err(problems)
            })
        }

        /// Reads every definition and hands them to the store.
        async fn resync(&self, store: &FlagStore) -> Result<(), String> {
            // A write of this replica's after the read started is newer
            // than what the read returns: the read is then dropped (the
            // write's own announcement brings a later one).
            let writes = store.writes();
            match self.load().await? {
                Ok(flags) => {
                    // A refused set is logged and reported by the store.
                    let _ = store.replace_source_since(flags, "redis.flags", Some(writes));
                }
                Err(problems) => store.refuse_source(problems),
            }
            store.fresh();
            Ok(())
        }

        /// Subscribes, plants the seeds, reads everything, then reads
        /// again on every announced change and every `every`. Returns when
        /// Redis fails.
        async fn follow(&self, store: &FlagStore, every: Duration) -> Result<(), String> {
            let mut pubsub = self.conn.pubsub().await.map_err(why)?;
            pubsub.subscribe(&self.channel).await.map_err(why)?;
            self.plant_seeds().await?;
            self.resync(store).await?;
            let mut changes = pubsub.into_on_message();
            let mut tick = tokio::time::interval(every);
            tick.reset();
            loop {
                tokio::select! {
                    change = changes.next() => match change {
                        Some(_) => self.resync(store).await?,
                        None => return Err("redis: the subscription ended".into()),
                    },
                    _ = tick.tick() => self.resync(store).await?,
                }
            }
        }
    }

    /// The store's Redis follower: keeps it in step with Redis, and while
    /// Redis can't be reached keeps the last good set serving, reported
    /// STALE, trying again after 100 ms, doubling up to 5 s.
    pub(crate) async fn sync(store: FlagStore, remote: Arc<Remote>, every: Duration) {
        let mut wait = Duration::from_millis(100);
        loop {
            let started = tokio::time::Instant::now();
            if let Err(reason) = remote.follow(&store, every).await {
                store.stale(reason);
            }
            if started.elapsed() > Duration::from_secs(30) {
                wait = Duration::from_millis(100);
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }
}

//! Flags in Redis, as replicas share them: against the real Redis at
//! `REDIS_URL` (default `redis://127.0.0.1:6379`; never skipped — the test
//! fails when it can't be reached) and, for an outage, a private
//! `redis-server` stopped and started again.

use std::time::{Duration, Instant};

use guardrails::{
    flag_layer::{FlagContext, FlagStore, FlagsConfig, Reason},
    guardrail_core::{
        Principal, Pseudonymizer, RedisConfig, RedisConnection,
        health::{HealthSource, HealthStatus},
    },
};
use guardrails_testkit::{capture, redis::PrivateRedis};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A connection under a key prefix no other test run shares.
fn connection(url: &str, prefix: &str) -> RedisConnection {
    let mut config = RedisConfig::default();
    config.key_prefix = prefix.to_owned();
    config.timeout = Duration::from_secs(1);
    config.connect_timeout = Duration::from_secs(1);
    RedisConnection::open(url, &config).expect("REDIS_URL is not a valid Redis URL")
}

fn unique(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("guardrails-test:{}:{nanos}:{test}", std::process::id())
}

/// One replica's store, its sync task running.
fn replica(
    conn: RedisConnection,
    reload: &str,
) -> (FlagStore, guardrails::guardrail_core::RunningTasks) {
    let section: FlagsConfig = toml::from_str(&format!(
        r#"
        source = "redis"
        reload = "{reload}"
        [[flag]]
        name = "ai_recommendations"
        enabled = true
        rollout_percentage = 100
        "#
    ))
    .unwrap();
    let (store, tasks) = section
        .store(Pseudonymizer::random(), std::iter::empty(), Some(conn))
        .unwrap();
    assert_eq!(tasks.names(), ["flag_sync"]);
    (store, tasks.spawn())
}

async fn until(what: &str, limit: Duration, done: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    start.elapsed()
}

fn health(store: &FlagStore) -> (HealthStatus, serde_json::Value) {
    let report = store.health_source().check();
    (report.status, report.details)
}

#[tokio::test]
async fn a_kill_switch_written_through_one_replica_reaches_the_other() {
    let (_guard, logs) = capture::json();
    let url = redis_url();
    let prefix = unique("propagation");
    let (a, run_a) = replica(connection(&url, &prefix), "30s");
    let (b, run_b) = replica(connection(&url, &prefix), "30s");
    let ctx = FlagContext::user("user-1");
    // Both follow Redis (the seed planted by the first).
    let synced = |s: &FlagStore| health(s).1["synced_seconds_ago"].is_u64();
    until("both synced", Duration::from_secs(5), || {
        synced(&a) && synced(&b)
    })
    .await;
    assert!(b.is_enabled("ai_recommendations", &ctx));

    let ops = Principal::new("ops-1");
    let written = Instant::now();
    a.kill("ai_recommendations", &ops)
        .await
        .unwrap_or_else(|e| panic!("Redis at {url}: {e}"));
    assert!(
        !a.is_enabled("ai_recommendations", &ctx),
        "the writer at once"
    );
    let took = until("the kill reached replica b", Duration::from_secs(5), || {
        !b.is_enabled("ai_recommendations", &ctx)
    })
    .await;
    let since_write = written.elapsed();
    // Measured from the write call (the writer applies it when the call
    // returns; the other replica when the announcement arrives).
    println!(
        "kill switch propagation to the other replica: {since_write:?} from the write call ({took:?} after it returned)"
    );
    assert_eq!(
        b.evaluate("ai_recommendations", &ctx).reason,
        Reason::Disabled
    );
    // Back on through b: a follows.
    b.restore("ai_recommendations", &ops).await.unwrap();
    until(
        "the restore reached replica a",
        Duration::from_secs(5),
        || a.is_enabled("ai_recommendations", &ctx),
    )
    .await;
    run_a.shutdown().await;
    run_b.shutdown().await;
    // Each replica logged the change it saw.
    let changed = logs
        .lines()
        .into_iter()
        .filter(|l| l["event"] == "flag.changed")
        .count();
    assert!(changed >= 4, "kill and restore, on both: {changed}");
}

#[tokio::test]
async fn while_redis_is_down_the_last_good_set_serves_and_is_reported_stale() {
    let (_guard, logs) = capture::json();
    let mut server = PrivateRedis::start();
    let url = server.url();
    let (store, running) = replica(connection(&url, "guardrails"), "200ms");
    let ctx = FlagContext::user("user-1");
    until("synced", Duration::from_secs(5), || {
        server.cli(&["HEXISTS", "guardrails:flags", "ai_recommendations"]) == "1"
    })
    .await;
    // An operator's change, straight in Redis, announced: applied.
    let off = r#"{"name":"ai_recommendations","enabled":true,"rollout_percentage":0}"#;
    server.cli(&["HSET", "guardrails:flags", "ai_recommendations", off]);
    server.cli(&["PUBLISH", "guardrails:flags:changes", "ai_recommendations"]);
    until("the change applied", Duration::from_secs(5), || {
        !store.is_enabled("ai_recommendations", &ctx)
    })
    .await;

    // Outage: the last good set keeps serving, reported STALE.
    server.stop();
    until("reported stale", Duration::from_secs(10), || {
        health(&store).1["state"] == "STALE"
    })
    .await;
    let (status, details) = health(&store);
    assert_eq!(status, HealthStatus::Warn, "{details}");
    assert_eq!(
        store.evaluate("ai_recommendations", &ctx).reason,
        Reason::Default,
        "still the last good set (rolled out to 0 %)"
    );
    // A change can't be written while Redis is down: refused, nothing changed.
    let err = store
        .kill("ai_recommendations", &Principal::new("ops-1"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("could not be written"), "{err}");

    // Back (empty: nothing was kept): the seed is planted again and read.
    server.restart();
    until("resynced", Duration::from_secs(10), || {
        store.is_enabled("ai_recommendations", &ctx) && health(&store).0 == HealthStatus::Pass
    })
    .await;
    running.shutdown().await;
    let lines = logs.lines();
    let failed = lines
        .iter()
        .filter(|l| l["event"] == "integration.backend_failed" && l["purpose"] == "flags")
        .count();
    let recovered = lines
        .iter()
        .filter(|l| l["event"] == "integration.backend_recovered" && l["purpose"] == "flags")
        .count();
    assert_eq!(
        (failed, recovered),
        (1, 1),
        "one outage, logged once each way"
    );
}

//! The Redis backend against the real Redis at `REDIS_URL` (default
//! `redis://127.0.0.1:6379`): replicas share a quota, buckets expire,
//! failures fall back as configured, and recovery is automatic.
//!
//! These tests fail (never skip) when Redis is not there: `scripts/test.sh`
//! starts one.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use guardrail_core::ClientIp;
use http::{Request, Response, StatusCode};
use ratelimit_layer::{OnRedisError, RateLimitLayer, RateLimitPolicy, RedisBackend, key::Key};
use tokio::{net::TcpListener, task::JoinSet};
use tower::{Service, ServiceExt, service_fn};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A direct connection for assertions; panics with a clear message if Redis
/// is not reachable.
async fn redis() -> redis::aio::MultiplexedConnection {
    let url = redis_url();
    let client = redis::Client::open(url.as_str()).expect("REDIS_URL is not a valid Redis URL");
    match tokio::time::timeout(
        Duration::from_secs(3),
        client.get_multiplexed_async_connection(),
    )
    .await
    {
        Ok(Ok(conn)) => conn,
        _ => panic!(
            "Redis is not reachable at {url}: start it (scripts/test.sh does) or set REDIS_URL"
        ),
    }
}

/// A prefix no other test run shares.
fn prefix(test: &str) -> String {
    format!(
        "guardrails-test:{}:{}:{test}",
        std::process::id(),
        uuid_like()
    )
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

type Reply = std::future::Ready<Result<Response<String>, Infallible>>;
type Handler = fn(Request<()>) -> Reply;
type Svc = ratelimit_layer::RateLimit<tower::util::ServiceFn<Handler>>;

fn replica(backend: RedisBackend, policy: RateLimitPolicy, on_error: OnRedisError) -> Svc {
    let layer = RateLimitLayer::builder()
        .policy(policy)
        .redis(backend)
        .on_redis_error(on_error)
        .build()
        .unwrap();
    let inner: Handler = |_| std::future::ready(Ok(Response::new(String::new())));
    tower::Layer::layer(&layer, service_fn(inner))
}

fn from(ip: &str) -> Request<()> {
    let mut req = Request::new(());
    req.extensions_mut()
        .insert(ClientIp::new(ip.parse().unwrap()));
    req
}

async fn status(svc: &mut Svc, ip: &str) -> (StatusCode, http::HeaderMap) {
    let res = svc.ready().await.unwrap().call(from(ip)).await.unwrap();
    (res.status(), res.headers().clone())
}

fn policy() -> RateLimitPolicy {
    RateLimitPolicy::per_minute(60).burst(5).name("per_ip")
}

/// The key of bucket names, as every replica of a service shares it.
fn names() -> guardrail_core::Pseudonymizer {
    guardrail_core::Pseudonymizer::new(b"the rate-limit key every replica shares")
}

#[tokio::test]
async fn two_replicas_share_one_quota() {
    redis().await;
    let prefix = prefix("shared");
    let backend = || {
        RedisBackend::new(connect(&redis_url()), names())
            .prefix(prefix.clone())
            .timeout(Duration::from_millis(500))
    };
    // One request a minute refills: however slow this run is, nothing
    // refills between the six requests.
    let slow = || RateLimitPolicy::per_hour(60).burst(5).name("per_ip");
    let mut a = replica(backend(), slow(), OnRedisError::Deny);
    let mut b = replica(backend(), slow(), OnRedisError::Deny);

    for _ in 0..3 {
        assert_eq!(status(&mut a, "203.0.113.9").await.0, StatusCode::OK);
    }
    let (s, headers) = status(&mut b, "203.0.113.9").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        headers["ratelimit"], "\"per_ip\";r=1;t=240",
        "replica B sees A's three requests"
    );
    assert_eq!(status(&mut b, "203.0.113.9").await.0, StatusCode::OK);
    let (s, headers) = status(&mut a, "203.0.113.9").await;
    assert_eq!(
        s,
        StatusCode::TOO_MANY_REQUESTS,
        "the sixth request, on either replica, is over"
    );
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(
        (59..=60).contains(&retry),
        "one request refills in a minute: {retry}"
    );
    assert_eq!(
        status(&mut b, "198.51.100.1").await.0,
        StatusCode::OK,
        "other clients unaffected"
    );
}

#[tokio::test]
async fn buckets_have_a_ttl_and_hold_no_raw_identifiers() {
    let mut conn = redis().await;
    let prefix = prefix("ttl");
    let backend = RedisBackend::new(connect(&redis_url()), names())
        .prefix(prefix.clone())
        .timeout(Duration::from_millis(500));
    let mut svc = replica(backend.clone(), policy(), OnRedisError::Deny);
    for _ in 0..3 {
        status(&mut svc, "203.0.113.9").await;
    }
    let key = backend.bucket_key("per_ip", &Key::Ip("203.0.113.9".parse().unwrap()));
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    // Three requests at one a second: full again in about 3 s.
    assert!((2_000..=4_100).contains(&ttl), "PTTL {ttl} for {key}");

    let subject = Key::Subject("alice@example.com".into());
    assert!(!backend.bucket_key("per_user", &subject).contains("alice"));
}

#[tokio::test]
async fn unreachable_redis_falls_back_as_configured() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("redis://{closed}");
    let backend = || RedisBackend::new(connect(&url), names()).timeout(Duration::from_millis(100));

    let mut local = replica(backend(), policy(), OnRedisError::Local);
    for _ in 0..5 {
        assert_eq!(status(&mut local, "203.0.113.9").await.0, StatusCode::OK);
    }
    assert_eq!(
        status(&mut local, "203.0.113.9").await.0,
        StatusCode::TOO_MANY_REQUESTS,
        "still limited, locally"
    );

    let mut allow = replica(backend(), policy(), OnRedisError::Allow);
    for _ in 0..10 {
        assert_eq!(status(&mut allow, "203.0.113.9").await.0, StatusCode::OK);
    }

    let mut deny = replica(backend(), policy(), OnRedisError::Deny);
    let (s, headers) = status(&mut deny, "203.0.113.9").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");

    // A shadow policy never rejects, not even when Redis is down.
    let shadow = policy().mode(ratelimit_layer::PolicyMode::Shadow);
    let mut shadow = replica(backend(), shadow, OnRedisError::Deny);
    assert_eq!(status(&mut shadow, "203.0.113.9").await.0, StatusCode::OK);
}

/// A TCP proxy to Redis that can be cut and restored.
struct Switch {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    connections: Arc<tokio::sync::Mutex<JoinSet<()>>>,
}

impl Switch {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
        let (up2, conns2) = (up.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused in effect
                }
                conns2.lock().await.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self {
            addr,
            up,
            connections,
        }
    }

    async fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.connections.lock().await.abort_all();
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn redis_outage_falls_back_then_recovers_by_itself() {
    let mut conn = redis().await;
    let upstream: SocketAddr = redis_url()
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .expect("this test needs REDIS_URL as redis://host:port");
    let switch = Switch::start(upstream).await;
    let prefix = prefix("outage");
    let backend = RedisBackend::new(connect(&format!("redis://{}", switch.addr)), names())
        .prefix(prefix.clone())
        .timeout(Duration::from_millis(200));
    let mut svc = replica(
        backend.clone(),
        RateLimitPolicy::per_minute(600).burst(100).name("per_ip"),
        OnRedisError::Local,
    );
    let key = backend.bucket_key("per_ip", &Key::Ip("203.0.113.9".parse().unwrap()));

    assert_eq!(status(&mut svc, "203.0.113.9").await.0, StatusCode::OK);
    assert!(!backend.is_failing());
    let stored: Option<i64> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(stored.is_some(), "the decision was made on Redis");

    switch.cut().await;
    let (s, _) = status(&mut svc, "203.0.113.9").await;
    assert_eq!(
        s,
        StatusCode::OK,
        "the local limiter decides during the outage"
    );
    assert!(backend.is_failing());

    switch.restore();
    redis::cmd("DEL")
        .arg(&key)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    // The connection manager reconnects by itself; requests keep flowing
    // meanwhile. Bounded: at most 50 requests over about 10 s.
    let mut recovered = false;
    for _ in 0..50 {
        status(&mut svc, "203.0.113.9").await;
        if !backend.is_failing() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "decisions went back to Redis after it came back");
    let stored: Option<i64> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        stored.is_some(),
        "after recovery, decisions are on Redis again"
    );
}

#[tokio::test]
async fn lost_script_cache_is_reloaded_with_eval() {
    let mut conn = redis().await;
    let prefix = prefix("noscript");
    let backend = RedisBackend::new(connect(&redis_url()), names())
        .prefix(prefix)
        .timeout(Duration::from_millis(500));
    let mut svc = replica(backend, policy(), OnRedisError::Deny);
    assert_eq!(status(&mut svc, "203.0.113.9").await.0, StatusCode::OK);
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        status(&mut svc, "203.0.113.9").await.0,
        StatusCode::OK,
        "EVALSHA failed over to EVAL"
    );
}

/// The shared connection a service would prepare from `[redis]`, with room
/// for the slowest decision these runs allow.
fn connect(url: &str) -> guardrails::guardrail_core::RedisConnection {
    let mut config = guardrails::guardrail_core::RedisConfig::default();
    config.timeout = std::time::Duration::from_millis(500);
    guardrails::guardrail_core::RedisConnection::open(url, &config).unwrap()
}

#[tokio::test]
async fn both_stages_share_one_redis_backend_and_report_its_failure() {
    use guardrail_core::{Principal, Pseudonymizer, health::HealthStatus};
    use ratelimit_layer::RateLimitConfig;

    // Only an after-auth policy, on a Redis nothing listens on: the
    // before-auth stage never talks to Redis, yet the report must see the
    // failure of the one backend both stages share.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let key_file = std::env::temp_dir().join(format!("gr-rl-key-{}", std::process::id()));
    std::fs::write(&key_file, "a rate-limit key of at least thirty-two bytes").unwrap();
    let config: RateLimitConfig = toml::from_str(&format!(
        r#"
        backend = "redis"
        on_redis_error = "allow"
        redis_key_secret = {{ file = "{}" }}
        [[policies]]
        name = "per_user"
        key = "principal"
        rate = 10
        period = "1s"
        stage = "after_auth"
        "#,
        key_file.display()
    ))
    .unwrap();
    let stages = RateLimitLayer::from_config(
        &config,
        Some(connect(&format!("redis://{closed}"))),
        Pseudonymizer::random(),
    )
    .unwrap();
    let health = stages.health_sources().remove(0);
    let report = health.check();
    assert_eq!(report.status, HealthStatus::Pass);
    assert_eq!(report.details["backend"], "redis");
    assert_eq!(report.details["redis_failing"], false);

    let svc = tower::Layer::layer(
        &stages.after_auth,
        service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) }),
    );
    let mut req = Request::new(());
    req.extensions_mut().insert(Principal::new("user-1"));
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "on_redis_error = \"allow\"");

    let report = health.check();
    assert_eq!(report.status, HealthStatus::Warn);
    assert_eq!(report.details["redis_failing"], true);
}

/// Three policies in one stage — two per client address, one global — on
/// a Redis of this test's own, so its command counts are this test's.
fn three_policies(redis: &str) -> Svc {
    let backend = RedisBackend::new(connect(redis), names()).timeout(Duration::from_millis(500));
    let layer = RateLimitLayer::builder()
        .policy(RateLimitPolicy::per_minute(600).burst(50).name("per_ip"))
        .policy(
            RateLimitPolicy::per_hour(600)
                .burst(500)
                .name("per_ip_hourly"),
        )
        .policy(
            // Slow enough that its bucket outlives the test's own checks
            // on a loaded machine (at 100/s it expired within 60 ms, and a
            // SCAN under load missed it).
            RateLimitPolicy::per_hour(6000)
                .burst(100)
                .name("everyone")
                .key(ratelimit_layer::key::GlobalKey),
        )
        .redis(backend)
        .on_redis_error(OnRedisError::Deny)
        .build()
        .unwrap();
    let inner: Handler = |_| std::future::ready(Ok(Response::new(String::new())));
    tower::Layer::layer(&layer, service_fn(inner))
}

#[tokio::test]
async fn one_stage_is_one_script_call_whatever_its_policies() {
    let redis = guardrails_testkit::redis::PrivateRedis::start();
    let mut svc = three_policies(&redis.url());
    // The first call loads the script (EVALSHA fails once, then EVAL).
    assert_eq!(status(&mut svc, "203.0.113.9").await.0, StatusCode::OK);
    redis.cli(&["CONFIG", "RESETSTAT"]);

    for _ in 0..5 {
        let (s, headers) = status(&mut svc, "203.0.113.9").await;
        assert_eq!(s, StatusCode::OK);
        let ratelimit: Vec<_> = headers
            .get_all("ratelimit")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        let ratelimit = ratelimit.join(", ");
        assert!(
            ratelimit.contains("\"per_ip\"")
                && ratelimit.contains("\"per_ip_hourly\"")
                && ratelimit.contains("\"everyone\""),
            "all three decided: {ratelimit}"
        );
    }
    assert_eq!(redis.calls("evalsha"), 5, "one script call per request");
    assert_eq!(redis.calls("eval"), 0);
    // The script's own reads (Redis counts them too): one per bucket.
    assert_eq!(redis.calls("get"), 15);
    assert_eq!(
        redis.keys().len(),
        3,
        "one bucket per policy: {:?}",
        redis.keys()
    );
}

#[tokio::test]
async fn redis_key_names_hold_no_raw_client_ids() {
    use guardrail_core::Principal;
    use ratelimit_layer::key::{ApiKeyHeader, PrincipalKey};

    let redis = guardrails_testkit::redis::PrivateRedis::start();
    let backend = RedisBackend::new(connect(&redis.url()), names());
    let layer = RateLimitLayer::builder()
        .policy(RateLimitPolicy::per_minute(60).name("per_ip"))
        .policy(
            RateLimitPolicy::per_minute(60)
                .name("per_user")
                .key(PrincipalKey),
        )
        .policy(
            RateLimitPolicy::per_minute(60)
                .name("per_key")
                .key(ApiKeyHeader::new(http::HeaderName::from_static(
                    "x-api-key",
                ))),
        )
        .redis(backend)
        .build()
        .unwrap();
    let inner: Handler = |_| std::future::ready(Ok(Response::new(String::new())));
    let mut svc = tower::Layer::layer(&layer, service_fn(inner));
    let (ip, user, api_key) = (
        "203.0.113.9",
        "alice@example.com",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    );
    let mut req = from(ip);
    req.extensions_mut().insert(Principal::new(user));
    req.headers_mut()
        .insert("x-api-key", api_key.parse().unwrap());
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let keys = redis.keys();
    assert_eq!(keys.len(), 3, "{keys:?}");
    for key in &keys {
        for raw in [
            ip,
            "203.0.113",
            user,
            "alice",
            api_key,
            "4eC39HqLyjWDarjtT1zdp7dc",
        ] {
            assert!(!key.contains(raw), "{key} holds {raw}");
        }
        assert!(key.starts_with("guardrails:rl:{"), "{key}");
    }
    // Keyed: another key names other buckets, so without the key nobody can
    // tell whose bucket is whose by hashing candidate addresses.
    let other = RedisBackend::new(
        connect(&redis.url()),
        guardrail_core::Pseudonymizer::new(b"another service's key, just as long"),
    );
    let ip_key = Key::Ip(ip.parse().unwrap());
    assert!(keys.contains(
        &RedisBackend::new(connect(&redis.url()), names()).bucket_key("per_ip", &ip_key)
    ));
    assert!(!keys.contains(&other.bucket_key("per_ip", &ip_key)));
}

#[tokio::test]
async fn redis_cluster_shares_a_quota_in_one_call_per_client() {
    let cluster = guardrails_testkit::redis::RedisCluster::start();
    let open = || {
        let mut config = guardrails::guardrail_core::RedisConfig::default();
        config.timeout = Duration::from_secs(2);
        config.cluster = true;
        guardrails::guardrail_core::RedisConnection::open(&cluster.url(), &config).unwrap()
    };
    let replica = |policies: Vec<RateLimitPolicy>| {
        let mut builder = RateLimitLayer::builder()
            .redis(RedisBackend::new(open(), names()))
            .on_redis_error(OnRedisError::Deny);
        for p in policies {
            builder = builder.policy(p);
        }
        let inner: Handler = |_| std::future::ready(Ok(Response::new(String::new())));
        tower::Layer::layer(&builder.build().unwrap(), service_fn(inner))
    };
    let per_client = || {
        vec![
            RateLimitPolicy::per_hour(60).burst(3).name("per_ip"),
            RateLimitPolicy::per_hour(600)
                .burst(100)
                .name("per_ip_hourly"),
        ]
    };
    let (mut a, mut b) = (replica(per_client()), replica(per_client()));
    // Warm-up: each replica connects and loads the script on each node.
    assert_eq!(status(&mut a, "198.51.100.7").await.0, StatusCode::OK);
    assert_eq!(status(&mut b, "198.51.100.8").await.0, StatusCode::OK);

    // Both policies key on the client: one slot, one call per request.
    let before = cluster.calls("evalsha");
    assert_eq!(status(&mut a, "203.0.113.9").await.0, StatusCode::OK);
    assert_eq!(status(&mut b, "203.0.113.9").await.0, StatusCode::OK);
    let (s, headers) = status(&mut a, "203.0.113.9").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        headers["ratelimit"]
            .to_str()
            .unwrap()
            .contains("\"per_ip\";r=0"),
        "the replicas share one bucket on the cluster: {headers:?}"
    );
    let (s, _) = status(&mut b, "203.0.113.9").await;
    assert_eq!(
        s,
        StatusCode::TOO_MANY_REQUESTS,
        "the fourth request is over"
    );
    assert_eq!(cluster.calls("evalsha") - before, 4, "one call per request");

    // A global policy beside them keys on something else: another slot,
    // one more call.
    let mut mixed = replica(vec![
        RateLimitPolicy::per_hour(600)
            .burst(100)
            .name("per_ip_mixed"),
        RateLimitPolicy::per_hour(600)
            .burst(100)
            .name("everyone")
            .key(ratelimit_layer::key::GlobalKey),
    ]);
    assert_eq!(status(&mut mixed, "192.0.2.1").await.0, StatusCode::OK);
    let before = cluster.calls("evalsha") + cluster.calls("eval");
    assert_eq!(status(&mut mixed, "192.0.2.1").await.0, StatusCode::OK);
    assert_eq!(
        cluster.calls("evalsha") + cluster.calls("eval") - before,
        2,
        "one call per slot"
    );
    for key in cluster.keys() {
        assert!(
            !key.contains("203.0.113.9") && !key.contains("192.0.2.1"),
            "{key}"
        );
    }
}

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

#[tokio::test]
async fn two_replicas_share_one_quota() {
    redis().await;
    let prefix = prefix("shared");
    let backend = || {
        RedisBackend::new(connect(&redis_url()))
            .prefix(prefix.clone())
            .timeout(Duration::from_millis(500))
    };
    let mut a = replica(backend(), policy(), OnRedisError::Deny);
    let mut b = replica(backend(), policy(), OnRedisError::Deny);

    for _ in 0..3 {
        assert_eq!(status(&mut a, "203.0.113.9").await.0, StatusCode::OK);
    }
    let (s, headers) = status(&mut b, "203.0.113.9").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        headers["ratelimit"], "\"per_ip\";r=1;t=4",
        "replica B sees A's three requests"
    );
    assert_eq!(status(&mut b, "203.0.113.9").await.0, StatusCode::OK);
    let (s, headers) = status(&mut a, "203.0.113.9").await;
    assert_eq!(
        s,
        StatusCode::TOO_MANY_REQUESTS,
        "the sixth request, on either replica, is over"
    );
    assert_eq!(headers["retry-after"], "1");
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
    let backend = RedisBackend::new(connect(&redis_url()))
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
    let backend = || RedisBackend::new(connect(&url)).timeout(Duration::from_millis(100));

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
    let backend = RedisBackend::new(connect(&format!("redis://{}", switch.addr)))
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
    let backend = RedisBackend::new(connect(&redis_url()))
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
    let config: RateLimitConfig = toml::from_str(
        r#"
        backend = "redis"
        on_redis_error = "allow"
        [[policies]]
        name = "per_user"
        key = "principal"
        rate = 10
        period = "1s"
        stage = "after_auth"
        "#,
    )
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

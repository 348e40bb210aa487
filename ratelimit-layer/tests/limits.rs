//! Rate-limit behaviour a client sees, with time paused.

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use guardrail_core::{ClientIpConfig, Principal, ResolveClientIpLayer};
use http::{Request, Response, StatusCode};
use ratelimit_layer::{
    LimiterClock, RateLimitLayer, RateLimitPolicy,
    key::{Key, PrincipalKey, RequestParts},
};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

type Res = Response<String>;

/// A one-policy layer on tokio's clock, so paused time drives it.
fn tokio_clock(policy: RateLimitPolicy) -> Result<RateLimitLayer, ratelimit_layer::RateLimitError> {
    RateLimitLayer::builder()
        .clock(LimiterClock::Tokio)
        .policy(policy)
        .build()
}

/// A rate-limited echo service behind client IP resolution.
fn service(
    layer: RateLimitLayer,
    proxies: ClientIpConfig,
) -> impl Service<Request<()>, Response = Res, Error = Infallible> + Clone {
    ServiceBuilder::new()
        .layer(ResolveClientIpLayer::new(proxies))
        .layer(layer)
        .service(service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::from("ok")))
        }))
}

fn from(peer: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut b = Request::get("/api/items");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let mut req = b.body(()).unwrap();
    req.extensions_mut()
        .insert(SocketAddr::new(peer.parse().unwrap(), 40000));
    req
}

async fn send<S>(svc: &mut S, req: Request<()>) -> Res
where
    S: Service<Request<()>, Response = Res, Error = Infallible>,
{
    svc.ready().await.unwrap().call(req).await.unwrap()
}

fn header(res: &Res, name: &str) -> String {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

async fn collect(res: Res) -> String {
    use http_body_util::BodyExt;
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// One request a second, bursts of three.
fn three_per_burst() -> RateLimitLayer {
    tokio_clock(RateLimitPolicy::per_minute(60).burst(3).name("per_ip")).unwrap()
}

#[tokio::test(start_paused = true)]
async fn burst_then_429_with_exact_headers() {
    let mut svc = service(three_per_burst(), ClientIpConfig::default());
    for (remaining, reset) in [(2, 1), (1, 2), (0, 3)] {
        let res = send(&mut svc, from("203.0.113.9", &[])).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(&res, "ratelimit-policy"), "\"per_ip\";q=3;w=3");
        assert_eq!(
            header(&res, "ratelimit"),
            format!("\"per_ip\";r={remaining};t={reset}")
        );
    }
    let res = send(&mut svc, from("203.0.113.9", &[])).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "retry-after"), "1");
    assert_eq!(header(&res, "ratelimit"), "\"per_ip\";r=0;t=3");
    assert_eq!(header(&res, "ratelimit-policy"), "\"per_ip\";q=3;w=3");
    assert_eq!(header(&res, "content-type"), "application/problem+json");
    let body: serde_json::Value = serde_json::from_str(&collect(res).await).unwrap();
    assert_eq!(body["status"], 429);
    assert_eq!(body["retry_after"], 1);
}

#[tokio::test(start_paused = true)]
async fn quota_refills_at_the_rate_and_retry_after_is_never_early() {
    let mut svc = service(three_per_burst(), ClientIpConfig::default());
    for _ in 0..3 {
        send(&mut svc, from("203.0.113.9", &[])).await;
    }
    assert_eq!(send(&mut svc, from("203.0.113.9", &[])).await.status(), 429);

    tokio::time::advance(Duration::from_millis(999)).await;
    let early = send(&mut svc, from("203.0.113.9", &[])).await;
    assert_eq!(early.status(), 429, "one ms early is still too early");
    assert_eq!(
        header(&early, "retry-after"),
        "1",
        "1 ms left rounds up to a whole second"
    );

    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(send(&mut svc, from("203.0.113.9", &[])).await.status(), 200);
    assert_eq!(
        send(&mut svc, from("203.0.113.9", &[])).await.status(),
        429,
        "one refilled, one used"
    );

    tokio::time::advance(Duration::from_secs(3)).await;
    let full = send(&mut svc, from("203.0.113.9", &[])).await;
    assert_eq!(
        header(&full, "ratelimit"),
        "\"per_ip\";r=2;t=1",
        "a full bucket again"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_covers_the_whole_wait_for_slow_policies() {
    let layer = tokio_clock(RateLimitPolicy::per_hour(60).burst(1).name("slow")).unwrap();
    let mut svc = service(layer, ClientIpConfig::default());
    send(&mut svc, from("203.0.113.9", &[])).await;
    let res = send(&mut svc, from("203.0.113.9", &[])).await;
    assert_eq!(header(&res, "retry-after"), "60");
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(send(&mut svc, from("203.0.113.9", &[])).await.status(), 429);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(send(&mut svc, from("203.0.113.9", &[])).await.status(), 200);
}

#[tokio::test(start_paused = true)]
async fn spoofed_forwarding_headers_from_an_untrusted_peer_change_nothing() {
    let proxies = ClientIpConfig::default().trusted_proxies(["10.0.0.0/8".parse().unwrap()]);
    let mut svc = service(three_per_burst(), proxies);
    for i in 0..3 {
        let spoof = format!("198.51.100.{i}");
        let fwd = format!("for={spoof}");
        let hdrs = [
            ("x-forwarded-for", spoof.as_str()),
            ("forwarded", fwd.as_str()),
            ("x-real-ip", spoof.as_str()),
        ];
        assert_eq!(
            send(&mut svc, from("203.0.113.9", &hdrs)).await.status(),
            200
        );
    }
    let hdrs = [
        ("x-forwarded-for", "198.51.100.99"),
        ("x-real-ip", "1.1.1.1"),
    ];
    let res = send(&mut svc, from("203.0.113.9", &hdrs)).await;
    assert_eq!(
        res.status(),
        429,
        "every spoofed request counted against the real peer"
    );
}

#[tokio::test(start_paused = true)]
async fn chains_through_trusted_proxies_key_on_the_real_client() {
    let proxies = ClientIpConfig::default().trusted_proxies(["10.0.0.0/8".parse().unwrap()]);
    let mut svc = service(three_per_burst(), proxies);
    // The client prepends whatever it likes; the load balancer appends the truth.
    for prefix in ["6.6.6.6", "7.7.7.7", "8.8.8.8"] {
        let xff = format!("{prefix}, 203.0.113.7, 10.1.1.1");
        assert_eq!(
            send(&mut svc, from("10.0.0.5", &[("x-forwarded-for", &xff)]))
                .await
                .status(),
            200
        );
    }
    let xff = "9.9.9.9, 203.0.113.7, 10.1.1.1";
    assert_eq!(
        send(&mut svc, from("10.0.0.5", &[("x-forwarded-for", xff)]))
            .await
            .status(),
        429
    );
    // Another client behind the same proxy has its own bucket.
    let other = "203.0.113.8, 10.1.1.1";
    assert_eq!(
        send(&mut svc, from("10.0.0.5", &[("x-forwarded-for", other)]))
            .await
            .status(),
        200
    );
}

#[tokio::test(start_paused = true)]
async fn ipv6_addresses_in_one_64_share_a_bucket() {
    let mut svc = service(three_per_burst(), ClientIpConfig::default());
    for host in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::9"] {
        assert_eq!(send(&mut svc, from(host, &[])).await.status(), 200);
    }
    assert_eq!(
        send(&mut svc, from("2001:db8:1:2:abcd::1", &[]))
            .await
            .status(),
        429
    );
    assert_eq!(
        send(&mut svc, from("2001:db8:1:3::1", &[])).await.status(),
        200,
        "another /64"
    );
}

fn as_user(mut req: Request<()>, subject: &str) -> Request<()> {
    req.extensions_mut().insert(Principal::new(subject));
    req
}

#[tokio::test(start_paused = true)]
async fn per_user_policy_ignores_the_ip() {
    let policy = RateLimitPolicy::per_minute(60)
        .burst(2)
        .name("per_user")
        .key(PrincipalKey);
    let mut svc = service(tokio_clock(policy).unwrap(), ClientIpConfig::default());
    for ip in ["203.0.113.1", "198.51.100.2"] {
        assert_eq!(
            send(&mut svc, as_user(from(ip, &[]), "user-1"))
                .await
                .status(),
            200
        );
    }
    let res = send(&mut svc, as_user(from("192.0.2.3", &[]), "user-1")).await;
    assert_eq!(
        res.status(),
        429,
        "a new IP does not reset the user's quota"
    );
    let res = send(&mut svc, as_user(from("203.0.113.1", &[]), "user-2")).await;
    assert_eq!(
        res.status(),
        200,
        "another user on the same IP is unaffected"
    );
}

#[tokio::test(start_paused = true)]
async fn the_strictest_policy_decides_and_all_are_reported() {
    let layer = RateLimitLayer::builder()
        .clock(LimiterClock::Tokio)
        .policy(RateLimitPolicy::per_minute(600).burst(100).name("per_ip"))
        .policy(
            RateLimitPolicy::per_minute(60)
                .burst(1)
                .name("global")
                .key(ratelimit_layer::key::GlobalKey),
        )
        .build()
        .unwrap();
    let mut svc = service(layer, ClientIpConfig::default());
    let ok = send(&mut svc, from("203.0.113.1", &[])).await;
    assert_eq!(ok.headers().get_all("ratelimit").iter().count(), 2);
    let res = send(&mut svc, from("198.51.100.1", &[])).await;
    assert_eq!(res.status(), 429, "the global bucket is empty for everyone");
    assert_eq!(header(&res, "ratelimit-policy"), "\"global\";q=1;w=1");
}

#[tokio::test(start_paused = true)]
async fn a_refusing_ip_policy_still_lets_the_others_count() {
    // Both policies keyed by IP (the fast path): the first refuses, the
    // second still counts the request and the 429 reports the first.
    let layer = RateLimitLayer::builder()
        .clock(LimiterClock::Tokio)
        .policy(RateLimitPolicy::per_minute(60).burst(1).name("tight"))
        .policy(RateLimitPolicy::per_minute(60).burst(3).name("loose"))
        .build()
        .unwrap();
    let mut svc = service(layer, ClientIpConfig::default());
    assert_eq!(send(&mut svc, from("203.0.113.1", &[])).await.status(), 200);
    let res = send(&mut svc, from("203.0.113.1", &[])).await;
    assert_eq!(res.status(), 429);
    assert_eq!(header(&res, "ratelimit-policy"), "\"tight\";q=1;w=1");
    assert!(collect(res).await.contains("rate-limited"));
    // "loose" counted all three requests, the refused one too: three taken,
    // one refilled in the second, one left (two had the refusal skipped it).
    tokio::time::advance(Duration::from_secs(1)).await;
    let ok = send(&mut svc, from("203.0.113.1", &[])).await;
    assert_eq!(ok.status(), 200);
    let reported: Vec<_> = ok
        .headers()
        .get_all("ratelimit")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        reported.contains(&"\"loose\";r=1;t=2".to_owned()),
        "{reported:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_resolved_address_and_the_bare_peer_share_a_bucket() {
    // With ResolveClientIpLayer the key comes from ClientIp; without it,
    // from the peer address: the same client is one bucket either way.
    let layer = three_per_burst();
    let mut resolved = service(layer.clone(), ClientIpConfig::default());
    let mut bare =
        ServiceBuilder::new()
            .layer(layer)
            .service(service_fn(|_req: Request<()>| async {
                Ok::<_, Infallible>(Response::new(String::new()))
            }));
    for _ in 0..2 {
        assert_eq!(
            send(&mut resolved, from("203.0.113.7", &[])).await.status(),
            200
        );
    }
    assert_eq!(
        send(&mut bare, from("203.0.113.7", &[])).await.status(),
        200
    );
    assert_eq!(
        send(&mut resolved, from("203.0.113.7", &[])).await.status(),
        429
    );
    assert_eq!(
        send(&mut bare, from("203.0.113.7", &[])).await.status(),
        429
    );
}

#[tokio::test(start_paused = true)]
async fn requests_without_any_key_share_one_limited_bucket() {
    let mut svc = ServiceBuilder::new()
        .layer(three_per_burst())
        .service(service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    for _ in 0..3 {
        assert_eq!(send(&mut svc, Request::new(())).await.status(), 200);
    }
    assert_eq!(
        send(&mut svc, Request::new(())).await.status(),
        429,
        "no peer address is not a free pass"
    );
}

#[tokio::test(start_paused = true)]
async fn exempt_paths_are_never_limited_and_get_no_headers() {
    let layer = RateLimitLayer::builder()
        .clock(LimiterClock::Tokio)
        .policy(RateLimitPolicy::per_minute(60).burst(1).name("per_ip"))
        .exempt(["/api/health", "/internal/*"])
        .build()
        .unwrap();
    let mut svc = service(layer, ClientIpConfig::default());
    for path in ["/api/health", "/api/health", "/internal/a", "/internal/b/c"] {
        let mut req = from("203.0.113.9", &[]);
        *req.uri_mut() = path.parse().unwrap();
        let res = send(&mut svc, req).await;
        assert_eq!(res.status(), 200, "{path}");
        assert!(res.headers().get("ratelimit").is_none());
    }
}

#[tokio::test(start_paused = true)]
async fn route_and_method_scopes_are_respected() {
    let policy = RateLimitPolicy::per_minute(60)
        .burst(1)
        .name("writes")
        .routes(["/api/"])
        .methods([http::Method::POST]);
    let mut svc = service(tokio_clock(policy).unwrap(), ClientIpConfig::default());
    for _ in 0..3 {
        assert_eq!(
            send(&mut svc, from("203.0.113.9", &[])).await.status(),
            200,
            "GETs are not counted"
        );
    }
    let post = || {
        let mut r = from("203.0.113.9", &[]);
        *r.method_mut() = http::Method::POST;
        r
    };
    assert_eq!(send(&mut svc, post()).await.status(), 200);
    assert_eq!(send(&mut svc, post()).await.status(), 429);
}

#[tokio::test(start_paused = true)]
async fn a_scoped_policy_beside_an_unscoped_one_counts_only_its_requests() {
    // Both keyed by IP (the fast path), one of them scoped: GETs count
    // against "per_ip" only, POSTs against both.
    let layer = RateLimitLayer::builder()
        .clock(LimiterClock::Tokio)
        .policy(RateLimitPolicy::per_minute(60).burst(4).name("per_ip"))
        .policy(
            RateLimitPolicy::per_minute(60)
                .burst(1)
                .name("writes")
                .routes(["/api/"])
                .methods([http::Method::POST]),
        )
        .build()
        .unwrap();
    let mut svc = service(layer, ClientIpConfig::default());
    let post = || {
        let mut r = from("203.0.113.9", &[]);
        *r.method_mut() = http::Method::POST;
        r
    };
    let get = send(&mut svc, from("203.0.113.9", &[])).await;
    assert_eq!(get.status(), 200);
    assert_eq!(header(&get, "ratelimit"), "\"per_ip\";r=3;t=1");
    assert_eq!(get.headers().get_all("ratelimit").iter().count(), 1);
    let ok = send(&mut svc, post()).await;
    assert_eq!(ok.status(), 200);
    let reported: Vec<_> = ok
        .headers()
        .get_all("ratelimit")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(reported, ["\"per_ip\";r=2;t=2", "\"writes\";r=0;t=1"]);
    let refused = send(&mut svc, post()).await;
    assert_eq!(refused.status(), 429, "the write quota is spent");
    assert_eq!(header(&refused, "ratelimit-policy"), "\"writes\";q=1;w=1");
    let get = send(&mut svc, from("203.0.113.9", &[])).await;
    assert_eq!(get.status(), 200, "reads are limited by per_ip alone");
    assert_eq!(header(&get, "ratelimit"), "\"per_ip\";r=0;t=4");
}

#[tokio::test(start_paused = true)]
async fn headers_can_be_turned_off_for_allowed_responses_only() {
    let layer = RateLimitLayer::builder()
        .clock(LimiterClock::Tokio)
        .policy(RateLimitPolicy::per_minute(60).burst(1).name("per_ip"))
        .headers(false)
        .build()
        .unwrap();
    let mut svc = service(layer, ClientIpConfig::default());
    assert!(
        send(&mut svc, from("203.0.113.9", &[]))
            .await
            .headers()
            .get("ratelimit")
            .is_none()
    );
    let limited = send(&mut svc, from("203.0.113.9", &[])).await;
    assert_eq!(header(&limited, "ratelimit"), "\"per_ip\";r=0;t=1");
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_distinct_keys_stays_within_max_keys() {
    let by_header = |req: &RequestParts<'_>| {
        req.headers
            .get("x-k")
            .and_then(|v| v.to_str().ok())
            .map(|v| Key::Custom(v.to_owned()))
    };
    let layer = RateLimitLayer::builder()
        .clock(LimiterClock::Tokio)
        .policy(
            RateLimitPolicy::per_minute(60)
                .burst(5)
                .name("per_key")
                .key(by_header),
        )
        .max_keys(1_000)
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    for i in 0..20_000u32 {
        let req = Request::builder()
            .header("x-k", i.to_string())
            .body(())
            .unwrap();
        assert_eq!(send(&mut svc, req).await.status(), 200);
        assert!(layer.key_counts()[0].1 <= 1_000);
    }
    assert!(
        layer.key_counts()[0].1 >= 900,
        "the cap is used, not far undershot"
    );
}

#[tokio::test]
async fn invalid_policies_are_errors_not_panics() {
    for policy in [
        RateLimitPolicy::per_minute(0),
        RateLimitPolicy::per_minute(10).burst(0),
        RateLimitPolicy::new(10, Duration::ZERO),
        RateLimitPolicy::per_minute(10).name("has space"),
        RateLimitPolicy::per_minute(10).routes(["api"]),
    ] {
        assert!(tokio_clock(policy).is_err());
    }
    assert!(
        RateLimitLayer::builder()
            .clock(LimiterClock::Tokio)
            .policy(RateLimitPolicy::per_minute(1))
            .max_keys(0)
            .build()
            .is_err()
    );
    for exempt in ["*", "/*", "/api*"] {
        let err = RateLimitLayer::builder()
            .policy(RateLimitPolicy::per_minute(1))
            .exempt([exempt])
            .build();
        assert!(err.is_err(), "{exempt}");
    }
    let dup = RateLimitLayer::builder()
        .clock(LimiterClock::Tokio)
        .policy(RateLimitPolicy::per_minute(1).name("a"))
        .policy(RateLimitPolicy::per_minute(2).name("a"))
        .build();
    assert!(dup.unwrap_err().to_string().contains("twice"));
}

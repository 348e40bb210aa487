//! What operators see of the rate limiter: the `guardrails_ratelimit_*`
//! metrics through a real Prometheus recorder, and the content of
//! `security.rate_limited` (masked client and key, request id, shadow).

use std::convert::Infallible;

use guardrail_core::{ClientIp, Principal, Pseudonymizer, RequestId};
use guardrails_testkit::capture;
use http::{Request, Response, StatusCode};
use metrics_exporter_prometheus::PrometheusBuilder;
use ratelimit_layer::{PolicyMode, RateLimitLayer, RateLimitPolicy, key::PrincipalKey};
use tower::{Service, ServiceExt, service_fn};

fn request(ip: &str, user: Option<&str>, id: &str) -> Request<()> {
    let mut req = Request::get("/api/orders").body(()).unwrap();
    req.extensions_mut()
        .insert(ClientIp::new(ip.parse().unwrap()));
    req.extensions_mut().insert(RequestId::parse(id).unwrap());
    if let Some(user) = user {
        req.extensions_mut().insert(Principal::new(user));
    }
    req
}

/// The value of the sample `name{labels}` in a Prometheus text exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn decisions_are_counted_and_refusals_reported_without_raw_ids() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let prometheus = recorder.handle();
    let pseudonymizer = Pseudonymizer::new(b"the log pseudonym key, 32 bytes or more");
    // The layer registers its metrics when it is built.
    let layer = metrics::with_local_recorder(&recorder, || {
        RateLimitLayer::builder()
            .policy(RateLimitPolicy::per_hour(60).burst(3).name("per_ip"))
            .policy(
                RateLimitPolicy::per_hour(60)
                    .burst(1)
                    .name("per_user_trial")
                    .key(PrincipalKey)
                    .mode(PolicyMode::Shadow),
            )
            .pseudonymizer(pseudonymizer.clone())
            .build()
            .unwrap()
    });
    let mut svc = tower::Layer::layer(
        &layer,
        service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) }),
    );
    let (guard, logs) = capture::json();
    let mut statuses = Vec::new();
    for n in 0..4 {
        let req = request(
            "203.0.113.9",
            Some("alice@example.com"),
            &format!("req-{n}"),
        );
        let res = svc.ready().await.unwrap().call(req).await.unwrap();
        statuses.push(res.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );

    let text = prometheus.render();
    let count = |policy: &str, outcome: &str| {
        sample(
            &text,
            &format!(
                "guardrails_ratelimit_decisions_total{{policy=\"{policy}\",outcome=\"{outcome}\"}}"
            ),
        )
    };
    assert_eq!(count("per_ip", "allowed"), Some(3.0), "{text}");
    assert_eq!(count("per_ip", "limited"), Some(1.0), "{text}");
    // The shadow policy still counts the request refused by per_ip.
    assert_eq!(count("per_user_trial", "allowed"), Some(1.0), "{text}");
    assert_eq!(
        count("per_user_trial", "shadow_limited"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(count("per_user_trial", "limited"), None, "{text}");

    let events: Vec<_> = logs
        .lines()
        .into_iter()
        .filter(|e| e["event"] == "security.rate_limited")
        .collect();
    let raw = logs.text();
    assert!(
        !raw.contains("203.0.113.9") && !raw.contains("alice"),
        "{raw}"
    );
    let shadow: Vec<_> = events.iter().filter(|e| e["shadow"] == true).collect();
    let enforced: Vec<_> = events.iter().filter(|e| e["shadow"] == false).collect();
    assert_eq!(shadow.len(), 3, "{raw}");
    assert_eq!(enforced.len(), 1, "{raw}");
    let e = enforced[0];
    assert_eq!(e["policy"], "per_ip");
    assert_eq!(e["key_type"], "ip");
    assert_eq!(e["key"], "203.0.113.0/24", "the address masked");
    assert_eq!(e["client"], "203.0.113.0/24");
    assert_eq!(e["request_id"], "req-3");
    assert_eq!(e["retry_after_s"], 60);
    assert_eq!(e["level"], "WARN");
    let s = shadow[0];
    assert_eq!(s["policy"], "per_user_trial");
    assert_eq!(s["key_type"], "subject");
    assert_eq!(
        s["key"],
        pseudonymizer.user("alice@example.com"),
        "the user as the log pseudonym"
    );
    assert_eq!(
        s["request_id"], "req-1",
        "the second request was the first over"
    );

    // The key gauge is refreshed as the limiter sweeps: each decision
    // sweeps with a chance of 1 in 1024, so after 30 000 clients the last
    // refresh saw at least 10 000 keys (missing every chance over the last
    // 20 000 decisions: ~3e-9). With 3000 clients and a 1000 floor the
    // chance of a stale gauge was about one in seven (it failed once).
    drop(guard);
    for n in 0..30_000u32 {
        let ip = format!("10.{}.{}.1", n / 250, n % 250);
        let req = request(&ip, None, "req-flood");
        svc.ready().await.unwrap().call(req).await.unwrap();
    }
    let text = prometheus.render();
    let keys = sample(&text, "guardrails_ratelimit_keys{policy=\"per_ip\"}").unwrap();
    assert!((10_000.0..=30_001.0).contains(&keys), "{text}");
}

use std::{
    convert::Infallible,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use guardrail_core::Secret;
use hmac::Mac;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{ServiceExt, service_fn};
use tower_layer::Layer;

use super::{SignatureScheme, VerifyWebhookLayer, replay::ReplayCache, scheme::HmacSha256};

const BODY: &str = r#"{"id":"evt_1","type":"invoice.paid","data":{"amount":1200}}"#;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn hmac_hex(secret: &[u8], content: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).unwrap();
    mac.update(content);
    hex::encode(mac.finalize().into_bytes())
}

fn stripe_sig(secret: &[u8], t: i64, body: &str) -> String {
    hmac_hex(secret, format!("{t}.{body}").as_bytes())
}

/// A `Stripe-Signature` value: timestamp `t` and the one signature `secret`
/// makes of `body`.
fn stripe_header(secret: &[u8], t: i64, body: &str) -> String {
    format!("t={t},v1={}", stripe_sig(secret, t, body))
}

/// Verifies Stripe deliveries signed with `whsec_a`.
fn stripe_layer() -> VerifyWebhookLayer {
    VerifyWebhookLayer::stripe([Secret::new("whsec_a")])
}

/// Verifies Stripe deliveries while `whsec_old` rotates to `whsec_new`.
fn rotated_layer() -> VerifyWebhookLayer {
    VerifyWebhookLayer::stripe([Secret::new("whsec_new"), Secret::new("whsec_old")])
}

fn post(header: (&str, &str), body: &str) -> Request<Full<Bytes>> {
    Request::post("/hook")
        .header(header.0, header.1)
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

/// A layer-wrapped echo service; returns (status, body the handler saw).
async fn deliver(
    layer: &VerifyWebhookLayer<impl SignatureScheme>,
    header: (&str, &str),
    body: &str,
) -> (u16, String) {
    let svc = layer.layer(service_fn(|req: Request<Full<Bytes>>| async move {
        Ok::<_, Infallible>(Response::new(req.into_body()))
    }));
    let res = svc.oneshot(post(header, body)).await.unwrap();
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

/// The status of `body` delivered with `Stripe-Signature: {header}`.
async fn stripe_status(layer: &VerifyWebhookLayer, header: &str, body: &str) -> u16 {
    deliver(layer, ("stripe-signature", header), body).await.0
}

#[tokio::test]
async fn valid_signature_passes_the_body_intact() {
    let header = stripe_header(b"whsec_a", now(), BODY);
    let (status, seen) = deliver(&stripe_layer(), ("stripe-signature", &header), BODY).await;
    assert_eq!(status, 200);
    assert_eq!(seen, BODY);
}

#[tokio::test]
async fn wrong_secret_is_rejected_with_problem() {
    let header = stripe_header(b"whsec_b", now(), BODY);
    let (status, body) = deliver(&stripe_layer(), ("stripe-signature", &header), BODY).await;
    assert_eq!(status, 400);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["detail"], "Webhook signature verification failed.");
}

#[tokio::test]
async fn timestamps_outside_tolerance_are_rejected_both_ways() {
    // 300 s tolerance; 30 s of margin either side, so a second ticking
    // over between the test and the layer changes nothing.
    let layer = stripe_layer();
    for t in [now() - 330, now() + 330] {
        let header = stripe_header(b"whsec_a", t, BODY);
        assert_eq!(stripe_status(&layer, &header, BODY).await, 400);
    }
    let header = stripe_header(b"whsec_a", now() - 270, BODY);
    assert_eq!(stripe_status(&layer, &header, BODY).await, 200);
}

#[tokio::test]
async fn replayed_delivery_is_rejected() {
    let layer = stripe_layer();
    let header = stripe_header(b"whsec_a", now(), BODY);
    assert_eq!(stripe_status(&layer, &header, BODY).await, 200);
    assert_eq!(stripe_status(&layer, &header, BODY).await, 400);
}

#[tokio::test]
async fn rotated_secret_verifies_with_either_and_any_v1() {
    let layer = rotated_layer();
    let header = stripe_header(b"whsec_old", now(), BODY);
    assert_eq!(stripe_status(&layer, &header, BODY).await, 200);
    // Stripe sends one v1 per active secret; one match is enough.
    let t = now() - 1;
    let new = stripe_sig(b"whsec_new", t, BODY);
    let junk = "ab".repeat(32);
    let header = format!("t={t},v1={junk},v1={new},v0=xyz");
    assert_eq!(stripe_status(&layer, &header, BODY).await, 200);
}

#[tokio::test]
async fn replay_with_the_other_rotated_signature_is_rejected() {
    let layer = rotated_layer();
    let t = now();
    let new = stripe_sig(b"whsec_new", t, BODY);
    let old = stripe_sig(b"whsec_old", t, BODY);
    let both = format!("t={t},v1={new},v1={old}");
    assert_eq!(stripe_status(&layer, &both, BODY).await, 200);
    let old_only = format!("t={t},v1={old}");
    assert_eq!(stripe_status(&layer, &old_only, BODY).await, 400);
}

#[tokio::test]
async fn delivery_the_handler_refused_can_be_retried() {
    let layer = stripe_layer();
    let failing = layer.layer(service_fn(|_req: Request<Full<Bytes>>| async {
        let mut res = Response::new(Full::new(Bytes::new()));
        *res.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        Ok::<_, Infallible>(res)
    }));
    let header = stripe_header(b"whsec_a", now(), BODY);
    let req = post(("stripe-signature", &header), BODY);
    assert_eq!(failing.oneshot(req).await.unwrap().status(), 500);
    assert_eq!(
        stripe_status(&layer, &header, BODY).await,
        200,
        "the retry is accepted"
    );
}

#[tokio::test]
async fn tampered_body_is_rejected() {
    let header = stripe_header(b"whsec_a", now(), BODY);
    let tampered = BODY.replace("1200", "1");
    assert_eq!(
        stripe_status(&stripe_layer(), &header, &tampered).await,
        400
    );
}

#[tokio::test]
async fn malformed_headers_are_rejected_not_panicking() {
    let layer = stripe_layer();
    for header in [
        "",
        "t=",
        "v1=abc",
        "t=abc,v1=00",
        "t=1,t=2,v1=00",
        "garbage",
        "t=1,v1=zz",
        &format!("t={},v1=", now()),
    ] {
        assert_eq!(stripe_status(&layer, header, BODY).await, 400, "{header:?}");
    }
    assert_eq!(deliver(&layer, ("x-other", "1"), BODY).await.0, 400);
}

#[tokio::test]
async fn oversized_body_is_413() {
    let layer = stripe_layer().max_body_bytes(16);
    let header = stripe_header(b"whsec_a", now(), BODY);
    assert_eq!(stripe_status(&layer, &header, BODY).await, 413);
}

#[tokio::test]
async fn the_requests_body_limit_set_further_out_applies_instead_of_the_layers() {
    let header = stripe_header(b"whsec_a", now(), BODY);
    let limited = |limit: u64, layer: VerifyWebhookLayer| {
        let mut req = post(("stripe-signature", &header), BODY);
        req.extensions_mut()
            .insert(guardrail_core::BodyLimit::new(limit));
        let svc = layer.layer(service_fn(|req: Request<Full<Bytes>>| async move {
            Ok::<_, Infallible>(Response::new(req.into_body()))
        }));
        async move { svc.oneshot(req).await.unwrap().status().as_u16() }
    };
    // Smaller than the body: refused (the layer sets no limit of its own).
    assert_eq!(limited(16, stripe_layer()).await, 413);
    // Larger than the layer's default of 1 MiB: the request's limit is the one.
    let big = BODY.repeat((1 << 20) / BODY.len() + 1);
    let big_header = stripe_header(b"whsec_a", now(), &big);
    let mut req = post(("stripe-signature", &big_header), &big);
    req.extensions_mut()
        .insert(guardrail_core::BodyLimit::new(4 << 20));
    let svc = stripe_layer().layer(service_fn(|req: Request<Full<Bytes>>| async move {
        Ok::<_, Infallible>(Response::new(req.into_body()))
    }));
    assert_eq!(svc.oneshot(req).await.unwrap().status(), 200);
    // A limit set on the layer itself is never raised by the request's.
    assert_eq!(
        limited(1 << 20, stripe_layer().max_body_bytes(16)).await,
        413
    );
}

#[tokio::test]
async fn no_secrets_refuses_everything() {
    let layer = VerifyWebhookLayer::stripe([]);
    let header = stripe_header(b"", now(), BODY);
    assert_eq!(stripe_status(&layer, &header, BODY).await, 400);
}

#[tokio::test]
async fn github_scheme_verifies_body_signature() {
    let layer = VerifyWebhookLayer::github([Secret::new("gh-secret")]);
    let sig = format!("sha256={}", hmac_hex(b"gh-secret", BODY.as_bytes()));
    let github_status =
        async |sig: &str| deliver(&layer, ("x-hub-signature-256", sig), BODY).await.0;
    assert_eq!(github_status(&sig).await, 200);
    assert_eq!(github_status(&sig).await, 400, "replay");
    assert_eq!(github_status("sha1=00").await, 400);
}

#[tokio::test]
async fn settings_apply_to_a_cloned_layer_too() {
    let base = stripe_layer();
    let strict = base.clone().tolerance(Duration::from_secs(10));
    let header = stripe_header(b"whsec_a", now() - 60, BODY);
    assert_eq!(
        stripe_status(&strict, &header, BODY).await,
        400,
        "60 s old > 10 s"
    );
    assert_eq!(
        stripe_status(&base, &header, BODY).await,
        200,
        "the original keeps 5 min"
    );
}

#[test]
fn replay_cache_is_bounded() {
    let mut cache = ReplayCache::default();
    for i in 0..100u32 {
        assert!(cache.insert(&i.to_be_bytes(), 10));
    }
    assert_eq!(cache.order.len(), 10);
    assert_eq!(cache.seen.len(), 10);
    assert!(!cache.insert(&99u32.to_be_bytes(), 10));
}

/// The shared replay store against the Redis the test scripts start.
#[cfg(feature = "redis")]
mod shared_replay {
    use super::*;
    use crate::webhook::ReplayFallback;
    use guardrail_core::{RedisConfig, RedisConnection};

    fn redis(url: &str, test: &str) -> RedisConnection {
        let mut config = RedisConfig::default();
        config.key_prefix = format!("guardrails-test:{test}:{}", std::process::id());
        config.timeout = Duration::from_secs(1);
        RedisConnection::open(url, &config).unwrap()
    }

    fn url() -> String {
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    /// A replica: its own layer (and local cache) on the shared store.
    fn replica(redis: &RedisConnection, fallback: ReplayFallback) -> VerifyWebhookLayer {
        stripe_layer().shared_replay(redis.clone(), fallback)
    }

    #[tokio::test]
    async fn a_delivery_the_handler_refused_can_be_retried_on_another_replica() {
        let redis = redis(&url(), "webhook-forget");
        let (a, b) = (
            replica(&redis, ReplayFallback::Refuse),
            replica(&redis, ReplayFallback::Refuse),
        );
        let body = format!(r#"{{"id":"evt_forget_{}"}}"#, std::process::id());
        let header = stripe_header(b"whsec_a", now(), &body);
        let failing = a.layer(service_fn(|_req: Request<Full<Bytes>>| async {
            let mut res = Response::new(Full::new(Bytes::new()));
            *res.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            Ok::<_, Infallible>(res)
        }));
        let req = post(("stripe-signature", &header), &body);
        assert_eq!(failing.oneshot(req).await.unwrap().status(), 500);
        // The key is deleted in the background; wait for it, yielding.
        let mut conn = redis.connection();
        for _ in 0..1000 {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", redis.key_prefix("webhook")))
                .query_async(&mut conn)
                .await
                .unwrap();
            if keys.is_empty() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(
            stripe_status(&b, &header, &body).await,
            200,
            "the retry is no replay"
        );
        assert_eq!(stripe_status(&a, &header, &body).await, 400, "now it is");
    }

    #[tokio::test]
    async fn shared_keys_outlive_the_tolerance_set_after_the_store() {
        let redis = redis(&url(), "webhook-ttl");
        // The tolerance is set after the store: the key's TTL follows it.
        let layer = stripe_layer()
            .shared_replay(redis.clone(), ReplayFallback::Refuse)
            .tolerance(Duration::from_secs(3600));
        let body = format!(r#"{{"id":"evt_ttl_{}"}}"#, std::process::id());
        let header = stripe_header(b"whsec_a", now(), &body);
        assert_eq!(stripe_status(&layer, &header, &body).await, 200);
        let mut conn = redis.connection();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", redis.key_prefix("webhook")))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(keys.len(), 1, "{keys:?}");
        let ttl_ms: i64 = redis::cmd("PTTL")
            .arg(&keys[0])
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl_ms > 2 * 3600 * 1000, "{ttl_ms} ms");
        let _: i64 = redis::cmd("DEL")
            .arg(&keys[0])
            .query_async(&mut conn)
            .await
            .unwrap();
        // Gone from Redis, still known here: this replica's cache decides too.
        assert_eq!(stripe_status(&layer, &header, &body).await, 400);
    }

    #[tokio::test]
    async fn while_redis_fails_the_fallback_applies() {
        let down = redis("redis://127.0.0.1:1", "webhook-down");
        let body = r#"{"id":"evt_down"}"#;
        let header = stripe_header(b"whsec_a", now(), body);
        // Refuse (the default of the config): 503, the sender retries.
        let refuse = replica(&down, ReplayFallback::Refuse);
        let (status, reply) = deliver(&refuse, ("stripe-signature", &header), body).await;
        assert_eq!(status, 503, "{reply}");
        // Local: this replica's cache decides.
        let local = replica(&down, ReplayFallback::Local);
        assert_eq!(stripe_status(&local, &header, body).await, 200);
        assert_eq!(stripe_status(&local, &header, body).await, 400);
    }
}

//! What a refused request leaves in the logs: `security.auth_failed` and
//! `security.forbidden` with their reason, the client's masked network and
//! the caller as a pseudonym, never a token or a raw subject.

mod common;

use axum::body::Body;
use common::*;
use guardrail_core::ClientIp;
use guardrails_testkit::capture;
use http::StatusCode;
use serde_json::Value;

/// The test app behind a stand-in for the client-IP layer.
fn app_with_client() -> axum::Router {
    app(verifier()).layer(tower::util::MapRequestLayer::new(
        |mut req: http::Request<Body>| {
            req.extensions_mut()
                .insert(ClientIp::new("203.0.113.77".parse().unwrap()));
            req
        },
    ))
}

fn events(lines: &[Value], name: &str) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| l["event"] == name)
        .cloned()
        .collect()
}

#[tokio::test]
async fn auth_failure_event_has_reason_and_masked_client() {
    let (guard, logs) = capture::json();
    let mut c = claims("user-1");
    c["exp"] = serde_json::json!(now() - 3600);
    let token = hs256(&c);
    let r = send(&app_with_client(), get_with("/api/me", Some(&token))).await;
    drop(guard);
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let failed = events(&logs.lines(), "security.auth_failed");
    assert_eq!(failed.len(), 1, "{}", logs.text());
    assert_eq!(failed[0]["level"], "WARN");
    assert_eq!(failed[0]["reason"], "expired");
    assert_eq!(failed[0]["client"], "203.0.113.0/24");
    let text = logs.text();
    assert!(!text.contains("203.0.113.77"), "{text}");
    for part in token.split('.') {
        assert!(!text.contains(part), "the token is never logged: {text}");
    }
}

#[tokio::test]
async fn forbidden_event_has_reason_route_and_pseudonymized_user() {
    let (guard, logs) = capture::json();
    let token = hs256(&claims("user-1"));
    let r = send(
        &app_with_client(),
        get_with("/api/users/user-2/profile", Some(&token)),
    )
    .await;
    drop(guard);
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let denied = events(&logs.lines(), "security.forbidden");
    assert_eq!(denied.len(), 1, "{}", logs.text());
    assert_eq!(denied[0]["reason"], "not_owner");
    assert_eq!(denied[0]["route"], "/api/users/{user_id}/profile");
    assert_eq!(denied[0]["client"], "203.0.113.0/24");
    let user = denied[0]["user"].as_str().unwrap();
    assert!(user.starts_with("usr_") && user.len() == 20, "{user}");
    assert!(!logs.text().contains("user-1"), "{}", logs.text());
}

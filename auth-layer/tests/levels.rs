//! Each authorization level allowed and denied, with real tokens.

mod common;

use common::*;
use http::StatusCode;

#[tokio::test]
async fn public_route_needs_no_token() {
    let app = app(verifier());
    assert_eq!(
        send(&app, get_with("/api/health", None)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn protected_route_without_token_is_401_problem_with_challenge() {
    let app = app(verifier());
    let r = send(&app, get_with("/api/me", None)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.challenge(), "Bearer realm=\"api\"");
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert_eq!(r.json()["status"], 401);
}

#[tokio::test]
async fn unknown_routes_are_authenticated_too() {
    // Deny by default: a route nobody listed is not public.
    let app = app(verifier());
    assert_eq!(
        send(&app, get_with("/api/new-thing", None)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn authenticated_caller_sees_subject_level_and_roles() {
    let app = app(verifier());
    let r = send(&app, get_with("/api/me", Some(&hs256(&claims("user-1"))))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["sub"], "user-1");
    assert_eq!(r.json()["aal"], "aal1");
    assert_eq!(r.json()["roles"], serde_json::json!(["authenticated"]));
}

#[tokio::test]
async fn owner_reads_own_profile_and_not_another_users() {
    let app = app(verifier());
    let token = hs256(&claims("user-1"));
    assert_eq!(
        send(&app, get_with("/api/users/user-1/profile", Some(&token)))
            .await
            .status,
        StatusCode::OK
    );
    let r = send(&app, get_with("/api/users/user-2/profile", Some(&token))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        r.json()["detail"],
        "You can only access your own resources."
    );
    assert!(
        !r.body.contains("user-1"),
        "a denial never echoes the subject"
    );
}

#[tokio::test]
async fn percent_encoded_path_parameter_is_compared_decoded() {
    let app = app(verifier());
    let token = hs256(&claims("user@example.test"));
    let ok = send(
        &app,
        get_with("/api/users/user%40example.test/profile", Some(&token)),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
}

#[tokio::test]
async fn admin_with_mfa_may_read_any_profile_but_admin_without_mfa_may_not() {
    let app = app(verifier());
    let admin = hs256(&admin_claims("admin-1", true));
    assert_eq!(
        send(&app, get_with("/api/users/user-2/profile", Some(&admin)))
            .await
            .status,
        StatusCode::OK
    );
    let no_mfa = hs256(&admin_claims("admin-1", false));
    let r = send(&app, get_with("/api/users/user-2/profile", Some(&no_mfa))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // The administrator is told what is missing, as on the admin routes,
    // not that the profile is someone else's.
    assert_eq!(
        r.json()["detail"],
        "Multi-factor authentication required.",
        "{}",
        r.body
    );
    let admin_route = send(&app, get_with("/api/admin/users", Some(&no_mfa))).await;
    assert_eq!(admin_route.json()["type"], r.json()["type"]);
}

#[tokio::test]
async fn admin_route_requires_admin_role_and_mfa() {
    let app = app(verifier());
    let r = send(
        &app,
        get_with("/api/admin/users", Some(&hs256(&mfa_claims("user-1", 10)))),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["detail"], "Administrator role required.");
    assert!(r.challenge().contains("insufficient_scope"));

    let r = send(
        &app,
        get_with(
            "/api/admin/users",
            Some(&hs256(&admin_claims("admin-1", false))),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["detail"], "Multi-factor authentication required.");

    let r = send(
        &app,
        get_with(
            "/api/admin/users",
            Some(&hs256(&admin_claims("admin-1", true))),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn user_metadata_roles_never_make_an_admin() {
    let app = app(verifier());
    let mut c = mfa_claims("user-1", 10);
    c["user_metadata"] = serde_json::json!({"role": "admin", "roles": ["admin"]});
    let r = send(&app, get_with("/api/admin/users", Some(&hs256(&c)))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn credentials_need_fresh_mfa() {
    let app = app(verifier());
    let uri = "/api/integrations/github/credentials";
    let no_mfa = send(&app, method_with("POST", uri, &hs256(&claims("user-1")))).await;
    assert_eq!(no_mfa.status, StatusCode::FORBIDDEN);
    assert_eq!(
        no_mfa.json()["type"],
        guardrail_core::problem::types::MFA_REQUIRED
    );

    let fresh = send(
        &app,
        method_with("POST", uri, &hs256(&mfa_claims("user-1", 60))),
    )
    .await;
    assert_eq!(fresh.status, StatusCode::OK);

    let stale = send(
        &app,
        method_with("POST", uri, &hs256(&mfa_claims("user-1", 16 * 60))),
    )
    .await;
    assert_eq!(stale.status, StatusCode::FORBIDDEN);
    assert_eq!(
        stale.json()["detail"],
        "Recent multi-factor authentication required. Verify again and retry."
    );
}

#[tokio::test]
async fn aal2_without_mfa_timestamp_is_not_fresh() {
    let app = app(verifier());
    let mut c = claims("user-1");
    c["aal"] = serde_json::json!("aal2");
    c["amr"] = serde_json::json!(["pwd", "mfa"]);
    let r = send(
        &app,
        method_with("POST", "/api/integrations/x/credentials", &hs256(&c)),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn require_layer_without_authentication_fails_closed() {
    use auth_layer::RequireLayer;
    use axum::{Router, routing::get};
    let app = Router::new().route(
        "/x",
        get(|| async { "x" }).route_layer(RequireLayer::authenticated()),
    );
    assert_eq!(
        send(&app, get_with("/x", None)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// A route needing MFA at most 15 minutes old, answering with an RFC 9470
/// challenge.
fn step_up_app() -> axum::Router {
    use auth_layer::{AuthenticateLayer, RequireLayer, StepUp};
    axum::Router::new()
        .route(
            "/api/integrations/{id}/credentials",
            axum::routing::get(|| async { "stored" }).route_layer(
                RequireLayer::mfa()
                    .max_age(std::time::Duration::from_secs(15 * 60))
                    .step_up(StepUp::Challenge),
            ),
        )
        .layer(AuthenticateLayer::new(verifier()))
}

#[tokio::test]
async fn step_up_challenge_is_401_with_acr_values_and_max_age() {
    let app = step_up_app();
    let route = "/api/integrations/gh/credentials";
    // No second factor: 401, insufficient_user_authentication, aal2.
    let r = send(&app, get_with(route, Some(&hs256(&claims("user-1"))))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    let challenge = r.challenge();
    assert!(
        challenge.starts_with("Bearer realm=\"api\", error=\"insufficient_user_authentication\""),
        "{challenge}"
    );
    assert!(challenge.contains("acr_values=\"aal2\""), "{challenge}");
    assert!(!challenge.contains("max_age"), "{challenge}");
    assert_eq!(r.json()["type"], "urn:guardrails:problem:mfa-required");
    // A second factor an hour old: the route's max age in seconds too.
    let r = send(
        &app,
        get_with(route, Some(&hs256(&mfa_claims("user-1", 3600)))),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert!(
        r.challenge().ends_with(", max_age=900"),
        "{}",
        r.challenge()
    );
    // Fresh MFA passes.
    let r = send(
        &app,
        get_with(route, Some(&hs256(&mfa_claims("user-1", 30)))),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn step_up_forbid_is_the_default_403() {
    let app = app(verifier());
    let r = send(
        &app,
        http::Request::post("/api/integrations/gh/credentials")
            .header(
                "authorization",
                format!("Bearer {}", hs256(&claims("user-1"))),
            )
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.challenge().contains("insufficient_scope"),
        "{}",
        r.challenge()
    );
}

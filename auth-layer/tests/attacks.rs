//! Every known JWT attack is a 401, never a 500 and never a pass.

mod common;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use common::*;
use http::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

/// Asserts `token` gets a 401 with `invalid_token` on a protected route, and
/// that the body leaks nothing of the token or the library.
async fn assert_rejected(token: &str, why: &str) {
    let app = app(verifier());
    let r = send(&app, get_with("/api/me", Some(token))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{why}: {}", r.body);
    assert!(
        r.challenge().contains("error=\"invalid_token\""),
        "{why}: {}",
        r.challenge()
    );
    assert_eq!(
        r.headers["content-type"], "application/problem+json",
        "{why}"
    );
    for fragment in token.split('.').filter(|s| s.len() > 8) {
        assert!(!r.body.contains(fragment), "{why}: body echoes the token");
    }
    for internal in ["InvalidSignature", "jsonwebtoken", "kid", "Error"] {
        assert!(
            !r.body.contains(internal),
            "{why}: body mentions {internal}: {}",
            r.body
        );
    }
}

fn unsigned(header: serde_json::Value, claims: &serde_json::Value) -> String {
    let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
    let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
    format!("{h}.{p}.")
}

#[tokio::test]
async fn alg_none_in_any_spelling_is_rejected() {
    let c = claims("user-1");
    for alg in ["none", "None", "NONE", "nOnE"] {
        assert_rejected(&unsigned(json!({"alg": alg, "typ": "JWT"}), &c), alg).await;
        // With a junk signature segment too.
        let t = unsigned(json!({"alg": alg}), &c) + "c2ln";
        assert_rejected(&t, alg).await;
    }
}

#[tokio::test]
async fn wrong_hmac_key_is_rejected() {
    let t = encode(
        &Header::new(Algorithm::HS256),
        &claims("u"),
        &EncodingKey::from_secret(b"not-the-secret"),
    )
    .unwrap();
    assert_rejected(&t, "wrong key").await;
}

#[tokio::test]
async fn rs256_public_key_used_as_hmac_secret_is_rejected() {
    // The classic key confusion: the verifier holds an RS256 public key; the
    // attacker signs HS256 with that public key's bytes as the secret.
    let verifier = auth_layer::JwtVerifier::new(
        auth_layer::KeySource::from_pem(Algorithm::RS256, RSA_PUBLIC).unwrap(),
    );
    let app = app(verifier);
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &claims("admin"),
        &EncodingKey::from_secret(RSA_PUBLIC),
    )
    .unwrap();
    let r = send(&app, get_with("/api/me", Some(&forged))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // The same verifier accepts a real RS256 token.
    let good = encode(
        &Header::new(Algorithm::RS256),
        &claims("u"),
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
    )
    .unwrap();
    assert_eq!(
        send(&app, get_with("/api/me", Some(&good))).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn hs256_verifier_refuses_rs256_tokens() {
    let t = encode(
        &Header::new(Algorithm::RS256),
        &claims("u"),
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
    )
    .unwrap();
    assert_rejected(&t, "RS256 to an HS256 verifier").await;
}

#[tokio::test]
async fn expired_token_is_rejected_with_expired_description() {
    let mut c = claims("u");
    c["exp"] = json!(now() - 120);
    let app = app(verifier());
    let r = send(&app, get_with("/api/me", Some(&hs256(&c)))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.challenge()
            .contains("error_description=\"The access token expired\"")
    );
}

#[tokio::test]
async fn expiry_within_leeway_is_accepted_and_beyond_is_not() {
    let app = app(verifier());
    let mut c = claims("u");
    c["exp"] = json!(now() - 10);
    assert_eq!(
        send(&app, get_with("/api/me", Some(&hs256(&c))))
            .await
            .status,
        StatusCode::OK
    );
    c["exp"] = json!(now() - 45);
    assert_eq!(
        send(&app, get_with("/api/me", Some(&hs256(&c))))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn future_nbf_is_rejected() {
    let mut c = claims("u");
    c["nbf"] = json!(now() + 3600);
    assert_rejected(&hs256(&c), "nbf").await;
}

#[tokio::test]
async fn future_iat_is_rejected_beyond_the_leeway() {
    // Validly signed, `exp` after it: issued a day from now is forged or
    // from a broken clock.
    let mut c = claims("u");
    c["iat"] = json!(now() + 86_400);
    c["exp"] = json!(now() + 90_000);
    assert_rejected(&hs256(&c), "iat a day ahead").await;
    // A few seconds of clock skew stay within the 30 s leeway.
    let app = app(verifier());
    let mut c = claims("u");
    c["iat"] = json!(now() + 10);
    let r = send(&app, get_with("/api/me", Some(&hs256(&c)))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn wrong_audience_or_issuer_is_rejected() {
    let mut c = claims("u");
    c["aud"] = json!("another-api");
    assert_rejected(&hs256(&c), "aud").await;
    let mut c = claims("u");
    c["iss"] = json!("https://evil.test");
    assert_rejected(&hs256(&c), "iss").await;
}

#[tokio::test]
async fn missing_exp_sub_iss_or_aud_is_rejected() {
    for claim in ["exp", "sub", "iss", "aud"] {
        let mut c = claims("u");
        c.as_object_mut().unwrap().remove(claim);
        assert_rejected(&hs256(&c), claim).await;
    }
}

#[tokio::test]
async fn string_typed_exp_or_sub_is_rejected() {
    let mut c = claims("u");
    c["exp"] = json!((now() + 600).to_string());
    assert_rejected(&hs256(&c), "string exp").await;
    let mut c = claims("u");
    c["sub"] = json!(12345);
    assert_rejected(&hs256(&c), "numeric sub").await;
}

#[tokio::test]
async fn crit_jku_x5u_jwk_and_x5c_headers_are_rejected() {
    let key = EncodingKey::from_secret(SECRET);
    let c = claims("u");
    for (name, value) in [
        ("crit", json!(["exp"])),
        ("jku", json!("https://evil.test/jwks.json")),
        ("x5u", json!("https://evil.test/cert.pem")),
        ("jwk", json!({"kty": "oct", "k": "AAAA"})),
        ("x5c", json!(["MIIB"])),
        ("crit", json!(null)),
        ("jku", json!(null)),
    ] {
        let t = with_header(json!({"alg": "HS256", "typ": "JWT", name: value}), &c, &key);
        assert_rejected(&t, name).await;
    }
}

#[tokio::test]
async fn kid_is_only_a_lookup_key() {
    let c = claims("u");
    // The classic kid attacks sign with a key the attacker controls and point
    // `kid` at it (a file, a query): the key used is always a configured one.
    for (kid, attacker_key) in [
        ("../../../../dev/null", &b""[..]),
        ("/dev/null", b""),
        ("../../../../etc/hostname", b"localhost\n"),
        ("' UNION SELECT 'attacker-key' --", b"attacker-key"),
        ("k1", b"attacker-key"),
    ] {
        let t = with_header(
            json!({"alg": "HS256", "kid": kid}),
            &c,
            &EncodingKey::from_secret(attacker_key),
        );
        assert_rejected(&t, &format!("kid {kid}")).await;
    }
    // A kid that isn't a short string is malformed, whatever signed it.
    let key = EncodingKey::from_secret(SECRET);
    for kid in [
        json!("x".repeat(300)),
        json!(""),
        json!(42),
        json!({"nested": true}),
        json!(null),
    ] {
        let t = with_header(json!({"alg": "HS256", "kid": kid}), &c, &key);
        assert_rejected(&t, &format!("kid {kid}")).await;
    }
}

#[tokio::test]
async fn with_keys_by_id_an_unknown_kid_is_rejected_even_if_well_signed() {
    use auth_layer::{JwtVerifier, KeySource, VerificationKey};
    let keys = KeySource::Static {
        by_kid: Default::default(),
        default: None,
    }
    .with_kid(
        "k1",
        VerificationKey::new(
            Algorithm::HS256,
            jsonwebtoken::DecodingKey::from_secret(SECRET),
        ),
    );
    let app = app(JwtVerifier::new(keys));
    let key = EncodingKey::from_secret(SECRET);
    let good = with_header(json!({"alg": "HS256", "kid": "k1"}), &claims("u"), &key);
    assert_eq!(
        send(&app, get_with("/api/me", Some(&good))).await.status,
        StatusCode::OK
    );
    for kid in [json!("../k1"), json!("k2"), json!("K1")] {
        let t = with_header(json!({"alg": "HS256", "kid": kid}), &claims("u"), &key);
        assert_eq!(
            send(&app, get_with("/api/me", Some(&t))).await.status,
            StatusCode::UNAUTHORIZED,
            "{kid}"
        );
    }
    let no_kid = hs256(&claims("u"));
    assert_eq!(
        send(&app, get_with("/api/me", Some(&no_kid))).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn supabase_hs256_token_with_a_kid_verifies_against_the_one_secret() {
    let key = EncodingKey::from_secret(SECRET);
    let t = with_header(
        json!({"alg": "HS256", "kid": "f2e1c0a9", "typ": "JWT"}),
        &claims("u"),
        &key,
    );
    assert_eq!(
        send(&app(verifier()), get_with("/api/me", Some(&t)))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn eddsa_key_of_the_wrong_length_is_refused_at_startup() {
    // A P-256 public key declared as EdDSA must not reach the verifier.
    use p256::pkcs8::{EncodePublicKey, LineEnding};
    let ec = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
    let pem = ec
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    assert!(auth_layer::KeySource::from_pem(Algorithm::EdDSA, pem.as_bytes()).is_err());
}

#[tokio::test]
async fn structurally_broken_tokens_are_rejected() {
    let good = hs256(&claims("u"));
    let parts: Vec<&str> = good.split('.').collect();
    let cases = [
        ("truncated", format!("{}.{}", parts[0], parts[1])),
        ("signature cut", good[..good.len() - 5].to_string()),
        ("extra segment", format!("{good}.AAAA")),
        (
            "four dots",
            format!("{}.{}.{}..", parts[0], parts[1], parts[2]),
        ),
        ("empty payload", format!("{}..{}", parts[0], parts[2])),
        (
            "non-base64",
            format!("{}.{}!!.{}", parts[0], parts[1], parts[2]),
        ),
        (
            "padding",
            format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        ),
        (
            "not json header",
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode("nope"),
                parts[1],
                parts[2]
            ),
        ),
        (
            "array header",
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode("[1]"),
                parts[1],
                parts[2]
            ),
        ),
        ("garbage", "a.b.c".to_string()),
        ("single", "justonestring".to_string()),
        (
            "tampered payload",
            format!(
                "{}.{}.{}",
                parts[0],
                URL_SAFE_NO_PAD.encode(r#"{"sub":"admin","exp":9999999999}"#),
                parts[2]
            ),
        ),
    ];
    for (why, token) in cases {
        assert_rejected(&token, why).await;
    }
}

#[tokio::test]
async fn oversized_token_is_rejected_before_parsing() {
    let mut c = claims("u");
    c["padding"] = json!("x".repeat(10_000));
    let app = app(verifier());
    let r = send(&app, get_with("/api/me", Some(&hs256(&c)))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.challenge().contains("too large"));
}

#[tokio::test]
async fn two_authorization_headers_are_rejected() {
    let app = app(verifier());
    let good = hs256(&claims("u"));
    let req = http::Request::get("/api/me")
        .header("authorization", format!("Bearer {good}"))
        .header("authorization", format!("Bearer {good}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let r = send(&app, req).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.challenge().contains("invalid_request"));
}

#[tokio::test]
async fn empty_or_odd_bearer_values_are_rejected() {
    let app = app(verifier());
    let good = hs256(&claims("u"));
    for value in [
        "Bearer".to_string(),
        "Bearer ".to_string(),
        "Bearer    ".to_string(),
        format!("Bearer {good} {good}"),
        format!("Basic {good}"),
        format!("Token {good}"),
        good.clone(),
    ] {
        let req = http::Request::get("/api/me")
            .header("authorization", value.as_str())
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(
            send(&app, req).await.status,
            StatusCode::UNAUTHORIZED,
            "{value:?}"
        );
    }
    // Non-UTF-8 header bytes.
    let req = http::Request::get("/api/me")
        .header(
            "authorization",
            http::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
        )
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(send(&app, req).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    let app = app(verifier());
    let req = http::Request::get("/api/me")
        .header("authorization", format!("bearer {}", hs256(&claims("u"))))
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(send(&app, req).await.status, StatusCode::OK);
}

#[tokio::test]
async fn es256_and_eddsa_tokens_verify_with_their_keys_only() {
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let ec = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
    let ec_priv = ec.to_pkcs8_pem(LineEnding::LF).unwrap();
    let ec_pub = ec
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let ed = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let ed_priv = ed.to_pkcs8_pem(LineEnding::LF).unwrap();
    let ed_pub = ed
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();

    let es_token = encode(
        &Header::new(Algorithm::ES256),
        &claims("u"),
        &EncodingKey::from_ec_pem(ec_priv.as_bytes()).unwrap(),
    )
    .unwrap();
    let ed_token = encode(
        &Header::new(Algorithm::EdDSA),
        &claims("u"),
        &EncodingKey::from_ed_pem(ed_priv.as_bytes()).unwrap(),
    )
    .unwrap();

    let es_app = app(auth_layer::JwtVerifier::new(
        auth_layer::KeySource::from_pem(Algorithm::ES256, ec_pub.as_bytes()).unwrap(),
    ));
    let ed_app = app(auth_layer::JwtVerifier::new(
        auth_layer::KeySource::from_pem(Algorithm::EdDSA, ed_pub.as_bytes()).unwrap(),
    ));
    assert_eq!(
        send(&es_app, get_with("/api/me", Some(&es_token)))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        send(&ed_app, get_with("/api/me", Some(&ed_token)))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        send(&es_app, get_with("/api/me", Some(&ed_token)))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&ed_app, get_with("/api/me", Some(&es_token)))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

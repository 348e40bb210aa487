//! Token verification cost per request through `AuthenticateLayer`.
//!
//! `cargo bench -p floyo-auth-layer --bench verify`
//!
//! Each request is built fresh (as a server would hand it over) and driven
//! to completion with a no-op waker: static keys never wait, so this is the
//! layer's whole cost. `baseline` is the same request through the bare
//! service, measured in the same run.

#![allow(missing_docs)]

use auth_layer::{AuthenticateLayer, JwtVerifier, KeySource};
use criterion::{Criterion, criterion_group, criterion_main};
use guardrails_testkit::bench::{respond_with, status};
use http::Request;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use tower::Layer;

fn request(token: &str) -> Request<()> {
    Request::get("/api/me")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap()
}

fn claims() -> serde_json::Value {
    serde_json::json!({
        "sub": "0b7c9d3e-2f61-4f1e-9a57-1c2d3e4f5a6b", "aud": "authenticated",
        "iss": "https://example.supabase.co/auth/v1", "exp": 4_102_444_800u64, "iat": 1_700_000_000u64,
        "role": "authenticated", "aal": "aal1", "session_id": "6f1e9a57-1c2d-3e4f-5a6b-0b7c9d3e2f61",
        "amr": [{"method": "password", "timestamp": 1_700_000_000u64}],
        "app_metadata": {"provider": "email", "providers": ["email"]},
    })
}

fn bench(c: &mut Criterion) {
    let inner = || respond_with(String::new);
    let secret = b"bench-secret-0123456789abcdefghijklmnopqrstuv";
    let hs_token = encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(secret),
    )
    .unwrap();
    let verifier = |keys| {
        JwtVerifier::new(keys)
            .issuer("https://example.supabase.co/auth/v1")
            .audience("authenticated")
    };

    let ec = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
    let es_token = encode(
        &Header::new(Algorithm::ES256),
        &claims(),
        &EncodingKey::from_ec_pem(ec.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes()).unwrap(),
    )
    .unwrap();
    let ec_pub = ec
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();

    let mut group = c.benchmark_group("auth");

    let mut bare = inner();
    group.bench_function("baseline_no_auth", |b| {
        b.iter(|| status(&mut bare, request(&hs_token)))
    });

    // Verified every time: the token cache off.
    let mut hs =
        AuthenticateLayer::new(verifier(KeySource::hs256(secret)).token_cache(0)).layer(inner());
    assert_eq!(status(&mut hs, request(&hs_token)), 200);
    group.bench_function("hs256_through_layer", |b| {
        b.iter(|| status(&mut hs, request(&hs_token)))
    });

    // The same token again, with the token cache (the default).
    let mut cached = AuthenticateLayer::new(verifier(KeySource::hs256(secret))).layer(inner());
    assert_eq!(status(&mut cached, request(&hs_token)), 200);
    group.bench_function("hs256_cached_through_layer", |b| {
        b.iter(|| status(&mut cached, request(&hs_token)))
    });

    let es_keys = KeySource::from_pem(Algorithm::ES256, ec_pub.as_bytes()).unwrap();
    let mut es = AuthenticateLayer::new(verifier(es_keys).token_cache(0)).layer(inner());
    assert_eq!(status(&mut es, request(&es_token)), 200);
    group.bench_function("es256_through_layer", |b| {
        b.iter(|| status(&mut es, request(&es_token)))
    });

    let mut rejecting = AuthenticateLayer::new(verifier(KeySource::hs256(
        b"another-secret-entirely-0123456789abc",
    )))
    .layer(inner());
    assert_eq!(status(&mut rejecting, request(&hs_token)), 401);
    group.bench_function("hs256_bad_signature_401", |b| {
        b.iter(|| status(&mut rejecting, request(&hs_token)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! The verified-token cache: a repeated token is served from it, and
//! nothing else ever is — not an altered token, not an expired one, not a
//! failure, not a token verified under a key set that has since changed.

mod common;

use std::time::Duration;

use auth_layer::AuthError;
use common::*;
use serde_json::json;

#[tokio::test]
async fn a_repeated_token_is_served_from_the_cache() {
    let verifier = verifier();
    let token = hs256(&claims("user-7"));
    let first = verifier.verify(&token).await.unwrap();
    assert_eq!(verifier.cached_tokens(), 1);
    let second = verifier.verify(&token).await.unwrap();
    assert_eq!(second.subject(), "user-7");
    assert_eq!(format!("{first:?}"), format!("{second:?}"));
    assert_eq!(verifier.cached_tokens(), 1, "one token, one entry");

    // Clones share the cache; a verifier with it off keeps nothing.
    assert_eq!(verifier.clone().cached_tokens(), 1);
    let off = common::verifier().token_cache(0);
    off.verify(&token).await.unwrap();
    assert_eq!(off.cached_tokens(), 0);
}

#[tokio::test]
async fn an_altered_token_is_never_served_from_the_cache() {
    let verifier = verifier();
    let token = hs256(&claims("user-7"));
    verifier.verify(&token).await.unwrap();
    // The same header and payload with another signature, and the same
    // token with its payload swapped for another user's.
    let (message, signature) = token.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let forged = format!("{message}.{flipped}{}", &signature[1..]);
    assert_eq!(
        verifier.verify(&forged).await.unwrap_err(),
        AuthError::BadSignature
    );
    let other = hs256(&claims("admin-1"));
    let (header, _) = token.split_once('.').unwrap();
    let payload = other.split('.').nth(1).unwrap();
    let spliced = format!("{header}.{payload}.{signature}");
    assert_eq!(
        verifier.verify(&spliced).await.unwrap_err(),
        AuthError::BadSignature
    );
    assert_eq!(verifier.cached_tokens(), 1, "failures are never kept");
}

#[tokio::test]
async fn a_cached_token_still_expires() {
    // Expired 20 s ago: inside the default 30 s leeway, so accepted and
    // kept. A clone with a 5 s leeway shares the cache (the leeway is
    // checked on every hit), and the entry's own `exp` is checked on the
    // hit: refused, as uncached.
    let verifier = verifier();
    let mut c = claims("user-7");
    c["exp"] = json!(now() - 20);
    let token = hs256(&c);
    verifier.verify(&token).await.unwrap();
    assert_eq!(verifier.cached_tokens(), 1);
    let strict = verifier.clone().leeway(Duration::from_secs(5));
    assert_eq!(strict.verify(&token).await.unwrap_err(), AuthError::Expired);
    assert_eq!(strict.cached_tokens(), 1, "the same cache");

    // Not yet valid (nbf 20 s ahead, inside the leeway): the same.
    let mut c = claims("user-8");
    c["nbf"] = json!(now() + 20);
    let token = hs256(&c);
    verifier.verify(&token).await.unwrap();
    assert!(
        strict.verify(&token).await.is_err(),
        "nbf is checked on a hit"
    );
}

#[tokio::test]
async fn a_reconfigured_clone_never_serves_the_originals_entries() {
    // Verified for `authenticated` by one verifier; a clone that wants
    // another audience (or issuer) must refuse it, cache or not.
    let user = verifier();
    let token = hs256(&claims("user-7"));
    user.verify(&token).await.unwrap();
    let admin = user.clone().audience("admin-api");
    assert_eq!(
        admin.verify(&token).await.unwrap_err(),
        AuthError::WrongAudience
    );
    let other_issuer = user.clone().issuer("https://other.example/auth/v1");
    assert_eq!(
        other_issuer.verify(&token).await.unwrap_err(),
        AuthError::WrongIssuer
    );
    // The original still serves it from its cache.
    assert!(user.verify(&token).await.is_ok());
    assert_eq!(user.cached_tokens(), 1);
}

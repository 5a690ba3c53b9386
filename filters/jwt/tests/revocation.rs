//! Revocations against real verified tokens: a token already in the verified-token cache is
//! refused once revoked (the check follows the cache), the claims a revocation names are
//! read from the token, and `max_token_lifetime` refuses tokens that could outlive one.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use portcullis_config::{Jwt, JwtAlgorithm};
use portcullis_jwt::{AuthError, Revocation, Revocations, Revoked, Verifier};
use serde_json::json;

#[test]
fn a_cached_token_is_refused_once_revoked() {
    let now = SystemTime::now();
    let t = secs(now);
    let v = Verifier::new(&fixture_config(JwtAlgorithm::HS256)).unwrap();
    let token = sign(
        JwtAlgorithm::HS256,
        &json!({"sub": "alice", "jti": "tok-1", "iat": t - 10, "exp": t + 600}),
    );
    let revocations = Revocations::new(10);
    let first = v.verify(&token, now);
    let identity = first.result.unwrap();
    assert_eq!(identity.jti.as_deref(), Some("tok-1"));
    assert_eq!(identity.subject.as_deref(), Some("alice"));
    assert_eq!(identity.issued_at, Some(t - 10));
    assert!(!revocations.is_revoked(&identity));

    revocations
        .insert(
            Revocation::new(
                Revoked::Token {
                    jti: "tok-1".into(),
                },
                t + 600,
            )
            .unwrap(),
        )
        .unwrap();
    let again = v.verify(&token, now);
    assert!(again.cached, "still answered from the cache");
    assert!(revocations.is_revoked(&again.result.unwrap()));
}

#[test]
fn a_subject_revocation_spares_tokens_issued_after_it() {
    let now = SystemTime::now();
    let t = secs(now);
    let v = Verifier::new(&fixture_config(JwtAlgorithm::HS256)).unwrap();
    let old = sign(
        JwtAlgorithm::HS256,
        &json!({"sub": "alice", "iat": t - 100, "exp": t + 600}),
    );
    let new = sign(
        JwtAlgorithm::HS256,
        &json!({"sub": "alice", "iat": t, "exp": t + 600}),
    );
    let revocations = Revocations::new(10);
    revocations
        .insert(
            Revocation::new(
                Revoked::Subject {
                    sub: "alice".into(),
                    issued_before: t - 50,
                },
                t + 600,
            )
            .unwrap(),
        )
        .unwrap();
    assert!(revocations.is_revoked(&v.verify(&old, now).result.unwrap()));
    assert!(!revocations.is_revoked(&v.verify(&new, now).result.unwrap()));
}

#[test]
fn max_token_lifetime_refuses_tokens_that_live_longer() {
    let now = SystemTime::now();
    let t = secs(now);
    let jwt = Jwt {
        max_token_lifetime: Some(Duration::from_secs(3600)),
        ..fixture_config(JwtAlgorithm::HS256)
    };
    let v = Verifier::new(&jwt).unwrap();
    let check =
        |claims: serde_json::Value| v.verify(&sign(JwtAlgorithm::HS256, &claims), now).result;
    assert!(check(json!({"sub": "a", "iat": t, "exp": t + 3600})).is_ok());
    assert!(
        check(json!({"sub": "a", "iat": t, "exp": t + 3630})).is_ok(),
        "within leeway"
    );
    assert!(matches!(
        check(json!({"sub": "a", "iat": t, "exp": t + 7200})),
        Err(AuthError::InvalidClaims(_))
    ));
    // Without iat the lifetime counts from now; a back-dated iat cannot stretch it.
    assert!(matches!(
        check(json!({"sub": "a", "exp": t + 7200})),
        Err(AuthError::InvalidClaims(_))
    ));
    assert!(check(json!({"sub": "a", "iat": t - 3000, "exp": t + 600})).is_ok());
}

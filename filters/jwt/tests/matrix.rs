//! The token matrix: every algorithm family against valid, expired, not-yet-valid, wrong
//! issuer and audience, tampered, stripped, wrong-key, `none`, key-confusion, injected-key,
//! hostile-kid, oversized and non-base64url tokens; then the caches and JWKS rotation.

mod common;

use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::*;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{EncodingKey, Header};
use portcullis_config::{Jwt, JwtAlgorithm};
use portcullis_jwt::{AuthError, Verifier};
use serde_json::json;

fn verifier(jwt: &Jwt) -> Verifier {
    Verifier::new(jwt).expect("verifier")
}

fn check(v: &Verifier, token: &str, now: SystemTime) -> Result<String, AuthError> {
    v.verify(token, now)
        .result
        .map(|id| id.user.as_deref().unwrap_or("").to_string())
}

#[test]
fn every_algorithm_accepts_its_valid_token_and_refuses_the_bad_ones() {
    let now = SystemTime::now();
    let t = secs(now);
    for alg in JwtAlgorithm::ALL {
        let name = alg.name();
        let v = verifier(&Jwt {
            issuer: Some("legacy-app".into()),
            audience: vec!["music-app".into()],
            ..fixture_config(alg)
        });
        let good = json!({"sub":"alice","iss":"legacy-app","aud":"music-app","iat":t,"exp":t+600});
        let with = |changes: serde_json::Value| {
            let mut c = good.clone();
            for (k, val) in changes.as_object().unwrap() {
                c[k] = val.clone();
            }
            sign(alg, &c)
        };
        assert_eq!(
            check(&v, &sign(alg, &good), now),
            Ok("alice".into()),
            "{name} valid"
        );
        assert_eq!(
            check(&v, &with(json!({"exp": t - 31})), now),
            Err(AuthError::Expired),
            "{name} expired"
        );
        assert_eq!(
            check(&v, &with(json!({"exp": t - 29})), now),
            Ok("alice".into()),
            "{name} within leeway"
        );
        let claims_err = |token: String, what: &str| {
            assert!(
                matches!(check(&v, &token, now), Err(AuthError::InvalidClaims(_))),
                "{name} {what}"
            );
        };
        claims_err(with(json!({"nbf": t + 60})), "not yet valid");
        claims_err(with(json!({"iat": t + 60})), "issued in the future");
        claims_err(with(json!({"iss": "someone-else"})), "wrong issuer");
        claims_err(with(json!({"aud": "other-app"})), "wrong audience");
        claims_err(with(json!({"exp": "tomorrow"})), "exp not a number");
        let mut no_exp = good.clone();
        no_exp.as_object_mut().unwrap().remove("exp");
        claims_err(sign(alg, &no_exp), "no exp");

        let token = sign(alg, &good);
        let (h, p, s) = split(&token);
        let evil = URL_SAFE_NO_PAD.encode(
            json!({"sub":"admin","iss":"legacy-app","aud":"music-app","exp":t+600}).to_string(),
        );
        assert_eq!(
            check(&v, &format!("{h}.{evil}.{s}"), now),
            Err(AuthError::InvalidSignature),
            "{name} tampered payload"
        );
        let mut sig = URL_SAFE_NO_PAD.decode(s).unwrap();
        sig[0] ^= 1;
        let flipped = URL_SAFE_NO_PAD.encode(&sig);
        assert_eq!(
            check(&v, &format!("{h}.{p}.{flipped}"), now),
            Err(AuthError::InvalidSignature),
            "{name} tampered signature"
        );
        assert_eq!(
            check(&v, &format!("{h}.{p}."), now),
            Err(AuthError::InvalidSignature),
            "{name} stripped signature"
        );
        let wrong = sign_with(alg, &good, &other_key(alg), Header::new(algorithm(alg)));
        assert_eq!(
            check(&v, &wrong, now),
            Err(AuthError::InvalidSignature),
            "{name} wrong key"
        );
    }
}

fn split(token: &str) -> (&str, &str, &str) {
    let mut it = token.split('.');
    (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
}

fn b64(v: serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[test]
fn unsigned_tokens_are_refused_in_every_spelling() {
    let now = SystemTime::now();
    let v = verifier(&hmac_config(JwtAlgorithm::HS256));
    let payload = b64(claims(now));
    for alg in ["none", "None", "NONE", "nOnE"] {
        for sig in ["", "c2ln"] {
            let token = format!("{}.{payload}.{sig}", b64(json!({"alg": alg, "typ": "JWT"})));
            assert_eq!(
                check(&v, &token, now),
                Err(AuthError::UnsupportedAlg),
                "{alg} {sig:?}"
            );
        }
    }
}

#[test]
fn an_hs256_token_signed_with_the_rsa_public_key_is_refused() {
    let now = SystemTime::now();
    let public_pem = pem("rsa.pub");
    let forged = sign_with(
        JwtAlgorithm::HS256,
        &claims(now),
        &EncodingKey::from_secret(&public_pem),
        Header::new(jsonwebtoken::Algorithm::HS256),
    );
    // RS256 only: HS256 is not on the allow-list.
    let rs_only = verifier(&pem_config(JwtAlgorithm::RS256, "rsa.pub"));
    assert_eq!(
        check(&rs_only, &forged, now),
        Err(AuthError::UnsupportedAlg)
    );
    // Both allowed: HMAC tokens are checked only against the secret, never the RSA key.
    let both = verifier(&Jwt {
        algorithms: vec![JwtAlgorithm::RS256, JwtAlgorithm::HS256],
        secret: Some(SECRET.to_vec()),
        public_key_file: Some(key_path("rsa.pub")),
        ..config(&[])
    });
    assert_eq!(check(&both, &forged, now), Err(AuthError::InvalidSignature));
    assert!(check(&both, &sign(JwtAlgorithm::RS256, &claims(now)), now).is_ok());
    assert!(check(&both, &sign(JwtAlgorithm::HS256, &claims(now)), now).is_ok());
}

#[test]
fn keys_carried_by_the_token_are_never_used() {
    let now = SystemTime::now();
    let v = verifier(&pem_config(JwtAlgorithm::RS256, "rsa.pub"));
    let attacker = EncodingKey::from_rsa_pem(&pem("rsa2.key")).unwrap();
    let attacker_jwk = Jwk::from_encoding_key(&attacker, jsonwebtoken::Algorithm::RS256).unwrap();
    let mut header = Header::new(jsonwebtoken::Algorithm::RS256);
    header.jwk = Some(attacker_jwk);
    header.jku = Some("https://attacker.example/jwks.json".into());
    header.x5u = Some("https://attacker.example/cert.pem".into());
    let token = sign_with(JwtAlgorithm::RS256, &claims(now), &attacker, header);
    assert_eq!(check(&v, &token, now), Err(AuthError::InvalidSignature));
}

#[test]
fn hostile_kids_select_nothing() {
    let now = SystemTime::now();
    let v = verifier(&fixture_config(JwtAlgorithm::HS256));
    for kid in [
        "../../etc/passwd",
        "' OR '1'='1",
        "\u{0}",
        "k\r\nx: y",
        &"k".repeat(256),
    ] {
        let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(kid.to_string());
        let forged = sign_with(
            JwtAlgorithm::HS256,
            &claims(now),
            &other_key(JwtAlgorithm::HS256),
            header,
        );
        assert_eq!(
            check(&v, &forged, now),
            Err(AuthError::InvalidSignature),
            "{kid:?}"
        );
    }
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("k".repeat(5000));
    let long = sign_with(
        JwtAlgorithm::HS256,
        &claims(now),
        &fixture(JwtAlgorithm::HS256).0,
        header,
    );
    assert!(matches!(
        check(&v, &long, now),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn oversized_and_non_base64url_tokens_are_malformed() {
    let now = SystemTime::now();
    let v = verifier(&fixture_config(JwtAlgorithm::HS256));
    let mut big = claims(now);
    big["pad"] = "x".repeat(9000).into();
    let oversized = sign(JwtAlgorithm::HS256, &big);
    assert!(oversized.len() > portcullis_jwt::MAX_TOKEN_BYTES);
    assert!(matches!(
        check(&v, &oversized, now),
        Err(AuthError::Malformed(_))
    ));
    let token = sign(JwtAlgorithm::HS256, &claims(now));
    for bad in [
        token.replace('.', "+"),
        format!("{token}=="),
        format!("{token}.x"),
        "not.a.token".into(),
        "%%%.%%%.%%%".into(),
        String::new(),
    ] {
        assert!(
            matches!(check(&v, &bad, now), Err(AuthError::Malformed(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn the_first_check_misses_and_the_next_hits() {
    let now = SystemTime::now();
    let v = verifier(&fixture_config(JwtAlgorithm::RS256));
    let token = sign(JwtAlgorithm::RS256, &claims(now));
    let first = v.verify(&token, now);
    assert!(first.result.is_ok() && !first.cached);
    let second = v.verify(&token, now + Duration::from_secs(1));
    assert!(second.result.is_ok() && second.cached);
    assert_eq!(second.result.unwrap().user.as_deref(), Some("alice"));
}

#[test]
fn a_cached_token_stops_at_its_exp_to_the_second() {
    let now = SystemTime::now();
    let t = secs(now);
    let v = verifier(&Jwt {
        leeway: Duration::ZERO,
        ..fixture_config(JwtAlgorithm::HS256)
    });
    let token = sign(JwtAlgorithm::HS256, &json!({"sub":"alice","exp": t + 5}));
    assert!(v.verify(&token, now).result.is_ok());
    let exp = std::time::UNIX_EPOCH + Duration::from_secs(t + 5);
    let just_before = v.verify(&token, exp - Duration::from_millis(1));
    assert!(just_before.cached && just_before.result.is_ok());
    let at_exp = v.verify(&token, exp);
    assert!(!at_exp.cached, "the entry must end at exp");
    let after = v.verify(&token, exp + Duration::from_secs(1));
    assert_eq!(after.result.unwrap_err(), AuthError::Expired);
}

#[test]
fn the_cache_ttl_caps_an_entry_of_a_long_lived_token() {
    let now = SystemTime::now();
    let v = verifier(&Jwt {
        cache_ttl: Duration::from_secs(60),
        ..fixture_config(JwtAlgorithm::HS256)
    });
    let token = sign(JwtAlgorithm::HS256, &claims(now));
    assert!(!v.verify(&token, now).cached);
    assert!(v.verify(&token, now + Duration::from_secs(59)).cached);
    assert!(!v.verify(&token, now + Duration::from_secs(61)).cached);
}

#[test]
fn the_cache_stays_within_capacity_under_100000_distinct_tokens() {
    let now = SystemTime::now();
    let v = verifier(&Jwt {
        cache_capacity: 1_000,
        ..fixture_config(JwtAlgorithm::HS256)
    });
    let mut c = claims(now);
    for i in 0..100_000u32 {
        c["jti"] = i.into();
        assert!(v.verify(&sign(JwtAlgorithm::HS256, &c), now).result.is_ok());
        if i % 10_000 == 0 {
            assert!(v.cached_tokens() <= 1_000, "{} entries", v.cached_tokens());
        }
    }
    assert!(v.cached_tokens() <= 1_000, "{} entries", v.cached_tokens());
    assert!(
        v.cached_tokens() > 500,
        "the cache still caches: {}",
        v.cached_tokens()
    );
}

#[test]
fn a_forged_token_is_verified_once_then_refused_from_the_failed_cache() {
    let now = SystemTime::now();
    let v = verifier(&fixture_config(JwtAlgorithm::RS256));
    let forged = sign_with(
        JwtAlgorithm::RS256,
        &claims(now),
        &other_key(JwtAlgorithm::RS256),
        Header::new(jsonwebtoken::Algorithm::RS256),
    );
    let first = v.verify(&forged, now);
    assert_eq!(
        (first.result.unwrap_err(), first.cached),
        (AuthError::InvalidSignature, false)
    );
    let again = v.verify(&forged, now + Duration::from_secs(1));
    assert_eq!(
        (again.result.unwrap_err(), again.cached),
        (AuthError::InvalidSignature, true)
    );
    let later = v.verify(&forged, now + Duration::from_secs(11));
    assert!(!later.cached, "failed entries live negative_cache_ttl");
}

fn jwks(keys: &[(&str, &str)]) -> Vec<u8> {
    let keys = keys
        .iter()
        .map(|(kid, private)| {
            let key = EncodingKey::from_rsa_pem(&pem(private)).unwrap();
            let mut jwk = Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::RS256).unwrap();
            jwk.common.key_id = Some(kid.to_string());
            jwk
        })
        .collect();
    serde_json::to_vec(&JwkSet { keys }).unwrap()
}

fn kid_token(kid: &str, private: &str, now: SystemTime) -> String {
    let mut header = Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.into());
    let key = EncodingKey::from_rsa_pem(&pem(private)).unwrap();
    sign_with(JwtAlgorithm::RS256, &claims(now), &key, header)
}

#[test]
fn jwks_rotation_withdraws_keys_at_once_even_for_cached_tokens() {
    let now = SystemTime::now();
    let v = verifier(&Jwt {
        jwks_url: Some("http://127.0.0.1:1/jwks.json".into()),
        ..config(&[JwtAlgorithm::RS256])
    });
    let old = kid_token("k1", "rsa.key", now);
    assert!(v.awaiting_keys());
    assert_eq!(v.verify(&old, now).result.unwrap_err(), AuthError::NoKeys);

    let change = v.install_jwks(&jwks(&[("k1", "rsa.key")])).unwrap();
    assert!(change.changed && change.keys == 1 && !v.awaiting_keys());
    assert!(v.verify(&old, now).result.is_ok());
    assert!(v.verify(&old, now).cached);
    assert!(!v.install_jwks(&jwks(&[("k1", "rsa.key")])).unwrap().changed);
    assert!(
        v.verify(&old, now).cached,
        "an unchanged document keeps the cache"
    );

    let new = kid_token("k2", "rsa2.key", now);
    assert_eq!(
        v.verify(&new, now).result.unwrap_err(),
        AuthError::UnknownKid
    );
    assert!(
        v.install_jwks(&jwks(&[("k2", "rsa2.key")]))
            .unwrap()
            .changed
    );
    assert!(
        v.verify(&new, now).result.is_ok(),
        "an unknown kid is not remembered as failed"
    );
    assert_eq!(
        v.verify(&old, now).result.unwrap_err(),
        AuthError::UnknownKid
    );

    // A broken document keeps the keys that serve.
    assert!(v.install_jwks(b"{\"keys\": []}").is_err());
    assert!(v.install_jwks(b"<html>").is_err());
    assert!(v.verify(&new, now).result.is_ok());
}

#[test]
fn claims_are_forwarded_only_as_safe_header_values() {
    let now = SystemTime::now();
    let t = secs(now);
    let v = verifier(&Jwt {
        forward_claims: vec![
            ("sub".into(), http::HeaderName::from_static("x-user-id")),
            (
                "roles".into(),
                http::HeaderName::from_static("x-user-roles"),
            ),
            ("note".into(), http::HeaderName::from_static("x-note")),
            ("level".into(), http::HeaderName::from_static("x-level")),
        ],
        ..fixture_config(JwtAlgorithm::HS256)
    });
    let token = sign(
        JwtAlgorithm::HS256,
        &json!({"sub":"alice","roles":["admin","dj"],"note":"a\r\nx-evil: 1","level":3,"exp":t+60}),
    );
    let identity = v.verify(&token, now).result.unwrap();
    let forwarded: Vec<(String, String)> = identity
        .forward
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        forwarded,
        vec![
            ("x-user-id".into(), "alice".into()),
            ("x-user-roles".into(), "admin,dj".into()),
            ("x-level".into(), "3".into()),
        ]
    );
}

#[test]
fn a_public_key_file_of_the_wrong_family_or_a_private_key_is_refused() {
    assert!(Verifier::new(&pem_config(JwtAlgorithm::RS256, "ec256.pub")).is_err());
    assert!(Verifier::new(&pem_config(JwtAlgorithm::RS256, "rsa.key")).is_err());
    assert!(Verifier::new(&pem_config(JwtAlgorithm::RS256, "missing.pub")).is_err());
    assert!(Verifier::new(&pem_config(JwtAlgorithm::ES384, "ec384.pub")).is_ok());
}

//! Token-making helpers shared by the matrix tests and the benches.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use portcullis_config::{Jwt, JwtAlgorithm, TokenSource};
use serde_json::{json, Value};

pub const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

pub fn key_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

pub fn pem(name: &str) -> Vec<u8> {
    std::fs::read(key_path(name)).expect("fixture key")
}

/// A `[jwt]` as the loader would produce it, with the defaults of CONTRACT.md.
pub fn config(algorithms: &[JwtAlgorithm]) -> Jwt {
    Jwt {
        algorithms: algorithms.to_vec(),
        secret: None,
        public_key_file: None,
        jwks_url: None,
        jwks_refresh: Duration::from_secs(600),
        jwks_cooldown: Duration::from_secs(30),
        jwks_timeout: Duration::from_secs(5),
        issuer: None,
        audience: vec![],
        leeway: Duration::from_secs(30),
        cache_capacity: 10_000,
        cache_ttl: Duration::from_secs(300),
        negative_cache_ttl: Duration::from_secs(10),
        negative_cache_capacity: 1_000,
        user_claim: "sub".into(),
        forward_claims: vec![],
        sources: vec![TokenSource::Header],
        forward_credentials: true,
        max_token_lifetime: None,
        max_revocations: 10_000,
    }
}

pub fn hmac_config(alg: JwtAlgorithm) -> Jwt {
    Jwt {
        secret: Some(SECRET.to_vec()),
        ..config(&[alg])
    }
}

pub fn pem_config(alg: JwtAlgorithm, public: &str) -> Jwt {
    Jwt {
        public_key_file: Some(key_path(public)),
        ..config(&[alg])
    }
}

/// Seconds since the epoch for `now`.
pub fn secs(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

pub fn claims(now: SystemTime) -> Value {
    let t = secs(now);
    json!({ "sub": "alice", "iat": t, "exp": t + 3600 })
}

pub fn algorithm(alg: JwtAlgorithm) -> Algorithm {
    alg.name().parse().expect("known algorithm")
}

/// The private key that signs `alg` tokens in the fixtures, and the public key file.
pub fn fixture(alg: JwtAlgorithm) -> (EncodingKey, &'static str) {
    use JwtAlgorithm::*;
    match alg {
        HS256 | HS384 | HS512 => (EncodingKey::from_secret(SECRET), ""),
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => (
            EncodingKey::from_rsa_pem(&pem("rsa.key")).unwrap(),
            "rsa.pub",
        ),
        ES256 => (
            EncodingKey::from_ec_pem(&pem("ec256.key")).unwrap(),
            "ec256.pub",
        ),
        ES384 => (
            EncodingKey::from_ec_pem(&pem("ec384.key")).unwrap(),
            "ec384.pub",
        ),
        EdDSA => (EncodingKey::from_ed_pem(&pem("ed.key")).unwrap(), "ed.pub"),
    }
}

/// The verifier configuration that accepts `alg` with the fixture key.
pub fn fixture_config(alg: JwtAlgorithm) -> Jwt {
    match fixture(alg).1 {
        "" => hmac_config(alg),
        public => pem_config(alg, public),
    }
}

pub fn sign(alg: JwtAlgorithm, claims: &Value) -> String {
    sign_with(alg, claims, &fixture(alg).0, Header::new(algorithm(alg)))
}

pub fn sign_with(_alg: JwtAlgorithm, claims: &Value, key: &EncodingKey, header: Header) -> String {
    encode(&header, claims, key).expect("sign")
}

/// A key of the same family as `alg`'s fixture that the verifier does not know.
pub fn other_key(alg: JwtAlgorithm) -> EncodingKey {
    use JwtAlgorithm::*;
    match alg {
        HS256 | HS384 | HS512 => EncodingKey::from_secret(&[7u8; 64]),
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => {
            EncodingKey::from_rsa_pem(&pem("rsa2.key")).unwrap()
        }
        ES256 => EncodingKey::from_ec_pem(&pem("ec256-other.key")).unwrap(),
        ES384 => EncodingKey::from_ec_pem(&pem("ec384-other.key")).unwrap(),
        EdDSA => EncodingKey::from_ed_pem(&pem("ed-other.key")).unwrap(),
    }
}

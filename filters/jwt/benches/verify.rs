//! Cost of a token check: a cache hit, and a full verification (cache off) per algorithm
//! family. `cargo bench -p portcullis-jwt`; figures in docs/performance.md.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_config::{Jwt, JwtAlgorithm};
use portcullis_jwt::Verifier;

fn uncached(alg: JwtAlgorithm) -> Jwt {
    Jwt {
        cache_capacity: 0,
        negative_cache_capacity: 0,
        ..common::fixture_config(alg)
    }
}

fn bench(c: &mut Criterion) {
    let now = SystemTime::now();
    let claims = common::claims(now);

    let hs = common::sign(JwtAlgorithm::HS256, &claims);
    let cached = Verifier::new(&common::fixture_config(JwtAlgorithm::HS256)).unwrap();
    assert!(cached.verify(&hs, now).result.is_ok());
    c.bench_function("cache hit (HS256 token)", |b| {
        b.iter(|| black_box(cached.verify(black_box(&hs), now).cached))
    });

    let rs = common::sign(JwtAlgorithm::RS256, &claims);
    let cached_rs = Verifier::new(&common::fixture_config(JwtAlgorithm::RS256)).unwrap();
    assert!(cached_rs.verify(&rs, now).result.is_ok());
    c.bench_function("cache hit (RS256 token)", |b| {
        b.iter(|| black_box(cached_rs.verify(black_box(&rs), now).cached))
    });

    for alg in [
        JwtAlgorithm::HS256,
        JwtAlgorithm::RS256,
        JwtAlgorithm::ES256,
        JwtAlgorithm::EdDSA,
    ] {
        let token = common::sign(alg, &claims);
        let verifier = Verifier::new(&uncached(alg)).unwrap();
        assert!(verifier.verify(&token, now).result.is_ok());
        c.bench_function(&format!("verify on a miss ({})", alg.name()), |b| {
            b.iter(|| black_box(verifier.verify(black_box(&token), now).result.is_ok()))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

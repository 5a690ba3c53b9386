//! Cost of the revocation check on a verified (cached) token's identity: with nothing
//! revoked, and with 10,000 revocations (half by `jti`, half by `sub`) of which the token
//! matches none. `cargo bench -p portcullis-jwt --bench revocation`; the budget is 100 ns.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_jwt::{Identity, Revocation, Revocations, Revoked};

fn bench(c: &mut Criterion) {
    let identity = Identity {
        user: Some(Arc::from("alice")),
        jti: Some(Arc::from("8f14e45f-ceea-467f-a8f5-7c2b1e0d9a11")),
        subject: Some(Arc::from("alice")),
        issued_at: Some(1_700_000_000),
        ..Identity::default()
    };
    let empty = Revocations::new(10_000);
    c.bench_function("revocation check (none revoked)", |b| {
        b.iter(|| black_box(empty.is_revoked(black_box(&identity))))
    });

    let full = Revocations::new(10_000);
    let entries = (0..10_000).map(|i| {
        let target = if i % 2 == 0 {
            Revoked::Token {
                jti: format!("revoked-token-{i}"),
            }
        } else {
            Revoked::Subject {
                sub: format!("user-{i}"),
                issued_before: 1_700_000_000,
            }
        };
        Revocation::new(target, u64::MAX).expect("valid revocation")
    });
    full.replace(entries);
    c.bench_function("revocation check (10,000 held, no match)", |b| {
        b.iter(|| black_box(full.is_revoked(black_box(&identity))))
    });
    let revoked_sub = Identity {
        subject: Some(Arc::from("user-9999")),
        ..identity.clone()
    };
    c.bench_function("revocation check (10,000 held, subject match)", |b| {
        b.iter(|| black_box(full.is_revoked(black_box(&revoked_sub))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

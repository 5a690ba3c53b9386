//! Cost of checking a signed media URL: a valid one (one HMAC-SHA256), and a forged one
//! under two keys (the worst case: every key is tried). `cargo bench -p
//! portcullis-signed-url`; the target is under 2 µs for the valid case.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_signed_url::SignedUrls;

const KEY: &str = "portcullis-example-key-0123456789abcdef";
const OLD_KEY: &str = "an-older-key-still-accepted-for-a-while";
const PATH: &str = "/api/images/covers/2026/01/artist-album-cover.jpg";
const NOW: u64 = 1_767_225_000;

fn bench(c: &mut Criterion) {
    let urls = SignedUrls::new(&[KEY], Duration::from_secs(3600)).unwrap();
    let signed = urls.sign(PATH, NOW + 600, Some("user-1234")).unwrap();
    let query = format!("w=320&{signed}");
    assert!(urls.verify(PATH, Some(&query), NOW).unwrap().is_some());
    c.bench_function("verify a valid signed URL", |b| {
        b.iter(|| black_box(urls.verify(black_box(PATH), Some(black_box(&query)), NOW)))
    });

    let rotated = SignedUrls::new(&[KEY, OLD_KEY], Duration::from_secs(3600)).unwrap();
    let forged = query.replace("user-1234", "user-1235");
    assert!(rotated.verify(PATH, Some(&forged), NOW).is_err());
    c.bench_function("refuse a forged URL (two keys)", |b| {
        b.iter(|| black_box(rotated.verify(black_box(PATH), Some(black_box(&forged)), NOW)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

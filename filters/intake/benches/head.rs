//! The intake's per-request cost of judging a header section: a typical browser request with
//! a bearer token, read whole (the common case) and delivered in three pieces.
//!
//! `cargo bench -p portcullis-intake --bench head`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_intake::{Head, Limits, Scan};

const LIMITS: Limits = Limits {
    bytes: 16 * 1024,
    fields: 100,
};

fn head(c: &mut Criterion) {
    let request = b"GET /api/music/search?q=queen&page=2 HTTP/1.1\r\n\
        Host: music.example.com\r\n\
        User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0\r\n\
        Accept: application/json\r\n\
        Accept-Language: en-GB,en;q=0.9\r\n\
        Accept-Encoding: gzip, deflate, br\r\n\
        Origin: https://music.example.com\r\n\
        Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0.c2lnbmF0dXJlLXNpZ25hdHVyZQ\r\n\
        Connection: keep-alive\r\n\r\n";
    let mut group = c.benchmark_group("head");
    group.bench_function("typical request, one read", |b| {
        b.iter(|| {
            let verdict = Scan::default().examine(black_box(request), &LIMITS);
            assert_eq!(verdict, Head::Complete);
        })
    });
    group.bench_function("typical request, three reads", |b| {
        let (one, two) = (request.len() / 3, 2 * request.len() / 3);
        b.iter(|| {
            let mut scan = Scan::default();
            let _ = scan.examine(black_box(&request[..one]), &LIMITS);
            let _ = scan.examine(black_box(&request[..two]), &LIMITS);
            scan.examine(black_box(request), &LIMITS)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = head
}
criterion_main!(benches);

//! The per-request cost of suspicious-request detection: a benign request (the common
//! case, which must stay cheap) and an attack.
//!
//! `cargo bench -p portcullis-suspicious --bench inspect`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_config::Suspicious;
use portcullis_suspicious::Detector;

fn request(target: &str, ua: &str) -> http::request::Parts {
    let built = http::Request::builder()
        .uri(target)
        .header("user-agent", ua)
        .header("accept", "application/json")
        .header("host", "music.example.com")
        .body(());
    match built {
        Ok(r) => r.into_parts().0,
        Err(e) => panic!("bench request: {e}"),
    }
}

fn inspect(c: &mut Criterion) {
    let detector = Detector::new(&Suspicious::default());
    let browser = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";
    let benign = request(
        "/api/music/search?q=don%27t%20stop%20me%20now&page=2&sort=-created_at",
        browser,
    );
    let ids: Vec<String> = (1000..1150).map(|i| i.to_string()).collect();
    let long = request(&format!("/api/music?ids={}", ids.join(",")), browser);
    let attack = request("/api/music?id=1%27%20OR%20%271%27=%271", browser);
    c.bench_function("inspect/benign search", |b| {
        b.iter(|| detector.inspect(black_box(&benign)))
    });
    c.bench_function("inspect/benign 150 ids", |b| {
        b.iter(|| detector.inspect(black_box(&long)))
    });
    c.bench_function("inspect/sql injection", |b| {
        b.iter(|| detector.inspect(black_box(&attack)))
    });
}

criterion_group!(benches, inspect);
criterion_main!(benches);

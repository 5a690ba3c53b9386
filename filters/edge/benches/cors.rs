//! The per-request cost of CORS origin matching (wildcard patterns included).
//!
//! `cargo bench -p portcullis-edge --bench cors`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_config::Cors;
use portcullis_edge::CorsPolicy;

fn cors(c: &mut Criterion) {
    let cors = CorsPolicy::new(&Cors {
        allow_origins: vec![
            "https://music.example.com".into(),
            "https://*.example.com".into(),
        ],
        allow_methods: vec![http::Method::GET, http::Method::POST],
        allow_headers: vec![],
        expose_headers: vec![],
        allow_credentials: true,
        max_age: Duration::from_secs(600),
    });
    c.bench_function("cors/allows subdomain", |b| {
        b.iter(|| cors.allows(black_box("https://a.b.example.com")))
    });
}

criterion_group!(benches, cors);
criterion_main!(benches);

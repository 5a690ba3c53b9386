//! Cost of one limiter check: in memory (per-IP, and per-IP plus per-user), and through the
//! Redis store against a real redis-server on loopback (started here; skipped when
//! redis-server is missing). `cargo bench -p portcullis-ratelimit --bench check`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_config::{Rate, RatePolicy, RedisStore};
use portcullis_ratelimit::shared::SharedStore;
use portcullis_ratelimit::RateLimiter;

fn policy(per_user: bool) -> RatePolicy {
    let rate = Rate {
        count: 1_000_000_000,
        period: Duration::from_secs(60),
    };
    RatePolicy {
        name: "bench".into(),
        per_ip: Some(rate.clone()),
        per_user: per_user.then_some(rate),
        ipv6_prefix: 64,
    }
}

fn bench(c: &mut Criterion) {
    let limiter = RateLimiter::new(1_000_000);
    let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    let ip_only = policy(false);
    let both = policy(true);
    c.bench_function("memory: per-IP", |b| {
        b.iter(|| black_box(limiter.check(&ip_only, ip, None).allowed))
    });
    c.bench_function("memory: per-IP + per-user", |b| {
        b.iter(|| black_box(limiter.check(&both, ip, Some("alice")).allowed))
    });
    let mut n = 0u32;
    c.bench_function("memory: per-IP, a new client each time", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            black_box(
                limiter
                    .check(&ip_only, IpAddr::V4(Ipv4Addr::from(n)), None)
                    .allowed,
            )
        })
    });

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(6399);
    let Ok(mut redis) = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .stdout(Stdio::null())
        .spawn()
    else {
        eprintln!("redis-server not found: skipping the Redis benchmark");
        return;
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let store = SharedStore::new(&RedisStore {
        url: format!("redis://127.0.0.1:{port}"),
        timeout: Duration::from_secs(1),
        key_prefix: "bench".into(),
    })
    .expect("store");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    assert!(rt.block_on(store.check(&both, ip, Some("alice"))).is_ok());
    c.bench_function("redis: per-IP + per-user (one script round trip)", |b| {
        b.iter(|| black_box(rt.block_on(store.check(&both, ip, Some("alice"))).is_ok()))
    });
    let _ = redis.kill();
    let _ = redis.wait();
}

criterion_group!(benches, bench);
criterion_main!(benches);

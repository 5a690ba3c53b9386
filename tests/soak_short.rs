//! The short soak kept in the suite (the 10-minute one is `scripts/soak`): the full pipeline
//! (cached JWT, per-IP and per-user limits, CORS, suspicious rules, security headers) under
//! continuous keep-alive load from several clients. Every request must succeed, and resident
//! memory after the warm-up must stay flat (under 5% growth).

#[path = "harness/mod.rs"]
mod harness;

use std::io::BufReader;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harness::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

const SECRET: &str = "soak-secret-soak-secret-soak-secret-0123";
const CLIENTS: usize = 3;
const WARM_UP: Duration = Duration::from_secs(4);
const MEASURED: Duration = Duration::from_secs(12);

fn token() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "soak-user", "iat": now, "exp": now + 3600}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// One client: a kept-alive connection, reopened only if the gateway closes it. Returns the
/// statuses it saw and the number of requests that got no answer at all.
fn client(port: u16, token: String, stop: Arc<AtomicBool>) -> (Vec<u16>, usize) {
    let auth = format!("Bearer {token}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Origin", "https://music.example.com"),
    ];
    let (mut statuses, mut unanswered) = (Vec::new(), 0);
    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
    while !stop.load(Ordering::Relaxed) {
        let (stream, reader) = conn.get_or_insert_with(|| {
            let stream = connect(port, Duration::from_secs(10));
            let reader = BufReader::new(stream.try_clone().unwrap());
            (stream, reader)
        });
        send(stream, port, "GET", "/api/music/1", &headers, b"", false);
        match read_response(reader, "GET") {
            Some(resp) => {
                if resp.header("connection") == Some("close") {
                    conn = None;
                }
                statuses.push(resp.status);
            }
            None => {
                unanswered += 1;
                conn = None;
            }
        }
    }
    (statuses, unanswered)
}

#[test]
fn the_full_pipeline_under_continuous_load_fails_nothing_and_holds_its_memory() {
    let app = Backend::start("app");
    let (port, admin) = (free_port(), free_port());
    let config = server_section(port, admin, "threads = 1\n")
        + &format!("[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n", app.port)
        + &format!("[jwt]\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET}\"\nforward_claims = {{ sub = \"x-user-id\" }}\n\n")
        + "[rate_limits.default]\nper_ip = \"1000000000/min\"\nper_user = \"1000000000/min\"\n\n"
        + "[cors]\nallow_origins = [\"https://music.example.com\"]\n\n"
        + "[suspicious]\nmode = \"block\"\n\n"
        + "[[routes]]\nname = \"music\"\npath_prefix = \"/api/music\"\nupstream = \"app\"\n";
    let gw = Gateway::start("soak", port, admin, &config, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let token = token();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (stop, token) = (stop.clone(), token.clone());
            std::thread::spawn(move || client(port, token, stop))
        })
        .collect();

    let started = Instant::now();
    std::thread::sleep(WARM_UP);
    let mut samples = Vec::new();
    while started.elapsed() < WARM_UP + MEASURED {
        samples.push(gw.rss_kib().expect("the gateway's RSS"));
        std::thread::sleep(Duration::from_secs(1));
    }
    samples.push(gw.rss_kib().expect("the gateway's RSS"));
    stop.store(true, Ordering::Relaxed);

    let (mut statuses, mut unanswered) = (Vec::new(), 0);
    for c in clients {
        let (s, u) = c.join().unwrap();
        statuses.extend(s);
        unanswered += u;
    }
    let failed = statuses.iter().filter(|s| **s != 200).count();
    eprintln!(
        "short soak: {} requests, {failed} failed, {unanswered} unanswered; RSS KiB {samples:?}",
        statuses.len()
    );
    assert!(statuses.len() >= 2_000, "the load ran: {}", statuses.len());
    assert_eq!((failed, unanswered), (0, 0), "every request succeeds");
    let (first, last) = (samples[0], *samples.last().unwrap());
    assert!(
        last * 100 <= first * 105,
        "RSS grew from {first} KiB to {last} KiB after the warm-up: {samples:?}"
    );
    assert_eq!(
        gw.metric("portcullis_jwt_cache_misses_total", &[]),
        1.0,
        "the token was verified once and then served from the cache"
    );
}

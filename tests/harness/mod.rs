//! A small harness for end-to-end tests: the real `portcullis` binary (PORTCULLIS_BIN, else
//! target/release/portcullis), echo backends on loopback, and a raw HTTP/1.1 client that
//! sends exactly the bytes it is given. Every wait polls with a deadline; nothing sleeps and
//! hopes.
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

mod backend;
mod bounded;
mod browser;
mod cached;
mod client;
mod collector;
mod gateway;
mod hardening;
mod origin;
mod pebble;
mod recorder;
mod replicas;
mod websocket;

// Each test file uses its own part of the harness.
#[allow(unused_imports)]
pub use backend::*;
#[allow(unused_imports)]
pub use bounded::*;
#[allow(unused_imports)]
pub use browser::*;
#[allow(unused_imports)]
pub use cached::*;
#[allow(unused_imports)]
pub use client::*;
#[allow(unused_imports)]
pub use collector::*;
#[allow(unused_imports)]
pub use gateway::*;
#[allow(unused_imports)]
pub use hardening::*;
#[allow(unused_imports)]
pub use origin::*;
#[allow(unused_imports)]
pub use pebble::*;
#[allow(unused_imports)]
pub use recorder::*;
#[allow(unused_imports)]
pub use replicas::*;
#[allow(unused_imports)]
pub use websocket::*;

pub fn binary() -> PathBuf {
    let path = std::env::var_os("PORTCULLIS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/portcullis")
        });
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --release` first (scripts/test does)",
        path.display()
    );
    path
}

/// A loopback port nobody listens on, never handed out twice in this process.
pub fn free_port() -> u16 {
    static USED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let used = USED.get_or_init(|| Mutex::new(HashSet::new()));
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind");
        if used.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// Binds a loopback listener on `port` (0: any), retrying for up to 2 s while a previous
/// owner of the port lets go of it (a backend brought back where a stopped one listened).
pub fn bind_loopback(port: u16, what: &str) -> TcpListener {
    let mut bound = TcpListener::bind(("127.0.0.1", port));
    for _ in 0..100 {
        if bound.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        bound = TcpListener::bind(("127.0.0.1", port));
    }
    bound.unwrap_or_else(|e| panic!("bind the {what} on {port}: {e}"))
}

/// An HS256 token for `sub` signed with `secret`, issued now and valid for 10 minutes.
pub fn hs256_token(sub: &str, secret: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": sub, "iat": now, "exp": now + 600}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("an HS256 token")
}

pub fn wait_until(timeout: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if probe() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

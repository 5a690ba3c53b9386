//! JWT through the real binary: each route mode, claim forwarding and stripping, the cache
//! metrics, per-user limits, and a JWKS served by a real local HTTP server (first load,
//! outage, rotation, a flood of unknown kids).

#[path = "harness/mod.rs"]
mod harness;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harness::*;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

const SECRET: &str = "e2e-secret-e2e-secret-e2e-secret-0123456789";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256(sub: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": sub, "iat": now(), "exp": now() + 600}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn route_modes_claims_cache_and_per_user_limits() {
    let app = Backend::start("app");
    let (port, admin) = (free_port(), free_port());
    let config = server_section(port, admin, "")
        + &format!("[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n", app.port)
        + "[jwt]\nalgorithms = [\"HS256\"]\nsecret = \"${E2E_JWT_SECRET}\"\nforward_claims = { sub = \"x-user-id\" }\n\n"
        + "[rate_limits.user]\nper_user = \"2/min\"\n\n"
        + "[[routes]]\nname = \"limited\"\npath_prefix = \"/limited\"\nupstream = \"app\"\nauth = \"required\"\nrate_limit = \"user\"\n\n"
        + "[[routes]]\nname = \"secure\"\npath_prefix = \"/secure\"\nupstream = \"app\"\nauth = \"required\"\n\n"
        + "[[routes]]\nname = \"maybe\"\npath_prefix = \"/maybe\"\nupstream = \"app\"\nauth = \"optional\"\n\n"
        + "[[routes]]\nname = \"open\"\npath_prefix = \"/open\"\nupstream = \"app\"\nauth = \"none\"\n";
    let gw = Gateway::start("auth", port, admin, &config, &[("E2E_JWT_SECRET", SECRET)]);
    let alice = bearer(&hs256("alice"));

    // required: no token, a bad token, a good one.
    let missing = gw.get("/secure/me");
    assert_eq!(
        (missing.status, missing.error_code().as_str()),
        (401, "unauthorized")
    );
    assert_eq!(
        missing.header("www-authenticate"),
        Some("Bearer realm=\"portcullis\"")
    );
    assert_eq!(missing.header("x-content-type-options"), Some("nosniff"));
    assert!(missing.header("x-request-id").is_some());
    let good = hs256("alice");
    let (signed, signature) = good.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let forged = bearer(&format!("{signed}.{flipped}{}", &signature[1..]));
    for bad in [
        forged.as_str(),
        "Bearer not.a.token",
        "Bearer eyJhbGciOiJub25lIn0.e30.",
    ] {
        let resp = gw.request("GET", "/secure/me", &[("Authorization", bad)], b"");
        assert_eq!(resp.status, 401, "{bad}");
        let challenge = resp.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with(
                "Bearer realm=\"portcullis\", error=\"invalid_token\", error_description=\""
            ),
            "{challenge}"
        );
    }
    assert_eq!(app.count(), 0, "refused requests never reach the upstream");
    let ok = gw.request(
        "GET",
        "/secure/me",
        &[("Authorization", &alice), ("X-User-Id", "mallory")],
        b"",
    );
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.echoed_header("x-user-id").as_deref(),
        Some("alice"),
        "the verified claim replaces the client's copy"
    );

    // optional: anonymous passes, a bad token does not.
    let anon = gw.request("GET", "/maybe/x", &[("X-User-Id", "mallory")], b"");
    assert_eq!(anon.status, 200);
    assert_eq!(
        anon.echoed_header("x-user-id"),
        None,
        "a spoofed identity header is stripped"
    );
    let bad = gw.request(
        "GET",
        "/maybe/x",
        &[("Authorization", "Bearer not.a.token")],
        b"",
    );
    assert_eq!(bad.status, 401);
    let named = gw.request("GET", "/maybe/x", &[("Authorization", &alice)], b"");
    assert_eq!(named.echoed_header("x-user-id").as_deref(), Some("alice"));

    // none: tokens are ignored, identity headers still stripped.
    let open = gw.request(
        "GET",
        "/open/x",
        &[
            ("Authorization", "Bearer not.a.token"),
            ("X-User-Id", "mallory"),
        ],
        b"",
    );
    assert_eq!(open.status, 200);
    assert_eq!(open.echoed_header("x-user-id"), None);

    // Metrics: the repeated token was answered from the cache.
    assert!(gw.metric("portcullis_jwt_cache_hits_total", &[]) >= 1.0);
    assert!(gw.metric("portcullis_jwt_cache_misses_total", &[]) >= 1.0);
    assert_eq!(
        gw.metric("portcullis_jwt_validations_total", &[("result", "missing")]),
        1.0
    );
    assert!(gw.metric("portcullis_jwt_validations_total", &[("result", "valid")]) >= 2.0);
    assert!(
        gw.metric(
            "portcullis_jwt_validations_total",
            &[("result", "malformed")]
        ) >= 1.0
    );
    assert!(
        gw.metric(
            "portcullis_jwt_validations_total",
            &[("result", "unsupported_alg")]
        ) >= 1.0
    );

    // Per-user limits: alice's budget is hers alone.
    let bob = bearer(&hs256("bob"));
    for _ in 0..2 {
        assert_eq!(
            gw.request("GET", "/limited/x", &[("Authorization", &alice)], b"")
                .status,
            200
        );
    }
    let refused = gw.request("GET", "/limited/x", &[("Authorization", &alice)], b"");
    assert_eq!(
        (refused.status, refused.error_code().as_str()),
        (429, "rate_limited")
    );
    assert_eq!(
        gw.request("GET", "/limited/x", &[("Authorization", &bob)], b"")
            .status,
        200
    );
    assert_eq!(
        gw.metric(
            "portcullis_rate_limited_total",
            &[("route", "limited"), ("scope", "user")]
        ),
        1.0
    );

    assert!(
        wait_until(Duration::from_secs(5), || {
            let log = gw.access_log();
            log.iter()
                .any(|e| e["user"] == "alice" && e["route"] == "secure")
                && log
                    .iter()
                    .any(|e| e["status"] == 401 && e["reason"] == "missing")
        }),
        "the user and the 401 reason are logged: {:?}",
        gw.access_log()
    );
}

/// A JWKS endpoint whose document and status the test changes, counting its requests.
struct JwksServer {
    port: u16,
    doc: Arc<Mutex<(u16, Vec<u8>)>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    fn start() -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let doc = Arc::new(Mutex::new((503u16, b"{}".to_vec())));
        let hits = Arc::new(AtomicUsize::new(0));
        let (d, h) = (doc.clone(), hits.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                h.fetch_add(1, Ordering::SeqCst);
                let (status, body) = d.lock().unwrap().clone();
                let mut out = &stream;
                let _ = write!(out, "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
                let _ = out.write_all(&body);
            }
        });
        JwksServer { port, doc, hits }
    }

    fn serve(&self, status: u16, keys: &[(&str, &str)]) {
        let keys = keys
            .iter()
            .map(|(kid, pem)| {
                let key =
                    EncodingKey::from_rsa_pem(&std::fs::read(key_file(pem)).unwrap()).unwrap();
                let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
                jwk.common.key_id = Some(kid.to_string());
                jwk
            })
            .collect();
        *self.doc.lock().unwrap() = (status, serde_json::to_vec(&JwkSet { keys }).unwrap());
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn key_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../filters/jwt/tests/keys")
        .join(name)
}

fn rs256(kid: &str, pem: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    let key = EncodingKey::from_rsa_pem(&std::fs::read(key_file(pem)).unwrap()).unwrap();
    bearer(&encode(&header, &json!({"sub": "alice", "exp": now() + 600}), &key).unwrap())
}

fn jwks_gateway(name: &str, jwks: &JwksServer, cooldown: &str) -> (Gateway, Backend) {
    let app = Backend::start(name);
    let (port, admin) = (free_port(), free_port());
    let config = server_section(port, admin, "")
        + &format!("[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n", app.port)
        + &format!("[jwt]\nalgorithms = [\"RS256\"]\njwks_url = \"http://127.0.0.1:{}/jwks.json\"\njwks_cooldown = \"{cooldown}\"\n\n", jwks.port)
        + "[[routes]]\nname = \"secure\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"required\"\n";
    (Gateway::start(name, port, admin, &config, &[]), app)
}

#[test]
fn jwks_first_load_outage_and_rotation() {
    let jwks = JwksServer::start();
    let (gw, _app) = jwks_gateway("jwks", &jwks, "0s");
    let k1 = rs256("k1", "rsa.key");

    // The endpoint is down and no key was ever loaded: 503, not 401.
    let early = gw.request("GET", "/x", &[("Authorization", &k1)], b"");
    assert_eq!(
        (early.status, early.error_code().as_str()),
        (503, "upstream_unavailable")
    );
    assert!(early.header("retry-after").is_some());

    jwks.serve(200, &[("k1", "rsa.key")]);
    assert!(
        wait_until(Duration::from_secs(10), || gw
            .request("GET", "/x", &[("Authorization", &k1)], b"")
            .status
            == 200),
        "keys are loaded once the endpoint answers"
    );

    // Outage after a load: the stale keys keep serving.
    jwks.serve(500, &[]);
    let unknown = rs256("k9", "rsa2.key");
    assert_eq!(
        gw.request("GET", "/x", &[("Authorization", &unknown)], b"")
            .status,
        401
    );
    assert_eq!(
        gw.request("GET", "/x", &[("Authorization", &k1)], b"")
            .status,
        200
    );
    assert!(gw.metric("portcullis_jwks_refreshes_total", &[("result", "error")]) >= 1.0);

    // Rotation: a token with the new kid triggers a refresh and passes at once; the withdrawn
    // key stops validating at once, although its token was cached.
    jwks.serve(200, &[("k2", "rsa2.key")]);
    let k2 = rs256("k2", "rsa2.key");
    assert_eq!(
        gw.request("GET", "/x", &[("Authorization", &k2)], b"")
            .status,
        200
    );
    assert_eq!(
        gw.request("GET", "/x", &[("Authorization", &k1)], b"")
            .status,
        401
    );
}

#[test]
fn a_flood_of_unknown_kids_costs_the_jwks_endpoint_nothing_within_the_cooldown() {
    let jwks = JwksServer::start();
    jwks.serve(200, &[("k1", "rsa.key")]);
    let (gw, _app) = jwks_gateway("jwks-flood", &jwks, "1h");
    let k1 = rs256("k1", "rsa.key");
    assert!(wait_until(Duration::from_secs(10), || gw
        .request("GET", "/x", &[("Authorization", &k1)], b"")
        .status
        == 200));
    let before = jwks.hits();
    for i in 0..100 {
        let token = rs256(&format!("random-{i}"), "rsa2.key");
        assert_eq!(
            gw.request("GET", "/x", &[("Authorization", &token)], b"")
                .status,
            401
        );
    }
    assert_eq!(jwks.hits(), before, "no refresh inside the cooldown");
}

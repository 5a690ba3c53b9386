//! The admin listener's status page through the real binary: `/status.json` under traffic
//! (the counts move, a limited client tops the list, a failing upstream's breaker shows open
//! and then closed, a reload error appears with its quoted values cut out, a ban shows with
//! its expiry), the contract's fields, and a scrape of every status resource after traffic
//! with secrets in flight that finds none of them.

#[path = "harness/mod.rs"]
mod harness;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harness::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use portcullis_signed_url::SignedUrls;
use serde_json::{json, Value};

fn status(gw: &Gateway) -> Value {
    let resp = gw
        .admin_get("/status.json")
        .expect("an answer from /status.json");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    serde_json::from_slice(&resp.body).expect("/status.json is JSON")
}

fn named<'v>(list: &'v Value, name: &str) -> &'v Value {
    list.as_array()
        .and_then(|l| l.iter().find(|x| x["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

/// Polls the status document until `probe` holds (the windows and the sampler are read when
/// the document is made, so a few hundred milliseconds at most).
fn status_until(gw: &Gateway, what: &str, probe: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = status(gw);
        if probe(&s) {
            return s;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {s:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn config(port: u16, admin: u16, app: u16, flaky: u16, rate: &str) -> String {
    server_section(port, admin, "")
        + &format!("[upstreams.app]\npeers = [\"127.0.0.1:{app}\"]\n\n")
        + &format!("[upstreams.flaky]\npeers = [\"127.0.0.1:{flaky}\"]\n\n[upstreams.flaky.circuit_breaker]\nfailure_rate = 0.5\nmin_requests = 2\nwindow = \"10s\"\nopen_for = \"2s\"\nhalf_open_requests = 1\n\n")
        + &format!("[rate_limits.tight]\nper_ip = \"{rate}\"\n\n")
        + "[suspicious]\nmode = \"block\"\nban_threshold = 2\nban_duration = \"10m\"\n\n"
        + "[[routes]]\nname = \"music\"\npath_prefix = \"/api/music\"\nupstream = \"app\"\nrate_limit = \"tight\"\n\n"
        + "[[routes]]\nname = \"generate\"\npath_prefix = \"/api/generate\"\nupstream = \"flaky\"\nrate_limit = \"off\"\n\n"
        + "[[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"app\"\nrate_limit = \"off\"\n"
}

#[test]
fn the_json_follows_traffic_breakers_reloads_limits_and_bans() {
    let app = Backend::start("app");
    let flaky = Switchable::start();
    let (port, admin) = (free_port(), free_port());
    let good = config(port, admin, app.port, flaky.port, "3/min");
    let gw = Gateway::start("status", port, admin, &good, &[]);

    // The contract's fields, before any traffic.
    let s = status(&gw);
    assert!(
        s["version"].is_string() && s["uptime_seconds"].is_u64(),
        "{s:#}"
    );
    assert!(s["config"]["path"]
        .as_str()
        .is_some_and(|p| p.ends_with("portcullis.toml")));
    assert_eq!(
        s["config"]["last_reload"],
        json!({"at": null, "result": "none", "error": null})
    );
    for route in s["routes"].as_array().unwrap() {
        for field in ["name", "requests_per_second", "p50_ms", "p99_ms"] {
            assert!(route.get(field).is_some(), "{field} in {route}");
        }
    }
    let up = named(&s["upstreams"], "flaky");
    assert_eq!(up["breaker"], "closed");
    assert_eq!(
        up["peers"],
        json!([{"address": format!("127.0.0.1:{}", flaky.port), "healthy": true, "resolved": true}])
    );
    assert_eq!(s["jwt"], Value::Null, "no [jwt] section");
    assert_eq!(
        (
            &s["rate_limit_store"]["kind"],
            &s["rate_limit_store"]["healthy"]
        ),
        (&json!("memory"), &json!(true))
    );
    assert_eq!(s["bans"], json!([]));
    assert_eq!(named(&s["routes"], "music")["requests_last_minute"], 0);

    // Counts move; the limited client tops the list by its bucket key.
    let codes: Vec<u16> = (0..10)
        .map(|i| gw.get(&format!("/api/music/{i}")).status)
        .collect();
    assert_eq!(codes.iter().filter(|&&c| c == 429).count(), 7, "{codes:?}");
    for _ in 0..4 {
        assert_eq!(gw.get("/about").status, 200);
    }
    // A request is counted when its log line is written, just after its answer.
    let s = status_until(&gw, "every request counted", |s| {
        named(&s["routes"], "music")["requests_last_minute"] == 10
            && named(&s["routes"], "site")["requests_last_minute"] == 4
    });
    let music = named(&s["routes"], "music");
    assert_eq!(music["rate_limited_last_minute"], 7);
    assert!(music["requests_per_second"].as_f64().unwrap() > 0.0);
    assert!(music["client_errors_per_second"].as_f64().unwrap() > 0.0);
    assert!(music["p50_ms"].as_f64().is_some() && music["p99_ms"].as_f64().is_some());
    assert_eq!(music["rate_limit"], "tight");
    assert_eq!(music["auth"], "none");
    let history = music["history"]["requests"].as_array().unwrap();
    assert_eq!(history.len(), 15);
    assert_eq!(history.iter().map(|v| v.as_u64().unwrap()).sum::<u64>(), 10);
    assert_eq!(
        s["rate_limited_clients"][0],
        json!({"client": "127.0.0.1", "refusals": 7, "scope": "ip"})
    );

    // A failing upstream opens its breaker; recovered, a probe closes it.
    flaky.set(503);
    assert_eq!(gw.get("/api/generate/a").status, 503);
    assert_eq!(gw.get("/api/generate/b").status, 503);
    let refused = gw.get("/api/generate/c");
    assert_eq!(
        refused.error_code(),
        "upstream_unavailable",
        "the breaker answered"
    );
    let s = status_until(&gw, "the refusal counted", |s| {
        named(&s["routes"], "generate")["requests_last_minute"] == 3
    });
    let up = named(&s["upstreams"], "flaky");
    assert_eq!(up["breaker"], "open", "{up:#}");
    assert!(up["breaker_changed_at"].is_string());
    let generate = named(&s["routes"], "generate");
    assert!(generate["server_errors_per_second"].as_f64().unwrap() > 0.0);
    flaky.set(200);
    assert!(wait_until(Duration::from_secs(5), || gw
        .get("/api/generate/probe")
        .status
        == 200));
    status_until(&gw, "the breaker closed", |s| {
        named(&s["upstreams"], "flaky")["breaker"] == "closed"
    });

    // A reload error appears, its quoted values cut out; a good reload clears it.
    gw.reload(&config(
        port,
        admin,
        app.port,
        flaky.port,
        "lots-per-s3cr3t-fortnight",
    ));
    let s = status_until(&gw, "the reload error", |s| {
        s["config"]["last_reload"]["result"] == "error"
    });
    let error = s["config"]["last_reload"]["error"].as_str().unwrap();
    assert!(error.contains("rate_limits.tight.per_ip"), "{error}");
    assert!(!error.contains("s3cr3t"), "{error}");
    assert!(s["config"]["last_reload"]["at"].is_string());
    gw.reload(&good);
    status_until(&gw, "the good reload", |s| {
        s["config"]["last_reload"]["result"] == "success"
            && s["config"]["last_reload"]["error"].is_null()
    });
    // The windows are process-wide: a reload keeps the last minute.
    assert_eq!(
        named(&status(&gw)["routes"], "music")["requests_last_minute"],
        10
    );

    // Two blocked requests ban the client; the ban shows with its expiry.
    for q in [
        "%27%20OR%20%271%27=%271",
        "%3Cscript%3Ealert(1)%3C/script%3E",
    ] {
        assert_eq!(gw.get(&format!("/?q={q}")).status, 403);
    }
    assert_eq!(gw.get("/about").status, 403, "banned");
    let s = status_until(&gw, "the banned request counted", |s| {
        s["suspicious"]["rules"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["rule"] == "banned" && r["blocked"] == 1))
    });
    assert_eq!(s["bans_total"], 1);
    assert_eq!(s["bans"][0]["client"], "127.0.0.1");
    let left = s["bans"][0]["expires_in_seconds"].as_u64().unwrap();
    assert!((590..=600).contains(&left), "{left}");
    let rules = s["suspicious"]["rules"].as_array().unwrap();
    let rule = |name: &str| rules.iter().find(|r| r["rule"] == name).unwrap().clone();
    assert_eq!(rule("sql_injection")["blocked"], 1);
    assert_eq!(rule("script_injection")["last_minute"], 1);
    assert_eq!(rule("banned")["blocked"], 1);
    assert_eq!(s["suspicious"]["mode"], "block");
}

const JWT_SECRET: &str = "status-jwt-secret-0123456789abcdef-XYZ";
const API_KEY: &str = "tm-api-key-5f8e2c1d9b7a";
const MEDIA_KEY: &str = "status-media-key-0123456789abcdefghijkl";
const REDIS_PASSWORD: &str = "redis-pass-q7w8e9";
const LEAKY: &str = "leaky-env-value-4d3c2b1a";

fn hs256(sub: &str, key: &str) -> String {
    hs256_token(sub, key)
}

#[test]
fn no_secret_token_or_key_reaches_the_page_or_the_json() {
    let app = Backend::start("app");
    let (port, admin, redis) = (free_port(), free_port(), free_port());
    let config = |rate: &str| {
        server_section(port, admin, "")
            + &format!("[upstreams.topmediai]\npeers = [\"127.0.0.1:{}\"]\nrequest_headers = {{ \"x-api-key\" = \"${{STATUS_API_KEY}}\" }}\n\n", app.port)
            + "[jwt]\nalgorithms = [\"HS256\"]\nsecret = \"${STATUS_JWT_SECRET}\"\nsources = [\"header\", \"cookie:session\"]\n\n"
            + &format!("[rate_limits.default]\nper_ip = \"{rate}\"\n\n")
            + &format!("[rate_limit_store]\nkind = \"redis\"\nurl = \"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis}/\"\n\n")
            + "[suspicious]\nmode = \"block\"\nban_threshold = 1\n\n"
            + &format!("[[routes]]\nname = \"media\"\npath_prefix = \"/api/media\"\nupstream = \"topmediai\"\nauth = \"required\"\nsigned_urls = {{ keys = [\"{MEDIA_KEY}\"], max_ttl = \"1h\" }}\n\n")
            + "[[routes]]\nname = \"generate\"\npath_prefix = \"/api/generate\"\nupstream = \"topmediai\"\nauth = \"required\"\n"
    };
    let gw = Gateway::start(
        "status-secrets",
        port,
        admin,
        &config("3/min"),
        &[
            ("STATUS_JWT_SECRET", JWT_SECRET),
            ("STATUS_API_KEY", API_KEY),
            ("STATUS_LEAKY", LEAKY),
        ],
    );
    let valid = hs256("alice", JWT_SECRET);
    let forged = hs256("mallory", "another-secret-another-secret-0123456789");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let signed = SignedUrls::new(&[MEDIA_KEY], Duration::from_secs(3600))
        .unwrap()
        .sign("/api/media/cover.png", now + 600, Some("alice"))
        .unwrap();
    let basic = "Basic YWxpY2U6b3BlbnNlc2FtZQ==";

    // Traffic with every kind of credential in flight, accepted and refused.
    let bearer = format!("Bearer {valid}");
    let forged_bearer = format!("Bearer {forged}");
    let cookie = format!("session={valid}");
    assert_eq!(
        gw.request("GET", "/api/generate/1", &[("Authorization", &bearer)], b"")
            .status,
        200
    );
    assert_eq!(
        gw.request(
            "GET",
            "/api/generate/2",
            &[("Authorization", &forged_bearer)],
            b""
        )
        .status,
        401
    );
    assert_eq!(
        gw.request("GET", "/api/generate/3", &[("Cookie", &cookie)], b"")
            .status,
        200
    );
    assert_eq!(
        gw.request("GET", "/api/generate/4", &[("Authorization", basic)], b"")
            .status,
        401
    );
    assert_eq!(
        gw.get(&format!("/api/media/cover.png?{signed}")).status,
        200
    );
    assert_eq!(
        gw.request(
            "GET",
            "/api/generate/5",
            &[("Authorization", &bearer), ("x-api-key", API_KEY)],
            b""
        )
        .status,
        429,
        "the fifth request of the minute"
    );
    // A blocked request carrying the token in its query, then a ban.
    let attack = format!("/api/generate/x?token={valid}&q=%27%20OR%20%271%27=%271");
    assert_eq!(gw.get(&attack).status, 403);
    // A reload error that would quote a value from the environment.
    gw.reload(&config("${STATUS_LEAKY}"));
    let s = status_until(&gw, "the reload error", |s| {
        s["config"]["last_reload"]["result"] == "error"
    });
    assert!(s["config"]["last_reload"]["error"]
        .as_str()
        .is_some_and(|e| e.contains("per_ip")));
    assert!(gw.stderr().contains(LEAKY), "the log has the whole error");

    // The figures are there: the scrape below reads a populated page.
    let generate = named(&s["routes"], "generate");
    assert!(
        generate["requests_last_minute"].as_u64().unwrap() >= 5,
        "{generate:#}"
    );
    assert_eq!(s["rate_limit_store"]["kind"], "redis");
    assert_eq!(
        s["rate_limit_store"]["healthy"], false,
        "Redis is unreachable: fallback"
    );
    assert_eq!(s["rate_limit_store"]["fallback"], true);
    assert!(s["rate_limited_clients"][0]["client"] == "127.0.0.1");
    assert_eq!(s["bans_total"], 1);
    let jwt = &s["jwt"];
    assert!(jwt["cache_hit_ratio"].is_number(), "{jwt:#}");
    assert_eq!(jwt["keys"], json!([{"kid": null, "source": "configured"}]));
    assert!(jwt["validations_last_minute"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "invalid_signature"));

    let signature = |token: &str| token.rsplit('.').next().unwrap().to_string();
    let needles = [
        JWT_SECRET.to_string(),
        API_KEY.to_string(),
        MEDIA_KEY.to_string(),
        REDIS_PASSWORD.to_string(),
        LEAKY.to_string(),
        valid.clone(),
        forged.clone(),
        signature(&valid),
        signature(&forged),
        basic.to_string(),
        "YWxpY2U6b3BlbnNlc2FtZQ".to_string(),
        signed.clone(),
        "Bearer".to_string(),
        "bearer ".to_string(),
        "authorization:".to_string(),
    ];
    for path in ["/status", "/status.json", "/status.js", "/status.css"] {
        let resp = gw.admin_get(path).expect("an answer");
        assert_eq!(resp.status, 200, "{path}");
        let body = String::from_utf8_lossy(&resp.body).to_string();
        let headers = format!("{:?}", resp.headers);
        for needle in &needles {
            for text in [&body, &headers] {
                assert!(
                    !text
                        .to_ascii_lowercase()
                        .contains(&needle.to_ascii_lowercase()),
                    "{path} carries `{needle}`"
                );
            }
        }
    }
    let page = String::from_utf8_lossy(&gw.admin_get("/status").unwrap().body).to_string();
    assert!(page.contains("generate") && page.contains("redis") && page.contains("127.0.0.1"));
}

/// A JWKS endpoint answering `status` with RS256 keys of the test key files.
struct Jwks {
    port: u16,
    doc: std::sync::Arc<std::sync::Mutex<(u16, Vec<u8>)>>,
}

impl Jwks {
    fn start() -> Jwks {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let doc = std::sync::Arc::new(std::sync::Mutex::new((503u16, b"{}".to_vec())));
        let d = doc.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let (status, body) = d.lock().unwrap().clone();
                let mut out = &stream;
                let _ = write!(out, "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
                let _ = out.write_all(&body);
            }
        });
        Jwks { port, doc }
    }

    fn serve(&self, status: u16, kids: &[&str]) {
        use jsonwebtoken::jwk::{Jwk, JwkSet};
        let pem = std::fs::read(key_file()).unwrap();
        let key = EncodingKey::from_rsa_pem(&pem).unwrap();
        let keys = kids
            .iter()
            .map(|kid| {
                let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
                jwk.common.key_id = Some(kid.to_string());
                jwk
            })
            .collect();
        *self.doc.lock().unwrap() = (status, serde_json::to_vec(&JwkSet { keys }).unwrap());
    }
}

fn key_file() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../filters/jwt/tests/keys/rsa.key")
}

fn rs256(kid: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    let key = EncodingKey::from_rsa_pem(&std::fs::read(key_file()).unwrap()).unwrap();
    let token = encode(&header, &json!({"sub": "alice", "exp": now + 600}), &key).unwrap();
    format!("Bearer {token}")
}

#[test]
fn the_jwt_section_names_the_jwks_keys_and_the_last_fetch_error() {
    let jwks = Jwks::start();
    jwks.serve(200, &["k1"]);
    let app = Backend::start("app");
    let (port, admin) = (free_port(), free_port());
    let config = server_section(port, admin, "")
        + &format!("[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n", app.port)
        + &format!("[jwt]\nalgorithms = [\"RS256\"]\njwks_url = \"http://127.0.0.1:{}/keys/jwks.json\"\njwks_cooldown = \"0s\"\n\n", jwks.port)
        + "[[routes]]\nname = \"secure\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"required\"\n";
    let gw = Gateway::start("status-jwks", port, admin, &config, &[]);
    let k1 = rs256("k1");
    assert!(wait_until(Duration::from_secs(10), || gw
        .request("GET", "/x", &[("Authorization", &k1)], b"")
        .status
        == 200));
    assert_eq!(
        gw.request("GET", "/y", &[("Authorization", &k1)], b"")
            .status,
        200
    );
    let s = status_until(&gw, "a cached check", |s| {
        s["jwt"]["cache_hit_ratio"].is_number()
    });
    let jwt = &s["jwt"];
    assert_eq!(
        jwt["keys"],
        json!([{"kid": "k1", "source": "jwks"}]),
        "{jwt:#}"
    );
    assert!(jwt["jwks"]["last_success_at"].is_string());
    assert_eq!(jwt["jwks"]["last_error"], Value::Null);
    assert_eq!(jwt["cache_entries"], 1);

    // The endpoint fails; a token with an unknown kid triggers a fetch, which fails.
    jwks.serve(503, &[]);
    assert_eq!(
        gw.request("GET", "/x", &[("Authorization", &rs256("k9"))], b"")
            .status,
        401
    );
    let s = status_until(&gw, "the fetch error", |s| {
        !s["jwt"]["jwks"]["last_error"].is_null()
    });
    let jwt = &s["jwt"];
    assert_eq!(jwt["jwks"]["last_error"], "answered 503");
    assert_eq!(
        jwt["keys"],
        json!([{"kid": "k1", "source": "jwks"}]),
        "the loaded keys stay"
    );
    assert!(jwt["jwks"]["last_fetch_at"].as_str() > jwt["jwks"]["last_success_at"].as_str());
    assert!(jwt["validations_last_minute"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "valid" && c["count"] == 2));
    let text = String::from_utf8_lossy(&gw.admin_get("/status.json").unwrap().body).to_string();
    assert!(!text.contains("jwks.json"), "no URL on the page");
}

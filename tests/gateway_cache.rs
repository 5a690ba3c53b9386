//! The edge cache end to end: the real binary in front of a scriptable origin. Hit and miss
//! with every header, expiry and 304 revalidation, stale-while-revalidate, Vary, the credential
//! rule (two users, two answers), rate limits before the cache, Set-Cookie, Range, and h2.
//! Fills, the lock, stale-if-error, purge and the memory bound: gateway_cache_failure.rs.

#[path = "harness/mod.rs"]
mod harness;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use harness::*;

#[test]
fn a_miss_is_stored_and_then_served_from_the_cache_with_every_header() {
    let origin = counting(&[
        ("cache-control", "max-age=60"),
        ("content-type", "application/json"),
    ]);
    let gw = start(
        "cache-hit",
        origin.port,
        "memory = \"16MiB\"",
        "ttl = \"60s\"",
        "",
        "",
    );

    let miss = gw.get("/api/music/list");
    assert_eq!(miss.status, 200);
    assert_eq!(text(&miss), "/api/music/list#1");
    assert_eq!(
        cache_status(&miss),
        "portcullis; fwd=uri-miss; fwd-status=200; stored"
    );
    let hit = gw.get("/api/music/list");
    assert_eq!((hit.status, text(&hit)), (200, "/api/music/list#1".into()));
    assert!(
        cache_status(&hit).starts_with("portcullis; hit; ttl="),
        "{hit:?}"
    );
    assert!(
        hit.header("age").is_some(),
        "a hit says its age (RFC 9111 section 5.1)"
    );
    // The gateway's own headers are added to hits too, never stored with the object.
    for r in [&miss, &hit] {
        assert!(r.header("x-request-id").is_some_and(|v| !v.is_empty()));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    }
    assert_ne!(miss.header("x-request-id"), hit.header("x-request-id"));
    assert_eq!(origin.hits(), 1);

    // HEAD is answered from the same object; another query, host or method is not.
    let head = gw.request("HEAD", "/api/music/list", &[], b"");
    assert!(cache_status(&head).contains("hit"), "{head:?}");
    assert!(head.body.is_empty());
    assert!(cache_status(&gw.get("/api/music/list?page=2")).contains("fwd=uri-miss"));
    let other_host = gw.request("GET", "/api/music/list", &[("Host", "other.example")], b"");
    assert!(cache_status(&other_host).contains("fwd=uri-miss"));
    let post = gw.request("POST", "/api/music/list", &[], b"{}");
    assert_eq!(cache_status(&post), "portcullis; fwd=method");
    assert_eq!(origin.hits(), 4);
    // Routes without `cache` say nothing about it.
    assert!(gw.get("/elsewhere").header("cache-status").is_none());
    // A HEAD miss fetches and stores the whole GET answer.
    let head_first = gw.request("HEAD", "/api/music/head", &[], b"");
    assert!(head_first.body.is_empty() && cache_status(&head_first).contains("stored"));
    assert_eq!(origin.requests().last().unwrap().method, "GET");
    let after_head = gw.get("/api/music/head");
    assert_eq!(text(&after_head), "/api/music/head#6");
    assert!(cache_status(&after_head).contains("hit"));

    let count = |result: &str| {
        gw.metric(
            "portcullis_cache_requests_total",
            &[("route", "music"), ("result", result)],
        )
    };
    // The log phase runs just after the answer went out.
    assert!(
        wait_until(Duration::from_secs(2), || (
            count("hit"),
            count("miss"),
            count("bypass")
        ) == (3.0, 4.0, 1.0)),
        "{:?}",
        (count("hit"), count("miss"), count("bypass"))
    );
    assert!(gw.exported_metric("portcullis_cache_bytes", &[]) > 0.0);
    let logged = || -> Vec<String> {
        gw.access_log()
            .iter()
            .filter(|l| l["route"] == "music")
            .map(|l| l["cache"].as_str().unwrap_or("none").to_string())
            .collect()
    };
    assert!(wait_until(Duration::from_secs(2), || logged().len() >= 8));
    let logged = logged();
    assert_eq!(
        logged,
        ["miss", "hit", "hit", "miss", "miss", "bypass", "miss", "hit"],
        "the log's cache field"
    );
}

#[test]
fn expiry_refetches_and_a_304_from_the_upstream_refreshes_the_entry() {
    let origin = Origin::start(|req| {
        if req.path == "/api/music/tagged" {
            let headers = [("cache-control", "max-age=1"), ("etag", "\"v1\"")];
            if req.header("if-none-match") == Some("\"v1\"") {
                return OriginResponse::ok("", &headers).status(304);
            }
            return OriginResponse::ok("tagged body", &headers);
        }
        OriginResponse::ok(
            format!("plain {}", req.target),
            &[("cache-control", "max-age=1")],
        )
    });
    let gw = start("cache-expiry", origin.port, "", "ttl = \"60s\"", "", "");

    assert!(cache_status(&gw.get("/api/music/tagged")).contains("stored"));
    assert!(cache_status(&gw.get("/api/music/plain")).contains("stored"));
    // A client's own conditional request is answered 304 from the cache.
    let conditional = gw.request(
        "GET",
        "/api/music/tagged",
        &[("If-None-Match", "\"v1\"")],
        b"",
    );
    assert_eq!(conditional.status, 304);
    assert!(cache_status(&conditional).contains("hit"));
    assert_eq!(origin.hits(), 2);

    std::thread::sleep(Duration::from_millis(1300));
    let revalidated = gw.get("/api/music/tagged");
    assert_eq!(
        (revalidated.status, text(&revalidated)),
        (200, "tagged body".into())
    );
    assert!(
        cache_status(&revalidated).starts_with("portcullis; fwd=stale; fwd-status=304"),
        "{revalidated:?}"
    );
    let asked = origin.requests();
    let last = asked.last().unwrap();
    assert_eq!(
        last.header("if-none-match"),
        Some("\"v1\""),
        "revalidated with the ETag"
    );
    // Refreshed: a hit again, for another second.
    assert!(cache_status(&gw.get("/api/music/tagged")).contains("hit"));

    let expired = gw.get("/api/music/plain");
    assert_eq!(
        cache_status(&expired),
        "portcullis; fwd=stale; fwd-status=200; stored"
    );
    let count = |result: &str| {
        gw.metric(
            "portcullis_cache_requests_total",
            &[("route", "music"), ("result", result)],
        )
    };
    // The log phase runs just after the answer went out.
    assert!(
        wait_until(Duration::from_secs(2), || (
            count("revalidated"),
            count("expired")
        ) == (1.0, 1.0)),
        "{:?}",
        (count("revalidated"), count("expired"))
    );
}

#[test]
fn stale_while_revalidate_answers_at_once_and_refreshes_in_the_background() {
    let origin = Origin::start({
        let n = Arc::new(AtomicUsize::new(0));
        move |_| {
            let i = n.fetch_add(1, Ordering::SeqCst) + 1;
            // The refresh is slow: the stale answer must not wait for it.
            let delay = if i > 1 { 500 } else { 0 };
            OriginResponse::ok(format!("version {i}"), &[("cache-control", "max-age=1")])
                .after(Duration::from_millis(delay))
        }
    });
    let gw = start(
        "cache-swr",
        origin.port,
        "",
        "stale_while_revalidate = \"30s\"",
        "",
        "",
    );
    assert_eq!(text(&gw.get("/api/music/list")), "version 1");
    std::thread::sleep(Duration::from_millis(1300));
    let stale = gw.get("/api/music/list");
    assert_eq!(text(&stale), "version 1");
    assert!(
        cache_status(&stale).contains("detail=stale-while-revalidate"),
        "{:?}",
        cache_status(&stale)
    );
    assert!(
        stale.elapsed < Duration::from_millis(400),
        "waited {:?}",
        stale.elapsed
    );
    assert!(wait_until(Duration::from_secs(3), || {
        let r = gw.get("/api/music/list");
        text(&r) == "version 2" && cache_status(&r).contains("; hit")
    }));
    assert_eq!(origin.hits(), 2);
}

#[test]
fn vary_splits_the_key_and_vary_star_is_never_stored() {
    let n = Arc::new(AtomicUsize::new(0));
    let counter = n.clone();
    let origin = Origin::start(move |req| {
        counter.fetch_add(1, Ordering::SeqCst);
        if req.path == "/api/music/star" {
            return OriginResponse::ok("star", &[("cache-control", "max-age=60"), ("vary", "*")]);
        }
        if req.path == "/api/music/cors" {
            let origin = req.header("origin").unwrap_or("none").to_string();
            let mut r = OriginResponse::ok("cors", &[("cache-control", "max-age=60")]);
            r.headers
                .push(("access-control-allow-origin".into(), origin));
            return r;
        }
        let lang = req.header("accept-language").unwrap_or("none").to_string();
        let enc = req
            .header("accept-encoding")
            .unwrap_or("identity")
            .to_string();
        OriginResponse::ok(
            format!("{lang}/{enc}"),
            &[("cache-control", "max-age=60"), ("vary", "Accept-Language")],
        )
    });
    let gw = start(
        "cache-vary",
        origin.port,
        "",
        "vary = [\"accept-encoding\"]",
        "",
        "",
    );
    let get = |lang: &str, enc: &str| {
        gw.request(
            "GET",
            "/api/music/lang",
            &[("Accept-Language", lang), ("Accept-Encoding", enc)],
            b"",
        )
    };
    let en = get("en", "gzip");
    assert_eq!(text(&en), "en/gzip");
    let fr = get("fr", "gzip");
    assert_eq!(text(&fr), "fr/gzip");
    assert!(cache_status(&fr).contains("fwd=vary-miss"), "{fr:?}");
    assert!(cache_status(&get("en", "gzip")).contains("hit"));
    let fr_again = get("fr", "gzip");
    assert_eq!(text(&fr_again), "fr/gzip");
    assert!(cache_status(&fr_again).contains("hit"));
    // The route's `vary` splits the primary key.
    let br = get("en", "br");
    assert_eq!(text(&br), "en/br");
    assert!(cache_status(&br).contains("fwd=uri-miss"));
    assert_eq!(n.load(Ordering::SeqCst), 3);

    // A backend reflecting the Origin without `Vary: Origin` still varies by it.
    let reflected = |origin: &str| gw.request("GET", "/api/music/cors", &[("Origin", origin)], b"");
    let a = reflected("https://a.example");
    let b = reflected("https://b.example");
    assert_eq!(
        b.header("access-control-allow-origin"),
        Some("https://b.example")
    );
    assert!(
        cache_status(&reflected("https://a.example")).contains("hit"),
        "{a:?}"
    );
    for _ in 0..2 {
        let star = gw.get("/api/music/star");
        assert!(cache_status(&star).contains("detail=vary-star"), "{star:?}");
    }
    assert_eq!(n.load(Ordering::SeqCst), 7);
}

#[test]
fn credentialed_and_private_answers_are_never_shared() {
    // Echoes who asked; `public` only under /api/music/public.
    let origin = Origin::start(|req| {
        let who = req.header("x-user-id").unwrap_or("anonymous").to_string();
        let cookie = req.header("cookie").unwrap_or("").to_string();
        let cc = match req.path.as_str() {
            "/api/music/public" => "public, max-age=60",
            "/api/music/private" => "private, max-age=60",
            _ => "max-age=60",
        };
        OriginResponse::ok(
            format!("{} for {who} {cookie}", req.path),
            &[("cache-control", cc)],
        )
    });
    let jwt = "[jwt]\nalgorithms = [\"HS256\"]\nsecret = \"${E2E_JWT_SECRET}\"\nforward_claims = { sub = \"x-user-id\" }\n\n";
    let gw = start(
        "cache-users",
        origin.port,
        "",
        "",
        "auth = \"optional\"",
        jwt,
    );
    let (alice, bob) = (bearer("alice"), bearer("bob"));
    let as_user =
        |path: &str, token: &str| gw.request("GET", path, &[("Authorization", token)], b"");

    // Two users, two answers: not marked public, so never stored for them.
    for _ in 0..2 {
        let a = as_user("/api/music/me", &alice);
        let b = as_user("/api/music/me", &bob);
        assert_eq!(text(&a), "/api/music/me for alice ");
        assert_eq!(text(&b), "/api/music/me for bob ");
        assert!(cache_status(&a).contains("detail=credentialed"), "{a:?}");
    }
    // `private` is never stored, whoever asks.
    for _ in 0..2 {
        let r = gw.get("/api/music/private");
        assert!(cache_status(&r).contains("detail=private"), "{r:?}");
    }
    // A cookie is a credential too.
    for _ in 0..2 {
        let r = gw.request("GET", "/api/music/cookie", &[("Cookie", "sid=1")], b"");
        assert!(cache_status(&r).contains("detail=credentialed"), "{r:?}");
    }
    assert_eq!(origin.hits(), 8);

    // An anonymous answer is stored, but a credentialed request is not served it.
    assert!(cache_status(&gw.get("/api/music/anon")).contains("stored"));
    assert!(cache_status(&gw.get("/api/music/anon")).contains("hit"));
    let forced = as_user("/api/music/anon", &alice);
    assert_eq!(text(&forced), "/api/music/anon for alice ");
    assert!(cache_status(&forced).contains("fwd=request"), "{forced:?}");
    assert_eq!(
        text(&gw.get("/api/music/anon")),
        "/api/music/anon for anonymous "
    );

    // `public`: one answer for everyone, stored from alice's request.
    let first = as_user("/api/music/public", &alice);
    assert!(cache_status(&first).contains("stored"));
    let shared = as_user("/api/music/public", &bob);
    assert!(cache_status(&shared).contains("hit"));
    assert_eq!(text(&shared), text(&first));
    assert_eq!(origin.hits(), 11);

    // Auth runs before the cache: a bad token on a cached URL is 401, not a hit.
    let refused = gw.request(
        "GET",
        "/api/music/public",
        &[("Authorization", "Bearer nope")],
        b"",
    );
    assert_eq!(refused.status, 401);
    assert_eq!(refused.error_code(), "unauthorized");
    assert!(refused.header("x-request-id").is_some());
}

#[test]
fn rate_limits_run_before_the_cache_and_generated_answers_are_not_stored() {
    let origin = counting(&[("cache-control", "public, max-age=60")]);
    let limits = "[rate_limits.tight]\nper_ip = \"3/min\"\n\n";
    let gw = start(
        "cache-limits",
        origin.port,
        "",
        "",
        "rate_limit = \"tight\"",
        limits,
    );
    let statuses: Vec<u16> = (0..5).map(|_| gw.get("/api/music/list").status).collect();
    assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
    let limited = gw.get("/api/music/list");
    assert_eq!(limited.error_code(), "rate_limited");
    assert!(limited.header("retry-after").is_some());
    assert_eq!(origin.hits(), 1);
}

#[test]
fn set_cookie_answers_are_never_stored() {
    let origin = counting(&[
        ("cache-control", "public, max-age=60"),
        ("set-cookie", "sid=abc"),
    ]);
    let gw = start("cache-cookie", origin.port, "", "", "", "");
    for _ in 0..3 {
        let r = gw.get("/api/music/login");
        assert!(cache_status(&r).contains("detail=set-cookie"), "{r:?}");
        assert_eq!(r.header("set-cookie"), Some("sid=abc"));
    }
    assert_eq!(origin.hits(), 3);
}

#[test]
fn ranges_are_answered_from_the_cache_and_large_objects_stream_through() {
    let track: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let big: Vec<u8> = (0..(2 << 20) as u32).map(|i| (i % 241) as u8).collect();
    let (t, b) = (track.clone(), big.clone());
    let origin = Origin::start(move |req| {
        let headers = [
            ("cache-control", "max-age=60"),
            ("content-type", "audio/mpeg"),
        ];
        if req.path == "/api/music/big.mp3" {
            // This origin honours Range (a miss must never see one for a small object).
            if let Some(range) = req.header("range") {
                let (from, to) = range
                    .trim_start_matches("bytes=")
                    .split_once('-')
                    .map(|(a, z)| (a.parse::<usize>().unwrap(), z.parse::<usize>().unwrap()))
                    .unwrap();
                let mut r = OriginResponse::ok(b[from..=to].to_vec(), &headers).status(206);
                r.headers.push((
                    "content-range".into(),
                    format!("bytes {from}-{to}/{}", b.len()),
                ));
                return r;
            }
            return OriginResponse::ok(b.clone(), &headers);
        }
        OriginResponse::ok(t.clone(), &headers)
    });
    let gw = start(
        "cache-range",
        origin.port,
        "",
        "max_object_size = \"1MiB\"",
        "",
        "",
    );
    let ranged = |path: &str, range: &str| gw.request("GET", path, &[("Range", range)], b"");

    let first = ranged("/api/music/track.mp3", "bytes=0-99");
    assert_eq!(first.status, 206);
    assert_eq!(first.header("content-range"), Some("bytes 0-99/100000"));
    assert_eq!(first.body, track[..100].to_vec());
    assert!(cache_status(&first).contains("stored"), "{first:?}");
    assert!(
        origin.requests()[0].header("range").is_none(),
        "the miss fetched the whole object"
    );
    let second = ranged("/api/music/track.mp3", "bytes=1000-1999");
    assert_eq!(second.status, 206);
    assert_eq!(
        second.header("content-range"),
        Some("bytes 1000-1999/100000")
    );
    assert_eq!(second.body, track[1000..2000].to_vec());
    assert!(
        cache_status(&second).contains("hit"),
        "{:?} {}",
        cache_status(&second),
        gw.stderr()
    );
    let tail = ranged("/api/music/track.mp3", "bytes=-10");
    assert_eq!(
        (tail.status, tail.body.clone()),
        (206, track[track.len() - 10..].to_vec())
    );
    let beyond = ranged("/api/music/track.mp3", "bytes=200000-");
    assert_eq!(beyond.status, 416);
    assert_eq!(origin.hits(), 1);

    // Over max_object_size: streamed through whole, unstored; then remembered, so the next
    // Range goes to the upstream.
    let large = ranged("/api/music/big.mp3", "bytes=0-9");
    assert!(matches!(large.status, 200 | 206), "{}", large.status);
    assert!(
        cache_status(&large).contains("too-large"),
        "{:?} {:?}",
        cache_status(&large),
        origin.requests()
    );
    let again = ranged("/api/music/big.mp3", "bytes=10-19");
    assert_eq!(again.status, 206);
    assert_eq!(again.body, big[10..20].to_vec());
    assert_eq!(
        origin.requests().last().unwrap().header("range"),
        Some("bytes=10-19")
    );
    assert!(
        cache_status(&again).contains("fwd=bypass"),
        "{:?}",
        cache_status(&again)
    );
}

#[test]
fn hits_and_ranges_over_http2() {
    let track: Vec<u8> = (0..50_000u32).map(|i| (i % 233) as u8).collect();
    let t = track.clone();
    let origin =
        Origin::start(move |_| OriginResponse::ok(t.clone(), &[("cache-control", "max-age=60")]));
    let (port, tls_port, admin) = (free_port(), free_port(), free_port());
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\ntls_listen = [\"127.0.0.1:{tls_port}\"]\ntls_cert = \"gw.crt\"\ntls_key = \"gw.key\"\ngrace_period = \"3s\"\n\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n[[routes]]\nname = \"music\"\npath_prefix = \"/api/music\"\nupstream = \"app\"\ncache = {{}}\n",
        origin.port
    );
    let gw = Gateway::start_with_files("cache-h2", port, admin, &config, &[], |dir| {
        make_cert(dir, "gw", "localhost", 30);
    });
    let (miss, body) = curl_h2(tls_port, "/api/music/t.mp3", None);
    assert!(miss.starts_with("http/2 200"), "{miss}");
    assert!(
        miss.contains("cache-status: portcullis; fwd=uri-miss"),
        "{miss}"
    );
    assert_eq!(body, track);
    let (hit, body) = curl_h2(tls_port, "/api/music/t.mp3", None);
    assert!(hit.contains("cache-status: portcullis; hit"), "{hit}");
    assert!(hit.contains("strict-transport-security"), "{hit}");
    assert_eq!(body, track);
    let (ranged, body) = curl_h2(tls_port, "/api/music/t.mp3", Some("100-199"));
    assert!(ranged.starts_with("http/2 206"), "{ranged}");
    assert!(
        ranged.contains("content-range: bytes 100-199/50000"),
        "{ranged}"
    );
    assert_eq!(body, track[100..200].to_vec());
    assert_eq!(origin.hits(), 1);
    drop(gw);
}

/// curl over TLS with HTTP/2: (status line and headers lower-cased, body).
fn curl_h2(port: u16, target: &str, range: Option<&str>) -> (String, Vec<u8>) {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sk", "--http2", "-D", "-", "-o", "-"]);
    if let Some(r) = range {
        cmd.args(["-r", r]);
    }
    let out = cmd
        .arg(format!("https://127.0.0.1:{port}{target}"))
        .output()
        .expect("curl");
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header section");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    (head, raw[split + 4..].to_vec())
}

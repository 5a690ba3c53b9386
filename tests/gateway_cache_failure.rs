//! The edge cache when things go wrong or pile up: a fill outliving its client, 1,000
//! concurrent misses behind the cache lock, stale-if-error with the backend stopped, on a 5xx,
//! a timeout and an open circuit, purge, and the memory bound under a spray of distinct URLs.

#[path = "harness/mod.rs"]
mod harness;

use std::io::{BufReader, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use harness::*;
use serde_json::json;

#[test]
fn a_fill_goes_on_when_its_client_leaves_and_a_growing_body_streams_through() {
    let track: Vec<u8> = (0..200_000u32).map(|i| (i % 239) as u8).collect();
    let t = track.clone();
    let origin = Origin::start(move |req| {
        let headers = [("cache-control", "max-age=60")];
        if req.path == "/api/music/big.json" {
            // JSON without Content-Length, larger than max_object_size.
            let headers = [
                ("cache-control", "max-age=60"),
                ("content-type", "application/json"),
            ];
            return OriginResponse::ok(vec![b' '; 300_000], &headers).chunked();
        }
        if req.path == "/api/music/stream" {
            // A transcoder's pipe: no Content-Length, and more than max_object_size.
            let headers = [
                ("cache-control", "max-age=60"),
                ("content-type", "audio/mpeg"),
            ];
            return OriginResponse::ok(vec![b'z'; 300_000], &headers).chunked();
        }
        OriginResponse::ok(t.clone(), &headers).trickled(Duration::from_millis(300))
    });
    let gw = start(
        "cache-leave",
        origin.port,
        "",
        "max_object_size = \"256KiB\"",
        "",
        "",
    );
    // A player reads its first bytes and goes away before the body has arrived.
    let first = gw.request("GET", "/api/music/slow.mp3", &[("Range", "bytes=0-9")], b"");
    assert_eq!(
        (first.status, first.body.clone()),
        (206, track[..10].to_vec())
    );
    assert!(wait_until(Duration::from_secs(3), || {
        let r = gw.get("/api/music/slow.mp3");
        r.status == 200 && cache_status(&r).contains("hit") && r.body == track
    }));
    assert_eq!(origin.hits(), 1, "the fill finished without its client");

    // Text of unknown length past max_object_size: pingora cuts the first fill at the limit
    // (operations.md), then the URL is remembered and streams through whole.
    let _cut = request_raw(gw.port, "/api/music/big.json");
    let second = gw.get("/api/music/big.json");
    assert_eq!(
        (second.status, second.body.len()),
        (200, 300_000),
        "{:?}",
        cache_status(&second)
    );
    assert!(
        cache_status(&second).contains("fwd=bypass"),
        "{:?}",
        cache_status(&second)
    );

    // Media of unknown length streams through whole, never stored.
    for _ in 0..2 {
        let r = gw.get("/api/music/stream");
        assert_eq!(
            (r.status, r.body.len()),
            (200, 300_000),
            "{:?}",
            cache_status(&r)
        );
        assert!(
            cache_status(&r).contains("detail=unknown-length"),
            "{:?}",
            cache_status(&r)
        );
    }
}

/// One GET whose answer may be cut short: `None` when it is.
fn request_raw(port: u16, target: &str) -> Option<Response> {
    let mut s = connect(port, Duration::from_secs(5));
    s.write_all(
        format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .ok()?;
    read_response(&mut BufReader::new(s), "GET")
}

#[test]
fn a_thousand_concurrent_misses_make_one_upstream_request() {
    let origin = Origin::start(|req| {
        OriginResponse::ok(
            format!("hot {}", req.target),
            &[("cache-control", "max-age=60")],
        )
        .after(Duration::from_millis(400))
    });
    let gw = start(
        "cache-lock",
        origin.port,
        "lock_timeout = \"5s\"",
        "",
        "",
        "",
    );
    let mut streams = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let mut s = connect(gw.port, Duration::from_secs(15));
        s.write_all(
            format!(
                "GET /api/music/hot HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                gw.port
            )
            .as_bytes(),
        )
        .unwrap();
        streams.push(s);
    }
    let mut statuses = std::collections::BTreeMap::new();
    for s in streams {
        let r = read_response(&mut BufReader::new(s), "GET").expect("an answer");
        assert_eq!(text(&r), "hot /api/music/hot");
        *statuses.entry(r.status).or_insert(0) += 1;
    }
    assert_eq!(statuses.get(&200), Some(&1000), "{statuses:?}");
    assert_eq!(
        origin.hits(),
        1,
        "one upstream request for 1,000 concurrent misses"
    );
}

#[test]
fn stale_if_error_serves_the_stale_copy_when_the_backend_is_stopped() {
    let origin = counting(&[("cache-control", "max-age=1")]);
    let origin_port = origin.port;
    let gw = start(
        "cache-stale",
        origin_port,
        "",
        "stale_if_error = \"5m\"",
        "",
        "",
    );
    let stored = gw.get("/api/music/list");
    assert!(cache_status(&stored).contains("stored"));
    drop(origin);
    std::thread::sleep(Duration::from_millis(1300));
    let stale = gw.get("/api/music/list");
    assert_eq!((stale.status, text(&stale)), (200, text(&stored)));
    let status = cache_status(&stale);
    assert!(
        status.contains("fwd=stale") && status.contains("stale-if-error"),
        "{status}"
    );
    assert!(stale.header("x-request-id").is_some());
    // Nothing stored for this one: the contract's 502.
    let missing = gw.get("/api/music/never");
    assert_eq!(
        (missing.status, missing.error_code()),
        (502, "bad_gateway".into())
    );
    assert!(
        cache_status(&missing).contains("fwd=uri-miss"),
        "{:?}",
        cache_status(&missing)
    );
    assert_eq!(
        gw.metric(
            "portcullis_cache_requests_total",
            &[("route", "music"), ("result", "stale")]
        ),
        1.0
    );
    // The backend is back: refreshed.
    let back = Origin::start_on(origin_port, |req| {
        OriginResponse::ok(
            format!("{} again", req.target),
            &[("cache-control", "max-age=60")],
        )
    });
    assert!(wait_until(Duration::from_secs(5), || text(
        &gw.get("/api/music/list")
    )
        == "/api/music/list again"));
    drop(back);
}

#[test]
fn stale_if_error_covers_5xx_answers_timeouts_and_an_open_circuit() {
    let down = Arc::new(AtomicBool::new(false));
    let d = down.clone();
    let origin = Origin::start(move |req| {
        if d.load(Ordering::SeqCst) && req.path == "/api/music/slow" {
            return OriginResponse::ok("late", &[]).after(Duration::from_millis(1500));
        }
        if d.load(Ordering::SeqCst) {
            return OriginResponse::ok("down", &[]).status(503);
        }
        OriginResponse::ok(
            format!("{} ok", req.target),
            &[("cache-control", "max-age=1")],
        )
    });
    let (port, admin) = (free_port(), free_port());
    let config = (server_section(port, admin, "") + ADMIN_TOKEN_LINE)
        + &format!(
            "[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\nread_timeout = \"500ms\"\n\n",
            origin.port
        )
        + "[upstreams.app.circuit_breaker]\nfailure_rate = 0.5\nmin_requests = 6\nwindow = \"30s\"\nopen_for = \"30s\"\nhalf_open_requests = 1\n\n"
        + "[[routes]]\nname = \"music\"\npath_prefix = \"/api/music\"\nupstream = \"app\"\ncache = { stale_if_error = \"5m\" }\n\n"
        + "[[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"app\"\n";
    let gw = Gateway::start("cache-breaker", port, admin, &config, &[]);
    for path in ["/api/music/a", "/api/music/b", "/api/music/slow"] {
        assert!(cache_status(&gw.get(path)).contains("stored"));
    }
    down.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1300));
    // A 503 from the upstream: the stale copy instead.
    let on_5xx = gw.get("/api/music/a");
    assert_eq!(
        (on_5xx.status, text(&on_5xx)),
        (200, "/api/music/a ok".into())
    );
    assert!(
        cache_status(&on_5xx).contains("fwd-status=503"),
        "{:?}",
        cache_status(&on_5xx)
    );
    // Slower than read_timeout: the stale copy, in about the timeout.
    let late = gw.get("/api/music/slow");
    assert_eq!(
        (late.status, text(&late)),
        (200, "/api/music/slow ok".into())
    );
    assert!(
        cache_status(&late).contains("stale-if-error: upstream timeout"),
        "{:?}",
        cache_status(&late)
    );
    assert!(
        late.elapsed < Duration::from_millis(1400),
        "{:?}",
        late.elapsed
    );
    // Open the circuit with failures on the uncached route.
    let _ = gw.get("/x");
    let _ = gw.get("/y");
    let _ = gw.get("/z");
    assert!(wait_until(Duration::from_secs(3), || {
        gw.get("/w").status == 503
            && gw.metric("portcullis_circuit_breaker_state", &[("upstream", "app")]) == 1.0
    }));
    let before = origin.hits();
    let open = gw.get("/api/music/b");
    assert_eq!((open.status, text(&open)), (200, "/api/music/b ok".into()));
    assert!(
        cache_status(&open).contains("circuit open"),
        "{:?}",
        cache_status(&open)
    );
    assert_eq!(
        origin.hits(),
        before,
        "an open circuit sends nothing upstream"
    );
}

#[test]
fn purge_by_path_and_prefix_answers_the_count() {
    let origin = counting(&[("cache-control", "max-age=60")]);
    let gw = start("cache-purge", origin.port, "", "", "", "");
    for target in [
        "/api/music/a?x=1",
        "/api/music/a?x=2",
        "/api/music/b",
        "/api/musicbox",
    ] {
        let r = gw.get(target);
        assert!(
            cache_status(&r).contains("stored") || r.status == 200,
            "{target}"
        );
    }
    let purge = |body: &str| gw.admin_post("/cache/purge", body).expect("an answer");
    let r = purge(r#"{"path": "/api/music/a"}"#);
    assert_eq!((r.status, r.json()), (200, json!({"purged": 2})));
    assert!(cache_status(&gw.get("/api/music/a?x=1")).contains("fwd=uri-miss"));
    assert!(cache_status(&gw.get("/api/music/b")).contains("hit"));
    let r = purge(r#"{"prefix": "/api/music/"}"#);
    assert_eq!((r.status, r.json()), (200, json!({"purged": 2})));
    assert!(cache_status(&gw.get("/api/music/b")).contains("fwd=uri-miss"));
    for bad in [
        "",
        "{}",
        r#"{"path": "/a", "prefix": "/"}"#,
        r#"{"prefix": "x"}"#,
        r#"{"pth": "/"}"#,
    ] {
        let r = purge(bad);
        assert_eq!(
            (r.status, r.error_code()),
            (400, "bad_request".into()),
            "{bad}"
        );
    }
}

#[test]
fn the_memory_bound_holds_under_a_spray_of_distinct_urls() {
    let body = vec![b'x'; 32 * 1024];
    let origin = Origin::start(move |_| {
        OriginResponse::ok(body.clone(), &[("cache-control", "max-age=600")])
    });
    let gw = start("cache-spray", origin.port, "memory = \"4MiB\"", "", "", "");
    let bound = 4.0 * 1024.0 * 1024.0;
    let mut rss = Vec::new();
    for i in 0..3000 {
        let r = gw.get(&format!("/api/music/spray/{i}"));
        assert_eq!(r.status, 200);
        if i % 500 == 499 {
            let bytes = gw.exported_metric("portcullis_cache_bytes", &[]);
            assert!(
                bytes <= bound && bytes > bound / 4.0,
                "{bytes} bytes after {i}"
            );
            rss.push(gw.rss_kib().unwrap());
        }
    }
    // 96 MiB went through a 4 MiB cache: the process stays flat after the first round.
    let (first, last) = (rss[0], *rss.last().unwrap());
    assert!(
        last < first + 8 * 1024,
        "RSS grew from {first} KiB to {last} KiB: {rss:?}"
    );
}

//! The admin listener against the attacks of issue 23, through the real binary and real
//! redis-server processes: a DNS-rebinding page (a foreign `Host`) reads nothing and writes
//! nothing; admin writes are all or nothing (out-of-range ends are refused before anything is
//! written, in memory and in Redis alike); CIDR bans are placed, enforced, listed, shown on
//! the status page, shared by every replica and lifted.

#[path = "harness/mod.rs"]
mod harness;

use std::io::{BufReader, Write};
use std::time::Duration;

use harness::*;
use serde_json::json;

/// `raw` sent to the admin listener as is; the one answer.
fn raw_admin(gw: &Gateway, bytes: &str) -> Response {
    let mut stream = connect(gw.admin, Duration::from_secs(5));
    stream.write_all(bytes.as_bytes()).unwrap();
    read_response(&mut BufReader::new(stream), "GET").expect("an answer")
}

fn get_with_host(gw: &Gateway, path: &str, host: &str) -> Response {
    request(gw.admin, "GET", path, &[("Host", host)], b"")
}

#[track_caller]
fn assert_misdirected(resp: &Response, what: &str) {
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (421, "misdirected_request"),
        "{what}: {:.200}",
        String::from_utf8_lossy(&resp.body)
    );
    assert_eq!(
        resp.header("content-type"),
        Some("application/json"),
        "{what}"
    );
    let body = String::from_utf8_lossy(&resp.body);
    assert!(
        !body.contains("bans") && !body.contains("portcullis_"),
        "{what}: nothing of the listener's state: {body}"
    );
}

// === item 5: DNS rebinding ===

#[test]
fn a_dns_rebinding_page_reads_and_writes_nothing_on_the_admin_listener() {
    let app = Backend::start("app");
    let gw = replica("admin-rebinding", &app, "", WITH_TOKEN);
    let port = gw.admin;
    assert_eq!(
        admin(
            &gw,
            "POST",
            "/bans",
            Some(json!({"client": "203.0.113.9", "for": "10m"}))
        )
        .status,
        201
    );
    // What a rebinding page's fetch() sends: its own name, with or without the port.
    for path in [
        "/status.json",
        "/status",
        "/bans",
        "/revocations",
        "/metrics",
        "/healthz",
    ] {
        for host in [
            format!("evil.example:{port}"),
            "evil.example".to_string(),
            format!("localhost.evil.example:{port}"),
            format!("127.0.0.1.nip.io:{port}"),
            format!("localhost:{}", port.wrapping_add(1)),
        ] {
            assert_misdirected(
                &get_with_host(&gw, path, &host),
                &format!("{path} Host {host}"),
            );
        }
        assert_misdirected(
            &raw_admin(&gw, &format!("GET {path} HTTP/1.0\r\n\r\n")),
            &format!("{path} without Host"),
        );
        assert_misdirected(
            &raw_admin(
                &gw,
                &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: evil.example:{port}\r\nConnection: close\r\n\r\n"),
            ),
            &format!("{path} with two Hosts"),
        );
    }
    // A write with the right token but a foreign Host changes nothing.
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let body = json!({"client": "198.51.100.99", "for": "10m"}).to_string();
    let write = request(
        port,
        "POST",
        "/bans",
        &[
            ("Host", &format!("evil.example:{port}")),
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    );
    assert_misdirected(&write, "POST /bans from a rebinding page");
    assert_eq!(from(&gw, "198.51.100.99", "/").status, 200, "not banned");

    // The listener's own names: its address and localhost, with its port or none.
    for host in [
        format!("127.0.0.1:{port}"),
        "127.0.0.1".to_string(),
        format!("localhost:{port}"),
        "localhost".to_string(),
        "LOCALHOST".to_string(),
    ] {
        let resp = get_with_host(&gw, "/bans", &host);
        assert_eq!(resp.status, 200, "Host {host}");
        assert_eq!(
            resp.json()["bans"][0]["client"],
            "203.0.113.9",
            "Host {host}"
        );
    }
    assert_eq!(
        get_with_host(&gw, "/metrics", &format!("localhost:{port}")).status,
        200
    );
    assert_eq!(
        get_with_host(&gw, "/status.json", &format!("127.0.0.1:{port}")).status,
        200
    );
}

#[test]
fn names_in_admin_hosts_are_answered_too() {
    let app = Backend::start("app");
    let gw = replica(
        "admin-hosts",
        &app,
        "",
        &format!("{WITH_TOKEN}\nhosts = [\"admin.internal\", \"portcullis\"]"),
    );
    let port = gw.admin;
    for host in [
        format!("admin.internal:{port}"),
        "Admin.Internal".to_string(),
        format!("portcullis:{port}"),
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
    ] {
        assert_eq!(
            get_with_host(&gw, "/status.json", &host).status,
            200,
            "Host {host}"
        );
    }
    for host in [
        format!("admin.internal.evil.example:{port}"),
        format!("admin.internal:{}", port.wrapping_add(1)),
        format!("evil.example:{port}"),
    ] {
        assert_misdirected(
            &get_with_host(&gw, "/status.json", &host),
            &format!("Host {host}"),
        );
    }
}

// === item 6: all or nothing ===

/// Out-of-range ends are refused with 400 and leave nothing behind; the boundary is taken.
/// `stored`: what the shared store holds (revocations, bans); (0, 0) for the memory store.
fn out_of_range_writes_leave_nothing(gw: &Gateway, stored: &dyn Fn() -> (u64, u64)) {
    let t = now();
    for (path, body) in [
        (
            "/revocations",
            json!({"jti": "x", "expires": 9_223_372_036_854_775_808u64}),
        ),
        ("/revocations", json!({"jti": "x", "expires": u64::MAX})),
        (
            "/revocations",
            json!({"jti": "x", "expires": t + 3651 * 86_400}),
        ),
        (
            "/revocations",
            json!({"sub": "alice", "issued_before": t, "expires": 9_007_199_254_740_993u64}),
        ),
        (
            "/bans",
            json!({"client": "198.51.100.81", "for": "213503982334d"}),
        ),
        ("/bans", json!({"client": "198.51.100.81", "for": "3651d"})),
        (
            "/bans",
            json!({"client": "198.51.100.0/24", "for": "999999999h"}),
        ),
    ] {
        let resp = admin(gw, "POST", path, Some(body.clone()));
        assert_eq!(
            (resp.status, resp.error_code().as_str()),
            (400, "bad_request"),
            "{path} {body}: {}",
            String::from_utf8_lossy(&resp.body)
        );
    }
    let list = |path: &str, key: &str| {
        request(gw.admin, "GET", path, &[], b"").json()[key]
            .as_array()
            .map_or(usize::MAX, Vec::len)
    };
    assert_eq!(list("/revocations", "revocations"), 0, "nothing held");
    assert_eq!(list("/bans", "bans"), 0, "nothing held");
    assert_eq!(stored(), (0, 0), "nothing in the store");
    assert_eq!(from(gw, "198.51.100.81", "/").status, 200, "not banned");
    assert_eq!(
        api(
            gw,
            &token(json!({"sub": "bob", "jti": "x", "iat": t - 5, "exp": t + 600}))
        ),
        200
    );

    // Ten years ahead is the documented maximum, and is taken.
    let ok = admin(
        gw,
        "POST",
        "/revocations",
        Some(json!({"jti": "far", "expires": t + 3650 * 86_400 - 5})),
    );
    assert_eq!(ok.status, 201, "{}", String::from_utf8_lossy(&ok.body));
    let ok = admin(
        gw,
        "POST",
        "/bans",
        Some(json!({"client": "198.51.100.82", "for": "3650d"})),
    );
    assert_eq!(ok.status, 201, "{}", String::from_utf8_lossy(&ok.body));
    let expires = ok.json()["expires"].as_u64().unwrap();
    assert!(
        expires >= t + 3650 * 86_400 && expires <= now() + 3650 * 86_400 + 1,
        "{expires}"
    );
}

/// A full table answers 507 and the refused entry is nowhere: not listed, not enforced, not
/// in the store (`max_revocations = 3` in the replica).
fn a_full_table_writes_nothing(gw: &Gateway, stored: Option<&dyn Fn() -> (u64, u64)>) {
    for i in 0..2 {
        let r = admin(
            gw,
            "POST",
            "/revocations",
            Some(json!({"jti": format!("fill-{i}")})),
        );
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }
    let refused = admin(
        gw,
        "POST",
        "/revocations",
        Some(json!({"jti": "one-too-many"})),
    );
    assert_eq!(
        refused.status,
        507,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    let listed = request(gw.admin, "GET", "/revocations", &[], b"").json()["revocations"].clone();
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");
    assert!(!listed.to_string().contains("one-too-many"));
    if let Some(stored) = stored {
        assert_eq!(
            stored().0,
            3,
            "the store holds what the replica lists, no more"
        );
    }
    let t = now();
    let refused_token =
        token(json!({"sub": "bob", "jti": "one-too-many", "iat": t - 5, "exp": t + 600}));
    assert_eq!(
        api(gw, &refused_token),
        200,
        "a refused revocation is not enforced"
    );
}

#[test]
fn admin_writes_are_all_or_nothing_with_the_memory_store() {
    let app = Backend::start("app");
    let gw = replica("all-or-nothing-memory", &app, "", WITH_TOKEN);
    out_of_range_writes_leave_nothing(&gw, &|| (0, 0));
    a_full_table_writes_nothing(&gw, None);
}

#[test]
fn admin_writes_are_all_or_nothing_with_redis() {
    let redis = Redis::start(free_port(), &[]);
    let app = Backend::start("app");
    let gw = replica(
        "all-or-nothing-redis",
        &app,
        &redis_store(redis.port, "aon"),
        WITH_TOKEN,
    );
    let port = redis.port;
    let count = move |cmd: &str, key: &str| -> u64 {
        redis_cli(port, &[cmd, key])
            .and_then(|o| o.trim().parse().ok())
            .expect("redis-cli answers")
    };
    let stored = move || {
        (
            count("HLEN", "{aon}:revocations"),
            count("ZCARD", "{aon}:bans"),
        )
    };
    out_of_range_writes_leave_nothing(&gw, &stored);
    assert_eq!(stored(), (1, 1), "the boundary writes reached the store");
    a_full_table_writes_nothing(&gw, Some(&stored));
}

// === item 7: CIDR bans, the status page ===

fn status_bans(gw: &Gateway) -> (Vec<String>, u64) {
    let status = request(gw.admin, "GET", "/status.json", &[], b"").json();
    let clients = status["bans"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|b| b["client"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    (clients, status["bans_total"].as_u64().unwrap_or(u64::MAX))
}

fn listed(gw: &Gateway) -> Vec<String> {
    request(gw.admin, "GET", "/bans", &[], b"").json()["bans"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|b| b["client"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn admin_bans_appear_on_the_status_page() {
    let app = Backend::start("app");
    let gw = replica("status-bans", &app, "", WITH_TOKEN);
    assert_eq!(status_bans(&gw), (vec![], 0));
    let placed = admin(
        &gw,
        "POST",
        "/bans",
        Some(json!({"client": "198.51.100.7", "for": "10m"})),
    );
    assert_eq!(placed.status, 201);
    assert_eq!(status_bans(&gw), (vec!["198.51.100.7".to_string()], 1));
    for client in ["10.20.0.0/16", "2001:db8:5::/48"] {
        let placed = admin(
            &gw,
            "POST",
            "/bans",
            Some(json!({"client": client, "for": "10m"})),
        );
        assert_eq!(
            placed.status,
            201,
            "{client}: {}",
            String::from_utf8_lossy(&placed.body)
        );
    }
    let (mut clients, total) = status_bans(&gw);
    clients.sort();
    assert_eq!(clients, ["10.20.0.0/16", "198.51.100.7", "2001:db8:5::/48"]);
    assert_eq!(total, 3);
    let page =
        String::from_utf8_lossy(&request(gw.admin, "GET", "/status", &[], b"").body).into_owned();
    assert!(
        page.contains("10.20.0.0/16") && page.contains("2001:db8:5::/48"),
        "the HTML page too"
    );
    assert_eq!(
        admin(&gw, "DELETE", "/bans/10.20.0.0%2F16", None).status,
        204
    );
    assert_eq!(status_bans(&gw).1, 2);
}

#[test]
fn cidr_bans_are_enforced_listed_shared_and_lifted_on_every_replica() {
    let redis = Redis::start(free_port(), &[]);
    let app = Backend::start("app");
    let store = redis_store(redis.port, "cidr");
    let a = replica("cidr-a", &app, &store, WITH_TOKEN);
    let b = replica("cidr-b", &app, &store, WITH_TOKEN);

    // Out-of-range prefixes are refused.
    for client in [
        "10.0.0.0/7",
        "0.0.0.0/0",
        "2001:db8::/15",
        "10.0.0.0/33",
        "10.0.0.0/x",
    ] {
        let refused = admin(
            &a,
            "POST",
            "/bans",
            Some(json!({"client": client, "for": "10m"})),
        );
        assert_eq!(refused.status, 400, "{client}");
    }

    // Host bits are cleared: the range as written back is the network.
    let placed = admin(
        &a,
        "POST",
        "/bans",
        Some(json!({"client": "10.1.2.77/24", "for": "10m"})),
    );
    assert_eq!(
        placed.status,
        201,
        "{}",
        String::from_utf8_lossy(&placed.body)
    );
    assert_eq!(placed.json()["client"], "10.1.2.0/24");
    let v6 = admin(
        &b,
        "POST",
        "/bans",
        Some(json!({"client": "2001:db8:ab::/48", "for": "10m"})),
    );
    assert_eq!(v6.status, 201);
    let wide = admin(
        &b,
        "POST",
        "/bans",
        Some(json!({"client": "172.16.0.0/12", "for": "10m"})),
    );
    assert_eq!(wide.status, 201);

    for gw in [&a, &b] {
        for inside in [
            "10.1.2.0",
            "10.1.2.9",
            "10.1.2.255",
            "2001:db8:ab:ffff::1",
            "172.31.0.1",
        ] {
            assert!(
                wait_until(Duration::from_secs(1), || from(gw, inside, "/").status
                    == 403),
                "{inside} banned on {}",
                gw.admin
            );
        }
        for outside in ["10.1.3.1", "10.1.1.255", "2001:db8:ac::1", "172.32.0.1"] {
            assert_eq!(from(gw, outside, "/").status, 200, "{outside} free");
        }
        let mut l = listed(gw);
        l.sort();
        assert_eq!(l, ["10.1.2.0/24", "172.16.0.0/12", "2001:db8:ab::/48"]);
        let (mut shown, total) = status_bans(gw);
        shown.sort();
        assert_eq!((shown, total), (l, 3), "the status page shows them");
    }
    let mut members: Vec<String> = redis_cli(redis.port, &["ZRANGE", "{cidr}:bans", "0", "-1"])
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    members.sort();
    assert_eq!(
        members,
        ["10.1.2.0/24", "172.16.0.0/12", "2001:db8:ab::/48"]
    );

    // Lifted on one replica (the range URL-encoded), free on both.
    assert_eq!(admin(&b, "DELETE", "/bans/10.1.2.0%2F24", None).status, 204);
    assert_eq!(
        admin(&a, "DELETE", "/bans/2001%3Adb8%3Aab%3A%3A%2F48", None).status,
        204
    );
    for gw in [&a, &b] {
        for freed in ["10.1.2.9", "2001:db8:ab:ffff::1"] {
            assert!(
                wait_until(Duration::from_secs(1), || from(gw, freed, "/").status
                    == 200),
                "{freed} free again on {}",
                gw.admin
            );
        }
        assert_eq!(
            from(gw, "172.31.0.1", "/").status,
            403,
            "the other range stays"
        );
        assert!(wait_until(Duration::from_secs(1), || listed(gw) == ["172.16.0.0/12"]));
    }
    assert_eq!(
        admin(&a, "DELETE", "/bans/10.1.2.0%2F24", None).status,
        404,
        "lifted already"
    );

    // A ban an older version stored (an IPv6 network without its length) is its client's
    // /64, and is lifted by that prefix.
    let end = ((now() + 600) * 1000).to_string();
    redis_cli(redis.port, &["ZADD", "{cidr}:bans", &end, "2001:db8:7:7::"]).unwrap();
    redis_cli(redis.port, &["INCR", "{cidr}:bans:version"]).unwrap();
    assert!(wait_until(Duration::from_secs(1), || from(
        &b,
        "2001:db8:7:7::abcd",
        "/"
    )
    .status
        == 403));
    assert!(listed(&b).contains(&"2001:db8:7:7::/64".to_string()));
    assert_eq!(
        admin(&a, "DELETE", "/bans/2001%3Adb8%3A7%3A7%3A%3A%2F64", None).status,
        204
    );
    assert!(wait_until(Duration::from_secs(1), || from(
        &b,
        "2001:db8:7:7::abcd",
        "/"
    )
    .status
        == 200));
    let members = redis_cli(redis.port, &["ZRANGE", "{cidr}:bans", "0", "-1"]).unwrap();
    assert_eq!(members.trim(), "172.16.0.0/12");
}

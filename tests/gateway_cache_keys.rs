//! What the edge cache keys on, attacked: the request's authority over HTTP/1 and h2 (one
//! reading, the one the upstream receives), variants chosen on the request as forwarded (the
//! gateway's claims and forwarding headers, not the client's copies), and GETs with a body,
//! which never meet the cache.

#[path = "harness/mod.rs"]
mod harness;

use std::io::{BufReader, Write};
use std::process::Command;

use harness::*;

/// An origin that builds its page from what it received: the Host, the user claim, the
/// client address and the body.
fn page_builder(headers: &'static [(&'static str, &'static str)]) -> Origin {
    Origin::start(move |req| {
        let body = format!(
            "host={} user={} ip={} body={}",
            req.header("host").unwrap_or("-"),
            req.header("x-user-id").unwrap_or("-"),
            req.header("x-real-ip").unwrap_or("-"),
            String::from_utf8_lossy(&req.body)
        );
        OriginResponse::ok(body, headers)
    })
}

fn tls_gateway(name: &str, origin: &Origin, hosts: &str) -> Gateway {
    let (port, tls_port, admin) = (free_port(), free_port(), free_port());
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\ntls_listen = [\"127.0.0.1:{tls_port}\"]\ntls_cert = \"gw.crt\"\ntls_key = \"gw.key\"\nhosts = [{hosts}]\ngrace_period = \"3s\"\n\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n[cache]\n\n[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n[[routes]]\nname = \"static\"\npath_prefix = \"/static\"\nupstream = \"app\"\ncache = {{ ttl = \"60s\" }}\n",
        origin.port
    );
    let mut gw = Gateway::start_with_files(name, port, admin, &config, &[], |dir| {
        make_cert(dir, "gw", "localhost", 30);
    });
    // The tests below speak h2 to the TLS listener.
    gw.port = tls_port;
    gw
}

/// curl over h2 to the TLS listener, with `url`'s authority connected to it: (head, body).
fn h2(port: u16, url: &str, extra: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sk", "--http2", "-D", "-", "-o", "-"])
        .args(["--connect-to", &format!("::127.0.0.1:{port}")])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_ascii_lowercase(), body.to_string())
}

fn status_of(head: &str) -> &str {
    head.lines()
        .find_map(|l| l.strip_prefix("cache-status: "))
        .unwrap_or("")
}

#[test]
fn over_h2_the_cache_keys_on_the_authority_the_upstream_receives() {
    let origin = page_builder(&[("cache-control", "public, max-age=60")]);
    let gw = tls_gateway(
        "cache-h2-authority",
        &origin,
        "\"music.example.com\", \"www.music.example.com\"",
    );
    let port = gw.port;

    // The page built for the second name is stored under that name...
    let (head, body) = h2(port, "https://www.music.example.com/static/x", &[]);
    assert!(head.starts_with("http/2 200"), "{head}");
    assert!(body.starts_with("host=www.music.example.com "), "{body}");
    assert!(status_of(&head).contains("stored"), "{head}");
    // ... and the canonical name gets its own page, not a hit with the other's.
    let (head, body) = h2(port, "https://music.example.com/static/x", &[]);
    assert!(body.starts_with("host=music.example.com "), "{body}");
    assert!(status_of(&head).contains("fwd=uri-miss"), "{head}");
    // Another port in the authority is another site too.
    let (head, body) = h2(port, "https://music.example.com:9443/static/x", &[]);
    assert!(body.starts_with("host=music.example.com:9443 "), "{body}");
    assert!(status_of(&head).contains("fwd=uri-miss"), "{head}");
    // The scheme's default port is the same site as no port: one entry.
    let (head, body) = h2(port, "https://MUSIC.example.com:443/static/x", &[]);
    assert!(body.starts_with("host=music.example.com "), "{body}");
    assert!(status_of(&head).starts_with("portcullis; hit"), "{head}");
    assert_eq!(origin.hits(), 3);

    // A name outside server.hosts is refused before any cache lookup or store.
    let (head, _) = h2(port, "https://evil.example/static/x", &[]);
    assert!(head.starts_with("http/2 400"), "{head}");
    assert_eq!(origin.hits(), 3, "the refusal never reached the origin");
}

#[test]
fn without_server_hosts_every_authority_has_its_own_entries() {
    let origin = page_builder(&[("cache-control", "max-age=60")]);
    let gw = tls_gateway("cache-h2-any-host", &origin, "");
    let port = gw.port;
    let (head, body) = h2(port, "https://evil.example/static/y", &[]);
    assert!(body.starts_with("host=evil.example "), "{body}");
    assert!(status_of(&head).contains("stored"), "{head}");
    let (head, body) = h2(port, "https://music.example.com/static/y", &[]);
    assert!(body.starts_with("host=music.example.com "), "{body}");
    assert!(!status_of(&head).contains("hit"), "{head}");
    assert_eq!(origin.hits(), 2);
}

#[test]
fn http1_hosts_are_read_once_normalised_for_the_key_and_the_upstream() {
    let origin = page_builder(&[("cache-control", "max-age=60")]);
    let gw = start(
        "cache-h1-authority",
        origin.port,
        "",
        "ttl = \"60s\"",
        "",
        "",
    );
    let first = gw.request(
        "GET",
        "/api/music/z",
        &[("Host", "Music.Example.com:80")],
        b"",
    );
    assert!(
        text(&first).starts_with("host=music.example.com "),
        "{}",
        text(&first)
    );
    assert!(cache_status(&first).contains("stored"));
    let again = gw.request("GET", "/api/music/z", &[("Host", "music.example.com")], b"");
    assert!(
        cache_status(&again).starts_with("portcullis; hit"),
        "{again:?}"
    );
    let other_port = gw.request(
        "GET",
        "/api/music/z",
        &[("Host", "music.example.com:8080")],
        b"",
    );
    assert!(text(&other_port).starts_with("host=music.example.com:8080 "));
    assert!(cache_status(&other_port).contains("fwd=uri-miss"));
    assert_eq!(origin.hits(), 2);
}

#[test]
fn variants_are_chosen_on_the_request_as_forwarded() {
    let origin = page_builder(&[
        ("cache-control", "public, max-age=60"),
        ("vary", "X-User-Id, X-Real-IP"),
    ]);
    let jwt = format!(
        "[jwt]\nalgorithms = [\"HS256\"]\nsecret = \"${{E2E_JWT_SECRET}}\"\nforward_claims = {{ sub = \"x-user-id\" }}\n\n"
    );
    let gw = start(
        "cache-vary-forwarded",
        origin.port,
        "",
        "ttl = \"60s\"",
        "auth = \"optional\"",
        &jwt,
    );
    let alice = [("Authorization", bearer("alice"))];
    let as_alice: Vec<(&str, &str)> = alice.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let first = gw.request("GET", "/api/music/home", &as_alice, b"");
    assert!(text(&first).contains("user=alice"), "{}", text(&first));
    assert!(cache_status(&first).contains("stored"), "{first:?}");
    assert!(cache_status(&gw.request("GET", "/api/music/home", &as_alice, b"")).contains("hit"));

    // Bob, an anonymous visitor, and one who sends alice's claim header himself: each is
    // another variant as the backend saw it, never alice's page.
    let bob = bearer("bob");
    for (headers, user) in [
        (vec![("Authorization", bob.as_str())], "bob"),
        (vec![], "-"),
        (vec![("X-User-Id", "alice")], "-"),
        (
            vec![("X_User_Id", "alice"), ("X-Real-IP", "127.0.0.1")],
            "-",
        ),
    ] {
        let r = gw.request("GET", "/api/music/home", &headers, b"");
        assert!(
            text(&r).contains(&format!("user={user} ")),
            "{headers:?}: {}",
            text(&r)
        );
        assert!(!text(&r).contains("user=alice"), "{headers:?}");
    }
}

#[test]
fn a_routes_vary_and_the_client_address_use_the_forwarded_values() {
    let origin = page_builder(&[
        ("cache-control", "public, max-age=60"),
        ("vary", "X-Real-IP"),
    ]);
    let (port, admin) = (free_port(), free_port());
    // The test client plays a trusted proxy, so each request names its client address.
    let config = server_section(port, admin, "trusted_proxies = [\"127.0.0.1/32\"]\n")
        + "[cache]\n\n"
        + &format!("[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n", origin.port)
        + "[jwt]\nalgorithms = [\"HS256\"]\nsecret = \"${E2E_JWT_SECRET}\"\nforward_claims = { sub = \"x-user-id\" }\n\n"
        + "[[routes]]\nname = \"music\"\npath_prefix = \"/api/music\"\nupstream = \"app\"\nauth = \"optional\"\ncache = { ttl = \"60s\", vary = [\"x-user-id\"] }\n";
    let gw = Gateway::start(
        "cache-vary-route",
        port,
        admin,
        &config,
        &[("E2E_JWT_SECRET", SECRET)],
    );
    let alice = bearer("alice");
    let get = |headers: &[(&str, &str)]| gw.request("GET", "/api/music/me", headers, b"");

    let first = get(&[
        ("Authorization", &alice),
        ("X-Forwarded-For", "203.0.113.1"),
    ]);
    assert!(
        text(&first).contains("user=alice ip=203.0.113.1 "),
        "{}",
        text(&first)
    );
    assert!(cache_status(&first).contains("stored"), "{first:?}");
    // The route's `vary` reads the claim the backend receives: an anonymous visitor, with or
    // without alice's name in his own X-User-Id, is another variant.
    for headers in [
        &[("X-Forwarded-For", "203.0.113.1")][..],
        &[("X-Forwarded-For", "203.0.113.1"), ("X-User-Id", "alice")],
    ] {
        let r = get(headers);
        assert!(text(&r).contains("user=- "), "{headers:?}: {}", text(&r));
    }
    // The upstream's `Vary: X-Real-IP` reads the address the gateway sends: alice from
    // another address is another variant, whatever X-Real-IP she sends herself.
    for headers in [
        &[
            ("Authorization", alice.as_str()),
            ("X-Forwarded-For", "203.0.113.2"),
        ][..],
        &[
            ("Authorization", alice.as_str()),
            ("X-Forwarded-For", "203.0.113.3"),
            ("X-Real-IP", "203.0.113.1"),
        ],
    ] {
        let r = get(headers);
        assert!(
            !text(&r).contains("ip=203.0.113.1 "),
            "{headers:?}: {}",
            text(&r)
        );
        assert!(!cache_status(&r).contains("hit"), "{headers:?}: {r:?}");
    }
    let again = get(&[
        ("Authorization", &alice),
        ("X-Forwarded-For", "203.0.113.1"),
    ]);
    assert!(cache_status(&again).contains("hit"), "{again:?}");
    assert!(text(&again).contains("user=alice ip=203.0.113.1 "));
}

#[test]
fn a_get_with_a_body_never_meets_the_cache() {
    let origin = page_builder(&[("cache-control", "max-age=60")]);
    let gw = start("cache-fat-get", origin.port, "", "ttl = \"60s\"", "", "");
    let form = [("Content-Type", "application/x-www-form-urlencoded")];

    let fat = gw.request("GET", "/api/music/x", &form, b"callback=evil");
    assert!(
        text(&fat).contains("body=callback=evil"),
        "it reached the backend"
    );
    assert_eq!(cache_status(&fat), "portcullis; fwd=bypass; detail=body");
    let plain = gw.get("/api/music/x");
    assert!(!text(&plain).contains("evil"), "{}", text(&plain));
    assert!(cache_status(&plain).contains("stored"), "{plain:?}");
    // Once something is stored, a GET with a body is still not served from it, nor stored.
    let fat_again = gw.request("GET", "/api/music/x", &form, b"callback=evil");
    assert!(text(&fat_again).contains("evil"));
    assert_eq!(
        cache_status(&fat_again),
        "portcullis; fwd=bypass; detail=body"
    );
    let head_with_body = gw.request("HEAD", "/api/music/x", &form, b"callback=evil");
    assert_eq!(
        cache_status(&head_with_body),
        "portcullis; fwd=bypass; detail=body"
    );
    let hit = gw.get("/api/music/x");
    assert!(cache_status(&hit).contains("hit"), "{hit:?}");
    assert!(!text(&hit).contains("evil"));
    // A chunked body is a body too.
    let mut stream = connect(gw.port, std::time::Duration::from_secs(5));
    stream
        .write_all(
            b"GET /api/music/x HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nd\r\ncallback=evil\r\n0\r\n\r\n",
        )
        .unwrap();
    let chunked = read_response(&mut BufReader::new(stream), "GET").expect("an answer");
    assert_eq!(
        cache_status(&chunked),
        "portcullis; fwd=bypass; detail=body"
    );
    // Every request with a body reached the origin; only the plain GET was answered from
    // the cache. (The origin reads Content-Length bodies only: it sees the chunked one's
    // head, then its body as garbage, which is no concern of the gateway's.)
    let seen: Vec<(String, usize)> = origin
        .requests()
        .iter()
        .map(|r| (r.method.clone(), r.body.len()))
        .take(5)
        .collect();
    let with_body = |m: &str| (m.to_string(), 13);
    assert_eq!(
        seen,
        [
            with_body("GET"),
            ("GET".into(), 0),
            with_body("GET"),
            with_body("HEAD"),
            ("GET".into(), 0)
        ],
    );
}

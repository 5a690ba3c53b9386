//! Routing and forwarding through the real binary: prefixes on segment boundaries, case,
//! rewrites, method filters, path normalisation, forwarded headers and request ids.

#[path = "harness/mod.rs"]
mod harness;

use harness::*;

struct Rig {
    gw: Gateway,
    _a: Backend,
    _b: Backend,
}

fn rig(trusted: &str) -> Rig {
    let a = Backend::start_with(
        "a",
        std::time::Duration::ZERO,
        &[("Server", "Express"), ("X-Powered-By", "Express")],
    );
    let b = Backend::start("b");
    let (port, admin) = (free_port(), free_port());
    let config = server_section(port, admin, trusted)
        + &format!("[upstreams.a]\npeers = [\"127.0.0.1:{}\"]\nrequest_headers = {{ \"x-api-key\" = \"${{PC_TEST_KEY}}\" }}\n\n", a.port)
        + &format!("[upstreams.b]\npeers = [\"127.0.0.1:{}\"]\n\n", b.port)
        // Detection off: these tests are about routing and normalisation alone (with the
        // default `block`, a raw `../` is refused as path traversal before routing).
        + "[suspicious]\nmode = \"off\"\n\n"
        + "[[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"a\"\n\n"
        + "[[routes]]\nname = \"music\"\npath_prefix = \"/api/music\"\nupstream = \"b\"\n\n"
        + "[[routes]]\nname = \"generate\"\npath_prefix = \"/api/generate\"\nupstream = \"b\"\nmethods = [\"POST\"]\nreplace_prefix = \"/v1/music\"\n";
    let gw = Gateway::start(
        "routing",
        port,
        admin,
        &config,
        &[("PC_TEST_KEY", "injected-secret-key")],
    );
    Rig { gw, _a: a, _b: b }
}

fn backend(r: &Response) -> String {
    r.json()["backend"].as_str().unwrap_or("none").to_string()
}

#[test]
fn the_longest_whole_segment_prefix_wins_ignoring_case() {
    let r = rig("");
    for (target, want) in [
        ("/api/music/1", "b"),
        ("/api/music", "b"),
        ("/api/musicx", "a"),
        ("/api/x", "a"),
        ("/API/MUSIC/2", "b"),
    ] {
        let resp = r.gw.get(target);
        assert_eq!(
            (resp.status, backend(&resp)),
            (200, want.to_string()),
            "{target}"
        );
    }
}

#[test]
fn path_tricks_are_resolved_before_routing_and_escapes_refused() {
    let r = rig("");
    let resp = r.gw.get("/api/images/../music/1");
    assert_eq!(backend(&resp), "b");
    assert_eq!(
        resp.json()["path"],
        "/api/music/1",
        "the upstream sees the normalised path"
    );
    let resp = r.gw.get("/api//%6Dusic/2");
    assert_eq!(backend(&resp), "b");
    for bad in [
        "/../etc/passwd",
        "/api/%2e%2e/%2e%2e/etc",
        "/api%2Fmusic",
        "/api%5Cmusic",
        "/api%00x",
    ] {
        let resp = r.gw.get(bad);
        assert_eq!(
            (resp.status, resp.error_code()),
            (400, "bad_request".to_string()),
            "{bad}"
        );
        assert!(resp.header("x-request-id").is_some());
    }
}

#[test]
fn no_route_and_wrong_method_get_json_errors() {
    let r = rig("");
    let resp = r.gw.get("/nothing");
    assert_eq!(
        (resp.status, resp.error_code()),
        (404, "no_route".to_string())
    );
    assert!(resp.header("x-request-id").is_some());
    let resp = r.gw.get("/api/generate/x");
    assert_eq!(
        (resp.status, resp.error_code()),
        (405, "method_not_allowed".to_string())
    );
    assert_eq!(resp.header("allow"), Some("POST"));
}

#[test]
fn replace_prefix_rewrites_and_keeps_the_query() {
    let r = rig("");
    let resp = r.gw.request("POST", "/api/generate/track?x=1", &[], b"{}");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["target"], "/v1/music/track?x=1");
}

#[test]
fn forwarding_headers_and_spoofed_xff_from_an_untrusted_peer() {
    let r = rig("");
    let resp = r.gw.request(
        "GET",
        "/api/music/h",
        &[("X-Forwarded-For", "6.6.6.6"), ("X-Real-IP", "6.6.6.6")],
        b"",
    );
    assert_eq!(
        resp.echoed_header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        resp.echoed_header("x-real-ip").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        resp.echoed_header("x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_eq!(
        resp.echoed_header("x-forwarded-host"),
        Some(format!("127.0.0.1:{}", r.gw.port))
    );
}

#[test]
fn a_trusted_proxy_chain_gives_the_rightmost_untrusted_client() {
    let r = rig("trusted_proxies = [\"127.0.0.1/32\"]\n");
    let resp = r.gw.request(
        "GET",
        "/api/music/h",
        &[("X-Forwarded-For", "6.6.6.6, 198.51.100.7")],
        b"",
    );
    assert_eq!(
        resp.echoed_header("x-real-ip").as_deref(),
        Some("198.51.100.7")
    );
    assert_eq!(
        resp.echoed_header("x-forwarded-for").as_deref(),
        Some("6.6.6.6, 198.51.100.7, 127.0.0.1")
    );
}

#[test]
fn request_ids_are_kept_when_sane_and_generated_otherwise() {
    let r = rig("");
    let resp = r.gw.request(
        "GET",
        "/api/music/id",
        &[("x-request-id", "trace-abc-123")],
        b"",
    );
    assert_eq!(
        resp.echoed_header("x-request-id").as_deref(),
        Some("trace-abc-123")
    );
    assert_eq!(resp.header("x-request-id"), Some("trace-abc-123"));
    let long = "a".repeat(200);
    for bad in ["bad id \"x\"", long.as_str()] {
        let resp =
            r.gw.request("GET", "/api/music/id", &[("x-request-id", bad)], b"");
        let seen = resp.echoed_header("x-request-id").unwrap_or_default();
        assert!(!seen.is_empty() && seen != bad);
        assert_eq!(resp.header("x-request-id"), Some(seen.as_str()));
    }
}

#[test]
fn hop_by_hop_and_identity_of_the_backend_are_stripped_and_keys_injected() {
    let r = rig("");
    let resp = r.gw.request(
        "GET",
        "/api/x",
        &[
            ("Connection", "keep-alive, X-Hop"),
            ("X-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("x-api-key", "client"),
            ("X-API-Key", "client2"),
        ],
        b"",
    );
    assert_eq!(resp.status, 200);
    assert!(resp.echoed_header("x-hop").is_none());
    assert!(resp.echoed_header("keep-alive").is_none());
    let keys: Vec<String> = resp
        .echoed_list()
        .into_iter()
        .filter(|(n, _)| n == "x-api-key")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(keys, vec!["injected-secret-key".to_string()]);
    assert!(resp.header("x-powered-by").is_none());
    assert!(resp.header("server").is_none_or(|s| !s.contains("Express")));
    // The secret is absent from the logs only if the request was logged at all.
    let id = resp
        .header("x-request-id")
        .expect("a request id")
        .to_string();
    assert!(
        wait_until(std::time::Duration::from_secs(5), || r
            .gw
            .access_log()
            .iter()
            .any(|e| e["request_id"] == id.as_str())),
        "the request's access-log line is written"
    );
    assert!(
        !r.gw.stdout().contains("injected-secret-key")
            && !r.gw.stderr().contains("injected-secret-key")
    );
}

#[test]
fn security_headers_on_proxied_and_generated_responses_and_no_hsts_over_http() {
    let r = rig("");
    for resp in [
        r.gw.get("/api/music/1"),
        r.gw.get("/nothing"),
        r.gw.get("/../x"),
    ] {
        assert_eq!(
            resp.header("x-content-type-options"),
            Some("nosniff"),
            "{}",
            resp.status
        );
        assert_eq!(resp.header("x-frame-options"), Some("SAMEORIGIN"));
        assert_eq!(resp.header("referrer-policy"), Some("no-referrer"));
        assert!(resp
            .header("content-security-policy")
            .is_some_and(|v| v.contains("default-src 'self'")));
        assert!(resp.header("strict-transport-security").is_none());
    }
}

#[test]
fn security_header_overrides_replace_and_remove() {
    let backend = Backend::start_with(
        "weak",
        std::time::Duration::ZERO,
        &[("X-Frame-Options", "ALLOWALL")],
    );
    let (port, admin) = (free_port(), free_port());
    let config = server_section(port, admin, "")
        + &format!("[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n", backend.port)
        + "[security_headers]\n\"content-security-policy\" = \"default-src 'none'\"\n\"referrer-policy\" = \"\"\n\n"
        + "[[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"app\"\n";
    let gw = Gateway::start("headers", port, admin, &config, &[]);
    let resp = gw.get("/page");
    assert_eq!(
        resp.header("content-security-policy"),
        Some("default-src 'none'")
    );
    assert!(resp.header("referrer-policy").is_none());
    assert_eq!(
        resp.header("x-frame-options"),
        Some("SAMEORIGIN"),
        "the backend cannot weaken it"
    );
}

#[test]
fn oversized_header_sections_get_431_and_unknown_hosts_400() {
    let backend = Backend::start("app");
    let (port, admin) = (free_port(), free_port());
    let config = server_section(port, admin, "hosts = [\"music.example.com\"]\nmax_request_header_bytes = 2048\nmax_request_headers = 20\n")
        + &format!("[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n", backend.port)
        + "[[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"app\"\n";
    let gw = Gateway::start("limits", port, admin, &config, &[]);
    let host = [("Host", "music.example.com")];
    assert_eq!(gw.request("GET", "/ok", &host, b"").status, 200);
    let big = "x".repeat(3000);
    let resp = gw.request(
        "GET",
        "/big",
        &[("Host", "music.example.com"), ("X-Big", big.as_str())],
        b"",
    );
    assert_eq!(
        (resp.status, resp.error_code()),
        (431, "request_header_fields_too_large".to_string())
    );
    let many: Vec<(String, String)> = (0..25)
        .map(|i| (format!("x-h{i}"), "1".to_string()))
        .collect();
    let mut headers: Vec<(&str, &str)> =
        many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    headers.push(("Host", "music.example.com"));
    assert_eq!(gw.request("GET", "/many", &headers, b"").status, 431);
    let resp = gw.request("GET", "/other", &[("Host", "evil.example.net")], b"");
    assert_eq!(
        (resp.status, resp.error_code()),
        (400, "bad_request".to_string())
    );
    assert_eq!(
        backend.count(),
        1,
        "only the accepted request reached the backend"
    );
}

#[test]
fn plain_http_is_redirected_to_the_canonical_https_origin() {
    let backend = Backend::start("app");
    let (port, admin) = (free_port(), free_port());
    let config = server_section(
        port,
        admin,
        "https_redirect = true\nhttps_port = 8443\nhosts = [\"music.example.com\"]\n",
    ) + &format!(
        "[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n",
        backend.port
    ) + "[[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"app\"\n";
    let gw = Gateway::start("redirect", port, admin, &config, &[]);
    let host = [("Host", "music.example.com")];
    let get = gw.request("GET", "/app/x?y=1", &host, b"");
    assert_eq!(
        (get.status, get.header("location")),
        (301, Some("https://music.example.com:8443/app/x?y=1"))
    );
    assert!(
        get.header("x-request-id").is_some() && get.header("strict-transport-security").is_none()
    );
    assert_eq!(get.header("x-frame-options"), Some("SAMEORIGIN"));
    assert_eq!(gw.request("POST", "/app/x", &host, b"{}").status, 308);
    let foreign = gw.request("GET", "/x", &[("Host", "evil.com")], b"");
    assert_eq!(
        foreign.header("location"),
        Some("https://music.example.com:8443/x"),
        "never an open redirect"
    );
    let acme = gw.request("GET", "/.well-known/acme-challenge/tok", &host, b"");
    assert_eq!(acme.status, 200, "ACME challenges are proxied");
    assert_eq!(gw.metric("portcullis_https_redirects_total", &[]), 3.0);
}

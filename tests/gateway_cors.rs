//! CORS through the real binary: preflights answered by the gateway, actual requests, and
//! look-alike origins.

#[path = "harness/mod.rs"]
mod harness;

use harness::*;

#[test]
fn preflights_actual_requests_and_look_alikes() {
    let app = Backend::start("app");
    let (port, admin) = (free_port(), free_port());
    let config = server_section(port, admin, "")
        + &format!("[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n", app.port)
        + "[cors]\nallow_origins = [\"https://music.example.com\", \"https://*.example.com\"]\nallow_methods = [\"GET\", \"POST\"]\nallow_headers = [\"authorization\", \"content-type\"]\nmax_age = \"10m\"\n\n"
        + "[[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"app\"\n";
    let gw = Gateway::start("cors", port, admin, &config, &[]);
    let origin = "https://music.example.com";

    let pre = gw.request(
        "OPTIONS",
        "/api/songs",
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        b"",
    );
    assert_eq!(pre.status, 204);
    assert_eq!(pre.header("access-control-allow-origin"), Some(origin));
    assert!(pre
        .header("access-control-allow-methods")
        .is_some_and(|m| m.contains("POST")));
    assert_eq!(pre.header("access-control-max-age"), Some("600"));
    assert_eq!(pre.header("x-content-type-options"), Some("nosniff"));

    let refused = gw.request(
        "OPTIONS",
        "/api/songs",
        &[
            ("Origin", "https://evil.com"),
            ("Access-Control-Request-Method", "POST"),
        ],
        b"",
    );
    assert_eq!(
        (refused.status, refused.error_code()),
        (403, "forbidden".to_string())
    );
    assert!(refused.header("access-control-allow-origin").is_none());
    assert_eq!(app.count(), 0, "preflights never reach the upstream");

    let actual = gw.request("GET", "/api/songs", &[("Origin", origin)], b"");
    assert_eq!(actual.header("access-control-allow-origin"), Some(origin));
    assert!(actual
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("vary") && v.contains("Origin")));
    for bad in [
        "https://evil-example.com",
        "https://example.com.evil.net",
        "null",
        "https://a.example.com.evil.net",
        "http://a.example.com",
    ] {
        let resp = gw.request("GET", "/api/songs", &[("Origin", bad)], b"");
        assert_eq!(resp.status, 200);
        assert!(
            resp.header("access-control-allow-origin").is_none(),
            "{bad}"
        );
    }
    let sub = gw.request(
        "GET",
        "/api/songs",
        &[("Origin", "https://a.example.com")],
        b"",
    );
    assert_eq!(
        sub.header("access-control-allow-origin"),
        Some("https://a.example.com")
    );
}

#[test]
fn refusals_a_browser_reads_carry_the_cors_headers_too() {
    let app = Backend::start("app");
    let (port, admin) = (free_port(), free_port());
    let config = server_section(port, admin, "")
        + &format!("[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n", app.port)
        + "[jwt]\nalgorithms = [\"HS256\"]\nsecret = \"cors-refusals-secret-0123456789abcdef\"\n\n"
        + "[cors]\nallow_origins = [\"https://music.example.com\"]\n\n"
        + "[[routes]]\nname = \"account\"\npath_prefix = \"/api/account\"\nupstream = \"app\"\nauth = \"required\"\n\n"
        + "[[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n";
    let gw = Gateway::start("cors-refusals", port, admin, &config, &[]);
    let origin = "https://music.example.com";
    for (what, target, status) in [
        ("suspicious", "/?q=%3Cscript%3E", 403),
        ("unauthenticated", "/api/account/me", 401),
        ("an encoded slash", "/a%2Fb", 400),
    ] {
        let resp = gw.request("GET", target, &[("Origin", origin)], b"");
        assert_eq!(resp.status, status, "{what}");
        assert_eq!(
            resp.header("access-control-allow-origin"),
            Some(origin),
            "{what}"
        );
        assert!(
            resp.header("vary").is_some_and(|v| v.contains("Origin")),
            "{what}"
        );
    }
    let foreign = gw.request(
        "GET",
        "/?q=%3Cscript%3E",
        &[("Origin", "https://evil.example")],
        b"",
    );
    assert_eq!(foreign.status, 403);
    assert_eq!(foreign.header("access-control-allow-origin"), None);
}

//! What a client plants for the backend, the log or the limits to believe, through the real
//! binary: copies of the headers the gateway sets (in every spelling, `_` for `-` included),
//! host overrides, addresses rotated inside one IPv6 prefix, and values that would split a
//! log line.

#[path = "harness/mod.rs"]
mod harness;

use std::time::Duration;

use harness::*;

#[test]
fn client_copies_of_gateway_headers_are_stripped_in_every_spelling() {
    let (_app, gw) = protected_gateway("twins", "", "");
    let auth = format!("Bearer {}", hardening_token("alice"));
    let resp = gw.request(
        "GET",
        "/api/images/1",
        &[
            ("Authorization", &auth),
            ("X_User_Id", "mallory"),
            ("x-user_id", "mallory"),
            ("X-USER-ID", "mallory"),
            ("X_Real_IP", "6.6.6.6"),
            ("X_Forwarded_For", "6.6.6.6"),
            ("x-forwarded_proto", "https"),
            ("X_Request_Id", "planted"),
            ("X_Api_Key", "stolen"),
            ("X-Api-Key", "stolen"),
            ("X_Custom", "kept-only-when-allowed"),
            ("X-Original-URL", "/admin"),
            ("X-Rewrite-Url", "/admin"),
            ("X-HTTP-Method-Override", "DELETE"),
            ("Forwarded", "for=6.6.6.6"),
            ("True-Client-IP", "6.6.6.6"),
            ("CF-Connecting-IP", "6.6.6.6"),
            ("X-Forwarded-Port", "1"),
        ],
        b"",
    );
    assert_eq!(resp.status, 200);
    let names: Vec<String> = resp.echoed_list().into_iter().map(|(n, _)| n).collect();
    assert!(!names.is_empty(), "the backend listed what it received");
    assert!(
        names.iter().all(|n| !n.contains('_')),
        "underscored names reached the backend: {names:?}"
    );
    for gone in [
        "x-original-url",
        "x-rewrite-url",
        "x-http-method-override",
        "forwarded",
        "true-client-ip",
        "cf-connecting-ip",
        "x-forwarded-port",
    ] {
        assert_eq!(resp.echoed_header(gone), None, "{gone}");
    }
    assert_eq!(resp.echoed_header("x-user-id").as_deref(), Some("alice"));
    assert_eq!(
        resp.echoed_header("x-api-key").as_deref(),
        Some("gateway-key")
    );
    assert_eq!(
        resp.echoed_header("x-real-ip").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        resp.echoed_header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        resp.echoed_header("x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_ne!(
        resp.echoed_header("x-request-id").as_deref(),
        Some("planted")
    );
    let single: Vec<&String> = names.iter().filter(|n| *n == "x-user-id").collect();
    assert_eq!(single.len(), 1, "one verified identity, no second copy");
}

#[test]
fn underscore_headers_drop_reject_and_allow() {
    let auth = format!("Bearer {}", hardening_token("alice"));
    let headers = [
        ("Authorization", auth.as_str()),
        ("X_Custom", "v"),
        ("X_User_Id", "mallory"),
    ];

    let (_app, allow) = protected_gateway("us-allow", "underscore_headers = \"allow\"\n", "");
    let resp = allow.request("GET", "/api/images/1", &headers, b"");
    assert_eq!(
        resp.echoed_header("x_custom").as_deref(),
        Some("v"),
        "allow forwards other names"
    );
    assert_eq!(resp.echoed_header("x_user_id"), None, "but never a twin");
    assert_eq!(resp.echoed_header("x-user-id").as_deref(), Some("alice"));

    let (app, reject) = protected_gateway("us-reject", "underscore_headers = \"reject\"\n", "");
    let resp = reject.request("GET", "/api/images/1", &headers, b"");
    assert_generated(&resp, 400, "bad_request", "reject");
    assert_eq!(app.count(), 0);
    assert_eq!(
        reject
            .request("GET", "/api/images/1", &headers[..1], b"")
            .status,
        200
    );

    let (_app, drop) = protected_gateway("us-drop", "", "");
    let resp = drop.request("GET", "/api/images/1", &headers, b"");
    assert_eq!(resp.echoed_header("x_custom"), None, "drop is the default");
}

#[test]
fn host_overrides_from_clients_never_reach_the_upstream() {
    let (_app, gw) = protected_gateway("host-overrides", "", "");
    let resp = gw.request(
        "GET",
        "/api/music/1",
        &[
            ("X-Host", "evil.example"),
            ("X_Host", "evil.example"),
            ("x-HOST", "evil.example"),
            ("X-HTTP-Host-Override", "evil.example"),
            ("X-Original-Host", "evil.example"),
            ("X-Forwarded-Host", "evil.example"),
            ("X_Forwarded_Host", "evil.example"),
        ],
        b"",
    );
    assert_eq!(resp.status, 200);
    let list = resp.echoed_list();
    assert!(!list.is_empty(), "the backend listed what it received");
    let evil: Vec<&(String, String)> = list.iter().filter(|(_, v)| v.contains("evil")).collect();
    assert!(
        evil.is_empty(),
        "a client's host override reached the backend: {evil:?}"
    );
    assert_eq!(
        resp.echoed_header("x-forwarded-host"),
        Some(format!("127.0.0.1:{}", gw.port)),
        "the gateway's own X-Forwarded-Host"
    );
}

#[test]
fn ipv6_clients_are_limited_and_banned_per_prefix() {
    let limits = "[rate_limits.default]\nper_ip = \"3/min\"\n\n[rate_limits.exact]\nper_ip = \"1/min\"\nipv6_prefix = 128\n\n[suspicious]\nban_threshold = 2\n\n";
    let (_app, gw) = protected_gateway("ipv6", "trusted_proxies = [\"127.0.0.1/32\"]\n", limits);
    let from = |ip: &str, path: &str| gw.request("GET", path, &[("X-Forwarded-For", ip)], b"");

    for i in 1..=3 {
        assert_eq!(
            from(&format!("2001:db8:1:2::{i}"), "/api/music/1").status,
            200
        );
    }
    let rotated = from("2001:db8:1:2:ffff:eeee:dddd:cccc", "/api/music/1");
    assert_generated(
        &rotated,
        429,
        "rate_limited",
        "a fourth address in the same /64",
    );
    assert_eq!(
        from("2001:db8:1:3::1", "/api/music/1").status,
        200,
        "the next /64"
    );

    // IPv4-mapped IPv6 is the IPv4 client: one budget for both spellings.
    for _ in 0..3 {
        assert_eq!(from("198.51.100.7", "/api/music/2").status, 200);
    }
    assert_eq!(from("::ffff:198.51.100.7", "/api/music/2").status, 429);

    // The log keeps the full address the bucket was cut from.
    assert!(wait_until(Duration::from_secs(5), || gw
        .access_log()
        .iter()
        .any(|l| {
            l["client_ip"] == "2001:db8:1:2:ffff:eeee:dddd:cccc" && l["status"] == 429
        })));

    // Bans follow the prefix too: two blocked requests from two addresses ban the /64.
    assert_eq!(
        from("2001:db8:9:9::1", "/api/music/1?q=%3Cscript%3E").status,
        403
    );
    assert_eq!(
        from("2001:db8:9:9::2", "/api/music/1?q=%3Cscript%3E").status,
        403
    );
    let banned = from("2001:db8:9:9::3", "/api/music/1");
    assert_generated(&banned, 403, "forbidden", "banned prefix");
    assert!(wait_until(Duration::from_secs(5), || gw
        .access_log()
        .iter()
        .any(
            |l| l["reason"] == "banned" && l["client_ip"] == "2001:db8:9:9::3"
        )));
    assert_eq!(
        from("2001:db8:9:a::1", "/api/music/1").status,
        200,
        "another /64 is not banned"
    );
}

#[test]
fn ipv6_prefix_is_configurable_per_policy() {
    let limits = "[rate_limits.default]\nper_ip = \"1/min\"\nipv6_prefix = 128\n\n";
    let (_app, gw) = protected_gateway(
        "ipv6-exact",
        "trusted_proxies = [\"127.0.0.1/32\"]\n",
        limits,
    );
    let from = |ip: &str| {
        gw.request("GET", "/api/music/1", &[("X-Forwarded-For", ip)], b"")
            .status
    };
    assert_eq!(from("2001:db8::1"), 200);
    assert_eq!(from("2001:db8::2"), 200, "a /128 policy keys each address");
    assert_eq!(from("2001:db8::1"), 429);
}

#[test]
fn a_user_holding_line_separators_stays_on_one_escaped_log_line() {
    let (_app, gw) = protected_gateway("log-separators", "", "");
    let user = "alice\u{2028}{\"status\":200,\"forged\":true}\u{2029}";
    let auth = format!("Bearer {}", hardening_token(user));
    let resp = gw.request(
        "GET",
        "/api/images/line-separators",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(resp.status, 200);
    assert!(
        wait_until(Duration::from_secs(5), || gw
            .stdout()
            .contains("/api/images/line-separators")),
        "the request was logged"
    );
    let out = gw.stdout();
    let line = out
        .lines()
        .find(|l| l.contains("/api/images/line-separators"))
        .unwrap();
    assert!(
        !out.contains('\u{2028}') && !out.contains('\u{2029}'),
        "raw separators in the log: {line}"
    );
    assert!(
        line.contains(r"alice\u2028{") && line.contains(r"}\u2029"),
        "{line}"
    );
    let entry: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(entry["user"], user, "escaped, and read back the same");
    assert_eq!(entry["status"], 200);
}

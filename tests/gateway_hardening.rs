//! The ways around the gateway that an attacker tries, each closed as a class, through the
//! real binary over raw HTTP/1.1 sockets and (for the classes h2 carries) curl over h2:
//! `;` path parameters, header names the backend reads as another (`_` for `-`), answers
//! pingora would give itself, IPv6 address rotation, and credentials the gateway never
//! verified.

#[path = "harness/mod.rs"]
mod harness;

use std::io::{BufReader, Write};
use std::process::Command;
use std::time::Duration;

use harness::*;

const SECRET: &str = "hardening-e2e-secret-0123456789abcdef";

fn token(sub: &str) -> String {
    hs256_token(sub, SECRET)
}

/// A gateway with a protected `/api/images`, an optional `/api/music`, a public catch-all,
/// claims forwarded as `x-user-id` and an API key injected upstream.
fn protected(name: &str, server_extra: &str, extra: &str) -> (Backend, Gateway) {
    let app = Backend::start("app");
    let (port, admin) = (free_port(), free_port());
    let config = server_section(port, admin, server_extra)
        + &format!(
            "[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\nrequest_headers = {{ \"x-api-key\" = \"gateway-key\" }}\n\n",
            app.port
        )
        + &format!("[jwt]\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET}\"\nforward_claims = {{ sub = \"x-user-id\" }}\n\n")
        + extra
        + "[[routes]]\nname = \"images\"\npath_prefix = \"/api/images\"\nupstream = \"app\"\nauth = \"required\"\n\n"
        + "[[routes]]\nname = \"music\"\npath_prefix = \"/api/music\"\nupstream = \"app\"\nauth = \"optional\"\n\n"
        + "[[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n";
    let gw = Gateway::start(name, port, admin, &config, &[]);
    (app, gw)
}

/// Sends `raw` as is and reads the one answer.
fn raw(port: u16, bytes: &[u8]) -> Response {
    let mut stream = connect(port, Duration::from_secs(5));
    stream.write_all(bytes).unwrap();
    read_response(&mut BufReader::new(stream), "GET").expect("an answer")
}

/// The contract's generated answer: JSON error body, security headers, a request id, and
/// nothing of pingora's own.
fn assert_generated(resp: &Response, status: u16, code: &str, what: &str) {
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (status, code),
        "{what}"
    );
    assert_eq!(
        resp.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert!(resp.header("content-security-policy").is_some(), "{what}");
    assert!(
        resp.header("x-request-id").is_some_and(|id| !id.is_empty()),
        "{what}"
    );
    assert_eq!(resp.header("server"), None, "{what}");
}

fn curl_h2(port: u16, path: &str, headers: &[&str]) -> (String, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sk",
        "--http2",
        "--path-as-is",
        "-o",
        "-",
        "-w",
        "\n%{http_code} %{http_version}",
    ]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", ""));
    (status.to_string(), body.to_string())
}

#[test]
fn path_parameters_cannot_dodge_a_routes_auth_in_any_spelling() {
    // The suspicious-request rules would block the `..;` spellings on their own; switched
    // off, routing alone must hold.
    let (app, gw) = protected("params", "", "[suspicious]\nmode = \"off\"\n\n");
    let spellings = [
        "/api;x=1/images/1",
        "/api/images;x=1",
        "/api/images;x=1/1",
        "/api%3bx=1/images/1",
        "/api%3Bx=1/images%3B/1",
        "/API;x/Images;y/1",
        "/public/..;/api/images/1",
        "/api/music/..;/images/1",
        "/api/music/%2e%2e;x/images/1",
        "/;x/api/images/1",
    ];
    for path in spellings {
        let resp = gw.get(path);
        assert_generated(&resp, 401, "unauthorized", path);
    }
    assert_eq!(
        app.count(),
        0,
        "no spelling reached the backend without a token"
    );

    // With a token, the backend sees the one reading the gateway authorised: no parameters.
    let auth = format!("Bearer {}", token("alice"));
    for path in spellings {
        let resp = gw.request("GET", path, &[("Authorization", &auth)], b"");
        assert_eq!(resp.status, 200, "{path}");
        let target = resp.json()["target"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            target.to_ascii_lowercase().starts_with("/api/images"),
            "{path} reached {target}"
        );
        assert!(
            !target.contains(';') && !target.to_ascii_lowercase().contains("%3b"),
            "{path} reached {target}"
        );
    }
    assert!(wait_until(Duration::from_secs(5), || {
        gw.access_log()
            .iter()
            .any(|l| l["path"] == "/api/images/1" && l["route"] == "images")
    }));
}

#[test]
fn client_copies_of_gateway_headers_are_stripped_in_every_spelling() {
    let (_app, gw) = protected("twins", "", "");
    let auth = format!("Bearer {}", token("alice"));
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
    let auth = format!("Bearer {}", token("alice"));
    let headers = [
        ("Authorization", auth.as_str()),
        ("X_Custom", "v"),
        ("X_User_Id", "mallory"),
    ];

    let (_app, allow) = protected("us-allow", "underscore_headers = \"allow\"\n", "");
    let resp = allow.request("GET", "/api/images/1", &headers, b"");
    assert_eq!(
        resp.echoed_header("x_custom").as_deref(),
        Some("v"),
        "allow forwards other names"
    );
    assert_eq!(resp.echoed_header("x_user_id"), None, "but never a twin");
    assert_eq!(resp.echoed_header("x-user-id").as_deref(), Some("alice"));

    let (app, reject) = protected("us-reject", "underscore_headers = \"reject\"\n", "");
    let resp = reject.request("GET", "/api/images/1", &headers, b"");
    assert_generated(&resp, 400, "bad_request", "reject");
    assert_eq!(app.count(), 0);
    assert_eq!(
        reject
            .request("GET", "/api/images/1", &headers[..1], b"")
            .status,
        200
    );

    let (_app, drop) = protected("us-drop", "", "");
    let resp = drop.request("GET", "/api/images/1", &headers, b"");
    assert_eq!(resp.echoed_header("x_custom"), None, "drop is the default");
}

#[test]
fn every_answer_is_the_gateways_own_counted_and_logged() {
    let (app, gw) = protected("answers", "", "");
    let cases: &[(&str, &[u8], u16, &str)] = &[
        (
            "CONNECT",
            b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
            405,
            "method_not_allowed",
        ),
        (
            "absolute-form, foreign host",
            b"GET http://evil.example/api/images/1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            400,
            "bad_request",
        ),
        (
            "absolute-form, no Host",
            b"GET http://evil.example/ HTTP/1.1\r\n\r\n",
            400,
            "bad_request",
        ),
        (
            "absolute-form, userinfo",
            b"GET http://a@127.0.0.1/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            400,
            "bad_request",
        ),
        (
            "another scheme",
            b"GET ftp://127.0.0.1/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            400,
            "bad_request",
        ),
        (
            "HTTP/1.1 without Host",
            b"GET /api/music/1 HTTP/1.1\r\n\r\n",
            400,
            "bad_request",
        ),
        (
            "an invalid Host",
            b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            400,
            "bad_request",
        ),
        (
            "a bracket left open",
            b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
            400,
            "bad_request",
        ),
        (
            "a byte above 0x7f",
            b"GET /\x80 HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
            "bad_request",
        ),
        (
            "a request line with two spaces",
            b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
            "bad_request",
        ),
    ];
    let before = gw.metric("portcullis_requests_total", &[("route", "none")]);
    for (what, bytes, status, code) in cases {
        assert_generated(&raw(gw.port, bytes), *status, code, what);
    }
    assert_eq!(app.count(), 0, "nothing reached the upstream");
    assert!(wait_until(Duration::from_secs(5), || {
        gw.metric("portcullis_requests_total", &[("route", "none")]) >= before + cases.len() as f64
    }));
    let connect = gw.metric(
        "portcullis_requests_total",
        &[("route", "none"), ("method", "CONNECT"), ("status", "405")],
    );
    assert_eq!(connect, 1.0, "CONNECT counted under its own method");
    let refused = || {
        gw.access_log()
            .into_iter()
            .filter(|l| l["route"].is_null() || l["route"] == "none")
            .collect::<Vec<_>>()
    };
    assert!(
        wait_until(Duration::from_secs(5), || refused().len() >= cases.len()),
        "each refusal has a log line: {:?}",
        refused()
    );
    assert!(refused()
        .iter()
        .all(|l| l["reason"].is_string() && l["request_id"].is_string()));

    // Absolute-form naming this host is served, and a proxied answer carries no Server header.
    let ok = raw(gw.port, b"GET http://127.0.0.1/api/music/1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["path"], "/api/music/1");
    assert_eq!(ok.header("server"), None);
    assert!(ok.header("x-request-id").is_some());
    // HTTP/1.0 has no Host requirement.
    assert_eq!(
        raw(gw.port, b"GET /api/music/1 HTTP/1.0\r\n\r\n").status,
        200
    );
    // The admin listener's answers carry a request id too.
    let health = gw
        .admin_get("/healthz")
        .expect("the admin listener answers");
    assert!(health.header("x-request-id").is_some());
}

#[test]
fn ipv6_clients_are_limited_and_banned_per_prefix() {
    let limits = "[rate_limits.default]\nper_ip = \"3/min\"\n\n[rate_limits.exact]\nper_ip = \"1/min\"\nipv6_prefix = 128\n\n[suspicious]\nban_threshold = 2\n\n";
    let (_app, gw) = protected("ipv6", "trusted_proxies = [\"127.0.0.1/32\"]\n", limits);
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
    let (_app, gw) = protected(
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
fn credentials_the_gateway_cannot_verify_are_refused_not_forwarded() {
    let (app, gw) = protected("creds", "", "");
    let good = token("alice");
    let malformed = [
        format!("Bearer\t{good}"),
        format!("Basic {}", "YWxpY2U6cHc="),
        "Bearer".to_string(),
        format!("Bearer {good} extra"),
        format!("Token {good}"),
        format!("Bearer{good}"),
    ];
    for path in ["/api/images/1", "/api/music/1"] {
        for value in &malformed {
            let resp = gw.request("GET", path, &[("Authorization", value)], b"");
            assert_generated(&resp, 401, "unauthorized", &format!("{path} {value:?}"));
            let challenge = resp.header("www-authenticate").unwrap_or_default();
            assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        }
    }
    assert_eq!(
        app.count(),
        0,
        "no unverified credential reached the backend"
    );
    assert_eq!(
        gw.request(
            "GET",
            "/api/music/1",
            &[("Authorization", &format!("bearer   {good}"))],
            b""
        )
        .status,
        200,
        "any case and several spaces are still one Bearer credential"
    );
    // A route without auth leaves the header to the backend.
    let basic = gw.request(
        "GET",
        "/other",
        &[("Authorization", "Basic YWxpY2U6cHc=")],
        b"",
    );
    assert_eq!(
        basic.echoed_header("authorization").as_deref(),
        Some("Basic YWxpY2U6cHc=")
    );
}

#[test]
fn the_classes_hold_over_h2() {
    let app = Backend::start("app");
    let (port, tls, admin) = (free_port(), free_port(), free_port());
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\ntls_listen = [\"127.0.0.1:{tls}\"]\ntls_cert = \"gw.crt\"\ntls_key = \"gw.key\"\ngrace_period = \"3s\"\n\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n[jwt]\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET}\"\nforward_claims = {{ sub = \"x-user-id\" }}\n\n[suspicious]\nmode = \"off\"\n\n[[routes]]\nname = \"images\"\npath_prefix = \"/api/images\"\nupstream = \"app\"\nauth = \"required\"\n\n[[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n",
        app.port
    );
    let _gw = Gateway::start_with_files("h2", port, admin, &config, &[], |dir| {
        make_cert(dir, "gw", "localhost", 2);
    });

    for path in [
        "/api;x=1/images/1",
        "/api%3Bx/images/1",
        "/public/..;/api/images/1",
    ] {
        let (status, body) = curl_h2(tls, path, &[]);
        assert_eq!(status, "401 2", "{path}: {body}");
        assert!(body.contains("\"unauthorized\""), "{body}");
    }
    let (status, _) = curl_h2(tls, "/api/images/1", &["Authorization: Basic YWxpY2U6cHc="]);
    assert_eq!(status, "401 2");
    assert_eq!(app.count(), 0);

    let auth = format!("Authorization: Bearer {}", token("alice"));
    let (status, body) = curl_h2(
        tls,
        "/api/images;v=2/1",
        &[&auth, "X_User_Id: mallory", "x-user_id: mallory"],
    );
    assert_eq!(status, "200 2", "{body}");
    let echo: serde_json::Value = serde_json::from_str(&body).expect("the echo");
    assert_eq!(echo["path"], "/api/images/1");
    assert_eq!(echo["headers"]["x-user-id"], "alice");
    assert!(
        echo["headers"]
            .as_object()
            .is_some_and(|h| h.keys().all(|k| !k.contains('_'))),
        "{echo}"
    );
}

#[test]
fn host_overrides_from_clients_never_reach_the_upstream() {
    let (_app, gw) = protected("host-overrides", "", "");
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
fn a_user_holding_line_separators_stays_on_one_escaped_log_line() {
    let (_app, gw) = protected("log-separators", "", "");
    let user = "alice\u{2028}{\"status\":200,\"forged\":true}\u{2029}";
    let auth = format!("Bearer {}", token(user));
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

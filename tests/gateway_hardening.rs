//! The ways around the gateway's checks that an attacker tries, each closed as a class,
//! through the real binary over raw HTTP/1.1 sockets and (for the classes h2 carries) curl
//! over h2: `;` path parameters, answers pingora would give itself, and credentials the
//! gateway never verified. What a client plants for the backend to believe is in
//! `gateway_spoofing.rs`.

#[path = "harness/mod.rs"]
mod harness;

use std::io::{BufReader, Write};
use std::process::Command;
use std::time::Duration;

use harness::*;

/// Sends `raw` as is and reads the one answer.
fn raw(port: u16, bytes: &[u8]) -> Response {
    let mut stream = connect(port, Duration::from_secs(5));
    stream.write_all(bytes).unwrap();
    read_response(&mut BufReader::new(stream), "GET").expect("an answer")
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
    let (app, gw) = protected_gateway("params", "", "[suspicious]\nmode = \"off\"\n\n");
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
    let auth = format!("Bearer {}", hardening_token("alice"));
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
fn every_answer_is_the_gateways_own_counted_and_logged() {
    let (app, gw) = protected_gateway("answers", "", "");
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
fn credentials_the_gateway_cannot_verify_are_refused_not_forwarded() {
    let (app, gw) = protected_gateway("creds", "", "");
    let good = hardening_token("alice");
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
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\ntls_listen = [\"127.0.0.1:{tls}\"]\ntls_cert = \"gw.crt\"\ntls_key = \"gw.key\"\ngrace_period = \"3s\"\n\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n[jwt]\nalgorithms = [\"HS256\"]\nsecret = \"{HARDENING_SECRET}\"\nforward_claims = {{ sub = \"x-user-id\" }}\n\n[suspicious]\nmode = \"off\"\n\n[[routes]]\nname = \"images\"\npath_prefix = \"/api/images\"\nupstream = \"app\"\nauth = \"required\"\n\n[[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n",
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

    let auth = format!("Authorization: Bearer {}", hardening_token("alice"));
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

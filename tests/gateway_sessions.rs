//! Browser sessions through the real binary: token cookies verified like bearer headers,
//! signed media URLs, the cross-site rule for cookie-authenticated writes, and
//! `forward_credentials = false` (the headless-browser checks are in gateway_browser.rs).

#[path = "harness/mod.rs"]
mod harness;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harness::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use portcullis_signed_url::SignedUrls;
use serde_json::json;

const SECRET: &str = "sessions-e2e-secret-0123456789abcdef";
const MEDIA_KEY: &str = "sessions-e2e-media-key-0123456789abcdef";
const OLD_MEDIA_KEY: &str = "sessions-e2e-old-media-key-0123456789ab";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token_with(sub: &str, exp: u64, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": sub, "iat": now() - 5, "exp": exp}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn token(sub: &str) -> String {
    token_with(sub, now() + 600, SECRET)
}

fn gateway(name: &str, jwt_extra: &str) -> (Backend, Gateway) {
    let app = Backend::start("app");
    let (port, admin) = (free_port(), free_port());
    let config = server_section(port, admin, "")
        + &format!("[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n", app.port)
        + &format!("[jwt]\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET}\"\nforward_claims = {{ sub = \"x-user-id\" }}\nsources = [\"header\", \"cookie:session\"]\n{jwt_extra}\n")
        // The suspicious-request rules would refuse the `..` spellings on their own.
        + "[suspicious]\nmode = \"off\"\n\n"
        + "[[routes]]\nname = \"account\"\npath_prefix = \"/api/account\"\nupstream = \"app\"\nauth = \"required\"\n\n"
        + "[[routes]]\nname = \"music\"\npath_prefix = \"/api/music\"\nupstream = \"app\"\nauth = \"optional\"\n\n"
        + "[[routes]]\nname = \"cookie-first\"\npath_prefix = \"/api/library\"\nupstream = \"app\"\nauth = \"required\"\nauth_sources = [\"cookie:session\", \"header\"]\n\n"
        + &format!("[[routes]]\nname = \"images\"\npath_prefix = \"/api/images\"\nupstream = \"app\"\nauth = \"required\"\nsigned_urls = {{ keys = [\"{MEDIA_KEY}\", \"{OLD_MEDIA_KEY}\"], max_ttl = \"1h\" }}\n\n")
        + "[[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n";
    let gw = Gateway::start(name, port, admin, &config, &[]);
    (app, gw)
}

fn cookie(token: &str) -> String {
    format!("theme=dark; session={token}")
}

fn assert_refused(resp: &Response, status: u16, code: &str, what: &str) {
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (status, code),
        "{what}: {}",
        String::from_utf8_lossy(&resp.body)
    );
    assert!(resp.header("x-request-id").is_some(), "{what}");
}

#[test]
fn a_cookie_token_is_verified_exactly_like_a_bearer_header() {
    let (app, gw) = gateway("cookies", "");
    let ok = gw.request(
        "GET",
        "/api/account/me",
        &[("Cookie", &cookie(&token("alice")))],
        b"",
    );
    assert_eq!(ok.status, 200);
    assert_eq!(ok.echoed_header("x-user-id").as_deref(), Some("alice"));
    assert_eq!(
        gw.metric(
            "portcullis_auth_credentials_total",
            &[("source", "cookie"), ("result", "valid")]
        ),
        1.0
    );

    let refused = [
        ("missing", "theme=dark".to_string()),
        ("expired", cookie(&token_with("alice", now() - 120, SECRET))),
        (
            "signed with another key",
            cookie(&token_with(
                "alice",
                now() + 600,
                "another-secret-0123456789abcdefgh",
            )),
        ),
        ("tampered", cookie(&format!("{}x", token("alice")))),
        ("not a token", cookie("hello")),
        ("empty", "session=".to_string()),
        (
            "twice in one field",
            format!("session={}; session={}", token("alice"), token("bob")),
        ),
    ];
    let before = app.count();
    for (what, value) in &refused {
        let resp = gw.request("GET", "/api/account/me", &[("Cookie", value)], b"");
        assert_refused(&resp, 401, "unauthorized", what);
    }
    // Two Cookie fields each holding the token cookie (as an h2 client would split them).
    let resp = gw.request(
        "GET",
        "/api/account/me",
        &[
            ("Cookie", &format!("session={}", token("alice"))),
            ("Cookie", &format!("session={}", token("bob"))),
        ],
        b"",
    );
    assert_refused(&resp, 401, "unauthorized", "two fields");
    // On an optional route a broken cookie is refused too, never an anonymous pass.
    let resp = gw.request("GET", "/api/music/1", &[("Cookie", "session=garbage")], b"");
    assert_refused(&resp, 401, "unauthorized", "optional route");
    assert_eq!(app.count(), before, "no refused cookie reached the backend");
    assert!(gw.metric("portcullis_jwt_validations_total", &[("result", "expired")]) >= 1.0);
    assert!(
        gw.metric(
            "portcullis_auth_credentials_total",
            &[("source", "cookie"), ("result", "malformed")]
        ) >= 1.0
    );
}

#[test]
fn sources_are_tried_in_order_and_only_the_verified_one_is_forwarded() {
    let (_app, gw) = gateway("order", "");
    let (alice, bob) = (token("alice"), token("bob"));
    // [jwt] sources: header first. A bad header is refused even beside a good cookie.
    let resp = gw.request(
        "GET",
        "/api/account/me",
        &[
            ("Authorization", &format!("Bearer {alice}")),
            ("Cookie", &cookie(&bob)),
        ],
        b"",
    );
    assert_eq!(
        resp.echoed_header("x-user-id").as_deref(),
        Some("alice"),
        "the header wins"
    );
    assert_eq!(
        resp.echoed_header("cookie").as_deref(),
        Some("theme=dark"),
        "the unverified cookie stays behind"
    );
    let resp = gw.request(
        "GET",
        "/api/account/me",
        &[
            ("Authorization", "Bearer not.a.token"),
            ("Cookie", &cookie(&bob)),
        ],
        b"",
    );
    assert_refused(&resp, 401, "unauthorized", "bad header, good cookie");

    // A route narrowed to cookie first.
    let resp = gw.request(
        "GET",
        "/api/library/1",
        &[
            ("Authorization", &format!("Bearer {alice}")),
            ("Cookie", &cookie(&bob)),
        ],
        b"",
    );
    assert_eq!(
        resp.echoed_header("x-user-id").as_deref(),
        Some("bob"),
        "the cookie wins there"
    );
    assert_eq!(
        resp.echoed_header("authorization"),
        None,
        "the unverified header stays behind"
    );
    assert!(resp
        .echoed_header("cookie")
        .is_some_and(|c| c.contains("session=")));
}

#[test]
fn forward_credentials_false_strips_exactly_the_credential() {
    let (_app, gw) = gateway("no-forward", "forward_credentials = false\n");
    let alice = token("alice");
    let cookies = format!("a=1; session={alice};  b=\"x y\"; c=");
    let resp = gw.request("GET", "/api/account/me", &[("Cookie", &cookies)], b"");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.echoed_header("x-user-id").as_deref(), Some("alice"));
    assert_eq!(
        resp.echoed_header("cookie").as_deref(),
        Some("a=1; b=\"x y\"; c=")
    );
    let resp = gw.request(
        "GET",
        "/api/account/me",
        &[
            ("Authorization", &format!("Bearer {alice}")),
            ("Cookie", "a=1"),
        ],
        b"",
    );
    assert_eq!(resp.echoed_header("authorization"), None);
    assert_eq!(resp.echoed_header("cookie").as_deref(), Some("a=1"));
    let only = gw.request(
        "GET",
        "/api/account/me",
        &[("Cookie", &format!("session={alice}"))],
        b"",
    );
    assert_eq!(only.status, 200);
    assert_eq!(
        only.echoed_header("cookie"),
        None,
        "nothing left, no Cookie header"
    );
}

#[test]
fn cookie_authenticated_writes_must_come_from_the_sites_own_pages() {
    let (app, gw) = gateway("cross-site", "");
    let c = cookie(&token("alice"));
    let post = |extra: &[(&str, &str)]| {
        let mut headers = vec![("Cookie", c.as_str())];
        headers.extend_from_slice(extra);
        gw.request("POST", "/api/account/settings", &headers, b"{}")
    };
    let before = app.count();
    for (what, extra) in [
        ("cross-site", vec![("Sec-Fetch-Site", "cross-site")]),
        ("same-site", vec![("Sec-Fetch-Site", "same-site")]),
        (
            "foreign Origin, no fetch metadata",
            vec![("Origin", "https://evil.example")],
        ),
        ("Origin null", vec![("Origin", "null")]),
    ] {
        let resp = post(&extra);
        assert_refused(&resp, 403, "forbidden", what);
    }
    let resp = gw.request(
        "DELETE",
        "/api/account/x",
        &[("Cookie", &c), ("Sec-Fetch-Site", "cross-site")],
        b"",
    );
    assert_refused(&resp, 403, "forbidden", "DELETE");
    assert_eq!(
        app.count(),
        before,
        "no cross-site write reached the backend"
    );
    assert!(wait_until(Duration::from_secs(5), || gw
        .access_log()
        .iter()
        .any(|l| l["reason"] == "cross_site")));

    let host = format!("http://127.0.0.1:{}", gw.port);
    assert_eq!(post(&[("Sec-Fetch-Site", "same-origin")]).status, 200);
    assert_eq!(post(&[("Sec-Fetch-Site", "none")]).status, 200);
    assert_eq!(
        post(&[("Origin", &host)]).status,
        200,
        "its own host, no fetch metadata"
    );
    assert_eq!(
        post(&[]).status,
        200,
        "no Origin at all: not a browser's cross-site form"
    );
    // Safe methods and bearer tokens are not the cookie's risk.
    let get = gw.request(
        "GET",
        "/api/account/x",
        &[("Cookie", &c), ("Sec-Fetch-Site", "cross-site")],
        b"",
    );
    assert_eq!(get.status, 200);
    let bearer = format!("Bearer {}", token("alice"));
    let resp = gw.request(
        "POST",
        "/api/account/settings",
        &[("Authorization", &bearer), ("Sec-Fetch-Site", "cross-site")],
        b"{}",
    );
    assert_eq!(resp.status, 200);
}

#[test]
fn signed_urls_authenticate_one_path_until_they_expire() {
    let (app, gw) = gateway("signed", "");
    let signer = SignedUrls::new(&[MEDIA_KEY], Duration::from_secs(3600)).unwrap();
    let old_signer = SignedUrls::new(&[OLD_MEDIA_KEY], Duration::from_secs(3600)).unwrap();
    let sign =
        |s: &SignedUrls, path: &str, exp: u64, user: Option<&str>| s.sign(path, exp, user).unwrap();

    let q = sign(&signer, "/api/images/a.png", now() + 300, Some("alice"));
    let resp = gw.get(&format!("/api/images/a.png?size=2&{q}"));
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(
        resp.json()["query"],
        "size=2",
        "exp, sig and user stay behind"
    );
    assert_eq!(resp.echoed_header("x-user-id").as_deref(), Some("alice"));
    assert_eq!(
        resp.header("cross-origin-resource-policy"),
        Some("cross-origin")
    );
    // The same file by another spelling is the same normalised path.
    assert_eq!(gw.get(&format!("/api/images/x/../a.png?{q}")).status, 200);
    assert_eq!(gw.get(&format!("/api/images/%61.png?{q}")).status, 200);
    // Rotated keys: a URL from the second key still verifies.
    let old = sign(&old_signer, "/api/images/a.png", now() + 300, None);
    let resp = gw.get(&format!("/api/images/a.png?{old}"));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.echoed_header("x-user-id"), None, "anonymous-signed");

    let before = app.count();
    let tampered_user = q.replace("user=alice", "user=mallory");
    let other_key = SignedUrls::new(
        &["an-unconfigured-key-0123456789abcdefgh"],
        Duration::from_secs(3600),
    )
    .unwrap();
    let refused = [
        ("another path", format!("/api/images/b.png?{q}")),
        ("another case", format!("/api/images/A.png?{q}")),
        (
            "stretched with ..",
            format!("/api/images/a.png/../b.png?{q}"),
        ),
        (
            "stretched with %2e",
            format!("/api/images/a.png/%2e%2e/b.png?{q}"),
        ),
        (
            "tampered user",
            format!("/api/images/a.png?{tampered_user}"),
        ),
        (
            "tampered exp",
            format!("/api/images/a.png?{}", q.replacen("exp=1", "exp=2", 1)),
        ),
        (
            "expired",
            format!(
                "/api/images/a.png?{}",
                sign(&signer, "/api/images/a.png", now() - 10, None)
            ),
        ),
        (
            "beyond max_ttl",
            format!(
                "/api/images/a.png?{}",
                sign(&signer, "/api/images/a.png", now() + 7200, None)
            ),
        ),
        (
            "unknown key",
            format!(
                "/api/images/a.png?{}",
                sign(&other_key, "/api/images/a.png", now() + 60, None)
            ),
        ),
        ("sig without exp", "/api/images/a.png?sig=abc".to_string()),
    ];
    for (what, target) in &refused {
        assert_refused(&gw.get(target), 403, "forbidden", what);
    }
    assert_eq!(
        app.count(),
        before,
        "no refused signed URL reached the backend"
    );
    assert!(
        gw.metric(
            "portcullis_auth_credentials_total",
            &[("source", "signed_url"), ("result", "expired")]
        ) >= 1.0
    );
    assert_eq!(
        gw.metric(
            "portcullis_auth_credentials_total",
            &[("source", "signed_url"), ("result", "bad_signature")]
        ),
        7.0,
        "each tampered or stretched URL fails on its signature"
    );
    assert!(
        gw.metric(
            "portcullis_auth_credentials_total",
            &[("source", "signed_url"), ("result", "valid")]
        ) >= 4.0
    );
    // The log never holds the signature.
    let sig = q.rsplit("sig=").next().unwrap().to_string();
    assert!(wait_until(Duration::from_secs(5), || gw.access_log().len() >= 14));
    assert!(!gw.stdout().contains(&sig), "the signature is not logged");

    // Without exp and sig, the route's token sources decide.
    assert_eq!(gw.get("/api/images/a.png").status, 401);
    let bearer = format!("Bearer {}", token("bob"));
    let resp = gw.request(
        "GET",
        "/api/images/a.png",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(resp.echoed_header("x-user-id").as_deref(), Some("bob"));
    // The method is not signed: a media link is never a credential for writing.
    let resp = gw.request("POST", &format!("/api/images/a.png?{q}"), &[], b"x");
    assert_refused(&resp, 403, "forbidden", "POST with a signed URL");
    // Beside a valid signature, an unchecked bearer token does not reach the backend.
    let resp = gw.request(
        "GET",
        &format!("/api/images/a.png?{q}"),
        &[("Authorization", "Bearer whatever")],
        b"",
    );
    assert_eq!(resp.status, 200);
    assert_eq!(resp.echoed_header("authorization"), None);
}

#[test]
fn sign_url_prints_a_url_the_gateway_accepts() {
    let (_app, gw) = gateway("sign-url", "");
    let config = gw.config_path.to_str().unwrap().to_string();
    let (code, out, err) = run_cli(&[
        "sign-url",
        "--config",
        &config,
        "--route",
        "images",
        "--user",
        "alice",
        "--ttl",
        "5m",
        "/api/images/cover.png",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let url = out.trim();
    assert!(url.starts_with("/api/images/cover.png?exp="), "{url}");
    assert!(url.contains("&user=alice&sig="), "{url}");
    let resp = gw.get(url);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.echoed_header("x-user-id").as_deref(), Some("alice"));

    let (code, out, _) = run_cli(&[
        "sign-url",
        "--config",
        &config,
        "--route",
        "images",
        "/api/images/c.png?w=2",
    ]);
    assert_eq!(code, Some(0));
    assert!(
        out.trim().starts_with("/api/images/c.png?w=2&exp="),
        "{out}"
    );
    assert_eq!(gw.get(out.trim()).json()["query"], "w=2");

    // --config may come before the subcommand too.
    let (code, out, err) = run_cli(&[
        "--config",
        &config,
        "sign-url",
        "--route",
        "images",
        "/api/images/d.png",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(gw.get(out.trim()).status, 200);

    for (args, want) in [
        (vec!["--route", "images", "--ttl", "2h", "/x"], 1),
        (vec!["--route", "images", "/api/images/x?exp=1"], 1),
        (vec!["--route", "images", "/api/images/../x"], 1),
        (vec!["--route", "images", "--ttl", "soon", "/x"], 1),
        (vec!["--route", "nowhere", "/x"], 2),
        (vec!["--route", "account", "/x"], 2),
    ] {
        let mut full = vec!["sign-url", "--config", &config];
        full.extend(args.iter().copied());
        let (code, _, err) = run_cli(&full);
        assert_eq!(code, Some(want), "{args:?}: {err}");
        assert!(err.starts_with("portcullis sign-url: "), "{err}");
    }
}

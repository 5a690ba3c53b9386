//! WebSocket upgrades through the real binary, against a real WebSocket backend: a channel
//! opened with the session cookie follows the cross-site rule of unsafe methods (cross-site
//! WebSocket hijacking), while bearer-token and signed-URL handshakes, which a foreign page
//! cannot make with the user's authority, are unaffected.

#[path = "harness/mod.rs"]
mod harness;

use std::time::Duration;

use harness::*;
use portcullis_signed_url::SignedUrls;

const SECRET: &str = "websocket-e2e-secret-0123456789abcdef";
const MEDIA_KEY: &str = "websocket-e2e-media-key-0123456789abcd";

fn gateway(name: &str, ws: &WsEcho) -> Gateway {
    let (port, admin) = (free_port(), free_port());
    let config = server_section(port, admin, "")
        + &format!("[upstreams.live]\npeers = [\"127.0.0.1:{}\"]\n\n", ws.port)
        + &format!("[jwt]\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET}\"\nforward_claims = {{ sub = \"x-user-id\" }}\nsources = [\"header\", \"cookie:session\"]\n\n")
        + &format!("[[routes]]\nname = \"live\"\npath_prefix = \"/api/live\"\nupstream = \"live\"\nauth = \"required\"\nsigned_urls = {{ keys = [\"{MEDIA_KEY}\"], max_ttl = \"1h\" }}\n");
    Gateway::start(name, port, admin, &config, &[])
}

fn refused_cross_site(gw: &Gateway, headers: &[(&str, &str)], what: &str) {
    match ws_connect(gw.port, "/api/live/chat", headers) {
        Handshake::Open(_) => panic!("{what}: a cross-site handshake got a channel"),
        Handshake::Refused(status, body) => {
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            assert_eq!(
                (status, body["error"].as_str()),
                (403, Some("forbidden")),
                "{what}"
            );
        }
    }
}

fn opens(gw: &Gateway, target: &str, headers: &[(&str, &str)], what: &str) -> String {
    match ws_connect(gw.port, target, headers) {
        Handshake::Open(mut socket) => ws_round_trip(&mut socket, what),
        Handshake::Refused(status, body) => panic!(
            "{what}: refused with {status}: {}",
            String::from_utf8_lossy(&body)
        ),
    }
}

#[test]
fn a_cookie_authenticated_handshake_from_another_site_is_refused() {
    let ws = WsEcho::start();
    let gw = gateway("ws-cross-site", &ws);
    let cookie = format!("session={}", hs256_token("alice", SECRET));
    let cookie = cookie.as_str();

    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("Origin", "https://evil.example")], "a foreign Origin"),
        (&[("Origin", "null")], "Origin: null"),
        (
            &[
                ("Sec-Fetch-Site", "cross-site"),
                ("Origin", "https://evil.example"),
            ],
            "Sec-Fetch-Site: cross-site",
        ),
        (
            &[
                ("Sec-Fetch-Site", "same-site"),
                ("Origin", "https://other.127.0.0.1"),
            ],
            "Sec-Fetch-Site: same-site",
        ),
        (
            &[
                ("Sec-Fetch-Site", "cross-site"),
                ("Origin", "http://127.0.0.1"),
            ],
            "Sec-Fetch-Site outranks an own Origin",
        ),
    ];
    for (extra, what) in cases {
        let mut headers = vec![("Cookie", cookie)];
        headers.extend_from_slice(extra);
        refused_cross_site(&gw, &headers, what);
    }
    assert_eq!(ws.opened(), 0, "no refused handshake reached the backend");
    let refusals = || {
        gw.access_log()
            .iter()
            .filter(|l| l["status"] == 403 && l["reason"] == "cross_site")
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(2), || refusals() == 5),
        "every refusal is logged with reason cross_site: {}",
        refusals()
    );

    // The site's own pages, and a client that sends no Origin, still get their channel.
    let own = format!("http://127.0.0.1:{}", gw.port);
    assert_eq!(
        opens(
            &gw,
            "/api/live/chat",
            &[("Cookie", cookie), ("Origin", &own)],
            "own origin"
        ),
        "echo: own origin"
    );
    assert_eq!(
        opens(
            &gw,
            "/api/live/chat",
            &[("Cookie", cookie), ("Sec-Fetch-Site", "same-origin")],
            "same-origin"
        ),
        "echo: same-origin"
    );
    assert_eq!(ws.last_header("x-user-id").as_deref(), Some("alice"));
}

#[test]
fn bearer_and_signed_url_handshakes_are_not_judged_by_their_origin() {
    let ws = WsEcho::start();
    let gw = gateway("ws-bearer", &ws);
    let bearer = format!("Bearer {}", hs256_token("bob", SECRET));
    assert_eq!(
        opens(
            &gw,
            "/api/live/chat",
            &[
                ("Authorization", &bearer),
                ("Origin", "https://evil.example")
            ],
            "bearer"
        ),
        "echo: bearer"
    );
    assert_eq!(ws.last_header("x-user-id").as_deref(), Some("bob"));

    let signer = SignedUrls::new(&[MEDIA_KEY], Duration::from_secs(3600)).unwrap();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let query = signer.sign("/api/live/feed", exp, Some("carol")).unwrap();
    assert_eq!(
        opens(
            &gw,
            &format!("/api/live/feed?{query}"),
            &[
                ("Origin", "https://evil.example"),
                ("Sec-Fetch-Site", "cross-site")
            ],
            "signed"
        ),
        "echo: signed"
    );
    assert_eq!(ws.last_header("x-user-id").as_deref(), Some("carol"));

    // Without any credential the route's auth refuses the handshake as usual.
    match ws_connect(gw.port, "/api/live/chat", &[]) {
        Handshake::Refused(status, _) => assert_eq!(status, 401),
        Handshake::Open(_) => panic!("an anonymous handshake got a channel"),
    }
}

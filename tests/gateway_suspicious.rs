//! Suspicious-request blocking through the real binary: attack shapes refused with 403 and
//! counted, ordinary traffic passing, and the auto-ban.

#[path = "harness/mod.rs"]
mod harness;

use harness::*;

fn rig(extra: &str) -> (Gateway, Backend) {
    let app = Backend::start("app");
    let (port, admin) = (free_port(), free_port());
    let config = server_section(port, admin, "")
        + &format!("[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n", app.port)
        + &format!("[suspicious]\nmode = \"block\"\n{extra}\n\n")
        + "[[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"app\"\n";
    (Gateway::start("suspicious", port, admin, &config, &[]), app)
}

#[test]
fn attacks_are_blocked_and_ordinary_traffic_passes() {
    let (gw, app) = rig("ban_threshold = 0");
    for (target, ua) in [
        ("/?q=1%27%20OR%20%271%27=%271", None),
        ("/?q=%3Cscript%3Ealert(1)%3C/script%3E", None),
        ("/download?file=..%2F..%2Fetc%2Fpasswd", None),
        ("/", Some("sqlmap/1.7#stable")),
    ] {
        let headers: Vec<(&str, &str)> = ua.map(|u| vec![("User-Agent", u)]).unwrap_or_default();
        let resp = gw.request("GET", target, &headers, b"");
        assert_eq!(
            (resp.status, resp.error_code()),
            (403, "forbidden".to_string()),
            "{target}"
        );
    }
    assert_eq!(gw.request("TRACE", "/", &[], b"").status, 403);
    assert_eq!(app.count(), 0, "nothing suspicious reached the upstream");
    for target in [
        "/?q=rock%20%26%20roll",
        "/?q=don%27t%20stop",
        "/?q=%EC%9D%8C%EC%95%85",
        "/api/music?page=2&sort=-created_at",
    ] {
        assert_eq!(gw.get(target).status, 200, "{target}");
    }
    assert_eq!(
        gw.metric(
            "portcullis_suspicious_requests_total",
            &[("action", "blocked")]
        ),
        5.0
    );
    assert_eq!(
        gw.metric(
            "portcullis_suspicious_requests_total",
            &[("rule", "sql_injection"), ("action", "blocked")]
        ),
        1.0
    );
    assert!(wait_until(std::time::Duration::from_secs(3), || gw
        .stdout()
        .contains("\"event\":\"suspicious_request\"")));
}

#[test]
fn repeated_attacks_get_the_client_banned() {
    let (gw, _app) = rig("ban_threshold = 3\nban_window = \"1m\"\nban_duration = \"10m\"");
    for _ in 0..3 {
        assert_eq!(gw.get("/?q=%3Cscript%3E").status, 403);
    }
    let resp = gw.get("/an/ordinary/page");
    assert_eq!(
        resp.status, 403,
        "banned clients are refused even for ordinary requests"
    );
    assert_eq!(
        gw.metric(
            "portcullis_suspicious_requests_total",
            &[("rule", "banned")]
        ),
        1.0
    );
}

//! Per-IP rate limits through the real binary: exact allowance, headers, 429, refill, "off",
//! and spoofed X-Forwarded-For from an untrusted peer creating no new bucket.

#[path = "harness/mod.rs"]
mod harness;

use std::time::Duration;

use harness::*;

fn rig() -> (Gateway, Backend) {
    let app = Backend::start("app");
    let (port, admin) = (free_port(), free_port());
    let config = server_section(port, admin, "")
        + &format!("[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n", app.port)
        + "[rate_limits.default]\nper_ip = \"5/min\"\n\n[rate_limits.fast]\nper_ip = \"2/s\"\n\n"
        + "[[routes]]\nname = \"limited\"\npath_prefix = \"/limited\"\nupstream = \"app\"\n\n"
        + "[[routes]]\nname = \"fast\"\npath_prefix = \"/fast\"\nupstream = \"app\"\nrate_limit = \"fast\"\n\n"
        + "[[routes]]\nname = \"open\"\npath_prefix = \"/open\"\nupstream = \"app\"\nrate_limit = \"off\"\n";
    (Gateway::start("ratelimit", port, admin, &config, &[]), app)
}

fn num(r: &Response, h: &str) -> Option<u64> {
    r.header(h).and_then(|v| v.parse().ok())
}

#[test]
fn the_default_policy_allows_the_burst_then_answers_429_with_headers() {
    let (gw, app) = rig();
    let responses: Vec<Response> = (0..5).map(|i| gw.get(&format!("/limited/{i}"))).collect();
    assert!(responses.iter().all(|r| r.status == 200));
    let remaining: Vec<Option<u64>> = responses
        .iter()
        .map(|r| num(r, "x-ratelimit-remaining"))
        .collect();
    assert_eq!(remaining, [4, 3, 2, 1, 0].map(Some));
    assert!(responses
        .iter()
        .all(|r| num(r, "x-ratelimit-limit") == Some(5) && num(r, "x-ratelimit-reset").is_some()));
    assert_eq!(
        responses[0].header("ratelimit-policy"),
        Some("\"default\";q=5;w=60")
    );
    assert!(responses[0]
        .header("ratelimit")
        .is_some_and(|v| v.starts_with("\"default\";r=4;t=")));

    let refused = gw.request(
        "GET",
        "/limited/6",
        &[("X-Forwarded-For", "203.0.113.77")],
        b"",
    );
    assert_eq!(
        (refused.status, refused.error_code()),
        (429, "rate_limited".to_string()),
        "a spoofed XFF gets no fresh bucket"
    );
    assert!(num(&refused, "retry-after").is_some_and(|s| s >= 1));
    assert_eq!(num(&refused, "x-ratelimit-remaining"), Some(0));
    assert_eq!(
        refused.header("x-content-type-options"),
        Some("nosniff"),
        "429s carry the security headers"
    );
    assert_eq!(
        app.count(),
        5,
        "the refused request never reached the upstream"
    );
    assert_eq!(
        gw.metric(
            "portcullis_rate_limited_total",
            &[("route", "limited"), ("scope", "ip")]
        ),
        1.0
    );
}

#[test]
fn tokens_refill_and_off_routes_are_unlimited() {
    let (gw, _app) = rig();
    let statuses: Vec<u16> = (0..3).map(|_| gw.get("/fast/x").status).collect();
    assert_eq!(statuses, [200, 200, 429]);
    // 2/s refills one token every 500 ms: poll until it is back (bounded), never sleep-and-hope.
    assert!(wait_until(Duration::from_secs(2), || gw
        .get("/fast/y")
        .status
        == 200));
    assert!((0..30).all(|_| gw.get("/open/z").status == 200));
    let open = gw.get("/open/z");
    assert_eq!(open.status, 200);
    assert!(open.header("x-ratelimit-limit").is_none());
}

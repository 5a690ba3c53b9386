//! The status page in a real browser: Debian's headless Chromium loads `/status` from the
//! admin listener with the page's CSP enforced, and
//!
//! - reports no console error, exception, CSP violation or failed request;
//! - its script runs (the "live" mark) and redraws: the chart's SVG has a point per minute,
//!   a breaker opened by a failing upstream shows open, and after the upstream recovers it
//!   shows closed again, without the page being reloaded;
//! - an inline script injected into the page is refused by the CSP.
//!
//! Screenshots go to `target/e2e-artifacts/` (status-page.png is the one docs/operations.md
//! shows). Skips, saying so, only when Chromium is not installed.

#[path = "harness/mod.rs"]
mod harness;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harness::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

const SECRET: &str = "status-browser-secret-0123456789abcdef";

fn token(sub: &str, exp_in: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": sub, "iat": now - 3600, "exp": now + exp_in}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// Traffic from several clients behind a trusted proxy (the test's own address).
fn from(gw: &Gateway, client: &str, target: &str, auth: Option<&str>) -> u16 {
    let mut headers = vec![("X-Forwarded-For", client)];
    let bearer = auth.map(|t| format!("Bearer {t}"));
    if let Some(b) = &bearer {
        headers.push(("Authorization", b));
    }
    gw.request("GET", target, &headers, b"").status
}

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/e2e-artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts directory");
    dir
}

/// A screenshot of the whole page, 1280 px wide.
fn full_page_screenshot(b: &mut Browser, name: &str) {
    let height = b
        .eval("document.documentElement.scrollHeight")
        .as_u64()
        .unwrap_or(1000);
    b.set_viewport(1280, height.clamp(600, 4000) as u32);
    b.screenshot(&artifacts().join(name));
    b.set_viewport(1280, 1000);
}

fn breaker_cell(name: &str) -> String {
    format!("(document.querySelector('tr[data-key=\"{name}\"] td.breaker') || {{}}).textContent")
}

#[test]
fn the_status_page_redraws_a_breaker_open_then_closed_under_its_csp() {
    let Some(mut b) = Browser::launch() else {
        eprintln!("SKIPPED: no Chromium at /usr/bin/chromium (scripts/install-deps installs Debian's chromium package)");
        return;
    };
    let app = Backend::start("app");
    let topmediai = Switchable::start();
    let (port, admin) = (free_port(), free_port());
    let config = server_section(port, admin, "trusted_proxies = [\"127.0.0.1/32\"]\n")
        + &format!("[upstreams.legacy]\npeers = [\"127.0.0.1:{}\"]\n\n", app.port)
        + &format!("[upstreams.topmediai]\npeers = [\"127.0.0.1:{}\"]\n\n[upstreams.topmediai.circuit_breaker]\nfailure_rate = 0.5\nmin_requests = 2\nwindow = \"10s\"\nopen_for = \"4s\"\nhalf_open_requests = 1\n\n[upstreams.topmediai.retry]\nattempts = 2\nbackoff_base = \"5ms\"\nbackoff_max = \"20ms\"\n\n", topmediai.port)
        + &format!("[jwt]\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET}\"\n\n")
        + "[rate_limits.default]\nper_ip = \"5/min\"\n\n"
        + "[suspicious]\nmode = \"block\"\nban_threshold = 2\nban_duration = \"15m\"\n\n"
        + "[[routes]]\nname = \"generate\"\npath_prefix = \"/api/generate\"\nupstream = \"topmediai\"\nauth = \"none\"\nrate_limit = \"off\"\n\n"
        + "[[routes]]\nname = \"music\"\npath_prefix = \"/api/music\"\nupstream = \"legacy\"\nauth = \"optional\"\n\n"
        + "[[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"legacy\"\nauth = \"none\"\nrate_limit = \"off\"\n";
    let gw = Gateway::start("status-browser", port, admin, &config, &[]);
    let (alice, expired) = (token("alice", 600), token("bob", -60));
    for (client, n) in [
        ("203.0.113.7", 12),
        ("2001:db8:1:2::5", 8),
        ("198.51.100.23", 7),
    ] {
        for i in 0..n {
            from(&gw, client, &format!("/api/music/{i}"), Some(&alice));
        }
    }
    assert_eq!(from(&gw, "192.0.2.10", "/api/music/x", Some(&expired)), 401);
    for i in 0..30 {
        from(&gw, "192.0.2.10", &format!("/about/{i}"), None);
    }
    // Two attacks from one client: blocked, then banned.
    from(&gw, "192.0.2.66", "/?q=%27%20OR%20%271%27=%271", None);
    from(
        &gw,
        "192.0.2.66",
        "/?q=%3Cscript%3Ealert(1)%3C/script%3E",
        None,
    );
    assert_eq!(from(&gw, "192.0.2.66", "/", None), 403, "banned");
    assert_eq!(gw.get("/api/generate/ok").status, 200);

    b.watch_problems();
    b.set_viewport(1280, 1000);
    let page = format!("http://127.0.0.1:{admin}/status");
    b.open(&page);
    // A mark a reload of the page would erase.
    b.eval("window.__sameDocument = 1, true");
    assert!(
        b.wait_for(
            Duration::from_secs(10),
            "document.getElementById('live').textContent === 'live'"
        ),
        "the page's own script ran"
    );
    assert_eq!(
        b.eval("getComputedStyle(document.querySelector('td.breaker')).fontWeight"),
        "600",
        "the style sheet applied"
    );
    let points = "document.querySelector('svg.chart polyline').getAttribute('points').trim().split(/\\s+/).length";
    assert_eq!(b.eval(points), 15, "a point per minute of the last 15");
    assert_eq!(b.eval(&breaker_cell("topmediai")), "closed");

    // TopMediai fails: the breaker opens, and the page shows it without a reload.
    topmediai.set(503);
    for i in 0..3 {
        gw.get(&format!("/api/generate/{i}"));
    }
    assert!(
        b.wait_for(
            Duration::from_secs(10),
            &format!("{} === 'open'", breaker_cell("topmediai"))
        ),
        "the page shows the breaker open: {}",
        b.eval(&breaker_cell("topmediai"))
    );
    assert_eq!(
        b.eval("document.querySelector('tr[data-key=\"topmediai\"] td.breaker').className"),
        "breaker bad"
    );
    full_page_screenshot(&mut b, "status-breaker-open.png");

    // It recovers: a probe after open_for closes the breaker, and the page follows.
    topmediai.set(200);
    assert!(wait_until(Duration::from_secs(10), || gw
        .get("/api/generate/probe")
        .status
        == 200));
    assert!(
        b.wait_for(
            Duration::from_secs(10),
            &format!("{} === 'closed'", breaker_cell("topmediai"))
        ),
        "the page shows the breaker closed again: {}",
        b.eval(&breaker_cell("topmediai"))
    );
    assert_eq!(
        b.eval("window.__sameDocument"),
        1,
        "the page was never reloaded"
    );
    let drawn = "Array.from(document.querySelectorAll('svg.chart polyline')).every(p => p.getAttribute('points').split(' ').length === 15)";
    assert_eq!(b.eval(drawn), true, "every redrawn chart has its points");

    let limited =
        "document.querySelector('tbody[data-list=\"rate_limited_clients\"] td').textContent";
    assert_eq!(
        b.eval(limited),
        "203.0.113.7",
        "the most limited client first"
    );
    let ban = "document.querySelector('tbody[data-list=\"bans\"] td').textContent";
    assert_eq!(b.eval(ban), "192.0.2.66");
    full_page_screenshot(&mut b, "status-page.png");

    let problems = b.problems();
    assert!(
        problems.is_empty(),
        "the page reported problems: {problems:#?}"
    );

    // The CSP is enforced: an inline script is refused (and reported as a violation).
    let injected = "new Promise(done => {\
        document.addEventListener('securitypolicyviolation', e => done(e.violatedDirective), {once: true});\
        const s = document.createElement('script');\
        s.textContent = 'window.__inline = 1';\
        document.body.appendChild(s);\
        setTimeout(() => done('no violation'), 3000);\
    })";
    assert_eq!(b.eval(injected), "script-src-elem");
    assert_eq!(b.eval("window.__inline === undefined"), true);
}

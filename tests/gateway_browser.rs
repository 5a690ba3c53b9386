//! Browser sessions in a real browser: Debian's headless Chromium, driven over the DevTools
//! protocol, against the real binary in front of the demo backend (deploy/demo/backend.py).
//!
//! - the demo page's `<img>` and `<audio>` load through the gateway with the login cookie
//!   and fail without it;
//! - a page on a second origin loads a signed image URL, and fails on an expired one;
//! - a form on a second origin posting to the gateway with the cookie is refused (403), while
//!   the page's own same-origin `fetch` POST passes.
//!
//! Screenshots go to `target/e2e-artifacts/`. Skips, saying so, only when Chromium is not
//! installed (scripts/install-deps installs it).

#[path = "harness/mod.rs"]
mod harness;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::*;
use portcullis_signed_url::SignedUrls;

const SECRET: &str = "browser-e2e-jwt-secret-0123456789abcdef";
const MEDIA_KEY: &str = "browser-e2e-media-key-0123456789abcdefgh";

/// A child process killed when the test ends.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn listening(port: u16) -> bool {
    wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
}

fn artifacts() -> PathBuf {
    let dir = repo().join("target/e2e-artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts directory");
    dir
}

fn demo_backend() -> (Process, u16) {
    let port = free_port();
    let child = Command::new("python3")
        .arg(repo().join("deploy/demo/backend.py"))
        .args([&port.to_string(), SECRET])
        .stdout(Stdio::null())
        .spawn()
        .expect("start the demo backend");
    assert!(listening(port), "the demo backend listens");
    (Process(child), port)
}

/// A static site on another origin (same host, another port: same-site, cross-origin).
fn second_origin(html: &str) -> (Process, u16, PathBuf) {
    let dir = scratch("second-origin");
    std::fs::write(dir.join("index.html"), html).unwrap();
    let port = free_port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the second origin");
    assert!(listening(port), "the second origin listens");
    (Process(child), port, dir)
}

fn gateway(backend: u16) -> Gateway {
    let (port, admin) = (free_port(), free_port());
    let config = server_section(port, admin, "")
        + &format!("[upstreams.legacy]\npeers = [\"127.0.0.1:{backend}\"]\n\n")
        + &format!("[jwt]\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET}\"\nissuer = \"legacy-app\"\nforward_claims = {{ sub = \"x-user-id\" }}\nsources = [\"header\", \"cookie:session\"]\n\n")
        + "[[routes]]\nname = \"account\"\npath_prefix = \"/api/account\"\nupstream = \"legacy\"\nauth = \"required\"\n\n"
        + &format!("[[routes]]\nname = \"images\"\npath_prefix = \"/api/images\"\nupstream = \"legacy\"\nauth = \"required\"\nsigned_urls = {{ keys = [\"{MEDIA_KEY}\"], max_ttl = \"1h\" }}\n\n")
        + "[[routes]]\nname = \"audio\"\npath_prefix = \"/api/audio\"\nupstream = \"legacy\"\nauth = \"required\"\n\n"
        + "[[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"legacy\"\nauth = \"none\"\n";
    Gateway::start("browser", port, admin, &config, &[])
}

fn browser() -> Option<Browser> {
    let launched = Browser::launch();
    if launched.is_none() {
        eprintln!(
            "SKIPPED: no Chromium at /usr/bin/chromium (scripts/install-deps installs Debian's chromium package)"
        );
    }
    launched
}

/// What the demo page's script reported: (image natural width, audio duration).
fn media_report(b: &mut Browser) -> (f64, f64) {
    assert!(
        b.wait_for(Duration::from_secs(15), "document.title !== 'pending'"),
        "the page reported on its media: {}",
        b.eval("document.getElementById('status').textContent")
    );
    let report = b.eval("JSON.parse(document.title)");
    (
        report["image"].as_f64().unwrap_or(-1.0),
        report["audio"].as_f64().unwrap_or(-1.0),
    )
}

#[test]
fn the_demo_page_loads_protected_media_with_the_login_cookie_only() {
    let Some(mut b) = browser() else { return };
    let (_backend, backend_port) = demo_backend();
    let gw = gateway(backend_port);
    let origin = format!("http://127.0.0.1:{}", gw.port);

    b.open(&format!("{origin}/"));
    assert_eq!(media_report(&mut b), (0.0, 0.0), "no cookie: both refused");
    b.screenshot(&artifacts().join("demo-logged-out.png"));

    b.open(&format!("{origin}/login?user=alice&next=/"));
    assert_eq!(
        b.eval("location.pathname"),
        "/",
        "the login redirected back"
    );
    let (width, duration) = media_report(&mut b);
    assert_eq!(width, 96.0, "the image has its natural width");
    assert!(duration > 0.9, "the audio loaded its metadata: {duration}");
    b.screenshot(&artifacts().join("demo-logged-in.png"));
    assert!(
        gw.metric(
            "portcullis_auth_credentials_total",
            &[("source", "cookie"), ("result", "valid")]
        ) >= 2.0
    );

    // The page's own script may write with the cookie (same-origin).
    let status =
        b.eval("fetch('/api/account/settings', {method: 'POST', body: '{}'}).then(r => r.status)");
    assert_eq!(status, 200, "a same-origin POST passes");

    // A form on another origin of the same site posts with the cookie: refused.
    let form = format!(
        "<!doctype html><form method=post action=\"{origin}/api/account/settings\"><input name=a value=1></form>"
    );
    let (_site, site_port, _dir) = second_origin(&form);
    b.open(&format!("http://127.0.0.1:{site_port}/"));
    b.eval("document.forms[0].submit(), true");
    assert!(
        b.wait_for(
            Duration::from_secs(10),
            "location.pathname === '/api/account/settings' && document.readyState === 'complete'"
        ),
        "the form was submitted"
    );
    let body = b.eval("document.body.innerText");
    assert!(
        body.as_str().is_some_and(|t| t.contains("\"forbidden\"")),
        "{body}"
    );
    b.screenshot(&artifacts().join("cross-site-post-refused.png"));
    assert!(wait_until(Duration::from_secs(5), || gw
        .access_log()
        .iter()
        .any(|l| l["reason"] == "cross_site" && l["user"].is_null())));
}

#[test]
fn another_origin_loads_a_signed_image_and_not_an_expired_one() {
    let Some(mut b) = browser() else { return };
    let (_backend, backend_port) = demo_backend();
    let gw = gateway(backend_port);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let signer = SignedUrls::new(&[MEDIA_KEY], Duration::from_secs(3600)).unwrap();
    let path = "/api/images/cover.png";
    let valid = signer.sign(path, now + 600, Some("alice")).unwrap();
    let expired = signer.sign(path, now - 60, Some("alice")).unwrap();
    let origin = format!("http://127.0.0.1:{}", gw.port);
    let page = format!(
        "<!doctype html><title>media</title>\
         <img id=signed src=\"{origin}{path}?{valid}\">\
         <img id=expired src=\"{origin}{path}?{expired}\">\
         <img id=plain src=\"{origin}{path}\">"
    );
    let (_site, site_port, _dir) = second_origin(&page);
    b.open(&format!("http://127.0.0.1:{site_port}/"));
    let settled = "['signed','expired','plain'].every(id => document.getElementById(id).complete)";
    assert!(
        b.wait_for(Duration::from_secs(15), settled),
        "the images settled"
    );
    let width = |b: &mut Browser, id: &str| {
        b.eval(&format!("document.getElementById('{id}').naturalWidth"))
    };
    assert_eq!(
        width(&mut b, "signed"),
        96,
        "the signed URL loads on another origin"
    );
    assert_eq!(width(&mut b, "expired"), 0, "the expired one does not");
    assert_eq!(
        width(&mut b, "plain"),
        0,
        "nor the bare URL without a cookie"
    );
    b.screenshot(&artifacts().join("signed-url-second-origin.png"));
    assert_eq!(
        gw.metric(
            "portcullis_auth_credentials_total",
            &[("source", "signed_url"), ("result", "expired")]
        ),
        1.0
    );
}

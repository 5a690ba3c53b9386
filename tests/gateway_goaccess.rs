//! The access log in GoAccess: the commands docs/operations.md gives, run as written on a real
//! run's log, build a report whose totals, statuses, paths, clients, bytes and durations match
//! the requests sent. With Chromium present, the HTML report is also rendered and captured
//! (target/e2e-artifacts/goaccess-report.png; docs/images/ holds a copy).

mod harness;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use harness::*;
use serde_json::Value;

/// The shell block of docs/operations.md that follows the `goaccess-report` marker.
fn documented_commands() -> String {
    let doc = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md"),
    )
    .expect("docs/operations.md");
    let after = doc
        .split("<!-- goaccess-report")
        .nth(1)
        .expect("the goaccess-report marker in docs/operations.md");
    let block = after
        .split("```sh\n")
        .nth(1)
        .expect("a sh block after the marker");
    block.split("\n```").next().unwrap().to_string()
}

fn panel<'a>(report: &'a Value, name: &str) -> &'a Vec<Value> {
    report[name]["data"]
        .as_array()
        .unwrap_or_else(|| panic!("panel {name}: {report}"))
}

/// Hits of the items of `panel` whose `data` is `key`, summed.
fn hits(report: &Value, name: &str, key: &str) -> u64 {
    panel(report, name)
        .iter()
        .filter(|i| i["data"] == key)
        .map(|i| i["hits"]["count"].as_u64().unwrap())
        .sum()
}

#[test]
fn goaccess_reads_the_access_log_as_documented() {
    for tool in ["goaccess", "jq"] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .status()
                .unwrap()
                .success(),
            "{tool} is missing: scripts/install-deps installs it"
        );
    }
    let backend = Backend::start_with("app", Duration::from_millis(300), &[]);
    let (port, admin) = (free_port(), free_port());
    let cfg = format!(
        "{}[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n\
         [[routes]]\nname = \"music\"\npath_prefix = \"/api/music\"\nupstream = \"app\"\n\n\
         [[routes]]\nname = \"slow\"\npath_prefix = \"/slow\"\nupstream = \"app\"\n",
        server_section(port, admin, "trusted_proxies = [\"127.0.0.1/32\"]\n"),
        backend.port
    );
    let gw = Gateway::start("goaccess", port, admin, &cfg, &[]);
    // An event line in the log, which is not a request.
    gw.reload(&cfg);
    assert!(wait_until(Duration::from_secs(5), || {
        gw.metric("portcullis_config_reloads_total", &[("result", "success")]) >= 1.0
    }));
    let xff = [("x-forwarded-for", "203.0.113.7")];
    for _ in 0..20 {
        assert_eq!(
            request(port, "GET", "/api/music/a?page=2", &xff, b"").status,
            200
        );
    }
    for _ in 0..2 {
        assert_eq!(
            request(port, "POST", "/api/music/a", &[], b"{}").status,
            200
        );
    }
    for _ in 0..7 {
        assert_eq!(request(port, "GET", "/api/music/b", &[], b"").status, 200);
    }
    assert_eq!(request(port, "GET", "/slow/song", &[], b"").status, 200);
    for _ in 0..5 {
        assert_eq!(request(port, "GET", "/nowhere", &[], b"").status, 404);
    }
    assert!(wait_until(Duration::from_secs(5), || gw.access_log().len() >= 35));
    let lines = gw.access_log();
    assert_eq!(lines.len(), 35);

    let dir = scratch("goaccess-report");
    let log = dir.join("access.log");
    std::fs::write(&log, gw.stdout()).unwrap();
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &documented_commands()])
        .env("LOG", &log)
        .env("OUT", &dir)
        .output()
        .expect("run the documented commands");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();

    let general = &report["general"];
    assert_eq!(general["total_requests"], 35, "{general}");
    assert_eq!(general["valid_requests"], 35);
    assert_eq!(
        general["failed_requests"], 0,
        "event lines never reach GoAccess"
    );
    let bytes: u64 = lines
        .iter()
        .map(|l| l["bytes_sent"].as_u64().unwrap())
        .sum();
    assert_eq!(general["bandwidth"], bytes);

    assert_eq!(
        hits(&report, "requests", "/api/music/a"),
        22,
        "GET and POST, query left out"
    );
    assert_eq!(hits(&report, "requests", "/api/music/b"), 7);
    assert_eq!(
        hits(&report, "not_found", "/nowhere"),
        5,
        "404s are GoAccess's own panel"
    );
    assert_eq!(
        hits(&report, "hosts", "203.0.113.7"),
        20,
        "the client behind the proxy"
    );
    assert_eq!(hits(&report, "hosts", "127.0.0.1"), 15);
    assert_eq!(hits(&report, "status_codes", "2xx Success"), 30);
    assert_eq!(hits(&report, "status_codes", "4xx Client Errors"), 5);

    // Durations in microseconds, as logged.
    let slow_logged = lines
        .iter()
        .find(|l| l["path"] == "/slow/song")
        .map(|l| (l["duration_ms"].as_f64().unwrap() * 1000.0).round() as u64)
        .unwrap();
    let slow = panel(&report, "requests")
        .iter()
        .find(|i| i["data"] == "/slow/song")
        .expect("the slow path");
    assert!(slow_logged >= 300_000, "{slow_logged}");
    assert_eq!(slow["maxts"], slow_logged);
    assert_eq!(slow["avgts"], slow_logged);

    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    // The data is embedded as JSON (`/` escaped as `\/`).
    assert!(html.contains("GoAccess") && html.contains(r"\/slow\/song"));
    screenshot(&dir.join("report.html"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The HTML report in headless Chromium, captured for the docs.
fn screenshot(report: &std::path::Path) {
    let Some(mut b) = Browser::launch() else {
        eprintln!("SKIPPED the screenshot: no Chromium at /usr/bin/chromium");
        return;
    };
    b.set_viewport(1280, 1400);
    b.open(&format!("file://{}", report.display()));
    assert!(
        b.wait_for(
            Duration::from_secs(10),
            "document.querySelectorAll('.panel, #panel-requests, table').length > 0"
        ),
        "the report did not render"
    );
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/e2e-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    b.screenshot(&dir.join("goaccess-report.png"));
}

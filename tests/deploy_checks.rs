//! The operations kit checked against the real thing: the alert rules and their promtool unit
//! tests, the dashboard's metric names, and `promtool check metrics` on a live scrape of the
//! real binary after traffic that touches every metric family.

#[path = "harness/mod.rs"]
mod harness;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use harness::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn promtool(args: &[&str], dir: &Path, stdin: Option<&[u8]>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (scripts/install-deps installs it)");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The metric families of CONTRACT.md plus this gateway's extension.
const FAMILIES: &[&str] = &[
    "portcullis_requests_total",
    "portcullis_request_duration_seconds",
    "portcullis_upstream_requests_total",
    "portcullis_upstream_retries_total",
    "portcullis_circuit_breaker_state",
    "portcullis_jwt_cache_hits_total",
    "portcullis_jwt_cache_misses_total",
    "portcullis_jwt_validations_total",
    "portcullis_jwks_refreshes_total",
    "portcullis_rate_limited_total",
    "portcullis_rate_limit_store_errors_total",
    "portcullis_suspicious_requests_total",
    "portcullis_https_redirects_total",
    "portcullis_config_reloads_total",
    "portcullis_cache_requests_total",
    "portcullis_cache_bytes",
    "portcullis_acme_certificate_expiry_timestamp_seconds",
    "portcullis_acme_orders_total",
];

#[test]
fn alert_rules_pass_promtool_and_every_alert_has_a_unit_test() {
    let dir = repo().join("deploy/prometheus");
    let (ok, out) = promtool(&["check", "rules", "alerts.yml"], &dir, None);
    assert!(ok, "{out}");
    let (ok, out) = promtool(&["check", "config", "prometheus.yml"], &dir, None);
    assert!(ok, "{out}");
    let (ok, out) = promtool(&["test", "rules", "alerts_test.yml"], &dir, None);
    assert!(ok, "{out}");
    let rules = std::fs::read_to_string(dir.join("alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("alerts_test.yml")).unwrap();
    let alerts = alert_rules(&rules);
    assert_eq!(alerts.len(), 9);
    for (alert, block) in alerts {
        let cases = tests.matches(&format!("alertname: {alert}\n")).count();
        assert!(
            cases >= 2,
            "{alert}: {cases} test cases (want one firing, one quiet)"
        );
        let runbook = annotation(&block, "runbook");
        assert!(
            runbook.as_deref().is_some_and(|r| !r.is_empty()),
            "{alert} has no runbook annotation of its own:\n{}",
            block.join("\n")
        );
    }
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// Each `- alert: NAME` rule of a rules file with its own lines: from its `- alert:` line to
/// the next item of the same list (or anything less indented).
fn alert_rules(rules: &str) -> Vec<(String, Vec<&str>)> {
    let mut alerts: Vec<(String, usize, Vec<&str>)> = Vec::new();
    let mut open = false;
    for line in rules.lines() {
        let depth = indent(line);
        if let Some(name) = line.trim().strip_prefix("- alert: ") {
            alerts.push((name.trim().to_string(), depth, vec![line]));
            open = true;
            continue;
        }
        let Some((_, item, block)) = alerts.last_mut().filter(|_| open) else {
            continue;
        };
        let blank = line.trim().is_empty() || line.trim_start().starts_with('#');
        if !blank && depth <= *item {
            // The next item of the rules list, or the end of the list.
            open = false;
            continue;
        }
        block.push(line);
    }
    alerts
        .into_iter()
        .map(|(name, _, block)| (name, block))
        .collect()
}

/// The value of `key` under the `annotations:` map of one rule's lines (quotes removed; a
/// block scalar's lines joined).
fn annotation(block: &[&str], key: &str) -> Option<String> {
    let start = block.iter().position(|l| l.trim() == "annotations:")?;
    let depth = indent(block[start]);
    let entries: Vec<&str> = block[start + 1..]
        .iter()
        .copied()
        .filter(|l| !l.trim().is_empty())
        .take_while(|l| indent(l) > depth)
        .collect();
    let at = entries
        .iter()
        .position(|l| l.trim_start().starts_with(&format!("{key}:")))?;
    let entry_depth = indent(entries[at]);
    let value = entries[at].trim_start()[key.len() + 1..].trim();
    let value = if value.starts_with('|') || value.starts_with('>') {
        entries[at + 1..]
            .iter()
            .take_while(|l| indent(l) > entry_depth)
            .map(|l| l.trim())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        value
            .trim_matches(|c| c == '"' || c == '\'')
            .trim()
            .to_string()
    };
    Some(value)
}

#[test]
fn the_dashboard_and_the_alerts_use_only_metrics_the_gateway_exports() {
    let known: BTreeSet<&str> = FAMILIES.iter().copied().collect();
    for file in [
        "deploy/grafana/portcullis.json",
        "deploy/prometheus/alerts.yml",
    ] {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        if file.ends_with(".json") {
            let _: serde_json::Value = serde_json::from_str(&text).expect("valid dashboard JSON");
        }
        let used: BTreeSet<String> = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("portcullis_"))
            .map(|w| {
                w.trim_end_matches("_bucket")
                    .trim_end_matches("_sum")
                    .trim_end_matches("_count")
                    .to_string()
            })
            .collect();
        for name in &used {
            assert!(
                known.contains(name.as_str()),
                "{file} uses {name}, which the gateway does not export"
            );
        }
        assert!(used.len() >= 8, "{file} covers the main families: {used:?}");
    }
}

#[test]
fn a_live_scrape_after_traffic_passes_promtool_check_metrics() {
    let app = Backend::start("app");
    let dead = free_port();
    let (port, admin) = (free_port(), free_port());
    let secret = "metrics-secret-metrics-secret-0123456789";
    let config = server_section(port, admin, "")
        + &format!("[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n", app.port)
        + &format!("[upstreams.gone]\npeers = [\"127.0.0.1:{dead}\"]\n\n[upstreams.gone.retry]\nattempts = 1\nbackoff_base = \"1ms\"\nbackoff_max = \"5ms\"\n\n[upstreams.gone.circuit_breaker]\nmin_requests = 2\nfailure_rate = 0.5\n\n")
        + "[jwt]\nalgorithms = [\"HS256\"]\nsecret = \"${E2E_SECRET}\"\n\n"
        + "[rate_limits.tight]\nper_ip = \"1/min\"\n\n"
        + "[suspicious]\nmode = \"block\"\n\n"
        + "[[routes]]\nname = \"secure\"\npath_prefix = \"/secure\"\nupstream = \"app\"\n\n"
        + "[[routes]]\nname = \"tight\"\npath_prefix = \"/tight\"\nupstream = \"app\"\nauth = \"none\"\nrate_limit = \"tight\"\n\n"
        + "[[routes]]\nname = \"gone\"\npath_prefix = \"/gone\"\nupstream = \"gone\"\nauth = \"none\"\n\n"
        + "[[routes]]\nname = \"cached\"\npath_prefix = \"/cached\"\nupstream = \"app\"\nauth = \"none\"\ncache = {}\n";
    let gw = Gateway::start("metrics", port, admin, &config, &[("E2E_SECRET", secret)]);
    gw.get("/secure/x");
    gw.request(
        "GET",
        "/secure/x",
        &[("Authorization", "Bearer a.b.c")],
        b"",
    );
    gw.get("/tight/1");
    gw.get("/tight/2");
    gw.get("/tight/?q=%3Cscript%3Ealert(1)%3C/script%3E");
    for _ in 0..3 {
        gw.get("/gone/x");
    }
    gw.get("/cached/x");
    gw.get("/cached/x");
    gw.reload(&config);
    assert!(wait_until(std::time::Duration::from_secs(10), || {
        gw.metric("portcullis_config_reloads_total", &[("result", "success")]) >= 1.0
    }));
    let body = gw.admin_get("/metrics").expect("scrape").body;
    let (ok, out) = promtool(&["check", "metrics"], &repo(), Some(&body));
    assert!(ok, "promtool check metrics:\n{out}");
    let text = String::from_utf8_lossy(&body);
    // JWKS fetches exist only with a jwks_url (gateway_auth covers them), the ACME families
    // only with [acme] (gateway_acme covers them).
    for family in FAMILIES
        .iter()
        .filter(|f| **f != "portcullis_jwks_refreshes_total" && !f.starts_with("portcullis_acme_"))
    {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing from /metrics"
        );
    }
}

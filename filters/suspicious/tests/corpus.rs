//! Detection and false-positive rates of the suspicious-request rules on the two corpora in
//! `tests/corpus/` (format described at the top of each file). Run with `--nocapture` to
//! see the rates:
//!
//! `cargo test -p portcullis-edge --test corpus -- --nocapture`

use std::path::Path;

use portcullis_config::Suspicious;
use portcullis_suspicious::{Detector, Finding};

const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0";

fn lines(name: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// `UA: text`, `METHOD target` or `target`, as a request with browser-like headers.
fn request(line: &str) -> http::request::Parts {
    let (method, target, agent) = match line.split_once(' ') {
        Some(("UA:", agent)) => ("GET", "/", agent),
        Some((method, target)) if method.bytes().all(|b| b.is_ascii_alphabetic()) => {
            (method, target, BROWSER)
        }
        _ => ("GET", line, BROWSER),
    };
    http::Request::builder()
        .method(method)
        .uri(target)
        .header("host", "music.example.com")
        .header("user-agent", agent)
        .header("accept", "*/*")
        .header("accept-language", "en-GB,en;q=0.9,ko;q=0.8")
        .body(())
        .unwrap_or_else(|e| panic!("corpus line is not a valid request: {line:?}: {e}"))
        .into_parts()
        .0
}

fn run(detector: &Detector, name: &str) -> Vec<(String, Option<Finding>)> {
    lines(name)
        .into_iter()
        .map(|line| {
            let finding = detector.inspect(&request(&line));
            (line, finding)
        })
        .collect()
}

#[test]
fn benign_traffic_passes_and_attacks_are_caught() {
    let detector = Detector::new(&Suspicious::default());
    let benign = run(&detector, "benign.txt");
    let attacks = run(&detector, "attack.txt");
    let false_positives: Vec<_> = benign.iter().filter(|(_, f)| f.is_some()).collect();
    let missed: Vec<_> = attacks.iter().filter(|(_, f)| f.is_none()).collect();
    let fp_rate = 100.0 * false_positives.len() as f64 / benign.len() as f64;
    let detection = 100.0 * (attacks.len() - missed.len()) as f64 / attacks.len() as f64;
    println!(
        "benign corpus: {} requests, {} flagged ({fp_rate:.1}% false positives)",
        benign.len(),
        false_positives.len()
    );
    println!(
        "attack corpus: {} requests, {} detected ({detection:.1}%)",
        attacks.len(),
        attacks.len() - missed.len()
    );
    for rule in portcullis_suspicious::Rule::ALL {
        let n = attacks
            .iter()
            .filter(|(_, f)| f.as_ref().is_some_and(|f| f.rule == rule.name()))
            .count();
        println!("  {:<20} {n}", rule.name());
    }
    for (line, _) in &missed {
        println!("  missed: {line}");
    }
    assert!(
        benign.len() >= 150 && attacks.len() >= 100,
        "corpora too small"
    );
    assert!(
        false_positives.is_empty(),
        "false positives: {false_positives:#?}"
    );
    assert!(detection >= 95.0, "detection {detection:.1}% < 95%");
}

/// The conformance suite's own expectations (shared/conformance/suites/edge.py).
#[test]
fn conformance_examples() {
    let detector = Detector::new(&Suspicious::default());
    for line in [
        "/../../etc/passwd",
        "/?q=1%27%20OR%20%271%27=%271",
        "/?q=%3Cscript%3Ealert(1)%3C/script%3E",
        "UA: sqlmap/1.7#stable",
        "TRACE /",
    ] {
        assert!(detector.inspect(&request(line)).is_some(), "{line}");
    }
    let ids: Vec<String> = (1000..1150).map(|i| i.to_string()).collect();
    let long = format!("/api/music?ids={}", ids.join(","));
    for line in [
        "/?q=rock%20%26%20roll",
        "/?q=don%27t%20stop",
        "/?q=%EC%9D%8C%EC%95%85",
        "/api/music?page=2&sort=-created_at",
        "POST /api/music",
        long.as_str(),
    ] {
        assert_eq!(detector.inspect(&request(line)), None, "{line}");
    }
}

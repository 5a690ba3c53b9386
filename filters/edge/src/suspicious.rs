//! Suspicious-request detection (OWASP Core Rule Set ideas, kept deliberately narrow so
//! ordinary traffic passes: quotes, apostrophes, unicode and words like "select" in a search
//! are fine; only attack *shapes* match). The path and query are percent-decoded up to twice
//! (double encoding) and lower-cased before matching. Bodies are never inspected.

use http::request::Parts;
use http::Method;
use portcullis_config::Suspicious;

/// A rule that matched: its name (a metric label) and a short, log-safe detail.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub rule: &'static str,
    pub detail: String,
}

const SQL: &[&str] = &[
    "' or '1'='1",
    "' or 1=1",
    "\" or \"1\"=\"1",
    "' or ''='",
    "or 1=1--",
    "' --",
    "';--",
    "union select",
    "union all select",
    "; drop table",
    ";drop table",
    "' and sleep(",
    "sleep(5)",
    "benchmark(",
    "waitfor delay",
    "information_schema",
    "/**/",
    "xp_cmdshell",
    "' having 1=1",
    "load_file(",
    "into outfile",
    "@@version",
    "pg_sleep(",
];
const SCRIPT: &[&str] = &[
    "<script",
    "</script",
    "javascript:",
    "onerror=",
    "onload=",
    "onmouseover=",
    "<svg",
    "<iframe",
    "document.cookie",
    "<img src",
    "alert(",
    "eval(",
    "vbscript:",
    "<body onload",
    "srcdoc=",
];
const TRAVERSAL: &[&str] = &[
    "../",
    "..\\",
    "/..",
    "\\..",
    "%c0%ae",
    "%c1%9c",
    "/etc/passwd",
    "c:\\windows",
    "/proc/self",
];
const SCANNERS: &[&str] = &[
    "sqlmap",
    "nikto",
    "nmap",
    "masscan",
    "zgrab",
    "acunetix",
    "nessus",
    "wpscan",
    "dirbuster",
    "gobuster",
    "nuclei",
    "openvas",
    "w3af",
    "havij",
    "netsparker",
    "arachni",
    "ffuf",
    "feroxbuster",
    "whatweb",
    "zmeu",
];

pub struct Detector {
    cfg: Suspicious,
}

fn decode(input: &str) -> String {
    percent_encoding::percent_decode_str(input)
        .decode_utf8_lossy()
        .replace('+', " ")
}

impl Detector {
    pub fn new(cfg: &Suspicious) -> Self {
        Detector { cfg: cfg.clone() }
    }

    fn on(&self, rule: &str) -> bool {
        !self.cfg.disabled_rules.iter().any(|r| r == rule)
    }

    pub fn inspect(&self, req: &Parts) -> Option<Finding> {
        let found = |rule: &'static str, detail: &str| {
            let detail: String = detail
                .chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect();
            Some(Finding { rule, detail })
        };
        let method = req.method.as_str();
        if self.on("forbidden_method")
            && (req.method == Method::TRACE || req.method == Method::CONNECT || method == "TRACK")
        {
            return found("forbidden_method", method);
        }
        let raw = req.uri.path_and_query().map_or("/", |p| p.as_str());
        if self.on("oversized_uri") && raw.len() > self.cfg.max_uri_bytes {
            return found("oversized_uri", &format!("{} bytes", raw.len()));
        }
        if self.on("too_many_headers") && req.headers.len() > self.cfg.max_headers {
            return found(
                "too_many_headers",
                &format!("{} headers", req.headers.len()),
            );
        }
        let ua = req
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if self.on("scanner_user_agent") {
            if let Some(s) = SCANNERS.iter().find(|s| ua.contains(*s)) {
                return found("scanner_user_agent", s);
            }
        }
        let once = decode(raw);
        let twice = decode(&once);
        let lowered = raw.to_ascii_lowercase();
        for text in [
            lowered.as_str(),
            &once.to_lowercase(),
            &twice.to_lowercase(),
        ] {
            if self.on("null_byte") && text.contains('\0') {
                return found("null_byte", "NUL");
            }
            if self.on("control_chars") && text.chars().any(|c| c.is_control() && c != '\0') {
                return found("control_chars", "control character");
            }
            if self.on("path_traversal") {
                if let Some(n) = TRAVERSAL.iter().find(|n| text.contains(*n)) {
                    return found("path_traversal", n);
                }
            }
            if self.on("script_injection") {
                if let Some(n) = SCRIPT.iter().find(|n| text.contains(*n)) {
                    return found("script_injection", n);
                }
            }
            if self.on("sql_injection") {
                if let Some(n) = SQL.iter().find(|n| text.contains(*n)) {
                    return found("sql_injection", n);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detector() -> Detector {
        Detector::new(&Suspicious {
            mode: portcullis_config::SuspiciousMode::Block,
            max_uri_bytes: 8192,
            max_headers: 100,
            ban_threshold: 10,
            ban_window: std::time::Duration::from_secs(60),
            ban_duration: std::time::Duration::from_secs(600),
            ban_table_size: 1000,
            disabled_rules: vec![],
        })
    }

    fn parts(method: &str, target: &str, ua: Option<&str>) -> Parts {
        let mut b = http::Request::builder().method(method).uri(target);
        if let Some(ua) = ua {
            b = b.header("user-agent", ua);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn corpus(name: &str) -> Vec<String> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/corpus")
            .join(name);
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    }

    fn inspect_line(d: &Detector, line: &str) -> Option<Finding> {
        match line.split_once(' ') {
            Some(("UA:", ua)) => d.inspect(&parts("GET", "/", Some(ua))),
            Some((method, target)) if method.chars().all(|c| c.is_ascii_uppercase()) => {
                d.inspect(&parts(method, target, None))
            }
            _ => d.inspect(&parts("GET", line, None)),
        }
    }

    #[test]
    fn the_benign_corpus_passes_and_the_attack_corpus_is_caught() {
        let d = detector();
        let benign = corpus("benign.txt");
        let flagged: Vec<&String> = benign
            .iter()
            .filter(|l| inspect_line(&d, l).is_some())
            .collect();
        let attacks = corpus("attack.txt");
        let missed: Vec<&String> = attacks
            .iter()
            .filter(|l| inspect_line(&d, l).is_none())
            .collect();
        let detection = 1.0 - missed.len() as f64 / attacks.len() as f64;
        println!(
            "benign: {} lines, {} flagged; attacks: {} lines, detection {:.1}%",
            benign.len(),
            flagged.len(),
            attacks.len(),
            detection * 100.0
        );
        assert!(flagged.is_empty(), "false positives: {flagged:?}");
        assert!(detection >= 0.95, "missed: {missed:?}");
    }

    #[test]
    fn disabled_rules_are_skipped() {
        let mut cfg = detector().cfg;
        cfg.disabled_rules = vec!["scanner_user_agent".into()];
        assert_eq!(
            Detector::new(&cfg).inspect(&parts("GET", "/", Some("sqlmap/1.7"))),
            None
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(target in "/[ -~]{0,200}") {
            if let Ok(uri) = target.parse::<http::Uri>() {
                let p = http::Request::builder().uri(uri).body(()).unwrap().into_parts().0;
                let _ = detector().inspect(&p);
            }
        }
    }
}

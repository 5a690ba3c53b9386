//! Suspicious-request detection and auto-ban.
//!
//! [`Detector::inspect`] looks at the method, the request target and the header section (never
//! the body) and names the first rule that matches. The rules follow OWASP's attack classes
//! (the Core Rule Set's ideas, kept deliberately narrow): each one matches an attack's
//! *shape*, not a word, so ordinary traffic (quotes and apostrophes in searches, unicode,
//! `select` or `union` in plain text, long lists of ids) passes. The target is decoded
//! first (percent-encoding twice, `+`, `%uXXXX`, overlong UTF-8; see `target.rs`) and
//! matched case-insensitively.
//!
//! [`BanList`] remembers clients whose requests were blocked and refuses them for a while.
//!
//! Cost on the hot path: the method, size and header-count checks are constant time; the user
//! agent and the target are each scanned a few times (linear, no backtracking), with the
//! signature lists compiled into Aho-Corasick automata once per configuration snapshot.

mod ban;
mod ban_range;
mod needles;
mod scanner;
mod script;
mod shared_bans;
mod sql;
mod target;
#[cfg(test)]
mod tests;
mod traversal;

pub use ban::BanList;
pub use shared_bans::{BanError, BanRange, SharedBans};

use http::header::USER_AGENT;
use http::request::Parts;
use portcullis_config::Suspicious;

use needles::Needles;
use target::{contains, Target};

/// A rule. The names are the `[suspicious] disabled_rules` values and the `rule` label of
/// `portcullis_suspicious_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// `..` as a path segment (raw, percent-encoded once or twice, overlong UTF-8,
    /// backslashes) in the path or a query value, and well-known target files.
    PathTraversal,
    /// A NUL byte anywhere in the decoded target (truncates strings in C-based backends,
    /// CWE-158).
    NullByte,
    /// Any other control byte (CR, LF, TAB, ESC, DEL, ...) in the decoded target: response
    /// splitting and log injection (CWE-113, CWE-117).
    ControlChars,
    /// SQL-injection structure in the path or query (see `sql.rs`), never plain words.
    SqlInjection,
    /// Script tags, event-handler attributes and `javascript:` URLs (see `script.rs`).
    ScriptInjection,
    /// A `User-Agent` naming a known attack tool (see `scanner.rs`).
    ScannerUserAgent,
    /// TRACE and TRACK (cross-site tracing) and CONNECT (proxy abuse).
    ForbiddenMethod,
    /// A request target longer than `max_uri_bytes`.
    OversizedUri,
    /// More header fields than `max_headers`.
    TooManyHeaders,
}

impl Rule {
    pub const ALL: [Rule; 9] = [
        Rule::PathTraversal,
        Rule::NullByte,
        Rule::ControlChars,
        Rule::SqlInjection,
        Rule::ScriptInjection,
        Rule::ScannerUserAgent,
        Rule::ForbiddenMethod,
        Rule::OversizedUri,
        Rule::TooManyHeaders,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Rule::PathTraversal => "path_traversal",
            Rule::NullByte => "null_byte",
            Rule::ControlChars => "control_chars",
            Rule::SqlInjection => "sql_injection",
            Rule::ScriptInjection => "script_injection",
            Rule::ScannerUserAgent => "scanner_user_agent",
            Rule::ForbiddenMethod => "forbidden_method",
            Rule::OversizedUri => "oversized_uri",
            Rule::TooManyHeaders => "too_many_headers",
        }
    }

    pub fn from_name(name: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.name() == name)
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// A rule that matched. `detail` is short, printable ASCII, and never echoes request bytes,
/// so it is safe in logs and log pipelines (CWE-117).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// [`Rule::name`].
    pub rule: &'static str,
    pub detail: String,
}

impl Finding {
    fn new(rule: Rule, detail: impl Into<String>) -> Option<Finding> {
        Some(Finding {
            rule: rule.name(),
            detail: detail.into(),
        })
    }
}

/// The rules of one `[suspicious]` section, compiled.
#[derive(Debug, Clone)]
pub struct Detector {
    enabled: [bool; Rule::ALL.len()],
    max_uri_bytes: usize,
    max_headers: usize,
    scanners: Needles,
    traversal: Needles,
    script: Needles,
    sql: Needles,
}

// === impl Detector ===

impl Detector {
    pub fn new(cfg: &Suspicious) -> Self {
        let mut enabled = [true; Rule::ALL.len()];
        for name in &cfg.disabled_rules {
            match Rule::from_name(name) {
                Some(rule) => enabled[rule.index()] = false,
                None => log::warn!("suspicious: ignoring unknown disabled rule `{name}`"),
            }
        }
        Detector {
            enabled,
            max_uri_bytes: cfg.max_uri_bytes,
            max_headers: cfg.max_headers,
            scanners: Needles::any_case(scanner::SIGNATURES),
            traversal: Needles::new(traversal::SIGNATURES),
            script: Needles::new(script::SIGNATURES),
            sql: Needles::new(sql::SIGNATURES),
        }
    }

    fn on(&self, rule: Rule) -> bool {
        self.enabled[rule.index()]
    }

    /// The first rule `req` breaks, cheapest checks first; `None` for an ordinary request.
    pub fn inspect(&self, req: &Parts) -> Option<Finding> {
        let method = req.method.as_str();
        if self.on(Rule::ForbiddenMethod)
            && ["TRACE", "TRACK", "CONNECT"]
                .iter()
                .any(|m| m.eq_ignore_ascii_case(method))
        {
            return Finding::new(Rule::ForbiddenMethod, method.to_ascii_uppercase());
        }
        let raw = req.uri.path_and_query().map_or("", |p| p.as_str());
        if self.on(Rule::OversizedUri) && raw.len() > self.max_uri_bytes {
            let detail = format!("{} bytes, limit {}", raw.len(), self.max_uri_bytes);
            return Finding::new(Rule::OversizedUri, detail);
        }
        if self.on(Rule::TooManyHeaders) && req.headers.len() > self.max_headers {
            let detail = format!("{} fields, limit {}", req.headers.len(), self.max_headers);
            return Finding::new(Rule::TooManyHeaders, detail);
        }
        if self.on(Rule::ScannerUserAgent) {
            for agent in req.headers.get_all(USER_AGENT) {
                if let Some(tool) = self.scanners.find(agent.as_bytes()) {
                    return Finding::new(Rule::ScannerUserAgent, tool);
                }
            }
        }
        self.inspect_target(raw.as_bytes())
    }

    fn inspect_target(&self, raw: &[u8]) -> Option<Finding> {
        let content = [
            Rule::NullByte,
            Rule::ControlChars,
            Rule::PathTraversal,
            Rule::ScriptInjection,
            Rule::SqlInjection,
        ];
        if !content.iter().any(|r| self.on(*r)) {
            return None;
        }
        let target = Target::new(raw);
        if self.on(Rule::NullByte) && (target.nul || contains(&target.canonical, b"%00")) {
            return Finding::new(Rule::NullByte, "NUL byte");
        }
        if self.on(Rule::ControlChars) {
            if let Some(b) = target.control {
                return Finding::new(Rule::ControlChars, format!("control byte 0x{b:02x}"));
            }
        }
        if self.on(Rule::PathTraversal) {
            if let Some(sig) = traversal::find(&target, &self.traversal) {
                return Finding::new(Rule::PathTraversal, sig);
            }
        }
        if self.on(Rule::ScriptInjection) {
            if let Some(sig) = script::find(&target.canonical, &self.script) {
                return Finding::new(Rule::ScriptInjection, sig);
            }
        }
        if self.on(Rule::SqlInjection) {
            if let Some(sig) = sql::find(&target.canonical, &self.sql) {
                return Finding::new(Rule::SqlInjection, sig);
            }
        }
        None
    }
}

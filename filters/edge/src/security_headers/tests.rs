use http::{HeaderName, HeaderValue};

use super::*;

fn set_value(ops: &[HeaderOp], name: &str) -> Option<String> {
    ops.iter().find_map(|op| match op {
        HeaderOp::Set(n, v) if n == name => Some(v.to_str().unwrap().to_string()),
        _ => None,
    })
}

fn removed(ops: &[HeaderOp], name: &str) -> bool {
    ops.iter()
        .any(|op| matches!(op, HeaderOp::Remove(n) if n == name))
}

fn with(overrides: &[(&'static str, Option<&'static str>)]) -> SecurityHeaders {
    SecurityHeaders::new(&portcullis_config::SecurityHeaders {
        overrides: overrides
            .iter()
            .map(|(n, v)| (HeaderName::from_static(n), v.map(HeaderValue::from_static)))
            .collect(),
    })
}

#[test]
fn every_default_is_set_with_helmet_values() {
    let h = with(&[]);
    let expected = [
        ("content-security-policy", DEFAULT_CSP),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "SAMEORIGIN"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
        ("origin-agent-cluster", "?1"),
        ("x-dns-prefetch-control", "off"),
        ("x-download-options", "noopen"),
        ("x-permitted-cross-domain-policies", "none"),
        ("x-xss-protection", "0"),
    ];
    for https in [false, true] {
        let ops = h.operations(https);
        for (name, value) in expected {
            assert_eq!(set_value(ops, name).as_deref(), Some(value), "{name}");
        }
        assert!(removed(ops, "server"));
        assert!(removed(ops, "x-powered-by"));
    }
    assert!(DEFAULT_CSP.starts_with("default-src 'self';base-uri 'self';"));
    assert!(DEFAULT_CSP.ends_with(";upgrade-insecure-requests"));
}

#[test]
fn hsts_only_over_https_and_stripped_over_plain_http() {
    let h = with(&[]);
    assert_eq!(
        set_value(h.operations(true), "strict-transport-security").as_deref(),
        Some("max-age=31536000; includeSubDomains")
    );
    assert_eq!(
        set_value(h.operations(false), "strict-transport-security"),
        None
    );
    assert!(removed(h.operations(false), "strict-transport-security"));
}

#[test]
fn overrides_replace_and_add() {
    let h = with(&[
        (
            "content-security-policy",
            Some("default-src 'none'; frame-ancestors 'none'"),
        ),
        ("referrer-policy", Some("strict-origin")),
        ("permissions-policy", Some("camera=(), microphone=()")),
        (
            "strict-transport-security",
            Some("max-age=63072000; preload"),
        ),
    ]);
    let ops = h.operations(true);
    assert_eq!(
        set_value(ops, "content-security-policy").as_deref(),
        Some("default-src 'none'; frame-ancestors 'none'")
    );
    assert_eq!(
        set_value(ops, "referrer-policy").as_deref(),
        Some("strict-origin")
    );
    assert_eq!(
        set_value(ops, "permissions-policy").as_deref(),
        Some("camera=(), microphone=()")
    );
    assert_eq!(
        set_value(ops, "strict-transport-security").as_deref(),
        Some("max-age=63072000; preload")
    );
    assert_eq!(
        set_value(ops, "x-content-type-options").as_deref(),
        Some("nosniff"),
        "untouched defaults stay"
    );
    // An overridden HSTS is still never sent over plain HTTP.
    assert!(removed(h.operations(false), "strict-transport-security"));
}

#[test]
fn empty_override_removes_the_header() {
    let h = with(&[("x-frame-options", None), ("x-xss-protection", None)]);
    for https in [false, true] {
        let ops = h.operations(https);
        assert!(removed(ops, "x-frame-options"));
        assert!(removed(ops, "x-xss-protection"));
        assert_eq!(set_value(ops, "x-frame-options"), None);
    }
}

#[test]
fn server_may_be_set_explicitly_and_each_header_appears_once() {
    let h = with(&[
        ("server", Some("portcullis")),
        ("x-frame-options", Some("DENY")),
        ("x-frame-options", Some("SAMEORIGIN")),
    ]);
    let ops = h.operations(true);
    assert_eq!(set_value(ops, "server").as_deref(), Some("portcullis"));
    assert!(!removed(ops, "server"));
    assert_eq!(
        set_value(ops, "x-frame-options").as_deref(),
        Some("SAMEORIGIN"),
        "the last override wins"
    );
    let mut names: Vec<&str> = ops
        .iter()
        .map(|op| match op {
            HeaderOp::Set(n, _) | HeaderOp::Append(n, _) | HeaderOp::Remove(n) => n.as_str(),
        })
        .collect();
    let total = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), total, "one operation per header name");
}

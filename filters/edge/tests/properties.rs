//! Property tests: the edge policies never panic on arbitrary input, and their safety
//! invariants hold for every input (no open redirect, no look-alike origin).

use std::time::Duration;

use http::Method;
use portcullis_config::Cors;
use portcullis_edge::{https, CorsPolicy};
use proptest::prelude::*;

fn cors() -> CorsPolicy {
    CorsPolicy::new(&Cors {
        allow_origins: vec![
            "https://music.example.com".into(),
            "https://*.example.com".into(),
        ],
        allow_methods: vec![Method::GET, Method::POST],
        allow_headers: vec![http::HeaderName::from_static("content-type")],
        expose_headers: vec![],
        allow_credentials: true,
        max_age: Duration::from_secs(600),
    })
}

/// Strings built from the pieces that matter for the property (so shrinking finds the
/// interesting cases), mixed with arbitrary bytes.
fn pieces(parts: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            3 => proptest::sample::select(parts).prop_map(str::to_string),
            1 => "[\\x00-\\x7f\u{80}-\u{10ffff}]{0,3}",
        ],
        0..8,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn redirect_never_leaves_the_allowed_hosts(
        host in proptest::option::of(pieces(&["music.example.com", "evil.com", "@", ":", "443",
                                               "[", "]", "::1", ".", "/", "\\", "%", "#", "?"])),
        target in pieces(&["/", "//", "\\", "evil.com", "?", "#", "@", "%2f", ":", "https:"]),
        empty_hosts in any::<bool>(),
        port in any::<u16>(),
        post in any::<bool>(),
    ) {
        let hosts: Vec<String> = if empty_hosts {
            vec![]
        } else {
            vec!["music.example.com".into(), "www.music.example.com".into()]
        };
        let method = if post { Method::POST } else { Method::GET };
        match https::redirect(&method, host.as_deref(), &target, &hosts, port) {
            Ok(r) => {
                prop_assert_eq!(r.status, if post { 308 } else { 301 });
                let location = r.location.to_str().map_err(|e| TestCaseError::fail(e.to_string()))?;
                let rest = location.strip_prefix("https://").ok_or_else(|| TestCaseError::fail(location.to_string()))?;
                let slash = rest.find('/').ok_or_else(|| TestCaseError::fail(location.to_string()))?;
                let (authority, path) = rest.split_at(slash);
                prop_assert!(!path.starts_with("//") && !path.starts_with("/\\"), "{}", location);
                prop_assert!(!authority.contains(['@', '\\', '?', '#', '%']), "{}", location);
                let uri: http::Uri = location.parse().map_err(|e: http::uri::InvalidUri| TestCaseError::fail(e.to_string()))?;
                let got = uri.host().unwrap_or_default().to_string();
                if !empty_hosts {
                    prop_assert!(hosts.contains(&got), "{}", location);
                }
            }
            Err(_) => prop_assert!(empty_hosts),
        }
    }

    #[test]
    fn acme_check_never_panics(path in pieces(&["/.well-known/acme-challenge/", "..", "/", "a"])) {
        let _ = https::is_acme_challenge(&path);
    }

    #[test]
    fn only_real_subdomains_match_the_pattern(
        origin in pieces(&["https://", "http://", "music.", "a.", "example.com", "evil", "-",
                           ".net", ":443", ":8443", ":0443", "@", "/", "*.", "null", "[::1]", "%2e", "."]),
    ) {
        let policy = cors();
        if policy.allows(&origin) {
            let lower = origin.to_ascii_lowercase();
            let rest = lower.strip_prefix("https://").ok_or_else(|| TestCaseError::fail(origin.clone()))?;
            let host = rest.strip_suffix(":443").unwrap_or(rest);
            prop_assert!(host.ends_with(".example.com"), "{}", origin);
            prop_assert!(host.len() > ".example.com".len());
            prop_assert!(host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'), "{}", origin);
            prop_assert!(!host.contains(".."), "{}", origin);
        }
        let req = http::Request::builder()
            .method(Method::OPTIONS)
            .header("origin", http::HeaderValue::from_bytes(origin.as_bytes()).unwrap_or(http::HeaderValue::from_static("x")))
            .header("access-control-request-method", "POST")
            .body(());
        if let Ok(req) = req {
            let parts = req.into_parts().0;
            let _ = policy.preflight(&parts);
            let _ = policy.response_headers(&parts);
        }
    }
}

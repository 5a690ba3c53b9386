//! CORS origin matching: never panics, and an origin the `https://*.example.com` pattern
//! allows is exactly an https origin on a real subdomain (no look-alike host).
#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use http::Method;
use libfuzzer_sys::fuzz_target;
use portcullis_config::Cors;
use portcullis_edge::CorsPolicy;

static POLICY: LazyLock<CorsPolicy> = LazyLock::new(|| {
    CorsPolicy::new(&Cors {
        allow_origins: vec!["https://*.example.com".into()],
        allow_methods: vec![Method::GET],
        allow_headers: vec![],
        expose_headers: vec![],
        allow_credentials: false,
        max_age: Duration::from_secs(60),
    })
});

fuzz_target!(|data: &[u8]| {
    let origin = String::from_utf8_lossy(data);
    if POLICY.allows(&origin) {
        let lower = origin.to_ascii_lowercase();
        let rest = lower.strip_prefix("https://").expect("https only");
        let host = rest.strip_suffix(":443").unwrap_or(rest);
        assert!(host.ends_with(".example.com") && host.len() > ".example.com".len());
        assert!(host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'));
        assert!(!host.contains(".."));
    }
});

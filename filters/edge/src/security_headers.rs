//! Security response headers with Helmet 8 defaults (helmetjs.github.io), applied to every
//! response, proxied or generated. Each one replaces whatever the upstream sent, so a backend
//! cannot weaken them; `[security_headers]` overrides a value, adds a header, or removes one.
//! HSTS (RFC 6797) is only sent on responses to requests that arrived over HTTPS: over plain
//! HTTP a browser ignores it (RFC 6797 section 7.2) and it would only mislead.

use http::{HeaderName, HeaderValue};

use crate::HeaderOp;

/// Helmet 8's default Content-Security-Policy.
pub const DEFAULT_CSP: &str = "default-src 'self';base-uri 'self';font-src 'self' https: data:;form-action 'self';frame-ancestors 'self';img-src 'self' data:;object-src 'none';script-src 'self';script-src-attr 'none';style-src 'self' https: 'unsafe-inline';upgrade-insecure-requests";

pub const HSTS: &str = "strict-transport-security";

const DEFAULTS: &[(&str, &str)] = &[
    ("content-security-policy", DEFAULT_CSP),
    (HSTS, "max-age=31536000; includeSubDomains"),
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

/// The precomputed header operations for plain-HTTP and HTTPS responses.
#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    plain: Vec<HeaderOp>,
    https: Vec<HeaderOp>,
}

impl SecurityHeaders {
    pub fn new(cfg: &portcullis_config::SecurityHeaders) -> Self {
        let mut headers: Vec<(HeaderName, Option<HeaderValue>)> = DEFAULTS
            .iter()
            .map(|(n, v)| {
                (
                    HeaderName::from_static(n),
                    Some(HeaderValue::from_static(v)),
                )
            })
            .collect();
        for (name, value) in &cfg.overrides {
            match headers.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = value.clone(),
                None => headers.push((name.clone(), value.clone())),
            }
        }
        let ops = |https: bool| -> Vec<HeaderOp> {
            let mut ops: Vec<HeaderOp> = headers
                .iter()
                .map(|(n, v)| match v {
                    Some(v) if https || n != HSTS => HeaderOp::Set(n.clone(), v.clone()),
                    _ => HeaderOp::Remove(n.clone()),
                })
                .collect();
            ops.push(HeaderOp::Remove(http::header::SERVER));
            ops.push(HeaderOp::Remove(HeaderName::from_static("x-powered-by")));
            ops
        };
        SecurityHeaders {
            plain: ops(false),
            https: ops(true),
        }
    }

    pub fn operations(&self, https: bool) -> &[HeaderOp] {
        if https {
            &self.https
        } else {
            &self.plain
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(ops: &[HeaderOp], name: &str) -> Option<String> {
        ops.iter().find_map(|op| match op {
            HeaderOp::Set(n, v) if n == name => Some(v.to_str().unwrap().to_string()),
            _ => None,
        })
    }

    fn removed(ops: &[HeaderOp], name: &str) -> bool {
        ops.iter()
            .any(|op| matches!(op, HeaderOp::Remove(n) if n == name))
    }

    #[test]
    fn defaults_are_helmet_grade_and_hsts_is_https_only() {
        let h = SecurityHeaders::new(&Default::default());
        let plain = h.operations(false);
        assert_eq!(
            value(plain, "x-content-type-options").as_deref(),
            Some("nosniff")
        );
        assert_eq!(
            value(plain, "x-frame-options").as_deref(),
            Some("SAMEORIGIN")
        );
        assert_eq!(
            value(plain, "content-security-policy").as_deref(),
            Some(DEFAULT_CSP)
        );
        assert_eq!(value(plain, "x-xss-protection").as_deref(), Some("0"));
        assert!(removed(plain, HSTS) && removed(plain, "server") && removed(plain, "x-powered-by"));
        assert_eq!(
            value(h.operations(true), HSTS).as_deref(),
            Some("max-age=31536000; includeSubDomains")
        );
    }

    #[test]
    fn overrides_replace_add_and_remove() {
        let cfg = portcullis_config::SecurityHeaders {
            overrides: vec![
                (
                    HeaderName::from_static("content-security-policy"),
                    Some(HeaderValue::from_static("default-src 'none'")),
                ),
                (HeaderName::from_static("x-frame-options"), None),
                (
                    HeaderName::from_static("permissions-policy"),
                    Some(HeaderValue::from_static("camera=()")),
                ),
            ],
        };
        let h = SecurityHeaders::new(&cfg);
        let ops = h.operations(false);
        assert_eq!(
            value(ops, "content-security-policy").as_deref(),
            Some("default-src 'none'")
        );
        assert!(removed(ops, "x-frame-options"));
        assert_eq!(
            value(ops, "permissions-policy").as_deref(),
            Some("camera=()")
        );
        assert_eq!(
            value(ops, "referrer-policy").as_deref(),
            Some("no-referrer")
        );
    }
}

//! CORS (Fetch standard, "CORS protocol"; MDN "Cross-Origin Resource Sharing").
//!
//! Preflights (OPTIONS with `Origin` and `Access-Control-Request-Method`) are answered by the
//! gateway and never reach the upstream: allowed -> 204 with the allow headers, anything else
//! -> 403 without CORS headers (the browser then blocks the request). Actual requests get
//! `Access-Control-Allow-Origin` only for allowed origins, and always `Vary: Origin` so caches
//! never serve one origin's answer to another.
//!
//! Origin matching is exact on scheme, host and port. A pattern `https://*.example.com`
//! admits any subdomain (`a.example.com`, `a.b.example.com`) but not the apex, not
//! `evil-example.com` (the label boundary is checked) and not `example.com.evil.net` (the
//! suffix must end the host). `null` matches only when listed.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderValue, Method};
use portcullis_config::Cors;

use crate::HeaderOp;

/// What to do with a preflight.
#[derive(Debug, PartialEq)]
pub enum Preflight {
    /// Answer 204 with these headers.
    Allowed(Vec<HeaderOp>),
    /// Answer 403, without CORS headers.
    Refused,
}

#[derive(Debug)]
enum Pattern {
    Any,
    Null,
    Exact(String),
    /// `scheme://*.suffix[:port]`: (scheme, `.suffix`, port part including `:` or empty).
    Subdomain(String, String, String),
}

#[derive(Debug)]
pub struct CorsPolicy {
    patterns: Vec<Pattern>,
    methods: Vec<Method>,
    headers: Vec<http::HeaderName>,
    credentials: bool,
    allow_methods: HeaderValue,
    allow_headers: Option<HeaderValue>,
    expose: Option<HeaderValue>,
    max_age: HeaderValue,
}

fn join<T: AsRef<str>>(items: impl Iterator<Item = T>) -> Option<HeaderValue> {
    let text = items
        .map(|i| i.as_ref().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    (!text.is_empty())
        .then(|| HeaderValue::from_str(&text).ok())
        .flatten()
}

/// Splits `scheme://host[:port]` into (scheme, host, port with `:` or ""); default ports
/// are dropped so `https://a.com:443` equals `https://a.com`.
fn split(origin: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = origin.split_once("://")?;
    let (host, port) = match rest.rfind(':') {
        Some(i)
            if rest[i + 1..].chars().all(|c| c.is_ascii_digit()) && !rest[i + 1..].is_empty() =>
        {
            (&rest[..i], &rest[i..])
        }
        _ => (rest, ""),
    };
    let port = match (scheme, port) {
        ("https", ":443") | ("http", ":80") => "",
        _ => port,
    };
    if host.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return None;
    }
    Some((scheme, host, port))
}

impl CorsPolicy {
    pub fn new(cfg: &Cors) -> Self {
        let patterns = cfg
            .allow_origins
            .iter()
            .filter_map(|o| match o.as_str() {
                "*" => Some(Pattern::Any),
                "null" => Some(Pattern::Null),
                other => {
                    let (scheme, host, port) = split(other)?;
                    Some(match host.strip_prefix("*.") {
                        Some(suffix) => {
                            Pattern::Subdomain(scheme.into(), format!(".{suffix}"), port.into())
                        }
                        None => Pattern::Exact(format!("{scheme}://{host}{port}")),
                    })
                }
            })
            .collect();
        CorsPolicy {
            patterns,
            methods: cfg.allow_methods.clone(),
            headers: cfg.allow_headers.clone(),
            credentials: cfg.allow_credentials,
            allow_methods: join(cfg.allow_methods.iter().map(|m| m.as_str()))
                .unwrap_or(HeaderValue::from_static("GET")),
            allow_headers: join(cfg.allow_headers.iter().map(|h| h.as_str())),
            expose: join(cfg.expose_headers.iter().map(|h| h.as_str())),
            max_age: HeaderValue::from(cfg.max_age.as_secs()),
        }
    }

    /// Whether `origin` (as sent) is allowed.
    pub fn allows(&self, origin: &str) -> bool {
        let origin = origin.trim().to_ascii_lowercase();
        if origin == "null" {
            return self.patterns.iter().any(|p| matches!(p, Pattern::Null));
        }
        let Some((scheme, host, port)) = split(&origin) else {
            return false;
        };
        self.patterns.iter().any(|p| match p {
            Pattern::Any => true,
            Pattern::Null => false,
            Pattern::Exact(exact) => *exact == format!("{scheme}://{host}{port}"),
            Pattern::Subdomain(s, suffix, p) => {
                s == scheme
                    && p == port
                    && host.len() > suffix.len()
                    && host.ends_with(suffix.as_str())
            }
        })
    }

    fn allow_origin(&self, origin: &HeaderValue) -> HeaderValue {
        let any = self.patterns.iter().any(|p| matches!(p, Pattern::Any));
        if any && !self.credentials {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        }
    }

    /// `None` when the request is not a preflight.
    pub fn preflight(&self, req: &http::request::Parts) -> Option<Preflight> {
        if req.method != Method::OPTIONS {
            return None;
        }
        let origin = req.headers.get(ORIGIN)?;
        let method = req.headers.get(ACCESS_CONTROL_REQUEST_METHOD)?;
        let origin_ok = origin.to_str().is_ok_and(|o| self.allows(o));
        let method_ok =
            Method::from_bytes(method.as_bytes()).is_ok_and(|m| self.methods.contains(&m));
        let headers_ok = req
            .headers
            .get_all(ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .all(|v| {
                v.to_str().is_ok_and(|list| {
                    list.split(',')
                        .map(str::trim)
                        .filter(|h| !h.is_empty())
                        .all(|h| {
                            self.headers
                                .iter()
                                .any(|a| a.as_str().eq_ignore_ascii_case(h))
                        })
                })
            });
        if !(origin_ok && method_ok && headers_ok) {
            return Some(Preflight::Refused);
        }
        let mut ops = vec![
            HeaderOp::Set(ACCESS_CONTROL_ALLOW_ORIGIN, self.allow_origin(origin)),
            HeaderOp::Set(ACCESS_CONTROL_ALLOW_METHODS, self.allow_methods.clone()),
            HeaderOp::Set(ACCESS_CONTROL_MAX_AGE, self.max_age.clone()),
            HeaderOp::Append(
                VARY,
                HeaderValue::from_static(
                    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
                ),
            ),
        ];
        if let Some(h) = &self.allow_headers {
            ops.push(HeaderOp::Set(ACCESS_CONTROL_ALLOW_HEADERS, h.clone()));
        }
        if self.credentials {
            ops.push(HeaderOp::Set(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        Some(Preflight::Allowed(ops))
    }

    /// Headers for an actual (non-preflight) request's response.
    pub fn response_headers(&self, req: &http::request::Parts) -> Vec<HeaderOp> {
        let mut ops = vec![HeaderOp::Append(VARY, HeaderValue::from_static("Origin"))];
        let Some(origin) = req.headers.get(ORIGIN) else {
            return ops;
        };
        if !origin.to_str().is_ok_and(|o| self.allows(o)) {
            return ops;
        }
        ops.push(HeaderOp::Set(
            ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin(origin),
        ));
        if self.credentials {
            ops.push(HeaderOp::Set(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        if let Some(e) = &self.expose {
            ops.push(HeaderOp::Set(ACCESS_CONTROL_EXPOSE_HEADERS, e.clone()));
        }
        ops
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn policy(origins: &[&str], credentials: bool) -> CorsPolicy {
        CorsPolicy::new(&Cors {
            allow_origins: origins.iter().map(|s| s.to_string()).collect(),
            allow_methods: vec![Method::GET, Method::POST],
            allow_headers: vec![
                http::HeaderName::from_static("content-type"),
                http::HeaderName::from_static("authorization"),
            ],
            expose_headers: vec![],
            allow_credentials: credentials,
            max_age: Duration::from_secs(600),
        })
    }

    fn parts(method: Method, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().method(method).uri("/api");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn patterns_match_subdomains_but_never_look_alikes() {
        let p = policy(
            &["https://music.example.com", "https://*.example.com"],
            false,
        );
        for ok in [
            "https://music.example.com",
            "https://a.example.com",
            "https://a.b.example.com",
            "HTTPS://A.Example.com",
            "https://a.example.com:443",
        ] {
            assert!(p.allows(ok), "{ok}");
        }
        for bad in [
            "https://example.com",
            "https://evil-example.com",
            "https://example.com.evil.net",
            "https://a.example.com.evil.net",
            "http://a.example.com",
            "null",
            "https://a.example.com:8443",
            "https://a.example.com/x",
            "https://user@a.example.com",
            "",
        ] {
            assert!(!p.allows(bad), "{bad}");
        }
        assert!(policy(&["null"], false).allows("null"));
    }

    #[test]
    fn preflights_are_answered_or_refused() {
        let p = policy(&["https://music.example.com"], true);
        let ok = p.preflight(&parts(
            Method::OPTIONS,
            &[
                ("origin", "https://music.example.com"),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "Content-Type"),
            ],
        ));
        let Some(Preflight::Allowed(ops)) = ok else {
            panic!("{ok:?}")
        };
        assert!(ops.contains(&HeaderOp::Set(
            ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("https://music.example.com")
        )));
        assert!(ops.contains(&HeaderOp::Set(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true")
        )));
        for refused in [
            vec![
                ("origin", "https://evil.com"),
                ("access-control-request-method", "POST"),
            ],
            vec![
                ("origin", "https://music.example.com"),
                ("access-control-request-method", "DELETE"),
            ],
            vec![
                ("origin", "https://music.example.com"),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "x-secret"),
            ],
        ] {
            assert_eq!(
                p.preflight(&parts(Method::OPTIONS, &refused)),
                Some(Preflight::Refused)
            );
        }
        assert_eq!(
            p.preflight(&parts(
                Method::OPTIONS,
                &[("origin", "https://music.example.com")]
            )),
            None,
            "not a preflight"
        );
        assert_eq!(
            p.preflight(&parts(
                Method::GET,
                &[("origin", "https://music.example.com")]
            )),
            None
        );
    }

    #[test]
    fn actual_requests_get_acao_only_when_allowed_and_always_vary() {
        let p = policy(&["https://music.example.com"], false);
        let ops = p.response_headers(&parts(
            Method::GET,
            &[("origin", "https://music.example.com")],
        ));
        assert!(ops.contains(&HeaderOp::Set(
            ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("https://music.example.com")
        )));
        let ops = p.response_headers(&parts(Method::GET, &[("origin", "https://evil.com")]));
        assert_eq!(
            ops,
            vec![HeaderOp::Append(VARY, HeaderValue::from_static("Origin"))]
        );
        let star = policy(&["*"], false);
        let ops = star.response_headers(&parts(Method::GET, &[("origin", "https://x.org")]));
        assert!(ops.contains(&HeaderOp::Set(
            ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*")
        )));
    }
}

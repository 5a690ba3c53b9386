//! Cross-site request protection for cookie sessions: the Fetch Metadata resource-isolation
//! policy (<https://web.dev/articles/fetch-metadata>; W3C "Fetch Metadata Request Headers"),
//! with the `Origin` check of the OWASP Cross-Site Request Forgery Prevention Cheat Sheet
//! ("Verifying Origin With Standard Headers") for browsers that send no Fetch Metadata.
//!
//! Why only cookie-authenticated requests need it: a browser attaches cookies to every
//! request for the site, including the form posts and `fetch`es an attacker's page starts
//! (CSRF, CWE-352). An `Authorization: Bearer` header it never attaches on its own, so a
//! request carrying one was built by code that holds the token. The gateway therefore asks
//! this question only when the credential came from a cookie.
//!
//! What the browser tells us, and why it can be believed: `Sec-Fetch-Site` and `Origin` are
//! forbidden request headers (Fetch standard, section 4.6): page scripts cannot set or
//! change them, so on a browser's request they describe who started it. A non-browser client
//! can send anything, but it also holds the cookie itself, so nothing is forged.
//!
//! The rule, for unsafe methods only (RFC 9110 section 9.2.1: GET, HEAD, OPTIONS and TRACE
//! are safe; every other method, non-standard ones included, is treated as unsafe) and for
//! WebSocket handshakes, which are GETs but open a channel that acts with the cookie's
//! authority in both directions, and that the same-origin policy does not guard: a page on any
//! site may open one, and the browser attaches the cookie (cross-site WebSocket hijacking,
//! CWE-1385). RFC 6455 section 10.2 leaves checking `Origin` to the server:
//!
//! - `Sec-Fetch-Site: same-origin` or `none` (the user typed, bookmarked or reloaded):
//!   allowed.
//! - `Sec-Fetch-Site: same-site` or `cross-site`: refused. `same-site` is refused too: a
//!   sibling subdomain (user content, a forgotten staging host) is a different origin and
//!   may be the attacker's. This holds even when `[cors]` allows that origin: a browser that
//!   sends Fetch Metadata is judged by it alone.
//! - Any other value, or the header twice: refused (it is not a browser's doing).
//! - No `Sec-Fetch-Site` (a browser from before 2023, or not a browser): allowed when there
//!   is no `Origin`, or when `Origin` names one of the gateway's own hosts (any scheme, port
//!   ignored) or is allowed by `[cors] allow_origins`. `Origin: null` (sandboxed frames,
//!   `file:` pages, some redirects; anyone can produce it) and a malformed or repeated
//!   `Origin` are refused.

use http::header::ORIGIN;
use http::{HeaderMap, HeaderName, Method};

use crate::cors::origin::RequestOrigin;
use crate::CorsPolicy;

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Whether a cookie-authenticated request must be refused (403 `forbidden`) as possibly
/// started by another site's page.
///
/// `upgrade` is true for a request asking to switch protocols (a WebSocket handshake): it is
/// judged like an unsafe method whatever its method.
///
/// `hosts` is `server.hosts` (lower-case names without port). When that list is empty (any
/// Host accepted), pass the request's own host name instead (`Host` or `:authority`, without
/// port): a browser sets it and a page cannot, so an `Origin` naming it is the same site.
/// `cors` is the `[cors]` policy, whose `allow_origins` (wildcards included) also vouch for
/// an `Origin` when `Sec-Fetch-Site` is absent.
pub fn cross_site_refused(
    method: &Method,
    upgrade: bool,
    headers: &HeaderMap,
    hosts: &[String],
    cors: Option<&CorsPolicy>,
) -> bool {
    let safe = matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    if safe && !upgrade {
        return false;
    }
    let mut site = headers.get_all(SEC_FETCH_SITE).iter();
    match (site.next(), site.next()) {
        (Some(_), Some(_)) => return true,
        (Some(value), None) => {
            return !matches!(value.as_bytes(), b"same-origin" | b"none");
        }
        (None, _) => {}
    }
    let mut origins = headers.get_all(ORIGIN).iter();
    let origin = match (origins.next(), origins.next()) {
        (None, _) => return false,
        (Some(origin), None) => origin,
        (Some(_), Some(_)) => return true,
    };
    let Ok(text) = origin.to_str() else {
        return true;
    };
    match RequestOrigin::parse(text) {
        Some(RequestOrigin::Tuple(o)) => {
            let own = hosts.iter().any(|h| same_host(o.host(), h));
            !(own || cors.is_some_and(|c| c.allows(text)))
        }
        Some(RequestOrigin::Null) | None => true,
    }
}

/// An origin's host (lower-cased, IPv6 in brackets) against a configured host name (an IPv6
/// address there is unbracketed and may be spelt differently).
fn same_host(origin_host: &str, configured: &str) -> bool {
    let bare = origin_host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(origin_host);
    let configured = configured
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(configured);
    if bare.eq_ignore_ascii_case(configured) {
        return true;
    }
    match (
        bare.parse::<std::net::Ipv6Addr>(),
        configured.parse::<std::net::Ipv6Addr>(),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::HeaderValue;
    use portcullis_config::Cors;

    use super::*;

    const UNSAFE: [&str; 6] = ["POST", "PUT", "PATCH", "DELETE", "PURGE", "get"];

    fn hosts() -> Vec<String> {
        vec!["music.example.com".into(), "::1".into()]
    }

    fn cors() -> CorsPolicy {
        CorsPolicy::new(&Cors {
            allow_origins: vec![
                "https://app.partner.net".into(),
                "https://*.example.org".into(),
                "null".into(),
            ],
            allow_methods: vec![Method::GET, Method::POST],
            allow_headers: vec![],
            expose_headers: vec![],
            allow_credentials: true,
            max_age: Duration::from_secs(600),
        })
    }

    fn headers(fields: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in fields {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        h
    }

    fn refused(method: &str, fields: &[(&str, &[u8])]) -> bool {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let policy = cors();
        cross_site_refused(&method, false, &headers(fields), &hosts(), Some(&policy))
    }

    fn upgrade_refused(fields: &[(&str, &[u8])]) -> bool {
        let policy = cors();
        cross_site_refused(
            &Method::GET,
            true,
            &headers(fields),
            &hosts(),
            Some(&policy),
        )
    }

    fn refused_everywhere(fields: &[(&str, &[u8])]) -> bool {
        UNSAFE.iter().all(|m| refused(m, fields))
    }

    fn allowed_everywhere(fields: &[(&str, &[u8])]) -> bool {
        UNSAFE.iter().all(|m| !refused(m, fields))
    }

    #[test]
    fn safe_methods_are_never_refused() {
        for method in ["GET", "HEAD", "OPTIONS", "TRACE"] {
            for fields in [
                &[("sec-fetch-site", &b"cross-site"[..])][..],
                &[("origin", b"https://evil.example")],
                &[("origin", b"null"), ("sec-fetch-site", b"bogus")],
            ] {
                assert!(!refused(method, fields), "{method} {fields:?}");
            }
        }
    }

    #[test]
    fn a_websocket_handshake_is_judged_like_an_unsafe_method() {
        for fields in [
            &[("origin", &b"https://evil.example"[..])][..],
            &[("origin", b"null")],
            &[("sec-fetch-site", b"cross-site")],
            &[("sec-fetch-site", b"same-site")],
            &[
                ("sec-fetch-site", b"cross-site"),
                ("origin", b"https://music.example.com"),
            ],
        ] {
            assert!(upgrade_refused(fields), "{fields:?}");
        }
        for fields in [
            &[][..],
            &[("origin", &b"https://music.example.com"[..])],
            &[("origin", b"https://app.partner.net")],
            &[("sec-fetch-site", b"same-origin")],
        ] {
            assert!(!upgrade_refused(fields), "{fields:?}");
        }
    }

    #[test]
    fn fetch_metadata_decides_when_present() {
        assert!(allowed_everywhere(&[("sec-fetch-site", b"same-origin")]));
        assert!(allowed_everywhere(&[("sec-fetch-site", b"none")]));
        assert!(refused_everywhere(&[("sec-fetch-site", b"same-site")]));
        assert!(refused_everywhere(&[("sec-fetch-site", b"cross-site")]));
        // Present, it outranks Origin both ways.
        assert!(refused_everywhere(&[
            ("sec-fetch-site", b"cross-site"),
            ("origin", b"https://music.example.com"),
        ]));
        assert!(refused_everywhere(&[
            ("sec-fetch-site", b"same-site"),
            ("origin", b"https://app.partner.net"),
        ]));
        assert!(allowed_everywhere(&[
            ("sec-fetch-site", b"same-origin"),
            ("origin", b"https://evil.example"),
        ]));
    }

    #[test]
    fn unparseable_or_repeated_fetch_metadata_is_refused() {
        for value in [
            &b"Same-Origin"[..],
            b"same-origin, none",
            b"",
            b"?1",
            b"same_origin",
            b"\xff",
        ] {
            assert!(
                refused_everywhere(&[("sec-fetch-site", value)]),
                "{}",
                String::from_utf8_lossy(value)
            );
        }
        assert!(refused_everywhere(&[
            ("sec-fetch-site", b"same-origin"),
            ("sec-fetch-site", b"same-origin"),
        ]));
    }

    #[test]
    fn without_fetch_metadata_the_origin_decides() {
        assert!(
            allowed_everywhere(&[]),
            "no Origin: not a cross-site browser request"
        );
        for own in [
            &b"https://music.example.com"[..],
            b"http://music.example.com",
            b"https://MUSIC.example.com:8443",
            b"http://[::1]:8080",
            b"http://[0:0::1]",
            b"https://app.partner.net",
            b"https://cdn.example.org",
        ] {
            assert!(
                allowed_everywhere(&[("origin", own)]),
                "{}",
                String::from_utf8_lossy(own)
            );
        }
        for foreign in [
            &b"https://evil.example"[..],
            b"https://music.example.com.evil.example",
            b"https://evilmusic.example.com",
            b"https://sub.music.example.com",
            b"https://example.org",
            b"http://app.partner.net",
            b"null",
            b"NULL",
            b"https://music.example.com/path",
            b"https://user@music.example.com",
            b"music.example.com",
            b"",
            b"https://music.example.com, https://evil.example",
            b"https://m\xc3\xbcsic.example.com",
        ] {
            assert!(
                refused_everywhere(&[("origin", foreign)]),
                "{}",
                String::from_utf8_lossy(foreign)
            );
        }
        assert!(refused_everywhere(&[
            ("origin", b"https://music.example.com"),
            ("origin", b"https://music.example.com"),
        ]));
    }

    #[test]
    fn without_cors_only_the_own_hosts_vouch() {
        let h = headers(&[("origin", b"https://app.partner.net")]);
        assert!(cross_site_refused(&Method::POST, false, &h, &hosts(), None));
        let h = headers(&[("origin", b"https://music.example.com")]);
        assert!(!cross_site_refused(
            &Method::POST,
            false,
            &h,
            &hosts(),
            None
        ));
        // No hosts configured and the request's host not passed: nothing vouches.
        assert!(cross_site_refused(&Method::POST, false, &h, &[], None));
    }

    #[test]
    fn hosts_compare_without_brackets_and_case() {
        assert!(same_host("[::1]", "::1"));
        assert!(same_host("[::1]", "0:0:0:0:0:0:0:1"));
        assert!(same_host("[::1]", "[::1]"));
        assert!(same_host("music.example.com", "Music.Example.com"));
        assert!(!same_host("[::2]", "::1"));
        assert!(!same_host("music.example.com", "example.com"));
    }
}

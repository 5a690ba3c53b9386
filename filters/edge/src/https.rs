//! Redirects from plain HTTP to HTTPS: 301 for GET and HEAD, 308 for other methods (RFC 9110
//! section 15.4.9: 308 keeps the method and body). The target host is the request's own only
//! when it is one of `server.hosts`; otherwise `hosts[0]` (never an open redirect to whatever
//! Host a client sends). With no `hosts` configured the request's Host is used only when it is
//! a syntactically valid host name or IP. `/.well-known/acme-challenge/` is never redirected
//! so HTTP-01 certificate renewals keep working (RFC 8555 section 8.3).

use http::{HeaderValue, Method};

pub const ACME_CHALLENGE: &str = "/.well-known/acme-challenge/";

#[derive(Debug, PartialEq)]
pub struct Redirect {
    pub status: u16,
    pub location: HeaderValue,
}

pub fn is_acme_challenge(path: &str) -> bool {
    path.starts_with(ACME_CHALLENGE)
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && (host.parse::<std::net::IpAddr>().is_ok()
            || host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            }))
}

/// `host` is the request's Host without port, lower-cased. `None` when no safe target host
/// exists (empty `hosts` and a malformed Host): answer 400 instead.
pub fn redirect(
    method: &Method,
    host: Option<&str>,
    path_and_query: &str,
    hosts: &[String],
    https_port: u16,
) -> Option<Redirect> {
    let target_host = match host {
        Some(h) if hosts.iter().any(|allowed| allowed == h) => h,
        Some(h) if hosts.is_empty() && valid_host(h) => h,
        _ => hosts.first()?.as_str(),
    };
    // The path must start with exactly one `/`: `//evil.com` would otherwise read as a
    // scheme-relative authority to some clients.
    let rest = path_and_query.trim_start_matches('/');
    let bracketed = if target_host.contains(':') {
        format!("[{target_host}]")
    } else {
        target_host.to_string()
    };
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let location = HeaderValue::from_str(&format!("https://{bracketed}{port}/{rest}")).ok()?;
    let status = if *method == Method::GET || *method == Method::HEAD {
        301
    } else {
        308
    };
    Some(Redirect { status, location })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<String> {
        vec!["music.example.com".into(), "www.music.example.com".into()]
    }

    #[test]
    fn status_follows_the_method_and_path_and_query_are_kept() {
        let r = redirect(
            &Method::GET,
            Some("music.example.com"),
            "/app/x?y=1&z=two",
            &hosts(),
            443,
        )
        .unwrap();
        assert_eq!(
            (r.status, r.location.to_str().unwrap()),
            (301, "https://music.example.com/app/x?y=1&z=two")
        );
        assert_eq!(
            redirect(&Method::HEAD, Some("music.example.com"), "/", &hosts(), 443)
                .unwrap()
                .status,
            301
        );
        assert_eq!(
            redirect(&Method::POST, Some("music.example.com"), "/", &hosts(), 443)
                .unwrap()
                .status,
            308
        );
        assert_eq!(
            redirect(
                &Method::DELETE,
                Some("music.example.com"),
                "/",
                &hosts(),
                443
            )
            .unwrap()
            .status,
            308
        );
    }

    #[test]
    fn foreign_hosts_go_to_the_canonical_one_never_elsewhere() {
        let r = redirect(&Method::GET, Some("evil.com"), "/x", &hosts(), 443).unwrap();
        assert_eq!(r.location.to_str().unwrap(), "https://music.example.com/x");
        let r = redirect(
            &Method::GET,
            Some("www.music.example.com"),
            "/x",
            &hosts(),
            8443,
        )
        .unwrap();
        assert_eq!(
            r.location.to_str().unwrap(),
            "https://www.music.example.com:8443/x"
        );
        let r = redirect(
            &Method::GET,
            Some("music.example.com"),
            "//evil.com/x",
            &hosts(),
            443,
        )
        .unwrap();
        assert_eq!(
            r.location.to_str().unwrap(),
            "https://music.example.com/evil.com/x"
        );
        assert_eq!(
            redirect(&Method::GET, Some("bad host\"x"), "/", &[], 443),
            None
        );
        assert_eq!(
            redirect(&Method::GET, Some("a.example.org"), "/", &[], 443)
                .unwrap()
                .location
                .to_str()
                .unwrap(),
            "https://a.example.org/"
        );
    }

    #[test]
    fn acme_challenges_are_exempt() {
        assert!(is_acme_challenge("/.well-known/acme-challenge/token123"));
        assert!(!is_acme_challenge("/.well-known/other"));
    }
}

//! Origins and origin patterns.
//!
//! An `Origin` request header carries a serialised origin (RFC 6454 section 6.2; Fetch
//! standard, "origin header"): `scheme "://" host [":" port]`, or the opaque `null`. Anything
//! else (a path, userinfo, whitespace, a percent sign) is not an origin and never matches.
//!
//! Matching compares the (scheme, host, port) tuple, case-insensitively on scheme and host,
//! with the scheme's default port normalised away (`https://a.com:443` is `https://a.com`).
//! A subdomain pattern `https://*.example.com` keeps the leading dot of its suffix, so it
//! matches only on a label boundary and only at the end of the host: `a.example.com` and
//! `a.b.example.com`, never `example.com`, `evil-example.com`, `example.com.evil.net` or
//! `a.example.com.evil.net` (the classic reflection mistakes, PortSwigger "CORS
//! vulnerabilities"; OWASP WSTG-CLNT-07).

use std::net::Ipv6Addr;

/// A parsed tuple origin. The host is lower-cased; IPv6 hosts keep their brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    scheme: String,
    host: String,
    /// `None` for the scheme's default port (or a scheme without one).
    port: Option<u16>,
}

/// What a request's `Origin` header holds, when it is well formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequestOrigin {
    /// The opaque origin (sandboxed iframes, `file:` pages, some redirects).
    Null,
    Tuple(Origin),
}

/// One `allow_origins` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OriginPattern {
    /// `*`: every origin (only ever answered with a literal `*`, never with credentials).
    Any,
    /// `null`, listed explicitly.
    Null,
    Exact(Origin),
    /// `scheme://*.suffix[:port]`; `suffix` starts with `.`.
    Subdomain {
        scheme: String,
        suffix: String,
        port: Option<u16>,
    },
}

// === impl Origin ===

impl Origin {
    /// The host, lower-cased; an IPv6 literal keeps its brackets.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }
}

// === impl RequestOrigin ===

impl RequestOrigin {
    /// Parses an `Origin` header value; `None` when it is not a serialised origin.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        if text.eq_ignore_ascii_case("null") {
            return Some(RequestOrigin::Null);
        }
        let (scheme, host, port) = split(text)?;
        if !valid_host(&host) {
            return None;
        }
        Some(RequestOrigin::Tuple(Origin { scheme, host, port }))
    }
}

// === impl OriginPattern ===

impl OriginPattern {
    /// Parses a configured entry (the config loader has already checked the syntax; an entry
    /// that still does not parse is skipped, so it can never widen the policy).
    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "*" => return Some(OriginPattern::Any),
            t if t.eq_ignore_ascii_case("null") => return Some(OriginPattern::Null),
            _ => {}
        }
        let (scheme, host, port) = split(text.trim())?;
        match host.strip_prefix("*.") {
            Some(rest) if valid_host(rest) && !rest.starts_with('[') => {
                Some(OriginPattern::Subdomain {
                    scheme,
                    suffix: format!(".{rest}"),
                    port,
                })
            }
            Some(_) => None,
            None if valid_host(&host) => Some(OriginPattern::Exact(Origin { scheme, host, port })),
            None => None,
        }
    }

    pub(crate) fn matches(&self, origin: &RequestOrigin) -> bool {
        match (self, origin) {
            (OriginPattern::Any, _) => true,
            (OriginPattern::Null, RequestOrigin::Null) => true,
            (OriginPattern::Exact(want), RequestOrigin::Tuple(got)) => want == got,
            (
                OriginPattern::Subdomain {
                    scheme,
                    suffix,
                    port,
                },
                RequestOrigin::Tuple(got),
            ) => {
                got.scheme == *scheme
                    && got.port == *port
                    && got.host.len() > suffix.len()
                    && got.host.ends_with(suffix.as_str())
            }
            _ => false,
        }
    }
}

/// Splits `scheme://host[:port]` into its lower-cased parts, with the default port dropped.
/// Refuses anything that is more than an origin: a path, query, fragment, userinfo,
/// backslash, percent-encoding or whitespace.
fn split(text: &str) -> Option<(String, String, Option<u16>)> {
    let (scheme, rest) = text.split_once("://")?;
    let mut chars = scheme.chars();
    let scheme_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok || rest.is_empty() || rest.len() > 300 {
        return None;
    }
    if rest
        .bytes()
        .any(|b| matches!(b, b'/' | b'?' | b'#' | b'@' | b'\\' | b'%') || !b.is_ascii_graphic())
    {
        return None;
    }
    let (host, port) = if rest.starts_with('[') {
        let end = rest.find(']')?;
        let (host, after) = rest.split_at(end + 1);
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    let scheme = scheme.to_ascii_lowercase();
    let port = match port {
        None => None,
        // Decimal without leading zeros, as an origin is serialised (RFC 6454 section 6.2): no
        // browser sends `:0443`, so a spelling like that is someone probing the matcher.
        Some(p)
            if !p.is_empty()
                && p.len() <= 5
                && !p.starts_with('0')
                && p.bytes().all(|b| b.is_ascii_digit()) =>
        {
            let n: u16 = p.parse().ok()?;
            let default = match scheme.as_str() {
                "http" | "ws" => Some(80),
                "https" | "wss" => Some(443),
                _ => None,
            };
            (default != Some(n)).then_some(n)
        }
        Some(_) => return None,
    };
    Some((scheme, host.to_ascii_lowercase(), port))
}

/// A DNS name of letters, digits and hyphens (RFC 1123 section 2.1) with no empty label, or
/// a bracketed IPv6 literal. A `*` or any other character is refused, so a request can never
/// smuggle a wildcard of its own.
fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[') {
        return inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<Ipv6Addr>().is_ok());
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

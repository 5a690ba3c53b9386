//! The redirect from plain HTTP to HTTPS (RFC 9110 section 15.4; OWASP Transport Layer
//! Security Cheat Sheet).
//!
//! - `301 Moved Permanently` for GET and HEAD, `308 Permanent Redirect` for every other
//!   method: a 301 lets clients turn a POST into a GET, a 308 keeps the method and body
//!   (RFC 9110 section 15.4.2; RFC 9110 section 15.4.9).
//! - The target host is the request's `Host` only when it is one of `server.hosts`;
//!   otherwise `hosts[0]`, so a forged Host can never turn the gateway into an open redirect
//!   (CWE-601). With no `hosts` configured the request's Host is used only when it is a
//!   syntactically valid name or IP address; otherwise there is no safe target and the
//!   answer is [`RedirectError`] (400).
//! - The Location is absolute (`https://host[:port]/path?query`), and its path starts with
//!   exactly one `/`, so a request for `//evil.com/x` can never become the scheme-relative
//!   `//evil.com/x` in some client's hands.
//! - `/.well-known/acme-challenge/TOKEN` is exempt ([`is_acme_challenge`]): certificate
//!   authorities fetch HTTP-01 challenges over plain HTTP (RFC 8555 section 8.3).

mod host;
#[cfg(test)]
mod tests;

use http::{HeaderValue, Method};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use host::Host;

/// Where RFC 8555 section 8.3 puts HTTP-01 challenge tokens.
pub const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// A redirect the gateway answers with (with its usual JSON body and security headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// 301 or 308.
    pub status: u16,
    pub location: HeaderValue,
}

/// Why no redirect could be built; the gateway answers 400 `bad_request` with the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectError {
    #[error("the request has no Host header and server.hosts is empty")]
    MissingHost,
    #[error("the Host header is not a valid host name")]
    InvalidHost,
    #[error("server.hosts[0] is not a valid host name")]
    InvalidCanonicalHost,
    #[error("the redirect target is not a valid header value")]
    InvalidLocation,
}

/// Bytes escaped in the copied path and query: controls, space, and the delimiters that
/// must never appear raw in a URI (RFC 3986 section 2; WHATWG URL "path percent-encode
/// set"). Non-ASCII is always escaped. Everything else, `%` included, is copied as is.
const ESCAPED: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'#')
    .add(b'{')
    .add(b'}');

/// Whether `path` is an ACME HTTP-01 challenge: the prefix followed by one token of
/// base64url characters (RFC 8555 section 8.1) and nothing else. Anything longer (a `..`
/// segment, a second segment) is not exempt, so the exemption cannot be used to reach other
/// paths over plain HTTP.
pub fn is_acme_challenge(path: &str) -> bool {
    path.strip_prefix(ACME_CHALLENGE_PREFIX)
        .is_some_and(|token| {
            !token.is_empty()
                && token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The redirect for a plain-HTTP request.
///
/// `host_header` is the request's `Host` as sent (port and case do not matter);
/// `path_and_query` is the request target; `hosts` is `server.hosts` (lower-cased, `hosts[0]`
/// canonical); `https_port` is written into the Location unless it is 443.
pub fn redirect(
    method: &Method,
    host_header: Option<&str>,
    path_and_query: &str,
    hosts: &[String],
    https_port: u16,
) -> Result<Redirect, RedirectError> {
    let host = target_host(host_header, hosts)?;
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    // Leading `/` and `\` collapse into one `/` (browsers read `\` as `/` in http(s) URLs,
    // WHATWG URL "special authority slashes"); the rest is kept as sent.
    let rest = path_and_query.trim_start_matches(['/', '\\']);
    let location = format!(
        "https://{}{port}/{}",
        host.authority(),
        utf8_percent_encode(rest, ESCAPED)
    );
    let location = HeaderValue::from_str(&location).map_err(|_| RedirectError::InvalidLocation)?;
    let status = if *method == Method::GET || *method == Method::HEAD {
        301
    } else {
        308
    };
    Ok(Redirect { status, location })
}

/// The request's own host when it is listed (or anything valid is accepted), else
/// `hosts[0]`.
fn target_host(host_header: Option<&str>, hosts: &[String]) -> Result<Host, RedirectError> {
    let requested = host_header.and_then(Host::parse);
    if let Some(requested) = requested {
        if hosts.is_empty()
            || hosts
                .iter()
                .any(|h| Host::parse(h).as_ref() == Some(&requested))
        {
            return Ok(requested);
        }
    }
    match hosts.first() {
        Some(canonical) => Host::parse(canonical).ok_or(RedirectError::InvalidCanonicalHost),
        None if host_header.is_none() => Err(RedirectError::MissingHost),
        None => Err(RedirectError::InvalidHost),
    }
}

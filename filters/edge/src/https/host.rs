//! The host part of a `Host` header (RFC 9110 section 7.2; RFC 3986 section 3.2.2), checked
//! strictly enough that it can be written into a `Location` without changing what the
//! Location means: no userinfo (`@`), no path or query delimiters, no percent-encoding, no
//! whitespace, no bare IPv6.

use std::net::{Ipv4Addr, Ipv6Addr};

/// A validated host, lower-cased, without port or trailing dot. IPv6 literals are kept
/// without brackets; [`Host::authority`] adds them back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Host(String);

impl Host {
    /// Parses `host[:port]` as sent in a `Host` header (or configured in `server.hosts`).
    pub(crate) fn parse(header: &str) -> Option<Host> {
        if header.is_empty() || header.len() > 300 {
            return None;
        }
        if let Some(rest) = header.strip_prefix('[') {
            let (inner, after) = rest.split_once(']')?;
            let ip: Ipv6Addr = inner.parse().ok()?;
            return valid_port(after).then(|| Host(ip.to_string()));
        }
        if let Ok(ip) = header.parse::<Ipv6Addr>() {
            // Unbracketed, as `server.hosts` may list it; without a port it is unambiguous.
            return Some(Host(ip.to_string()));
        }
        let (host, port) = match header.find(':') {
            Some(i) => header.split_at(i),
            None => (header, ""),
        };
        if !valid_port(port) {
            return None;
        }
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        (host.parse::<Ipv4Addr>().is_ok() || valid_name(&host)).then_some(Host(host))
    }

    /// The host as it goes into a URL authority.
    pub(crate) fn authority(&self) -> String {
        if self.0.contains(':') {
            format!("[{}]", self.0)
        } else {
            self.0.clone()
        }
    }
}

/// Empty (the port may be omitted, RFC 3986 section 3.2.3) or `:` and a 16-bit number.
fn valid_port(after_host: &str) -> bool {
    match after_host.strip_prefix(':') {
        None => after_host.is_empty(),
        Some("") => true,
        Some(p) => {
            p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
        }
    }
}

/// A DNS name (RFC 1123 section 2.1): labels of letters, digits and inner hyphens, at most
/// 63 bytes each and 253 in all. The last label may not be all digits: `1.2.3` or
/// `999.1.1.1` are not names, and URL parsers would read some of them as IPv4 addresses.
fn valid_name(host: &str) -> bool {
    let labels_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    labels_ok
        && host
            .rsplit('.')
            .next()
            .is_some_and(|tld| !tld.bytes().all(|b| b.is_ascii_digit()))
}

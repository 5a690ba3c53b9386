//! `[acme]`: the ACME server, the names, where the state lives, and how the names are proven.

use std::path::Path;

use crate::model::{Acme, AcmeChallenge, DEFAULT_RENEW_BEFORE};
use crate::reader::{Diag, Field, OptionalKey, Section};
use crate::sections::server::{file_path, host_name};

/// Most names on one certificate (Let's Encrypt's limit per certificate).
pub(crate) const MAX_DOMAINS: usize = 100;

pub(crate) fn acme(mut s: Section, base: &Path, d: &mut Diag) -> Option<Acme> {
    let directory = s.require("directory", d).and_then(|f| directory(&f, d));
    let contact = s
        .get("contact")
        .map_or(Some(vec![]), |f| f.list(d, contact));
    let domains = s.require("domains", d).and_then(|f| domains(&f, d));
    let state_dir = s.require("state_dir", d).and_then(|f| {
        let text = f.non_empty_string(d)?;
        Some(base.join(text))
    });
    let challenge = s
        .get("challenge")
        .map_or(Some(AcmeChallenge::Http01), |f| challenge(&f, d));
    let renew_before = s
        .get("renew_before")
        .map_or(Some(DEFAULT_RENEW_BEFORE), |f| f.positive_duration(d));
    let directory_ca = s.get("directory_ca").map(|f| file_path(&f, base, d));
    s.finish(d);
    Some(Acme {
        directory: directory?,
        contact: contact?,
        domains: domains?,
        state_dir: state_dir?,
        challenge: challenge?,
        renew_before: renew_before?,
        directory_ca: directory_ca.optional()?,
    })
}

/// The directory URL: `https://` only (RFC 8555 section 6.1: ACME runs over HTTPS; a
/// plain-HTTP directory would hand the account key's requests to anyone on the path).
fn directory(f: &Field, d: &mut Diag) -> Option<String> {
    let text = f.non_empty_string(d)?;
    let uri = text.parse::<http::Uri>().ok();
    let https = uri.as_ref().is_some_and(|u| {
        u.scheme_str() == Some("https") && u.host().is_some_and(|h| !h.is_empty())
    });
    if !https {
        f.error(
            d,
            format!("`{text}` is not an https:// URL (ACME directories are served over HTTPS)"),
        );
        return None;
    }
    Some(text)
}

fn contact(f: &Field, d: &mut Diag) -> Option<String> {
    let text = f.non_empty_string(d)?;
    let valid = text
        .strip_prefix("mailto:")
        .is_some_and(|addr| addr.contains('@') && !addr.contains(char::is_whitespace));
    if !valid {
        f.error(
            d,
            format!("`{text}` is not a mailto: URL (e.g. \"mailto:ops@example.com\")"),
        );
        return None;
    }
    Some(text)
}

fn domains(f: &Field, d: &mut Diag) -> Option<Vec<String>> {
    let names = f.list(d, |f, d| {
        let text = f.non_empty_string(d)?;
        if text.starts_with("*.") {
            f.error(
                d,
                "wildcard names need the dns-01 challenge, which this gateway does not offer",
            );
            return None;
        }
        let name = host_name(f, d)?;
        if name.parse::<std::net::IpAddr>().is_ok() || !name.contains('.') {
            f.error(
                d,
                format!("`{name}` is not a fully qualified domain name (public CAs issue for those only)"),
            );
            return None;
        }
        Some(name)
    })?;
    if names.is_empty() {
        f.error(d, "needs at least one name");
        return None;
    }
    if names.len() > MAX_DOMAINS {
        f.error(
            d,
            format!("at most {MAX_DOMAINS} names fit on one certificate"),
        );
        return None;
    }
    let mut seen: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        if seen.contains(&name) {
            f.error(d, format!("`{name}` is listed twice"));
            return None;
        }
        seen.push(name);
    }
    Some(seen)
}

fn challenge(f: &Field, d: &mut Diag) -> Option<AcmeChallenge> {
    match f.string(d)?.as_str() {
        "http-01" => Some(AcmeChallenge::Http01),
        "tls-alpn-01" => Some(AcmeChallenge::TlsAlpn01),
        "dns-01" => {
            f.error(
                d,
                "\"dns-01\" is not offered (it needs your DNS provider's API); use \"http-01\" or \"tls-alpn-01\"",
            );
            None
        }
        other => {
            f.error(
                d,
                format!("`{other}` is not one of \"http-01\", \"tls-alpn-01\""),
            );
            None
        }
    }
}

//! Which `Host` values the admin listener answers: its own address, `localhost`, and the
//! names in `[admin] hosts`, each with the listener's own port or none.
//!
//! Why: the listener's reads need no credential (it is meant for loopback or a private
//! network), so the one thing standing between it and a web page in the operator's browser
//! is the browser's same-origin policy. DNS rebinding defeats that: a page on
//! `evil.example:9901` re-resolves its own name to `127.0.0.1` and then reads
//! `/status.json`, `/bans` or `/metrics` as same-origin. The browser still sends
//! `Host: evil.example:9901`, so refusing names the listener does not know closes the hole
//! (the defence recommended for every loopback HTTP service since the 2018 rebinding
//! advisories against Blizzard, Transmission and Geth). A request without `Host`, or with
//! several, is refused too: browsers always send exactly one.
//!
//! The refusal is 421 Misdirected Request (RFC 9110 §15.5.20: "the request was directed at a
//! server that is unable or unwilling to produce an authoritative response for the target
//! URI"), not 403, which the admin API already answers when writes are disabled: a 421 says
//! "wrong name", never "wrong credential".

use std::net::{IpAddr, SocketAddr};

/// Whether the listener answers a request carrying `host`, received on `local` (the
/// connection's own address: the concrete one even when `[admin] listen` is `0.0.0.0`).
pub fn allowed(host: Option<&[u8]>, local: SocketAddr, names: &[String]) -> bool {
    let Some(host) = host.and_then(|h| std::str::from_utf8(h).ok()) else {
        return false;
    };
    let Some((name, port)) = split(host.trim()) else {
        return false;
    };
    if port.is_some_and(|p| p != local.port()) {
        return false;
    }
    let name = name.to_ascii_lowercase();
    if name == "localhost" {
        return true;
    }
    match name.parse::<IpAddr>() {
        Ok(ip) => {
            ip.to_canonical() == local.ip().to_canonical()
                || names
                    .iter()
                    .filter_map(|n| n.parse::<IpAddr>().ok())
                    .any(|n| n.to_canonical() == ip.to_canonical())
        }
        Err(_) => names.contains(&name),
    }
}

/// `name[:port]` or `[v6][:port]` into the name (brackets removed) and the port; `None`
/// when malformed (an unbracketed IPv6 address, an empty or non-numeric port).
fn split(host: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        match after {
            "" => (v6, None),
            _ => (v6, Some(after.strip_prefix(':')?)),
        }
    } else {
        match host.split_once(':') {
            None => (host, None),
            Some((name, port)) => (name, Some(port)),
        }
    };
    if name.is_empty() {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    Some((name, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(host: &str, local: &str, names: &[&str]) -> bool {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        allowed(Some(host.as_bytes()), local.parse().unwrap(), &names)
    }

    #[test]
    fn the_listeners_own_address_and_localhost_are_answered() {
        let local = "127.0.0.1:9901";
        for host in [
            "127.0.0.1:9901",
            "127.0.0.1",
            "localhost",
            "localhost:9901",
            "LocalHost:9901",
        ] {
            assert!(ok(host, local, &[]), "{host}");
        }
        assert!(ok("[::1]:9901", "[::1]:9901", &[]));
        assert!(ok("[::1]", "[::1]:9901", &[]));
        assert!(
            ok("127.0.0.1:9901", "[::ffff:127.0.0.1]:9901", &[]),
            "a v4-mapped socket"
        );
        assert!(
            ok("10.0.0.5:9901", "10.0.0.5:9901", &[]),
            "bound to 0.0.0.0, reached on 10.0.0.5"
        );
    }

    #[test]
    fn rebinding_names_other_ports_and_malformed_hosts_are_refused() {
        let local = "127.0.0.1:9901";
        for host in [
            "evil.example:9901",
            "evil.example",
            "127.0.0.1:80",
            "localhost:9902",
            "localhost.evil.example:9901",
            "127.0.0.2:9901",
            "127.0.0.1:",
            "127.0.0.1:99x",
            "127.0.0.1:99999999",
            "::1",
            "[::1",
            "[evil]:9901",
            ":9901",
            "",
        ] {
            assert!(!ok(host, local, &[]), "{host:?}");
        }
        assert!(
            !allowed(None, local.parse().unwrap(), &[]),
            "no Host at all"
        );
        assert!(!allowed(Some(b"\xff"), local.parse().unwrap(), &[]));
    }

    #[test]
    fn configured_names_are_answered_with_the_listeners_port_or_none() {
        let local = "10.0.0.5:9901";
        let names = ["portcullis", "admin.internal", "2001:db8::5"];
        assert!(ok("portcullis:9901", local, &names));
        assert!(ok("Admin.Internal", local, &names));
        assert!(ok("[2001:db8::5]:9901", local, &names));
        assert!(!ok("portcullis:9902", local, &names));
        assert!(!ok("portcullis.evil.example:9901", local, &names));
    }
}

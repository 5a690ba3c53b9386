//! The client address, by the trusted-proxy rule: the peer address, or, when the peer is a
//! trusted proxy, the rightmost X-Forwarded-For entry that is not itself a trusted proxy.
//! Entries left of that are whatever the client chose to send, so they are never believed
//! (a spoofed X-Forwarded-For from an untrusted peer changes nothing).

use std::net::IpAddr;

use ipnet::IpNet;

/// The set of trusted proxy networks.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    pub fn new(nets: &[IpNet]) -> Self {
        TrustedProxies {
            nets: nets.to_vec(),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// Resolves the client IP. `forwarded_for` yields the X-Forwarded-For header values in
    /// the order they arrived.
    pub fn client_ip<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl Iterator<Item = &'a [u8]>,
    ) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        let entries: Vec<&[u8]> = forwarded_for
            .flat_map(|v| v.split(|&b| b == b','))
            .collect();
        let mut client = peer;
        for raw in entries.iter().rev() {
            let Some(ip) = parse_entry(raw) else {
                // Garbage: stop at the last hop we could verify.
                return client;
            };
            client = ip;
            if !self.contains(ip) {
                return ip;
            }
        }
        client
    }
}

/// An X-Forwarded-For entry: an IP, optionally with a port (`1.2.3.4:5678`, `[::1]:80`).
fn parse_entry(raw: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(raw).ok()?.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest
            .split_once(']')
            .and_then(|(ip, _)| ip.parse().ok())
            .map(canonical);
    }
    text.rsplit_once(':')
        .and_then(|(ip, _)| ip.parse().ok())
        .map(canonical)
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) count as the IPv4 address, so one client
/// cannot appear as two keys.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The address a per-client table keys on: IPv4 as is (mapped IPv6 included), IPv6 cut to
/// its first `ipv6_prefix` bits. A client given a /64 (RFC 6177: the usual end-site
/// assignment) owns 2^64 addresses; keyed by address, it could rotate through them for a
/// fresh budget or a fresh slate with every request. `ipv6_prefix` is 48..=128 (config).
pub fn bucket(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) if ipv6_prefix < 128 => {
            let keep = u32::from(ipv6_prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - keep).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
        other => other,
    }
}

/// An address as text, as `Display` writes it: IPv4 digit by digit (`Display` costs about a
/// thousand instructions through the formatting machinery, and every request writes its
/// client's address into `X-Forwarded-For` and the access log), IPv6 by `Display`.
pub fn text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut out = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
            out
        }
        v6 => v6.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_as_display_writes_them() {
        for written in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.100.255",
            "203.0.113.7",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = written.parse().unwrap();
            assert_eq!(text(ip), ip.to_string());
        }
    }

    #[test]
    fn ipv6_clients_share_a_bucket_per_prefix_and_mapped_ipv4_is_ipv4() {
        let a = ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd");
        let b = ip("2001:db8:1:2::1");
        let other = ip("2001:db8:1:3::1");
        assert_eq!(bucket(a, 64), bucket(b, 64));
        assert_eq!(bucket(a, 64), ip("2001:db8:1:2::"));
        assert_ne!(bucket(a, 64), bucket(other, 64));
        assert_eq!(bucket(a, 48), bucket(other, 48));
        assert_eq!(bucket(a, 128), a);
        assert_ne!(bucket(a, 128), bucket(b, 128));
        assert_eq!(bucket(ip("::ffff:198.51.100.7"), 64), ip("198.51.100.7"));
        assert_eq!(bucket(ip("198.51.100.7"), 48), ip("198.51.100.7"));
    }

    fn trusted() -> TrustedProxies {
        TrustedProxies::new(&[
            "10.0.0.0/8".parse().unwrap(),
            "127.0.0.1/32".parse().unwrap(),
        ])
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_cannot_spoof() {
        let t = trusted();
        let xff: Vec<&[u8]> = vec![b"6.6.6.6"];
        assert_eq!(
            t.client_ip(ip("203.0.113.9"), xff.into_iter()),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn trusted_peers_give_the_rightmost_untrusted_entry() {
        let t = trusted();
        let xff: Vec<&[u8]> = vec![b"6.6.6.6, 198.51.100.7", b"10.1.1.1"];
        assert_eq!(
            t.client_ip(ip("10.0.0.2"), xff.into_iter()),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn all_trusted_gives_the_leftmost() {
        let t = trusted();
        let xff: Vec<&[u8]> = vec![b"10.9.9.9, 10.1.1.1"];
        assert_eq!(t.client_ip(ip("10.0.0.2"), xff.into_iter()), ip("10.9.9.9"));
    }

    #[test]
    fn garbage_stops_at_the_last_verified_hop() {
        let t = trusted();
        let xff: Vec<&[u8]> = vec![b"1.2.3.4, nonsense, 10.1.1.1"];
        assert_eq!(t.client_ip(ip("10.0.0.2"), xff.into_iter()), ip("10.1.1.1"));
        let none: Vec<&[u8]> = vec![];
        assert_eq!(
            t.client_ip(ip("10.0.0.2"), none.into_iter()),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn ports_and_mapped_addresses_are_understood() {
        let t = trusted();
        let xff: Vec<&[u8]> = vec![b"198.51.100.7:4444"];
        assert_eq!(
            t.client_ip(ip("::ffff:10.0.0.2"), xff.into_iter()),
            ip("198.51.100.7")
        );
        let xff: Vec<&[u8]> = vec![b"[2001:db8::1]:80"];
        assert_eq!(
            t.client_ip(ip("10.0.0.2"), xff.into_iter()),
            ip("2001:db8::1")
        );
    }
}

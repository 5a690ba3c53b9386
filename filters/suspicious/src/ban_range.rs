//! What a ban covers: one address, an IPv6 client's `ipv6_prefix` bucket, or a CIDR range an
//! operator names (`POST /bans {"client": "198.51.100.0/24"}`): a hosting provider's block,
//! say. Held as its network address and prefix length, host bits cleared, so two spellings
//! of one range are one ban.
//!
//! The lengths an operator may name are bounded below (IPv4 /8, IPv6 /16): a shorter prefix
//! covers a good part of the Internet, which is a firewall's job, not a typo a gateway should
//! act on.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Shortest IPv4 prefix a ban may name.
pub const MIN_IPV4_PREFIX: u8 = 8;
/// Shortest IPv6 prefix a ban may name.
pub const MIN_IPV6_PREFIX: u8 = 16;

/// A banned range: a network address (host bits zero) and its prefix length. An IPv4
/// address is a /32; an IPv4-mapped IPv6 address is its IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BanRange {
    net: IpAddr,
    len: u8,
}

impl BanRange {
    /// The range of length `len` holding `ip` (`len` capped at the family's width).
    pub fn new(ip: IpAddr, len: u8) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let len = len.min(32);
                BanRange {
                    net: IpAddr::V4(Ipv4Addr::from(u32::from(v4) & v4_mask(len))),
                    len,
                }
            }
            IpAddr::V6(v6) => {
                let len = len.min(128);
                BanRange {
                    net: IpAddr::V6(Ipv6Addr::from(u128::from(v6) & v6_mask(len))),
                    len,
                }
            }
        }
    }

    /// One address.
    pub fn address(ip: IpAddr) -> Self {
        Self::new(ip, 128)
    }

    pub fn network(&self) -> IpAddr {
        self.net
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether this is exactly `ip`'s range of this length (`ip` canonical).
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        Self::new(ip, self.len) == *self
    }

    /// A range as an operator writes it: `203.0.113.7`, `203.0.113.0/24`, `2001:db8::/48`,
    /// `[2001:db8::1]`. An IPv6 address without a length is `None` for the length (the
    /// caller buckets it by `ipv6_prefix`). `None` when malformed or outside /8–/32 (IPv4)
    /// and /16–/128 (IPv6).
    pub fn parse(text: &str) -> Option<(IpAddr, Option<u8>)> {
        let text = text.trim();
        let (addr, len) = match text.split_once('/') {
            Some((addr, len)) if !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()) => {
                (addr, Some(len.parse::<u8>().ok()?))
            }
            Some(_) => return None,
            None => (text, None),
        };
        let ip: IpAddr = match addr.strip_prefix('[') {
            Some(inner) => inner.strip_suffix(']')?.parse::<Ipv6Addr>().ok()?.into(),
            None => addr.parse().ok()?,
        };
        match (ip, len) {
            (_, None) => Some((ip.to_canonical(), None)),
            (IpAddr::V4(_), Some(n)) if (MIN_IPV4_PREFIX..=32).contains(&n) => Some((ip, len)),
            // `::ffff:10.0.0.0/104` is a spelling nobody needs; ask for the IPv4 form.
            (IpAddr::V6(v6), Some(n))
                if (MIN_IPV6_PREFIX..=128).contains(&n) && v6.to_ipv4_mapped().is_none() =>
            {
                Some((ip, len))
            }
            _ => None,
        }
    }
}

/// `203.0.113.7` for one IPv4 address, `network/len` for everything else (an IPv6 address
/// too, `2001:db8::1/128`, so that a bare IPv6 address always means its `ipv6_prefix`
/// bucket when read back).
impl fmt::Display for BanRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.net {
            IpAddr::V4(v4) if self.len == 32 => write!(f, "{v4}"),
            net => write!(f, "{net}/{}", self.len),
        }
    }
}

fn v4_mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn v6_mask(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_clear_host_bits_and_contain_their_addresses() {
        let r = BanRange::new(ip("198.51.100.77"), 24);
        assert_eq!(r.to_string(), "198.51.100.0/24");
        assert!(r.contains(ip("198.51.100.1")));
        assert!(!r.contains(ip("198.51.101.1")));
        assert!(!r.contains(ip("2001:db8::1")));
        assert_eq!(BanRange::address(ip("10.0.0.1")).to_string(), "10.0.0.1");
        assert_eq!(
            BanRange::address(ip("::ffff:10.0.0.1")),
            BanRange::address(ip("10.0.0.1"))
        );
        let v6 = BanRange::new(ip("2001:db8:1:2::9"), 48);
        assert_eq!(v6.to_string(), "2001:db8:1::/48");
        assert!(v6.contains(ip("2001:db8:1:ffff::1")));
        assert_eq!(
            BanRange::address(ip("2001:db8::1")).to_string(),
            "2001:db8::1/128"
        );
        assert_eq!(BanRange::new(ip("10.0.0.1"), 8).to_string(), "10.0.0.0/8");
    }

    #[test]
    fn operators_may_name_ipv4_8_to_32_and_ipv6_16_to_128() {
        assert_eq!(
            BanRange::parse("10.1.2.0/24"),
            Some((ip("10.1.2.0"), Some(24)))
        );
        assert_eq!(BanRange::parse(" 10.1.2.3 "), Some((ip("10.1.2.3"), None)));
        assert_eq!(BanRange::parse("10.0.0.0/8").unwrap().1, Some(8));
        assert_eq!(BanRange::parse("10.0.0.1/32").unwrap().1, Some(32));
        assert_eq!(BanRange::parse("2001:db8::/16").unwrap().1, Some(16));
        assert_eq!(BanRange::parse("2001:db8::1/128").unwrap().1, Some(128));
        assert_eq!(
            BanRange::parse("[2001:db8::1]"),
            Some((ip("2001:db8::1"), None))
        );
        assert_eq!(
            BanRange::parse("::ffff:10.0.0.1"),
            Some((ip("10.0.0.1"), None))
        );
        for bad in [
            "10.0.0.0/7",
            "0.0.0.0/0",
            "10.0.0.0/33",
            "2001:db8::/15",
            "2001:db8::/129",
            "::ffff:10.0.0.0/104",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/24/1",
            "[10.0.0.1]",
            "[2001:db8::1",
            "example.com",
            "",
        ] {
            assert_eq!(BanRange::parse(bad), None, "{bad:?}");
        }
    }
}

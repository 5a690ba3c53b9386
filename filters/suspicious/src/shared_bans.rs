//! Bans in force on every replica: placed by the admin API (`POST /bans`) or by an auto-ban
//! ([`super::BanList`]), each with an absolute end (unix ms). With a shared store the gateway
//! replaces this set from Redis whenever it changes, so a ban placed on one replica is
//! enforced by all and ends at the same instant everywhere (the time passed to
//! [`SharedBans::check`] is the store's clock); with the memory store it lives in the process
//! and survives reloads.
//!
//! A ban covers a [`BanRange`]: an address, an IPv6 client's `ipv6_prefix` bucket (what an
//! auto-ban or a bare IPv6 address bans), or a CIDR range an operator names (IPv4 /8–/32,
//! IPv6 /16–/128).
//!
//! The check is a lock-free read: the set is immutable and swapped whole, so a request pays
//! one atomic load while nobody is banned, and otherwise one hash lookup per prefix length
//! present in the set for its family (a set of single addresses: one lookup; at most 25 for
//! IPv4 and 113 for IPv6, whatever the number of bans). At most `capacity` ranges are held; a
//! new ban beyond that is refused ([`BanError::Full`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

pub use super::ban_range::BanRange;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BanError {
    #[error("the ban table is full ({0} clients); lift bans or raise [suspicious] ban_table_size")]
    Full(usize),
    #[error("`{0}` is not an IP address or a CIDR prefix (IPv4 /8 to /32, IPv6 /16 to /128)")]
    Client(String),
}

/// One immutable generation of the bans: each range's end, and the prefix lengths present
/// per family (longest first), which are all a check has to try.
#[derive(Debug, Default)]
struct Table {
    ends: HashMap<BanRange, u64>,
    v4_lengths: Vec<u8>,
    v6_lengths: Vec<u8>,
}

impl Table {
    fn new(ends: HashMap<BanRange, u64>) -> Self {
        let mut v4_lengths = Vec::new();
        let mut v6_lengths = Vec::new();
        for range in ends.keys() {
            let lengths = match range.network() {
                IpAddr::V4(_) => &mut v4_lengths,
                IpAddr::V6(_) => &mut v6_lengths,
            };
            if !lengths.contains(&range.prefix_len()) {
                lengths.push(range.prefix_len());
            }
        }
        v4_lengths.sort_unstable_by(|a, b| b.cmp(a));
        v6_lengths.sort_unstable_by(|a, b| b.cmp(a));
        Table {
            ends,
            v4_lengths,
            v6_lengths,
        }
    }

    /// The latest end among the ranges holding `ip`.
    fn end(&self, ip: IpAddr) -> Option<u64> {
        let ip = ip.to_canonical();
        let lengths = match ip {
            IpAddr::V4(_) => &self.v4_lengths,
            IpAddr::V6(_) => &self.v6_lengths,
        };
        lengths
            .iter()
            .filter_map(|len| self.ends.get(&BanRange::new(ip, *len)).copied())
            .max()
    }
}

/// The banned ranges and when each ban ends (unix ms).
#[derive(Debug)]
pub struct SharedBans {
    current: ArcSwap<Table>,
    capacity: AtomicUsize,
    ipv6_prefix: AtomicU8,
    writer: Mutex<()>,
}

impl SharedBans {
    pub fn new(capacity: usize, ipv6_prefix: u8) -> Self {
        SharedBans {
            current: ArcSwap::from_pointee(Table::default()),
            capacity: AtomicUsize::new(capacity.max(1)),
            ipv6_prefix: AtomicU8::new(ipv6_prefix),
            writer: Mutex::new(()),
        }
    }

    /// The bound and the IPv6 keying from a (re)loaded configuration.
    pub fn configure(&self, capacity: usize, ipv6_prefix: u8) {
        self.capacity.store(capacity.max(1), Ordering::Relaxed);
        self.ipv6_prefix.store(ipv6_prefix, Ordering::Relaxed);
    }

    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    /// The range an auto-ban of `ip` covers: the address, or an IPv6 client's bucket.
    pub fn key(&self, ip: IpAddr) -> BanRange {
        match ip.to_canonical() {
            v4 @ IpAddr::V4(_) => BanRange::address(v4),
            v6 => BanRange::new(v6, self.ipv6_prefix.load(Ordering::Relaxed)),
        }
    }

    /// Whether `range` is what [`SharedBans::key`] gives its clients (an auto-ban's range),
    /// so the auto-ban table's count for it can be forgotten with it.
    pub fn is_client_key(&self, range: BanRange) -> bool {
        self.key(range.network()) == range
    }

    /// The end of `ip`'s ban (unix ms) when it is banned at `now_ms`.
    #[inline]
    pub fn check(&self, ip: IpAddr, now_ms: u64) -> Option<u64> {
        self.check_at(ip, || now_ms)
    }

    /// Like [`SharedBans::check`], reading the clock only when someone is banned (the
    /// request path's case: nobody is, and it costs one atomic load).
    #[inline]
    pub fn check_at(&self, ip: IpAddr, now_ms: impl FnOnce() -> u64) -> Option<u64> {
        let bans = self.current.load();
        if bans.ends.is_empty() {
            return None;
        }
        let until = bans.end(ip)?;
        (until > now_ms()).then_some(until)
    }

    /// Bans `range` until `until_ms`, or extends its ban. Refused when the table is full of
    /// other live bans.
    pub fn insert(&self, range: BanRange, until_ms: u64, now_ms: u64) -> Result<u64, BanError> {
        let _guard = self.lock();
        let mut bans = self.current.load().ends.clone();
        let capacity = self.capacity();
        if !bans.contains_key(&range) && bans.len() >= capacity {
            bans.retain(|_, until| *until > now_ms);
            if bans.len() >= capacity {
                return Err(BanError::Full(capacity));
            }
        }
        let until = bans.entry(range).or_insert(0);
        *until = (*until).max(until_ms);
        let stored = *until;
        self.current.store(Arc::new(Table::new(bans)));
        Ok(stored)
    }

    /// Lifts `range`'s ban; whether there was one.
    pub fn remove(&self, range: BanRange) -> bool {
        let _guard = self.lock();
        let mut bans = self.current.load().ends.clone();
        let removed = bans.remove(&range).is_some();
        if removed {
            self.current.store(Arc::new(Table::new(bans)));
        }
        removed
    }

    /// Replaces every ban (a load from the shared store), keeping at most `capacity`. Returns
    /// the ranges that were banned before and are not now (lifted elsewhere or ended).
    pub fn replace(&self, entries: impl IntoIterator<Item = (BanRange, u64)>) -> Vec<BanRange> {
        let _guard = self.lock();
        let capacity = self.capacity();
        let mut bans = HashMap::new();
        for (range, until) in entries {
            if bans.len() < capacity || bans.contains_key(&range) {
                let at = bans.entry(range).or_insert(0);
                *at = (*at).max(until);
            }
        }
        let gone = self
            .current
            .load()
            .ends
            .keys()
            .filter(|r| !bans.contains_key(r))
            .copied()
            .collect();
        self.current.store(Arc::new(Table::new(bans)));
        gone
    }

    /// Forgets bans that ended before `now_ms`; the ranges forgotten.
    pub fn prune(&self, now_ms: u64) -> Vec<BanRange> {
        if self
            .current
            .load()
            .ends
            .values()
            .all(|until| *until > now_ms)
        {
            return Vec::new();
        }
        let _guard = self.lock();
        let mut bans = self.current.load().ends.clone();
        let gone: Vec<BanRange> = bans
            .iter()
            .filter(|(_, until)| **until <= now_ms)
            .map(|(r, _)| *r)
            .collect();
        for r in &gone {
            bans.remove(r);
        }
        self.current.store(Arc::new(Table::new(bans)));
        gone
    }

    /// Every ban (range, end in unix ms), in address order.
    pub fn list(&self) -> Vec<(BanRange, u64)> {
        let mut out: Vec<(BanRange, u64)> = self
            .current
            .load()
            .ends
            .iter()
            .map(|(r, u)| (*r, *u))
            .collect();
        out.sort_unstable();
        out
    }

    pub fn len(&self) -> usize {
        self.current.load().ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A range as an operator writes it (`203.0.113.7`, `203.0.113.0/24`, `2001:db8::1`,
    /// `2001:db8::/48`), or as the shared store holds it (the same text). A bare IPv6
    /// address means its client's `ipv6_prefix` bucket (what an auto-ban of it covers);
    /// `2001:db8::1/128` is the one address.
    pub fn parse_client(&self, text: &str) -> Result<BanRange, BanError> {
        match BanRange::parse(text) {
            Some((ip, Some(len))) => Ok(BanRange::new(ip, len)),
            Some((ip, None)) => Ok(self.key(ip)),
            None => Err(BanError::Client(text.chars().take(64).collect())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn at(bans: &SharedBans, s: &str) -> BanRange {
        bans.parse_client(s).unwrap()
    }

    #[test]
    fn a_ban_holds_until_its_end() {
        let bans = SharedBans::new(10, 64);
        assert_eq!(bans.check(ip("10.0.0.1"), 0), None);
        bans.insert(at(&bans, "10.0.0.1"), 1_000, 0).unwrap();
        assert_eq!(bans.check(ip("10.0.0.1"), 999), Some(1_000));
        assert_eq!(bans.check(ip("10.0.0.1"), 1_000), None);
        assert_eq!(bans.check(ip("10.0.0.2"), 0), None);
        assert_eq!(bans.prune(1_000), vec![at(&bans, "10.0.0.1")]);
        assert!(bans.is_empty());
    }

    #[test]
    fn ipv6_clients_are_banned_by_prefix() {
        let bans = SharedBans::new(10, 64);
        let key = at(&bans, "2001:db8:1:2::/64");
        bans.insert(key, 1_000, 0).unwrap();
        assert!(bans.check(ip("2001:db8:1:2:abcd::9"), 0).is_some());
        assert!(bans.check(ip("2001:db8:1:3::1"), 0).is_none());
        assert_eq!(key.to_string(), "2001:db8:1:2::/64");
        assert_eq!(
            at(&bans, "2001:db8:1:2::77"),
            key,
            "a bare address is its bucket"
        );
        assert_eq!(bans.key(ip("2001:db8:1:2::77")), key);
        assert!(bans.is_client_key(key));
        assert_eq!(at(&bans, "10.0.0.1/32"), at(&bans, "10.0.0.1"));
        assert_eq!(at(&bans, "::ffff:10.0.0.1"), at(&bans, "10.0.0.1"));
        assert!(bans.parse_client("nobody").is_err());
        assert!(bans.parse_client("10.0.0.0/7").is_err());
    }

    #[test]
    fn cidr_ranges_of_any_allowed_length_ban_every_address_inside() {
        let bans = SharedBans::new(10, 64);
        let v4 = at(&bans, "198.51.100.0/24");
        let wide = at(&bans, "10.0.0.0/8");
        let v6 = at(&bans, "2001:db8:ab00::/40");
        let one = at(&bans, "2001:db8::1/128");
        for r in [v4, wide, v6, one] {
            bans.insert(r, 1_000, 0).unwrap();
        }
        for inside in [
            "198.51.100.0",
            "198.51.100.255",
            "10.200.3.4",
            "::ffff:10.1.1.1",
            "2001:db8:ab12::1",
            "2001:db8::1",
        ] {
            assert_eq!(bans.check(ip(inside), 0), Some(1_000), "{inside}");
        }
        for outside in [
            "198.51.101.0",
            "11.0.0.1",
            "2001:db8:ac00::1",
            "2001:db8::2",
        ] {
            assert_eq!(bans.check(ip(outside), 0), None, "{outside}");
        }
        assert!(!bans.is_client_key(v4));
        assert!(!bans.is_client_key(one), "a /128 is not a /64 client's key");
        // A longer ban inside a shorter one: the later end wins.
        bans.insert(at(&bans, "10.1.0.0/16"), 5_000, 0).unwrap();
        assert_eq!(bans.check(ip("10.1.2.3"), 0), Some(5_000));
        assert_eq!(bans.check(ip("10.2.2.3"), 0), Some(1_000));
        // Lifting the range lifts it everywhere inside, and only it.
        assert!(bans.remove(wide));
        assert_eq!(bans.check(ip("10.2.2.3"), 0), None);
        assert_eq!(bans.check(ip("10.1.2.3"), 0), Some(5_000));
        // What is listed reads back as itself (the store holds the same text).
        for (range, _) in bans.list() {
            assert_eq!(at(&bans, &range.to_string()), range, "{range}");
        }
    }

    #[test]
    fn the_table_is_bounded_but_ended_bans_make_room() {
        let bans = SharedBans::new(2, 64);
        bans.insert(at(&bans, "10.0.0.1"), 100, 0).unwrap();
        bans.insert(at(&bans, "10.0.0.0/24"), 1_000, 0).unwrap();
        assert_eq!(
            bans.insert(at(&bans, "10.0.0.3"), 1_000, 50),
            Err(BanError::Full(2))
        );
        assert!(bans.insert(at(&bans, "10.0.0.3"), 1_000, 100).is_ok());
        assert_eq!(
            bans.insert(at(&bans, "10.0.0.0/24"), 500, 100),
            Ok(1_000),
            "never shortened"
        );
    }

    #[test]
    fn replace_reports_lifted_bans() {
        let bans = SharedBans::new(10, 64);
        bans.insert(at(&bans, "10.0.0.1"), 1_000, 0).unwrap();
        bans.insert(at(&bans, "10.0.0.0/16"), 1_000, 0).unwrap();
        let gone = bans.replace([(at(&bans, "10.0.0.0/16"), 2_000)]);
        assert_eq!(gone, vec![at(&bans, "10.0.0.1")]);
        assert_eq!(bans.list(), vec![(at(&bans, "10.0.0.0/16"), 2_000)]);
        assert_eq!(bans.check(ip("10.0.9.9"), 0), Some(2_000));
        assert!(bans.remove(at(&bans, "10.0.0.0/16")));
        assert!(!bans.remove(at(&bans, "10.0.0.0/16")));
        assert_eq!(bans.check(ip("10.0.9.9"), 0), None);
    }
}

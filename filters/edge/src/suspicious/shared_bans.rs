//! Bans in force on every replica: placed by the admin API (`POST /bans`) or by an auto-ban
//! ([`super::BanList`]), each with an absolute end (unix ms). With a shared store the gateway
//! replaces this set from Redis whenever it changes, so a ban placed on one replica is
//! enforced by all and ends at the same instant everywhere (the time passed to
//! [`SharedBans::check`] is the store's clock); with the memory store it lives in the process
//! and survives reloads.
//!
//! The check is a lock-free read: the set is immutable and swapped whole, so a request pays
//! one atomic load while nobody is banned and one hash lookup otherwise. At most `capacity`
//! clients are held; a new ban beyond that is refused ([`BanError::Full`]).
//!
//! Clients are keyed like the ban list keys them ([`bucket`]): an IPv6 client by its
//! `ipv6_prefix`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use portcullis_routing::client_ip::bucket;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BanError {
    #[error("the ban table is full ({0} clients); lift bans or raise [suspicious] ban_table_size")]
    Full(usize),
    #[error("`{0}` is not an IP address or an IPv6 /{1} prefix")]
    Client(String, u8),
}

/// The banned clients and when each ban ends (unix ms).
#[derive(Debug)]
pub struct SharedBans {
    current: ArcSwap<HashMap<IpAddr, u64>>,
    capacity: AtomicUsize,
    ipv6_prefix: AtomicU8,
    writer: Mutex<()>,
}

impl SharedBans {
    pub fn new(capacity: usize, ipv6_prefix: u8) -> Self {
        SharedBans {
            current: ArcSwap::from_pointee(HashMap::new()),
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

    /// The key a ban on `ip` is held under.
    pub fn key(&self, ip: IpAddr) -> IpAddr {
        bucket(ip, self.ipv6_prefix.load(Ordering::Relaxed))
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
        if bans.is_empty() {
            return None;
        }
        let until = bans.get(&self.key(ip)).copied()?;
        (until > now_ms()).then_some(until)
    }

    /// Bans `client` (already a key) until `until_ms`, or extends its ban. Refused when the
    /// table is full of other live bans.
    pub fn insert(&self, client: IpAddr, until_ms: u64, now_ms: u64) -> Result<u64, BanError> {
        let _guard = self.lock();
        let mut bans = (**self.current.load()).clone();
        let capacity = self.capacity();
        if !bans.contains_key(&client) && bans.len() >= capacity {
            bans.retain(|_, until| *until > now_ms);
            if bans.len() >= capacity {
                return Err(BanError::Full(capacity));
            }
        }
        let until = bans.entry(client).or_insert(0);
        *until = (*until).max(until_ms);
        let stored = *until;
        self.current.store(Arc::new(bans));
        Ok(stored)
    }

    /// Lifts `client`'s ban; whether there was one.
    pub fn remove(&self, client: IpAddr) -> bool {
        let _guard = self.lock();
        let mut bans = (**self.current.load()).clone();
        let removed = bans.remove(&client).is_some();
        if removed {
            self.current.store(Arc::new(bans));
        }
        removed
    }

    /// Replaces every ban (a load from the shared store), keeping at most `capacity`. Returns
    /// the clients that were banned before and are not now (lifted elsewhere or ended).
    pub fn replace(&self, entries: impl IntoIterator<Item = (IpAddr, u64)>) -> Vec<IpAddr> {
        let _guard = self.lock();
        let capacity = self.capacity();
        let mut bans = HashMap::new();
        for (client, until) in entries {
            if bans.len() < capacity || bans.contains_key(&client) {
                let at = bans.entry(client).or_insert(0);
                *at = (*at).max(until);
            }
        }
        let gone = self
            .current
            .load()
            .keys()
            .filter(|c| !bans.contains_key(c))
            .copied()
            .collect();
        self.current.store(Arc::new(bans));
        gone
    }

    /// Forgets bans that ended before `now_ms`; the clients forgotten.
    pub fn prune(&self, now_ms: u64) -> Vec<IpAddr> {
        if self.current.load().values().all(|until| *until > now_ms) {
            return Vec::new();
        }
        let _guard = self.lock();
        let mut bans = (**self.current.load()).clone();
        let gone: Vec<IpAddr> = bans
            .iter()
            .filter(|(_, until)| **until <= now_ms)
            .map(|(c, _)| *c)
            .collect();
        for c in &gone {
            bans.remove(c);
        }
        self.current.store(Arc::new(bans));
        gone
    }

    /// Every ban (client key, end in unix ms), in address order.
    pub fn list(&self) -> Vec<(IpAddr, u64)> {
        let mut out: Vec<(IpAddr, u64)> =
            self.current.load().iter().map(|(c, u)| (*c, *u)).collect();
        out.sort_unstable();
        out
    }

    pub fn len(&self) -> usize {
        self.current.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A client as an operator writes it (`203.0.113.7`, `2001:db8::1` or `2001:db8::/64`)
    /// turned into its key. A prefix must be the configured `ipv6_prefix` (bans are held per
    /// prefix of that length); an IPv4 address may carry `/32`.
    pub fn parse_client(&self, text: &str) -> Result<IpAddr, BanError> {
        let prefix = self.ipv6_prefix.load(Ordering::Relaxed);
        let refuse = || BanError::Client(text.chars().take(64).collect(), prefix);
        let text = text.trim();
        let (addr, len) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(len.parse::<u8>().map_err(|_| refuse())?)),
            None => (text, None),
        };
        let ip: IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| refuse())?;
        match (ip, len) {
            (_, None) => {}
            (IpAddr::V4(_), Some(32)) => {}
            (IpAddr::V6(v6), Some(len)) if len == prefix && v6.to_ipv4_mapped().is_none() => {}
            _ => return Err(refuse()),
        }
        Ok(self.key(ip))
    }

    /// A key as `GET /bans` lists it: an IPv4 address, or an IPv6 prefix `addr/len`.
    pub fn display(&self, client: IpAddr) -> String {
        let prefix = self.ipv6_prefix.load(Ordering::Relaxed);
        match client {
            IpAddr::V6(v6) if prefix < 128 => format!("{v6}/{prefix}"),
            other => other.to_string(),
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

    #[test]
    fn a_ban_holds_until_its_end() {
        let bans = SharedBans::new(10, 64);
        assert_eq!(bans.check(ip("10.0.0.1"), 0), None);
        bans.insert(ip("10.0.0.1"), 1_000, 0).unwrap();
        assert_eq!(bans.check(ip("10.0.0.1"), 999), Some(1_000));
        assert_eq!(bans.check(ip("10.0.0.1"), 1_000), None);
        assert_eq!(bans.check(ip("10.0.0.2"), 0), None);
        assert_eq!(bans.prune(1_000), vec![ip("10.0.0.1")]);
        assert!(bans.is_empty());
    }

    #[test]
    fn ipv6_clients_are_banned_by_prefix() {
        let bans = SharedBans::new(10, 64);
        let key = bans.parse_client("2001:db8:1:2::/64").unwrap();
        bans.insert(key, 1_000, 0).unwrap();
        assert!(bans.check(ip("2001:db8:1:2:abcd::9"), 0).is_some());
        assert!(bans.check(ip("2001:db8:1:3::1"), 0).is_none());
        assert_eq!(bans.display(key), "2001:db8:1:2::/64");
        assert_eq!(bans.parse_client("2001:db8:1:2::77").unwrap(), key);
        assert!(bans.parse_client("2001:db8::/48").is_err());
        assert!(bans.parse_client("10.0.0.0/8").is_err());
        assert_eq!(bans.parse_client("10.0.0.1/32").unwrap(), ip("10.0.0.1"));
        assert_eq!(
            bans.parse_client("::ffff:10.0.0.1").unwrap(),
            ip("10.0.0.1")
        );
        assert!(bans.parse_client("nobody").is_err());
    }

    #[test]
    fn the_table_is_bounded_but_ended_bans_make_room() {
        let bans = SharedBans::new(2, 64);
        bans.insert(ip("10.0.0.1"), 100, 0).unwrap();
        bans.insert(ip("10.0.0.2"), 1_000, 0).unwrap();
        assert_eq!(
            bans.insert(ip("10.0.0.3"), 1_000, 50),
            Err(BanError::Full(2))
        );
        assert!(bans.insert(ip("10.0.0.3"), 1_000, 100).is_ok());
        assert_eq!(
            bans.insert(ip("10.0.0.2"), 500, 100),
            Ok(1_000),
            "never shortened"
        );
    }

    #[test]
    fn replace_reports_lifted_bans() {
        let bans = SharedBans::new(10, 64);
        bans.insert(ip("10.0.0.1"), 1_000, 0).unwrap();
        bans.insert(ip("10.0.0.2"), 1_000, 0).unwrap();
        let gone = bans.replace([(ip("10.0.0.2"), 2_000)]);
        assert_eq!(gone, vec![ip("10.0.0.1")]);
        assert_eq!(bans.list(), vec![(ip("10.0.0.2"), 2_000)]);
        assert!(bans.remove(ip("10.0.0.2")));
        assert!(!bans.remove(ip("10.0.0.2")));
    }
}

//! Auto-ban: a client with `ban_threshold` blocked requests within `ban_window` (counted
//! from its first block) is refused for `ban_duration`, like fail2ban's `maxretry` /
//! `findtime` / `bantime`. `ban_threshold = 0` switches bans off.
//!
//! Bounds: at most `ban_table_size` clients are tracked. When a shard is full, entries whose
//! window and ban are over go first, then the least recently seen clients that are not
//! banned, and only then the bans closest to their end, down to 7/8 of the shard, so each
//! eviction pass pays for many inserts (amortised O(1)). A flood of unique addresses
//! therefore cannot grow memory, nor easily push real bans out.
//!
//! Concurrency: the table is split into up to 16 shards, each behind its own mutex, keyed by
//! a per-process random hash (so clients cannot choose to collide in one shard). While
//! nobody is tracked, [`BanList::check`] is one atomic load.
//!
//! Clients are keyed by [`bucket`]: an IPv6 client is banned by its `ipv6_prefix` (a /64 by
//! default), since one that owns a whole prefix would otherwise walk away from a ban by
//! changing its address.
//!
//! Time is passed in (`now`), so tests and replays need no sleeping; an earlier `now` than
//! one already seen saturates instead of panicking.

mod listing;
#[cfg(test)]
mod tests;

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use portcullis_config::Suspicious;
use portcullis_routing::client_ip::bucket;

const MAX_SHARDS: usize = 16;
/// Below this many entries per shard, fewer shards are used (so the bound stays exact).
const MIN_PER_SHARD: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: Instant,
    blocked: u32,
    banned_until: Option<Instant>,
    last_seen: Instant,
}

impl Entry {
    fn banned(&self, now: Instant) -> bool {
        self.banned_until.is_some_and(|until| until > now)
    }

    /// Neither banned nor inside a counting window: forgetting it changes nothing.
    fn stale(&self, now: Instant, window: Duration) -> bool {
        !self.banned(now) && now.saturating_duration_since(self.window_start) >= window
    }
}

/// Clients banned for repeated blocked requests.
#[derive(Debug)]
pub struct BanList {
    shards: Box<[Mutex<HashMap<IpAddr, Entry>>]>,
    hasher: RandomState,
    /// Entries over all shards; lets `check` skip the locks while the table is empty.
    tracked: AtomicUsize,
    per_shard: usize,
    threshold: u32,
    window: Duration,
    duration: Duration,
    ipv6_prefix: u8,
}

// === impl BanList ===

impl BanList {
    pub fn new(cfg: &Suspicious) -> Self {
        let size = cfg.ban_table_size.max(1);
        let shards = (size / MIN_PER_SHARD).clamp(1, MAX_SHARDS);
        BanList {
            shards: (0..shards).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            tracked: AtomicUsize::new(0),
            per_shard: size / shards,
            threshold: cfg.ban_threshold,
            window: cfg.ban_window,
            duration: cfg.ban_duration,
            ipv6_prefix: cfg.ipv6_prefix,
        }
    }

    fn shard(&self, ip: &IpAddr) -> MutexGuard<'_, HashMap<IpAddr, Entry>> {
        let index = (self.hasher.hash_one(ip) % self.shards.len() as u64) as usize;
        // A panic while holding the lock cannot leave an entry half-written (entries are
        // `Copy` and replaced whole), so a poisoned shard is still consistent.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The rest of `ip`'s ban, or `None` when it is not banned.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        if self.threshold == 0 || self.tracked.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let ip = bucket(ip, self.ipv6_prefix);
        let mut shard = self.shard(&ip);
        let entry = *shard.get(&ip)?;
        if entry.banned(now) {
            return entry
                .banned_until
                .map(|until| until.saturating_duration_since(now));
        }
        if entry.stale(now, self.window) {
            shard.remove(&ip);
            self.tracked.fetch_sub(1, Ordering::Relaxed);
        }
        None
    }

    /// Counts one blocked request from `ip`; `true` when this one got it banned.
    pub fn record_block(&self, ip: IpAddr, now: Instant) -> bool {
        if self.threshold == 0 {
            return false;
        }
        let ip = bucket(ip, self.ipv6_prefix);
        let mut shard = self.shard(&ip);
        if !shard.contains_key(&ip) && shard.len() >= self.per_shard {
            let removed = self.make_room(&mut shard, now);
            self.tracked.fetch_sub(removed, Ordering::Relaxed);
        }
        let entry = shard.entry(ip).or_insert_with(|| {
            self.tracked.fetch_add(1, Ordering::Relaxed);
            Entry {
                window_start: now,
                blocked: 0,
                banned_until: None,
                last_seen: now,
            }
        });
        entry.last_seen = entry.last_seen.max(now);
        if entry.banned(now) {
            return false;
        }
        if entry.banned_until.is_some() || entry.stale(now, self.window) {
            entry.banned_until = None;
            entry.window_start = now;
            entry.blocked = 0;
        }
        entry.blocked = entry.blocked.saturating_add(1);
        if entry.blocked < self.threshold {
            return false;
        }
        entry.banned_until = Some(saturating_add(now, self.duration));
        entry.blocked = 0;
        true
    }

    /// Forgets `ip`'s ban and count (the ban was lifted by an operator): its next blocked
    /// requests count from zero.
    pub fn forget(&self, ip: IpAddr) {
        let ip = bucket(ip, self.ipv6_prefix);
        if self.shard(&ip).remove(&ip).is_some() {
            self.tracked.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Whether a table built from `cfg` would behave exactly like this one (a reload that
    /// changes none of the ban settings keeps the table, and so its bans and counts).
    pub fn same_settings(&self, cfg: &Suspicious) -> bool {
        let size = cfg.ban_table_size.max(1);
        let shards = (size / MIN_PER_SHARD).clamp(1, MAX_SHARDS);
        self.shards.len() == shards
            && self.per_shard == size / shards
            && self.threshold == cfg.ban_threshold
            && self.window == cfg.ban_window
            && self.duration == cfg.ban_duration
            && self.ipv6_prefix == cfg.ipv6_prefix
    }

    /// Evicts stale entries, then the least valuable ones, down to 7/8 of a shard. Returns
    /// how many were removed.
    fn make_room(&self, shard: &mut HashMap<IpAddr, Entry>, now: Instant) -> usize {
        let before = shard.len();
        shard.retain(|_, e| !e.stale(now, self.window));
        let target = self.per_shard - (self.per_shard / 8).max(1);
        if shard.len() > target {
            let excess = shard.len() - target;
            // Not banned before banned; among each, least recently seen first.
            let mut order: Vec<(bool, Instant, IpAddr)> = shard
                .iter()
                .map(|(ip, e)| (e.banned(now), e.last_seen, *ip))
                .collect();
            order.select_nth_unstable(excess - 1);
            for (_, _, ip) in &order[..excess] {
                shard.remove(ip);
            }
        }
        before - shard.len()
    }

    /// Clients currently tracked (for tests and a gauge).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `now + d`, or the furthest representable instant if that overflows (a configured
/// `ban_duration` of centuries means "for as long as this process runs").
fn saturating_add(now: Instant, d: Duration) -> Instant {
    let mut d = d;
    loop {
        if let Some(t) = now.checked_add(d) {
            return t;
        }
        if d.is_zero() {
            return now;
        }
        d /= 2;
    }
}

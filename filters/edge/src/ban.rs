//! Auto-ban: a client with `ban_threshold` blocked requests within `ban_window` is refused
//! for `ban_duration`. The table is bounded by `ban_table_size` (a flood of unique addresses
//! evicts expired entries first, then arbitrary ones, in amortised O(1)), and the per-request
//! check costs one atomic load while nobody is tracked.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use portcullis_config::Suspicious;

const SHARDS: usize = 16;

#[derive(Clone, Copy)]
struct Entry {
    window_start: Instant,
    blocked: u32,
    banned_until: Option<Instant>,
}

pub struct BanList {
    shards: Vec<Mutex<HashMap<IpAddr, Entry>>>,
    tracked: AtomicUsize,
    per_shard: usize,
    threshold: u32,
    window: Duration,
    duration: Duration,
}

impl BanList {
    pub fn new(cfg: &Suspicious) -> Self {
        BanList {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            tracked: AtomicUsize::new(0),
            per_shard: (cfg.ban_table_size / SHARDS).max(8),
            threshold: cfg.ban_threshold,
            window: cfg.ban_window,
            duration: cfg.ban_duration,
        }
    }

    fn shard(&self, ip: &IpAddr) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        let i = match ip {
            IpAddr::V4(v4) => u32::from(*v4) as usize,
            IpAddr::V6(v6) => (u128::from(*v6) as usize) ^ ((u128::from(*v6) >> 64) as usize),
        } % SHARDS;
        match self.shards[i].lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The rest of the ban, when `ip` is banned.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        if self.threshold == 0 || self.tracked.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let until = self.shard(&ip).get(&ip)?.banned_until?;
        (until > now).then(|| until - now)
    }

    /// Records one blocked request; true when it just banned the client.
    pub fn record_block(&self, ip: IpAddr, now: Instant) -> bool {
        if self.threshold == 0 {
            return false;
        }
        let mut map = self.shard(&ip);
        if !map.contains_key(&ip) && map.len() >= self.per_shard {
            let before = map.len();
            map.retain(|_, e| {
                e.banned_until.is_some_and(|u| u > now)
                    || now.duration_since(e.window_start) < self.window
            });
            let target = before - before / 8;
            if map.len() > target {
                let victims: Vec<IpAddr> = map.keys().take(map.len() - target).copied().collect();
                for v in victims {
                    map.remove(&v);
                }
            }
            self.tracked
                .fetch_sub(before - map.len(), Ordering::Relaxed);
        }
        let fresh = Entry {
            window_start: now,
            blocked: 0,
            banned_until: None,
        };
        let entry = map.entry(ip).or_insert_with(|| {
            self.tracked.fetch_add(1, Ordering::Relaxed);
            fresh
        });
        if entry.banned_until.is_some_and(|u| u <= now)
            || now.duration_since(entry.window_start) >= self.window
        {
            *entry = fresh;
        }
        entry.blocked += 1;
        if entry.banned_until.is_none() && entry.blocked >= self.threshold {
            entry.banned_until = Some(now + self.duration);
            return true;
        }
        false
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |m| m.len()))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(threshold: u32, size: usize) -> BanList {
        BanList::new(&Suspicious {
            mode: portcullis_config::SuspiciousMode::Block,
            max_uri_bytes: 8192,
            max_headers: 100,
            ban_threshold: threshold,
            ban_window: Duration::from_secs(60),
            ban_duration: Duration::from_secs(600),
            ban_table_size: size,
            disabled_rules: vec![],
        })
    }

    #[test]
    fn bans_after_the_threshold_and_expires() {
        let l = list(3, 1000);
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let t0 = Instant::now();
        assert!(!l.record_block(ip, t0));
        assert!(!l.record_block(ip, t0));
        assert!(l.check(ip, t0).is_none());
        assert!(l.record_block(ip, t0));
        assert_eq!(
            l.check(ip, t0 + Duration::from_secs(1)),
            Some(Duration::from_secs(599))
        );
        assert!(
            l.check(ip, t0 + Duration::from_secs(601)).is_none(),
            "the ban expires"
        );
    }

    #[test]
    fn a_flood_of_unique_clients_stays_bounded() {
        let l = list(10, 1000);
        let now = Instant::now();
        for i in 0..1_000_000u32 {
            l.record_block(IpAddr::V4(i.into()), now);
        }
        assert!(l.len() <= 1000 + SHARDS * 8, "{}", l.len());
    }

    #[test]
    fn threshold_zero_disables_bans() {
        let l = list(0, 10);
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        assert!((0..100).all(|_| !l.record_block(ip, Instant::now())));
    }
}

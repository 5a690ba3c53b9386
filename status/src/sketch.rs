//! The clients refused by a rate limit most often, from a bounded heavy-hitter sketch.
//!
//! [`SpaceSaving`] is Metwally, Agrawal and El Abbadi's Space-Saving algorithm ("Efficient
//! Computation of Frequent and Top-k Elements in Data Streams", ICDT 2005): `capacity`
//! counters; a key without one takes over the smallest, inheriting its count as `error`. Any
//! key refused more than `total / capacity` times is guaranteed a counter, and a count
//! overstates the truth by at most its `error`. A flood of distinct addresses therefore costs
//! no memory: it only churns the smallest counters.
//!
//! [`LimitedClients`] keeps two sketches, the current minute's and the previous one's, and
//! reports the last minute as a sliding estimate (`current + previous × the share of the
//! previous minute still inside the last 60 s`), the weighting sliding-window rate limiters
//! use. The keys are rate-limit bucket keys: an IPv4 address or an IPv6 prefix, never a token
//! or a user name (the key type, [`BucketKey`], holds an address and a prefix length, nothing else).
//!
//! It sits behind a mutex that only the refusal path takes (a refusal is the rare answer):
//! one scan of `capacity` counters per refused request.

use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use portcullis_ratelimit::Scope;

/// Counters per sketch.
pub const CAPACITY: usize = 64;

/// One monitored key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Counter<K> {
    pub key: K,
    pub count: u64,
    /// How much of `count` may belong to the keys this counter took over.
    pub error: u64,
}

/// A Space-Saving sketch of at most `capacity` counters.
#[derive(Debug, Clone)]
pub struct SpaceSaving<K> {
    counters: Vec<Counter<K>>,
    capacity: usize,
}

impl<K: Copy + PartialEq> SpaceSaving<K> {
    pub fn new(capacity: usize) -> Self {
        SpaceSaving {
            counters: Vec::with_capacity(capacity.max(1)),
            capacity: capacity.max(1),
        }
    }

    /// Counts one occurrence of `key`.
    pub fn offer(&mut self, key: K) {
        if let Some(c) = self.counters.iter_mut().find(|c| c.key == key) {
            c.count += 1;
            return;
        }
        if self.counters.len() < self.capacity {
            self.counters.push(Counter {
                key,
                count: 1,
                error: 0,
            });
            return;
        }
        if let Some(smallest) = self.counters.iter_mut().min_by_key(|c| c.count) {
            *smallest = Counter {
                key,
                count: smallest.count + 1,
                error: smallest.count,
            };
        }
    }

    pub fn counters(&self) -> &[Counter<K>] {
        &self.counters
    }

    pub fn clear(&mut self) {
        self.counters.clear();
    }
}

/// A rate-limit bucket key: a client's address, an IPv6 one cut to the policy's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BucketKey {
    pub ip: IpAddr,
    /// The IPv6 prefix length the address was cut to (ignored for IPv4).
    pub prefix: u8,
}

impl std::fmt::Display for BucketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.ip {
            IpAddr::V6(_) if self.prefix < 128 => write!(f, "{}/{}", self.ip, self.prefix),
            ip => write!(f, "{ip}"),
        }
    }
}

/// A client in the top list: its bucket key, the estimated refusals in the last minute, and
/// the scope of its latest refusal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limited {
    pub client: BucketKey,
    pub refusals: u64,
    pub scope: Scope,
}

struct Minutes {
    minute: u64,
    current: SpaceSaving<(BucketKey, ScopeKey)>,
    previous: SpaceSaving<(BucketKey, ScopeKey)>,
}

/// `Scope` as a sketch key part (a per-IP and a per-user refusal of one address are told apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ScopeKey(bool);

impl ScopeKey {
    fn of(scope: Scope) -> Self {
        ScopeKey(scope == Scope::User)
    }

    fn scope(self) -> Scope {
        if self.0 {
            Scope::User
        } else {
            Scope::Ip
        }
    }
}

/// The rate-limited clients of the last minute or so.
pub struct LimitedClients {
    inner: Mutex<Minutes>,
}

impl Default for LimitedClients {
    fn default() -> Self {
        LimitedClients {
            inner: Mutex::new(Minutes {
                minute: 0,
                current: SpaceSaving::new(CAPACITY),
                previous: SpaceSaving::new(CAPACITY),
            }),
        }
    }
}

impl LimitedClients {
    /// Counts one refusal of `client` (a bucket key) at second `sec`.
    pub fn refused(&self, client: BucketKey, scope: Scope, sec: u64) {
        let mut m = self.lock();
        m.rotate(sec / 60);
        m.current.offer((client, ScopeKey::of(scope)));
    }

    /// The `n` clients refused most in the 60 s before second `sec`, most refused first.
    pub fn top(&self, n: usize, sec: u64) -> Vec<Limited> {
        let mut m = self.lock();
        m.rotate(sec / 60);
        let weight = 1.0 - (sec % 60) as f64 / 60.0;
        let mut merged: Vec<(BucketKey, ScopeKey, f64)> = Vec::with_capacity(2 * CAPACITY);
        let mut add = |key: (BucketKey, ScopeKey), count: f64| match merged
            .iter_mut()
            .find(|(ip, s, _)| (*ip, *s) == key)
        {
            Some(entry) => entry.2 += count,
            None => merged.push((key.0, key.1, count)),
        };
        for c in m.current.counters() {
            add(c.key, c.count as f64);
        }
        for c in m.previous.counters() {
            add(c.key, c.count as f64 * weight);
        }
        merged.retain(|(_, _, count)| *count >= 0.5);
        merged.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        merged
            .into_iter()
            .take(n)
            .map(|(client, scope, count)| Limited {
                client,
                refusals: count.round() as u64,
                scope: scope.scope(),
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Minutes> {
        // Counters are replaced whole: a panic cannot leave one half-written.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Minutes {
    /// Moves on to `minute`: the current sketch becomes the previous one (or both are
    /// emptied when more than a minute passed).
    fn rotate(&mut self, minute: u64) {
        if minute == self.minute {
            return;
        }
        if minute == self.minute + 1 {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.clear();
        } else if minute > self.minute {
            self.current.clear();
            self.previous.clear();
        }
        self.minute = self.minute.max(minute);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> BucketKey {
        BucketKey {
            ip: s.parse().unwrap(),
            prefix: 64,
        }
    }

    #[test]
    fn space_saving_keeps_the_heavy_hitters_in_bounded_memory() {
        let mut s = SpaceSaving::new(8);
        for round in 0..1000u32 {
            s.offer(1u32);
            s.offer(2u32);
            // A flood of keys seen once each.
            s.offer(1000 + round);
        }
        assert_eq!(s.counters().len(), 8);
        let count = |k: u32| s.counters().iter().find(|c| c.key == k).map(|c| c.count);
        assert_eq!(count(1), Some(1000));
        assert_eq!(count(2), Some(1000));
        for c in s.counters() {
            assert!(c.count - c.error <= 1000, "{c:?}");
        }
    }

    #[test]
    fn the_top_list_is_the_last_minute_most_refused_first() {
        let l = LimitedClients::default();
        for _ in 0..5 {
            l.refused(ip("203.0.113.7"), Scope::Ip, 10);
        }
        l.refused(ip("2001:db8::"), Scope::Ip, 11);
        l.refused(ip("198.51.100.1"), Scope::User, 12);
        l.refused(ip("198.51.100.1"), Scope::User, 12);
        let top = l.top(10, 12);
        let got: Vec<(String, u64)> = top
            .iter()
            .map(|t| (t.client.to_string(), t.refusals))
            .collect();
        assert_eq!(
            got,
            [
                ("203.0.113.7".to_string(), 5),
                ("198.51.100.1".to_string(), 2),
                ("2001:db8::/64".to_string(), 1)
            ]
        );
        assert_eq!(top[1].scope, Scope::User);
        assert_eq!(l.top(1, 12).len(), 1);
        // Halfway through the next minute, the previous minute counts half.
        assert_eq!(l.top(10, 90)[0].refusals, 3);
        // Two minutes on, nothing is left.
        assert!(l.top(10, 200).is_empty());
    }
}

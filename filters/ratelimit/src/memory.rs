//! The in-memory keyed store: one GCRA cell per key, sharded to keep lock hold times short,
//! and bounded. When a shard is full, keys whose bucket is already full again are dropped
//! first (they carry no information); if none is, arbitrary keys go.
//! So a flood of unique keys (2,000,000 spoofed addresses) costs at most `max_keys` cells.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::Mutex;

const SHARDS: usize = 64;

/// The shards' maps are keyed by [`KeyedStore::digest`], already a randomly seeded SipHash of
/// the key: hashing it again would only spend instructions (three times per update). The
/// digest is used as it is, so an attacker still cannot choose keys that collide.
#[derive(Default)]
struct Digest(u64);

impl Hasher for Digest {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are stored; fold anything else in, should it ever be hashed.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Shard = HashMap<u64, u64, BuildHasherDefault<Digest>>;

pub struct KeyedStore {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    hasher: std::collections::hash_map::RandomState,
}

impl KeyedStore {
    pub fn new(max_keys: usize) -> Self {
        let per_shard = (max_keys / SHARDS).max(16);
        KeyedStore {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard,
            hasher: Default::default(),
        }
    }

    /// A 64-bit key digest (randomly seeded, so keys cannot be chosen to collide).
    pub fn digest(&self, key: impl Hash) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Runs `f` with the stored TAT for `key` (0 when absent) and stores what it returns.
    pub fn update<T>(&self, key: u64, now: u64, f: impl FnOnce(u64) -> (Option<u64>, T)) -> T {
        // The shard from the digest's middle bits: the map's bucket takes the low bits and its
        // tag the top seven, which must vary within a shard.
        let shard = &self.shards[((key >> 32) as usize) % SHARDS];
        let mut map = match shard.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let tat = map.get(&key).copied().unwrap_or(0);
        let (store, out) = f(tat);
        if let Some(new_tat) = store {
            if !map.contains_key(&key) && map.len() >= self.per_shard {
                evict(&mut map, now);
            }
            map.insert(key, new_tat);
        }
        out
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

/// Frees room in a full shard in one pass: every full bucket (TAT in the past) goes; if that
/// frees less than an eighth, arbitrary keys go until an eighth is free. One O(n) pass per
/// n/8 inserts keeps eviction amortised O(1), so a flood cannot make each insert expensive.
/// Evicting a live key forgets its debt (it gets a fresh bucket): the price of a bound.
fn evict(map: &mut Shard, now: u64) {
    let before = map.len();
    map.retain(|_, tat| *tat > now);
    let target = before - before / 8;
    if map.len() > target {
        let excess = map.len() - target;
        let victims: Vec<u64> = map.keys().take(excess).copied().collect();
        for key in victims {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_its_bound_under_a_flood_of_unique_keys() {
        let store = KeyedStore::new(10_000);
        for i in 0..2_000_000u64 {
            let key = store.digest(i);
            store.update(key, 1, |_| (Some(u64::MAX / 2), ()));
        }
        assert!(store.len() <= 10_000 + SHARDS, "{} keys", store.len());
    }

    #[test]
    fn remembers_what_it_stores() {
        let store = KeyedStore::new(1000);
        let k = store.digest("1.2.3.4");
        store.update(k, 0, |tat| (Some(tat + 5), ()));
        assert_eq!(store.update(k, 0, |tat| (None, tat)), 5);
    }
}

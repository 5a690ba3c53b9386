//! Bounded caches of verification results, keyed by a 128-bit keyed hash of the token (the
//! token itself is never stored, and 16 bytes per key bound the memory whatever the token
//! size).
//!
//! The key is SipHash-2-4 with a 128-bit output under a random key drawn when the verifier is
//! built: a pseudo-random function an attacker cannot evaluate, since neither the key nor any
//! output ever leaves the process. So two tokens share a cache entry only by a 2^-128 chance
//! per pair, and no token can be crafted to land on another's entry. It replaced SHA-256
//! (6,600 instructions for a 200-byte token under callgrind; SipHash takes a tenth of that):
//! collision resistance against an adversary who can compute the function is not needed
//! where the adversary cannot.
//!
//! Each entry carries the instant it stops being valid and the key-set generation it was
//! computed under: a lookup after its time or after the keys changed is a miss, so no entry
//! can outlive the token's `exp` or a key that was withdrawn.

use quick_cache::sync::Cache;

pub(crate) type Digest = u128;

/// The keyed hash that turns a token into its cache key.
pub(crate) struct Keyer {
    k0: u64,
    k1: u64,
}

impl Keyer {
    /// A keyer with a fresh random key.
    pub(crate) fn random() -> Self {
        Keyer {
            k0: rand::random(),
            k1: rand::random(),
        }
    }

    pub(crate) fn digest(&self, token: &str) -> Digest {
        use std::hash::Hasher as _;
        let mut h = siphasher::sip128::SipHasher24::new_with_keys(self.k0, self.k1);
        h.write(token.as_bytes());
        siphasher::sip128::Hasher128::finish128(&h).as_u128()
    }
}

#[derive(Clone)]
struct Slot<V> {
    value: V,
    until_ms: u64,
    generation: u64,
}

/// At most `capacity` entries (quick_cache's S3-FIFO evicts beyond that); capacity 0 caches
/// nothing.
pub(crate) struct TtlCache<V: Clone> {
    inner: Option<Cache<Digest, Slot<V>>>,
}

impl<V: Clone> TtlCache<V> {
    pub(crate) fn new(capacity: usize) -> Self {
        TtlCache {
            inner: (capacity > 0).then(|| Cache::new(capacity)),
        }
    }

    pub(crate) fn get(&self, key: &Digest, now_ms: u64, generation: u64) -> Option<V> {
        let cache = self.inner.as_ref()?;
        let slot = cache.get(key)?;
        if now_ms < slot.until_ms && slot.generation == generation {
            Some(slot.value)
        } else {
            cache.remove(key);
            None
        }
    }

    pub(crate) fn insert(
        &self,
        key: Digest,
        value: V,
        until_ms: u64,
        now_ms: u64,
        generation: u64,
    ) {
        if let Some(cache) = &self.inner {
            if until_ms > now_ms {
                cache.insert(
                    key,
                    Slot {
                        value,
                        until_ms,
                        generation,
                    },
                );
            }
        }
    }

    pub(crate) fn clear(&self) {
        if let Some(cache) = &self.inner {
            cache.clear();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, Cache::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static KEYER: std::sync::LazyLock<Keyer> = std::sync::LazyLock::new(Keyer::random);

    #[test]
    fn entries_end_at_their_time_and_with_their_generation() {
        let cache = TtlCache::new(10);
        let k = KEYER.digest("t");
        cache.insert(k, 1, 2_000, 1_000, 0);
        assert_eq!(cache.get(&k, 1_999, 0), Some(1));
        assert_eq!(cache.get(&k, 1_999, 1), None);
        cache.insert(k, 1, 2_000, 1_000, 0);
        assert_eq!(cache.get(&k, 2_000, 0), None);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn an_already_expired_entry_is_not_stored_and_capacity_zero_stores_nothing() {
        let cache = TtlCache::new(10);
        cache.insert(KEYER.digest("t"), 1, 1_000, 1_000, 0);
        assert_eq!(cache.len(), 0);
        let none = TtlCache::new(0);
        none.insert(KEYER.digest("t"), 1, 5_000, 1_000, 0);
        assert_eq!(none.get(&KEYER.digest("t"), 1_001, 0), None);
    }

    #[test]
    fn distinct_tokens_have_distinct_keys() {
        assert_ne!(KEYER.digest("a.b.c"), KEYER.digest("a.b.d"));
        assert_eq!(KEYER.digest("a.b.c"), KEYER.digest("a.b.c"));
        assert_ne!(
            Keyer::random().digest("a.b.c"),
            Keyer::random().digest("a.b.c"),
            "each verifier keys its own cache"
        );
    }
}

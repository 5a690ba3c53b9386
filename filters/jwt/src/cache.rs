//! Bounded caches of verification results, keyed by the SHA-256 of the token (the token itself
//! is never stored, and 32 bytes per key bound the memory whatever the token size).
//!
//! Each entry carries the instant it stops being valid and the key-set generation it was
//! computed under: a lookup after its time or after the keys changed is a miss, so no entry
//! can outlive the token's `exp` or a key that was withdrawn.

use quick_cache::sync::Cache;

pub(crate) type Digest = [u8; 32];

pub(crate) fn digest(token: &str) -> Digest {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
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

    #[test]
    fn entries_end_at_their_time_and_with_their_generation() {
        let cache = TtlCache::new(10);
        let k = digest("t");
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
        cache.insert(digest("t"), 1, 1_000, 1_000, 0);
        assert_eq!(cache.len(), 0);
        let none = TtlCache::new(0);
        none.insert(digest("t"), 1, 5_000, 1_000, 0);
        assert_eq!(none.get(&digest("t"), 1_001, 0), None);
    }

    #[test]
    fn distinct_tokens_have_distinct_keys() {
        assert_ne!(digest("a.b.c"), digest("a.b.d"));
        assert_eq!(digest("a.b.c"), digest("a.b.c"));
    }
}

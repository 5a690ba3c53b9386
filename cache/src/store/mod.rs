//! The edge cache's store: pingora-cache's [`Storage`] on a bounded, concurrent table.
//!
//! **Why TinyUFO.** pingora-cache's `MemCache` is unbounded and for tests; its eviction
//! managers (`eviction::lru`, on pingora-lru) track sizes next to a storage and purge what they
//! pick from a spawned task, so the storage runs over its bound until that task gets to it.
//! TinyUFO (pingora's `TinyUFO` crate) holds the objects itself and evicts synchronously inside
//! `put`, weighted: the bound is never exceeded, not even briefly. Its admission (TinyLFU) and
//! eviction (S3-FIFO) also keep the hot set when a client sprays one-off URLs, where an LRU
//! would flush every catalogue answer for them. Reads are lock-free.
//!
//! **Bounds.** TinyUFO weighs items in `u16`, so an object's weight is its accounted size in
//! 1 KiB units, rounded up (an object costs at least what it holds). Accounted size = body +
//! response header + key and purge-index entry + a fixed per-object overhead. Stored objects may
//! use `memory` minus the fill budget; fills in progress (bodies still arriving from the
//! upstream) reserve their bytes from the fill budget (an eighth of `memory`), and a fill that
//! finds it spent is dropped (that answer streams through unstored). So everything the cache
//! holds stays within `memory`. An object evicted while a client still reads it is freed when
//! that response ends.
//!
//! **Writes.** Every write (a fill's commit, a meta update, a purge) takes one mutex, which also
//! guards the purge index: the index and the table change together, so the index lists exactly
//! the stored objects and is bounded by them. Reads never take it.
//!
//! **Fills stream.** A body being fetched is readable while it arrives (pingora's streaming
//! partial writes): pingora releases the cache lock as soon as the fill starts, the requests
//! that waited on it read the same bytes as they come, and the fill goes on when the client
//! that started it disconnects (a media player that read its range and left), so the object
//! is stored anyway. A fill reserves its whole size up front (`Content-Length`, or the route's
//! `max_object_size` when the upstream does not say), so writing never fails half-way; when the
//! budget cannot take it, the answer streams through unstored. Fills in progress are one table
//! entry each, bounded by the fill budget.

mod fill;
mod object;
#[cfg(test)]
mod tests;

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pingora_cache::key::CacheHashKey;
use pingora_cache::storage::streaming_write::U64WriteId;
use pingora_cache::trace::SpanHandle;
use pingora_cache::{
    CacheKey, CacheMeta, HitHandler, MissHandler, PurgeOutcome, PurgeTarget, PurgeType, Storage,
};
use pingora_error::{Error, ErrorType, Result};
use tinyufo::TinyUfo;
use tokio::sync::watch;

use fill::{Fill, Partial, PartialHit, Progress};
use object::{Hit, Object, StoredMeta};

/// TinyUFO weighs in `u16`: one unit is this many bytes.
const WEIGHT_UNIT: usize = 1024;
/// Bookkeeping per object beyond its bytes: the object, its `Arc`, TinyUFO's bucket and queue
/// slot, the index entry's map node.
const OBJECT_OVERHEAD: usize = 256;

/// What the gateway knows about a stored object besides its key.
#[derive(Debug, Clone)]
pub struct Label {
    /// The normalised request path, for purges by path and prefix.
    pub path: Box<str>,
    /// The route's `max_object_size`: what a fill of unknown length reserves.
    pub max_object_size: usize,
}

/// The purge index: request path -> keys stored for it (hosts, queries, variants).
#[derive(Default)]
struct Index {
    by_path: BTreeMap<Box<str>, Vec<u128>>,
}

impl Index {
    fn insert(&mut self, path: &str, key: u128) {
        let keys = self.by_path.entry(path.into()).or_default();
        if !keys.contains(&key) {
            keys.push(key);
        }
    }

    fn remove(&mut self, path: &str, key: u128) {
        if let Some(keys) = self.by_path.get_mut(path) {
            keys.retain(|k| *k != key);
            if keys.is_empty() {
                self.by_path.remove(path);
            }
        }
    }
}

/// Counts of the store, for the tests.
#[cfg(test)]
pub struct Usage {
    pub stored_bytes: usize,
    pub filling_bytes: usize,
}

pub struct Store {
    objects: TinyUfo<u128, Arc<Object>>,
    /// Serialises writes; holds the purge index.
    writes: Mutex<Index>,
    /// Fills in progress by key, then by write id (several after a lock timeout).
    filling: Mutex<HashMap<u128, Vec<Arc<Partial>>>>,
    next_write: AtomicU64,
    stored_bytes: AtomicUsize,
    filling_bytes: AtomicUsize,
    fill_budget: usize,
    gauge: prometheus::IntGauge,
}

impl Store {
    /// A store for at most `memory` bytes, stored and filling together.
    pub fn new(memory: usize, gauge: prometheus::IntGauge) -> Store {
        let fill_budget = memory / 8;
        let stored = memory - fill_budget;
        let units = (stored / WEIGHT_UNIT).max(1);
        // TinyUFO's frequency sketch and table are sized for this many objects (16 KiB
        // average; a catalogue answer is tens of KB).
        let estimated = (memory / (16 * 1024)).clamp(256, 1 << 16);
        Store {
            objects: TinyUfo::new(units, estimated),
            writes: Mutex::new(Index::default()),
            filling: Mutex::new(HashMap::new()),
            next_write: AtomicU64::new(1),
            stored_bytes: AtomicUsize::new(0),
            filling_bytes: AtomicUsize::new(0),
            fill_budget,
            gauge,
        }
    }

    #[cfg(test)]
    pub fn usage(&self) -> Usage {
        Usage {
            stored_bytes: self.stored_bytes.load(Ordering::Relaxed),
            filling_bytes: self.filling_bytes.load(Ordering::Relaxed),
        }
    }

    /// The stored object under `key`, if it is really this key's (TinyUFO keys on a 64-bit
    /// hash of it: a collision must read as a miss, never as another URL's answer).
    fn get(&self, key: u128) -> Option<Arc<Object>> {
        self.objects.get(&key).filter(|o| o.key == key)
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        // A panic while holding it cannot leave the index half-written (each change is one
        // call), so a poisoned lock is still a usable one.
        self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `object` (replacing one under the same key), evicting to the bound. Returns
    /// whether it was admitted (TinyLFU may keep a more popular object instead).
    fn insert(&self, object: Arc<Object>) -> bool {
        let mut index = self.index();
        let weight = weight_of(object.bytes);
        let previous = self.get(object.key);
        let evicted = self.objects.put(object.key, object.clone(), weight);
        if let Some(previous) = previous {
            self.stored_bytes
                .fetch_sub(previous.bytes, Ordering::Relaxed);
        }
        let mut admitted = true;
        for kv in evicted {
            if Arc::ptr_eq(&kv.data, &object) {
                admitted = false;
            } else {
                self.stored_bytes
                    .fetch_sub(kv.data.bytes, Ordering::Relaxed);
            }
            index.remove(&kv.data.label.path, kv.data.key);
        }
        if admitted {
            self.stored_bytes.fetch_add(object.bytes, Ordering::Relaxed);
            index.insert(&object.label.path, object.key);
        }
        self.gauge
            .set(self.stored_bytes.load(Ordering::Relaxed) as i64);
        admitted
    }

    /// Removes the object under `key`; true when there was one.
    fn remove_locked(&self, index: &mut Index, key: u128) -> bool {
        let Some(object) = self.get(key) else {
            return false;
        };
        if self.objects.remove(&key).is_none() {
            return false;
        }
        self.stored_bytes.fetch_sub(object.bytes, Ordering::Relaxed);
        index.remove(&object.label.path, key);
        true
    }

    /// Fills in progress whose path matches are not stored when they finish (the purge
    /// happened after their request began).
    fn purge_fills(&self, matches: impl Fn(&str) -> bool) {
        for fills in self.filling_table().values() {
            for fill in fills.iter().filter(|f| matches(&f.path)) {
                fill.purged.store(true, Ordering::Release);
            }
        }
    }

    /// Removes `keys` under the index lock already held; the count removed.
    fn remove_all(&self, index: &mut Index, keys: Vec<u128>) -> usize {
        let purged = keys
            .into_iter()
            .filter(|k| self.remove_locked(index, *k))
            .count();
        self.gauge
            .set(self.stored_bytes.load(Ordering::Relaxed) as i64);
        purged
    }

    /// Removes every object stored for exactly this path (every host, query and variant).
    pub fn purge_path(&self, path: &str) -> usize {
        self.purge_fills(|p| p == path);
        let mut index = self.index();
        let keys = index.by_path.get(path).cloned().unwrap_or_default();
        self.remove_all(&mut index, keys)
    }

    /// Removes every object whose path starts with `prefix`.
    pub fn purge_prefix(&self, prefix: &str) -> usize {
        self.purge_fills(|p| p.starts_with(prefix));
        let mut index = self.index();
        let keys: Vec<u128> = index
            .by_path
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(path, _)| path.starts_with(prefix))
            .flat_map(|(_, keys)| keys.iter().copied())
            .collect();
        self.remove_all(&mut index, keys)
    }

    /// Reserves `bytes` of the fill budget; false when it is spent.
    fn reserve(&self, bytes: usize) -> bool {
        let before = self.filling_bytes.fetch_add(bytes, Ordering::AcqRel);
        if before + bytes > self.fill_budget {
            self.filling_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn release(&self, bytes: usize) {
        self.filling_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }
}

fn weight_of(bytes: usize) -> u16 {
    u16::try_from(bytes.div_ceil(WEIGHT_UNIT).max(1)).unwrap_or(u16::MAX)
}

fn key_of(key: &impl CacheHashKey) -> u128 {
    u128::from_be_bytes(key.combined_bin())
}

fn storage_error(why: &'static str) -> Box<Error> {
    Error::explain(ErrorType::Custom("cache storage"), why)
}

// === impl Storage ===

#[async_trait]
impl Storage for Store {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let key = key_of(key);
        // A fill in progress first: after an expiry it is the newer answer.
        if let Some(partial) = self.partial(key, None) {
            return Ok(Some((
                partial.meta.to_meta(),
                Box::new(PartialHit::new(partial)),
            )));
        }
        let Some(object) = self.get(key) else {
            return Ok(None);
        };
        let hit = Hit {
            end: object.body.len(),
            body: object.body.clone(),
            start: 0,
            done: false,
        };
        Ok(Some((object.meta.to_meta(), Box::new(hit))))
    }

    /// The fill's own reader (the request that started it reads what it writes).
    async fn lookup_streaming_write(
        &'static self,
        key: &CacheKey,
        tag: Option<&[u8]>,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let id = tag
            .and_then(|t| U64WriteId::try_from(t).ok())
            .map(u64::from)
            .ok_or_else(|| storage_error("a streaming read without its write tag"))?;
        Ok(self
            .partial(key_of(key), Some(id))
            .map(|p| (p.meta.to_meta(), Box::new(PartialHit::new(p)) as HitHandler)))
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        let label = key
            .extensions
            .get::<Label>()
            .cloned()
            .ok_or_else(|| storage_error("the cache key carries no label"))?;
        let meta = StoredMeta::from_meta(meta);
        let fixed = meta.header_bytes() + 2 * label.path.len() + OBJECT_OVERHEAD;
        let length = meta
            .header
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok());
        let body = length.unwrap_or(label.max_object_size);
        if !self.reserve(fixed + body) {
            return Err(storage_error("the fill budget is spent"));
        }
        let (progress, _) = watch::channel(Progress::Writing(0));
        let partial = Arc::new(Partial {
            id: self.next_write.fetch_add(1, Ordering::Relaxed),
            path: label.path.clone(),
            purged: std::sync::atomic::AtomicBool::new(false),
            meta,
            chunks: std::sync::RwLock::new(Vec::new()),
            progress,
        });
        let key = key_of(key);
        self.filling_table()
            .entry(key)
            .or_default()
            .push(partial.clone());
        Ok(Box::new(Fill {
            store: self,
            key,
            tag: U64WriteId::from(partial.id),
            label,
            partial,
            written: 0,
            body_reserved: body,
            reserved: fixed + body,
            fixed,
            finished: false,
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        _purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        let key = key_of(target.key());
        let mut index = self.index();
        let removed = self.remove_locked(&mut index, key);
        self.gauge
            .set(self.stored_bytes.load(Ordering::Relaxed) as i64);
        Ok(if removed {
            PurgeOutcome::Purged(None)
        } else {
            PurgeOutcome::NotFound
        })
    }

    /// A 304 from the upstream refreshed the meta: store it with the same body.
    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<bool> {
        let key = key_of(key);
        let Some(old) = self.get(key) else {
            return Ok(false);
        };
        let meta = StoredMeta::from_meta(meta);
        let bytes = old.bytes.saturating_sub(old.meta.header_bytes()) + meta.header_bytes();
        let object = Arc::new(Object {
            key,
            label: old.label.clone(),
            meta,
            body: old.body.clone(),
            bytes,
        });
        Ok(self.insert(object))
    }

    fn support_streaming_partial_write(&self) -> bool {
        true
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

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

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::cache::key::{CacheHashKey, HashBinary};
use pingora::cache::storage::streaming_write::U64WriteId;
use pingora::cache::storage::{HandleHit, HandleMiss, MissFinishType};
use pingora::cache::trace::SpanHandle;
use pingora::cache::{
    CacheKey, CacheMeta, HitHandler, MissHandler, PurgeOutcome, PurgeTarget, PurgeType, Storage,
};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use tinyufo::TinyUfo;
use tokio::sync::watch;

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

/// One stored answer. Immutable: a meta update stores a new object sharing the body.
struct Object {
    key: u128,
    label: Label,
    meta: StoredMeta,
    body: Bytes,
    /// Accounted size in bytes (what the weight and `portcullis_cache_bytes` count).
    bytes: usize,
}

/// The parts of a [`CacheMeta`] that are kept, so a hit rebuilds one without deserialising
/// (pingora's own serialisation compresses the header with zstd: far more work than a hit).
#[derive(Debug, Clone)]
struct StoredMeta {
    fresh_until: SystemTime,
    created: SystemTime,
    /// The last admission or revalidation: what `Age` counts from.
    updated: SystemTime,
    stale_while_revalidate: u32,
    stale_if_error: u32,
    variance: Option<HashBinary>,
    header: ResponseHeader,
}

impl StoredMeta {
    fn from_meta(meta: &CacheMeta) -> Self {
        StoredMeta {
            fresh_until: meta.fresh_until(),
            created: meta.created(),
            updated: meta.updated(),
            stale_while_revalidate: meta.stale_while_revalidate_sec(),
            stale_if_error: meta.stale_if_error_sec(),
            variance: meta.variance(),
            header: with_room(meta.response_header()),
        }
    }

    fn to_meta(&self) -> CacheMeta {
        let mut meta = CacheMeta::new(
            self.fresh_until,
            self.created,
            self.stale_while_revalidate,
            self.stale_if_error,
            self.header.clone(),
        );
        if let Some(variance) = self.variance {
            meta.set_variance_key(variance);
        }
        // `updated` has no setter; the epoch override is what `age()` reads first.
        meta.set_epoch_override(self.updated);
        meta
    }

    fn header_bytes(&self) -> usize {
        self.header
            .headers
            .iter()
            .map(|(n, v)| 2 * n.as_str().len() + v.len() + 48)
            .sum::<usize>()
            + 64
    }
}

/// Header fields a hit adds to the stored ones (request id, security, CORS and rate-limit
/// headers, `Age`, `Cache-Status`).
const HIT_HEADERS: usize = 24;

/// A copy of `header` whose maps have room for the headers every hit adds: a clone keeps its
/// maps' index size, so hits never rehash them (the upstream's header maps are sized for
/// what it sent). Header names are kept lower-case.
fn with_room(header: &ResponseHeader) -> ResponseHeader {
    let Ok(mut copy) =
        ResponseHeader::build(header.status, Some(header.headers.len() + HIT_HEADERS))
    else {
        return header.clone();
    };
    copy.set_version(header.version);
    let _ = copy.set_reason_phrase(header.get_reason_phrase());
    for (name, value) in &header.headers {
        if copy.append_header(name.clone(), value.clone()).is_err() {
            return header.clone();
        }
    }
    copy
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

    /// Removes every object stored for exactly this path (every host, query and variant).
    pub fn purge_path(&self, path: &str) -> usize {
        self.purge_fills(|p| p == path);
        let mut index = self.index();
        let keys = index.by_path.get(path).cloned().unwrap_or_default();
        let purged = keys
            .into_iter()
            .filter(|k| self.remove_locked(&mut index, *k))
            .count();
        self.gauge
            .set(self.stored_bytes.load(Ordering::Relaxed) as i64);
        purged
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
        let purged = keys
            .into_iter()
            .filter(|k| self.remove_locked(&mut index, *k))
            .count();
        self.gauge
            .set(self.stored_bytes.load(Ordering::Relaxed) as i64);
        purged
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

// === impl Hit ===

/// Reads a stored body: one chunk, or the slice a `Range` asked for.
struct Hit {
    body: Bytes,
    start: usize,
    end: usize,
    done: bool,
}

#[async_trait]
impl HandleHit for Hit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        Ok(Some(self.body.slice(self.start..self.end)))
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    /// `end` is exclusive; past the body's end it reads to the end.
    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        if start >= self.body.len() {
            return Error::e_explain(
                ErrorType::InternalError,
                format!("seek start out of range {start} >= {}", self.body.len()),
            );
        }
        self.start = start;
        self.end = end.map_or(self.body.len(), |e| e.min(self.body.len()));
        self.done = false;
        Ok(())
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

// === impl Fill ===

/// How far a fill has come; readers wait on changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// Bytes written so far.
    Writing(usize),
    /// Complete, with this many bytes.
    Done(usize),
    /// The upstream's body broke off: readers fail rather than send a short body.
    Failed,
}

/// A body arriving from the upstream, readable while it arrives.
struct Partial {
    id: u64,
    /// The request path (a purge of it drops the fill too).
    path: Box<str>,
    /// A purge matched this fill while it ran: it is not stored.
    purged: std::sync::atomic::AtomicBool,
    meta: StoredMeta,
    chunks: std::sync::RwLock<Vec<Bytes>>,
    progress: watch::Sender<Progress>,
}

impl Store {
    fn filling_table(&self) -> std::sync::MutexGuard<'_, HashMap<u128, Vec<Arc<Partial>>>> {
        self.filling.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fill in progress for `key`: this write's, or any.
    fn partial(&self, key: u128, id: Option<u64>) -> Option<Arc<Partial>> {
        let table = self.filling_table();
        let fills = table.get(&key)?;
        match id {
            Some(id) => fills.iter().find(|p| p.id == id).cloned(),
            None => fills.first().cloned(),
        }
    }

    fn forget_fill(&self, key: u128, id: u64) {
        let mut table = self.filling_table();
        if let Some(fills) = table.get_mut(&key) {
            fills.retain(|p| p.id != id);
            if fills.is_empty() {
                table.remove(&key);
            }
        }
    }
}

/// The writer side of a fill. Its bytes were reserved up front; dropped unfinished, the fill
/// is abandoned and its readers fail.
struct Fill {
    store: &'static Store,
    key: u128,
    tag: U64WriteId,
    label: Label,
    partial: Arc<Partial>,
    written: usize,
    /// Body bytes within `reserved`.
    body_reserved: usize,
    /// Bytes reserved from the fill budget (released on drop).
    reserved: usize,
    /// Header, key and overhead bytes within `reserved`.
    fixed: usize,
    finished: bool,
}

#[async_trait]
impl HandleMiss for Fill {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        // Only a body longer than its Content-Length could get here (pingora's size tracker
        // stops an unknown-length body at max_object_size first).
        let beyond = (self.written + data.len()).saturating_sub(self.body_reserved);
        if beyond > 0 {
            if !self.store.reserve(beyond) {
                return Err(storage_error("the fill budget is spent"));
            }
            self.reserved += beyond;
            self.body_reserved += beyond;
        }
        self.written += data.len();
        self.partial
            .chunks
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(data);
        self.partial
            .progress
            .send_replace(Progress::Writing(self.written));
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<MissFinishType> {
        let body = {
            let chunks = self
                .partial
                .chunks
                .read()
                .unwrap_or_else(|p| p.into_inner());
            match chunks.len() {
                0 => Bytes::new(),
                1 => chunks[0].clone(),
                _ => Bytes::from(chunks.concat()),
            }
        };
        let bytes = self.fixed + body.len();
        let object = Arc::new(Object {
            key: self.key,
            label: self.label.clone(),
            meta: self.partial.meta.clone(),
            body,
            bytes,
        });
        self.finished = true;
        self.partial
            .progress
            .send_replace(Progress::Done(self.written));
        // Not admitted (TinyLFU kept a more popular object, or a purge matched the fill) is not
        // an error: the answer was served whole, and an error here would make pingora cut off
        // the readers still streaming it.
        if !self.partial.purged.load(Ordering::Acquire) {
            self.store.insert(object);
        }
        self.store.forget_fill(self.key, self.partial.id);
        Ok(MissFinishType::Created(bytes))
    }

    fn streaming_write_tag(&self) -> Option<&[u8]> {
        Some(self.tag.as_bytes())
    }
}

impl Drop for Fill {
    fn drop(&mut self) {
        if !self.finished {
            self.partial.progress.send_replace(Progress::Failed);
            self.store.forget_fill(self.key, self.partial.id);
        }
        self.store.release(self.reserved);
    }
}

/// Reads a fill in progress: each chunk as it arrives, from `pos` to `end`.
struct PartialHit {
    partial: Arc<Partial>,
    progress: watch::Receiver<Progress>,
    pos: usize,
    end: Option<usize>,
}

impl PartialHit {
    fn new(partial: Arc<Partial>) -> Self {
        PartialHit {
            progress: partial.progress.subscribe(),
            partial,
            pos: 0,
            end: None,
        }
    }

    /// The bytes from `pos` within one chunk, up to `limit`.
    fn slice(&self, limit: usize) -> Option<Bytes> {
        let chunks = self
            .partial
            .chunks
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let mut offset = 0;
        for chunk in chunks.iter() {
            let next = offset + chunk.len();
            if self.pos < next {
                let from = self.pos - offset;
                let to = chunk.len().min(limit - offset);
                return (from < to).then(|| chunk.slice(from..to));
            }
            offset = next;
        }
        None
    }
}

#[async_trait]
impl HandleHit for PartialHit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        loop {
            let progress = *self.progress.borrow_and_update();
            let (available, complete) = match progress {
                Progress::Writing(n) => (n, false),
                Progress::Done(n) => (n, true),
                Progress::Failed => {
                    return Error::e_explain(
                        ErrorType::Custom("cache fill failed"),
                        "the upstream's body broke off while this response streamed it",
                    )
                }
            };
            let limit = self.end.map_or(available, |e| e.min(available));
            if self.pos < limit {
                if let Some(bytes) = self.slice(limit) {
                    self.pos += bytes.len();
                    return Ok(Some(bytes));
                }
            }
            if complete || self.end.is_some_and(|e| self.pos >= e) {
                return Ok(None);
            }
            if self.progress.changed().await.is_err() {
                // The writer is gone: it either finished (and said so) or failed.
                if matches!(*self.progress.borrow(), Progress::Done(_)) {
                    continue;
                }
                return Error::e_explain(
                    ErrorType::Custom("cache fill failed"),
                    "the fill ended without completing",
                );
            }
        }
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    /// Ranges are checked against `Content-Length` before a seek; `end` is exclusive.
    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        if let Progress::Done(n) = *self.progress.borrow() {
            if start >= n {
                return Error::e_explain(
                    ErrorType::InternalError,
                    format!("seek start out of range {start} >= {n}"),
                );
            }
        }
        self.pos = start;
        self.end = end;
        Ok(())
    }

    fn should_count_access(&self) -> bool {
        false
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::cache::trace::Span;

    fn store(memory: usize) -> &'static Store {
        let gauge = prometheus::IntGauge::new("test_bytes", "test").unwrap();
        Box::leak(Box::new(Store::new(memory, gauge)))
    }

    fn key(path: &str) -> CacheKey {
        let mut key = CacheKey::new(format!("host\0{path}"), "");
        key.extensions.insert(Label {
            path: path.into(),
            max_object_size: 1 << 20,
        });
        key
    }

    fn meta(len: usize) -> CacheMeta {
        let mut header = ResponseHeader::build(200, None).unwrap();
        header.insert_header("content-length", len).unwrap();
        let now = SystemTime::now();
        CacheMeta::new(now + std::time::Duration::from_secs(60), now, 0, 0, header)
    }

    async fn fill(store: &'static Store, path: &str, body: &[u8]) -> Result<MissFinishType> {
        let span = Span::inactive().handle();
        let mut miss = store
            .get_miss_handler(&key(path), &meta(body.len()), &span)
            .await?;
        miss.write_body(Bytes::copy_from_slice(body), true).await?;
        miss.finish().await
    }

    async fn read(store: &'static Store, path: &str) -> Option<Vec<u8>> {
        let span = Span::inactive().handle();
        let (_, mut hit) = store.lookup(&key(path), &span).await.unwrap()?;
        let mut out = Vec::new();
        while let Some(chunk) = hit.read_body().await.unwrap() {
            out.extend_from_slice(&chunk);
        }
        Some(out)
    }

    #[tokio::test]
    async fn a_fill_is_read_back_whole_and_by_range() {
        let store = store(8 << 20);
        assert!(read(store, "/a").await.is_none());
        fill(store, "/a", b"hello world").await.unwrap();
        assert_eq!(read(store, "/a").await.unwrap(), b"hello world");
        let span = Span::inactive().handle();
        let (_, mut hit) = store.lookup(&key("/a"), &span).await.unwrap().unwrap();
        hit.seek(6, Some(11)).unwrap();
        assert_eq!(hit.read_body().await.unwrap().unwrap(), "world");
        assert!(hit.seek(11, None).is_err());
        assert_eq!(
            store.usage().filling_bytes,
            0,
            "the fill released its budget"
        );
    }

    #[tokio::test]
    async fn the_store_never_holds_more_than_its_memory() {
        let memory = 2 << 20;
        let store = store(memory);
        let body = vec![b'x'; 20 * 1024];
        for i in 0..2000 {
            let _ = fill(store, &format!("/spray/{i}"), &body).await;
            let usage = store.usage();
            assert!(
                usage.stored_bytes + usage.filling_bytes <= memory,
                "{} stored at fill {i}",
                usage.stored_bytes
            );
        }
        assert!(store.usage().stored_bytes > memory / 2, "the store is used");
        let indexed: usize = store.index().by_path.values().map(Vec::len).sum();
        let live = (0..2000)
            .filter(|i| store.get(key_of(&key(&format!("/spray/{i}")))).is_some())
            .count();
        assert_eq!(indexed, live, "the index lists exactly the stored objects");
    }

    #[tokio::test]
    async fn a_fill_beyond_the_budget_is_refused_and_released() {
        let memory = 1 << 20;
        let store = store(memory);
        let body = vec![b'x'; memory / 8 + 1];
        assert!(fill(store, "/big", &body).await.is_err());
        assert_eq!(store.usage().filling_bytes, 0);
        assert!(read(store, "/big").await.is_none());
    }

    #[tokio::test]
    async fn readers_stream_a_fill_as_it_arrives_and_fail_if_it_breaks_off() {
        let store = store(8 << 20);
        let span = Span::inactive().handle();
        let mut miss = store
            .get_miss_handler(&key("/live"), &meta(10), &span)
            .await
            .unwrap();
        miss.write_body(Bytes::from_static(b"01234"), false)
            .await
            .unwrap();
        let (_, mut early) = store.lookup(&key("/live"), &span).await.unwrap().unwrap();
        let (_, mut ranged) = store.lookup(&key("/live"), &span).await.unwrap().unwrap();
        ranged.seek(3, Some(8)).unwrap();
        assert_eq!(early.read_body().await.unwrap().unwrap(), "01234");
        assert_eq!(ranged.read_body().await.unwrap().unwrap(), "34");
        let writer = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            miss.write_body(Bytes::from_static(b"56789"), true)
                .await
                .unwrap();
            miss.finish().await.unwrap();
        });
        assert_eq!(early.read_body().await.unwrap().unwrap(), "56789");
        assert!(early.read_body().await.unwrap().is_none());
        assert_eq!(ranged.read_body().await.unwrap().unwrap(), "567");
        assert!(ranged.read_body().await.unwrap().is_none());
        writer.await.unwrap();
        assert_eq!(read(store, "/live").await.unwrap(), b"0123456789");
        assert!(store.filling_table().is_empty());

        let mut broken = store
            .get_miss_handler(&key("/broken"), &meta(10), &span)
            .await
            .unwrap();
        broken
            .write_body(Bytes::from_static(b"012"), false)
            .await
            .unwrap();
        let (_, mut reader) = store.lookup(&key("/broken"), &span).await.unwrap().unwrap();
        assert_eq!(reader.read_body().await.unwrap().unwrap(), "012");
        drop(broken);
        assert!(
            reader.read_body().await.is_err(),
            "a broken fill is an error, not a short body"
        );
        assert!(store
            .lookup(&key("/broken"), &span)
            .await
            .unwrap()
            .is_none());
        assert_eq!(store.usage().filling_bytes, 0);
    }

    #[tokio::test]
    async fn a_fill_purged_while_it_runs_is_not_stored() {
        let store = store(8 << 20);
        let span = Span::inactive().handle();
        let mut miss = store
            .get_miss_handler(&key("/api/x"), &meta(1), &span)
            .await
            .unwrap();
        assert_eq!(store.purge_prefix("/api/"), 0);
        miss.write_body(Bytes::from_static(b"x"), true)
            .await
            .unwrap();
        miss.finish().await.unwrap();
        assert!(read(store, "/api/x").await.is_none());
    }

    #[tokio::test]
    async fn purges_by_path_and_prefix_count_what_they_removed() {
        let store = store(8 << 20);
        for path in [
            "/api/music/1",
            "/api/music/2",
            "/api/musicx",
            "/api/images/1",
        ] {
            fill(store, path, b"x").await.unwrap();
        }
        assert_eq!(store.purge_path("/api/music/1"), 1);
        assert_eq!(store.purge_path("/api/music/1"), 0);
        assert_eq!(store.purge_prefix("/api/music/"), 1);
        assert_eq!(store.purge_prefix("/api/"), 2);
        assert_eq!(store.usage().stored_bytes, 0);
        assert!(store.index().by_path.is_empty());
    }
}

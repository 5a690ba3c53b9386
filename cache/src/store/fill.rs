//! Fills in progress: a body arriving from the upstream, readable while it arrives.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_cache::storage::streaming_write::U64WriteId;
use pingora_cache::storage::{HandleHit, HandleMiss, MissFinishType};
use pingora_cache::trace::SpanHandle;
use pingora_cache::{CacheKey, Storage};
use pingora_error::{Error, ErrorType, Result};
use tokio::sync::watch;

use super::object::{Object, StoredMeta};
use super::{storage_error, Label, Store};

// === impl Fill ===

/// How far a fill has come; readers wait on changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Progress {
    /// Bytes written so far.
    Writing(usize),
    /// Complete, with this many bytes.
    Done(usize),
    /// The upstream's body broke off: readers fail rather than send a short body.
    Failed,
}

/// A body arriving from the upstream, readable while it arrives.
pub(super) struct Partial {
    pub(super) id: u64,
    /// The request path (a purge of it drops the fill too).
    pub(super) path: Box<str>,
    /// A purge matched this fill while it ran: it is not stored.
    pub(super) purged: std::sync::atomic::AtomicBool,
    pub(super) meta: StoredMeta,
    pub(super) chunks: std::sync::RwLock<Vec<Bytes>>,
    pub(super) progress: watch::Sender<Progress>,
}

impl Store {
    pub(super) fn filling_table(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u128, Vec<Arc<Partial>>>> {
        self.filling.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fill in progress for `key`: this write's, or any.
    pub(super) fn partial(&self, key: u128, id: Option<u64>) -> Option<Arc<Partial>> {
        let table = self.filling_table();
        let fills = table.get(&key)?;
        match id {
            Some(id) => fills.iter().find(|p| p.id == id).cloned(),
            None => fills.first().cloned(),
        }
    }

    pub(super) fn forget_fill(&self, key: u128, id: u64) {
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
pub(super) struct Fill {
    pub(super) store: &'static Store,
    pub(super) key: u128,
    pub(super) tag: U64WriteId,
    pub(super) label: Label,
    pub(super) partial: Arc<Partial>,
    pub(super) written: usize,
    /// Body bytes within `reserved`.
    pub(super) body_reserved: usize,
    /// Bytes reserved from the fill budget (released on drop).
    pub(super) reserved: usize,
    /// Header, key and overhead bytes within `reserved`.
    pub(super) fixed: usize,
    pub(super) finished: bool,
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
pub(super) struct PartialHit {
    pub(super) partial: Arc<Partial>,
    pub(super) progress: watch::Receiver<Progress>,
    pub(super) pos: usize,
    pub(super) end: Option<usize>,
}

impl PartialHit {
    pub(super) fn new(partial: Arc<Partial>) -> Self {
        PartialHit {
            progress: partial.progress.subscribe(),
            partial,
            pos: 0,
            end: None,
        }
    }

    /// The bytes from `pos` within one chunk, up to `limit`.
    pub(super) fn slice(&self, limit: usize) -> Option<Bytes> {
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

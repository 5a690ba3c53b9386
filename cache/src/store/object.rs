//! Stored objects: the parts of an answer that are kept, and the reader a hit gets.

use std::any::Any;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use pingora_cache::key::HashBinary;
use pingora_cache::storage::HandleHit;
use pingora_cache::trace::SpanHandle;
use pingora_cache::{CacheKey, CacheMeta, Storage};
use pingora_error::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;

use super::Label;

/// One stored answer. Immutable: a meta update stores a new object sharing the body.
pub(super) struct Object {
    pub(super) key: u128,
    pub(super) label: Label,
    pub(super) meta: StoredMeta,
    pub(super) body: Bytes,
    /// Accounted size in bytes (what the weight and `portcullis_cache_bytes` count).
    pub(super) bytes: usize,
}

/// The parts of a [`CacheMeta`] that are kept, so a hit rebuilds one without deserialising
/// (pingora's own serialisation compresses the header with zstd: far more work than a hit).
#[derive(Debug, Clone)]
pub(super) struct StoredMeta {
    pub(super) fresh_until: SystemTime,
    pub(super) created: SystemTime,
    /// The last admission or revalidation: what `Age` counts from.
    pub(super) updated: SystemTime,
    pub(super) stale_while_revalidate: u32,
    pub(super) stale_if_error: u32,
    pub(super) variance: Option<HashBinary>,
    pub(super) header: ResponseHeader,
}

impl StoredMeta {
    pub(super) fn from_meta(meta: &CacheMeta) -> Self {
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

    pub(super) fn to_meta(&self) -> CacheMeta {
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

    pub(super) fn header_bytes(&self) -> usize {
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
pub(super) const HIT_HEADERS: usize = 24;

/// A copy of `header` whose maps have room for the headers every hit adds: a clone keeps its
/// maps' index size, so hits never rehash them (the upstream's header maps are sized for
/// what it sent). Header names are kept lower-case.
pub(super) fn with_room(header: &ResponseHeader) -> ResponseHeader {
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

// === impl Hit ===

/// Reads a stored body: one chunk, or the slice a `Range` asked for.
pub(super) struct Hit {
    pub(super) body: Bytes,
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) done: bool,
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

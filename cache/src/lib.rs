//! Portcullis's edge cache, for pingora-cache: what is stored and where, what may be stored and
//! served to whom, and how the answer says so. It knows nothing of the gateway's request
//! context: the phase glue (`gateway/src/cache.rs`) hands each function the small typed
//! inputs it needs.
//!
//! | module | its job |
//! |---|---|
//! | [`EdgeCache`] | the process-wide store, cache lock and predictor, sized once at start |
//! | [`store`] | the bounded in-memory [`Store`] behind pingora's `Storage` trait: TinyUFO, streaming fills, the purge index |
//! | [`policy`] | RFC 9111 for a shared cache, plus the credential rule: store it? serve it to this request? |
//! | [`key`] | the primary key from [`key::KeyParts`], and the variance of a stored answer's `Vary` |
//! | [`status`] | `Cache-Status` (RFC 9211), the metrics' `result` label and the log's `cache` |
//! | [`purge`] | `POST /cache/purge`: a JSON body in, a status and a JSON body out |
//!
//! Bounds: the store holds at most `[cache] memory` bytes (objects and fills in progress
//! together, `store`); a key's parts are length-prefixed, so no two requests spell one key.

pub mod key;
pub mod policy;
pub mod purge;
pub mod status;
pub mod store;

pub use store::{Label, Store};

use pingora_cache::lock::CacheLock;
use pingora_cache::predictor::Predictor;
use portcullis_config::CacheSettings;

/// URLs remembered as uncacheable (too large, or never storable): 16 shards of this many.
const PREDICTOR_SHARD_CAPACITY: usize = 1024;

/// The process-wide cache: one store, lock and predictor for every snapshot, sized once at
/// start (a reload keeps what is stored). The phase glue hands these to pingora's cache.
pub struct EdgeCache {
    pub store: Store,
    /// One fetch per key while the others wait (up to `lock_timeout`).
    pub lock: CacheLock,
    /// URLs remembered as uncacheable, so later requests skip the lookup.
    pub predictor: Predictor<16>,
    /// The `[cache]` section it was built from.
    pub settings: CacheSettings,
}

impl EdgeCache {
    /// Builds the cache and gives it the `'static` life pingora's cache phases need; it lives
    /// as long as the process. `bytes` is the gauge of the bytes stored.
    pub fn start(settings: &CacheSettings, bytes: prometheus::IntGauge) -> &'static EdgeCache {
        Box::leak(Box::new(EdgeCache {
            store: Store::new(settings.memory, bytes),
            lock: CacheLock::new(settings.lock_timeout),
            predictor: Predictor::new(
                PREDICTOR_SHARD_CAPACITY,
                Some(policy::reason_belongs_to_the_request),
            ),
            settings: settings.clone(),
        }))
    }
}

/// What the cache did for one request: written by the phase glue as pingora's cache phases
/// run, read by `Cache-Status`, the metrics and the log ([`status`]).
#[derive(Debug, Default)]
pub struct CacheState {
    /// The cache was enabled for this request (the route opted in and the request qualifies).
    pub enabled: bool,
    /// Why a request on a cached route did not use the cache.
    pub bypass: Option<&'static str>,
    /// The request carried credentials (`policy::credentialed`).
    pub credentialed: bool,
    /// A stored answer was found: fresh (true) or stale (false).
    pub found: Option<bool>,
    /// A stored answer existed for the URL but not for this request's `Vary` values.
    pub vary_miss: bool,
    /// A stored answer was found but this request may not use it.
    pub forced: Option<&'static str>,
    /// Why the upstream's answer was not stored.
    pub not_stored: Option<&'static str>,
    /// A stale copy was served: the upstream's status, if it answered.
    pub stale_status: Option<u16>,
    /// A stale copy was served: what failed.
    pub stale_cause: Option<&'static str>,
    /// The predictor remembered the URL as uncacheable: no lookup was made.
    pub bypassed: bool,
    /// `cache_vary_filter` ran during the lookup.
    pub vary_looked_up: bool,
}

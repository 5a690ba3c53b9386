//! Portcullis's edge cache, for pingora-cache: what is stored and where, what may be stored and
//! served to whom, and how the answer says so. It knows nothing of the gateway's request
//! context: the phase glue (`gateway/src/cache.rs`) hands each function the small typed
//! inputs it needs.
//!
//! | module | its job |
//! |---|---|
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

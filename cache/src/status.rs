//! What happened in the cache, said three ways: the `Cache-Status` response header (RFC 9211),
//! the `result` label of `portcullis_cache_requests_total`, and the access log's `cache`.

use std::fmt::Write as _;
use std::time::SystemTime;

use http::HeaderValue;
use pingora_cache::{CachePhase, HttpCache, NoCacheReason};

use super::CacheState;

/// The cache name in `Cache-Status`.
pub const NAME: &str = "portcullis";

/// The `result` label: `hit`, `miss`, `stale`, `bypass`, `expired`, `revalidated`.
pub fn result(cache: &HttpCache, state: &CacheState) -> &'static str {
    match cache.phase() {
        CachePhase::Hit => "hit",
        CachePhase::Stale | CachePhase::StaleUpdating => "stale",
        CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => "revalidated",
        CachePhase::Expired => "expired",
        CachePhase::Miss if !state.bypassed => "miss",
        _ if !state.enabled || state.bypassed => "bypass",
        // Looked up, then not stored (or the lock gave up): a stale copy was found and
        // refetched, or nothing usable was.
        _ if state.found == Some(false) => "expired",
        _ => "miss",
    }
}

/// The `Cache-Status` value for a response with `status` (RFC 9211 section 2).
pub fn header(cache: &HttpCache, state: &CacheState, status: u16) -> Option<HeaderValue> {
    let mut out = String::with_capacity(64);
    out.push_str(NAME);
    let now = SystemTime::now();
    let ttl = |out: &mut String| {
        if let Some(meta) = cache.maybe_cache_meta() {
            let left = match meta.fresh_until().duration_since(now) {
                Ok(left) => left.as_secs() as i64,
                Err(past) => -(past.duration().as_secs() as i64),
            };
            let _ = write!(out, "; ttl={left}");
        }
    };
    match cache.phase() {
        CachePhase::Hit => {
            out.push_str("; hit");
            ttl(&mut out);
        }
        CachePhase::StaleUpdating => {
            out.push_str("; hit");
            ttl(&mut out);
            out.push_str("; detail=stale-while-revalidate");
        }
        CachePhase::Stale => {
            // Served stale because the upstream failed (stale-if-error).
            out.push_str("; fwd=stale");
            if let Some(code) = state.stale_status {
                let _ = write!(out, "; fwd-status={code}");
            }
            ttl(&mut out);
            let _ = write!(
                out,
                "; detail=\"stale-if-error: {}\"",
                state.stale_cause.unwrap_or("upstream error")
            );
        }
        CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => {
            out.push_str("; fwd=stale; fwd-status=304");
            ttl(&mut out);
        }
        CachePhase::Expired => {
            let _ = write!(out, "; fwd=stale; fwd-status={status}; stored");
        }
        CachePhase::Bypass | CachePhase::Miss | CachePhase::Disabled(_) if state.bypassed => {
            // A URL remembered as uncacheable: no lookup; a cacheable answer is stored again.
            out.push_str("; fwd=bypass");
            match cache.phase() {
                CachePhase::Miss => {
                    let _ = write!(out, "; fwd-status={status}; stored");
                }
                CachePhase::Disabled(reason) => {
                    let _ = write!(out, "; fwd-status={status}");
                    if let Some(detail) = not_stored(reason, state).filter(|d| is_token(d)) {
                        let _ = write!(out, "; detail={detail}");
                    }
                }
                _ => {}
            }
        }
        CachePhase::Miss => {
            let _ = write!(
                out,
                "; fwd={}; fwd-status={status}; stored",
                miss_kind(state)
            );
        }
        CachePhase::Bypass => out.push_str("; fwd=bypass; detail=predicted-uncacheable"),
        CachePhase::Disabled(reason) if state.enabled => {
            let kind = if state.found == Some(false) {
                "stale"
            } else {
                miss_kind(state)
            };
            let _ = write!(out, "; fwd={kind}; fwd-status={status}");
            if let Some(detail) = not_stored(reason, state).filter(|d| is_token(d)) {
                let _ = write!(out, "; detail={detail}");
            }
        }
        CachePhase::Disabled(_) | CachePhase::Uninit | CachePhase::CacheKey => match state.bypass {
            Some("method") => out.push_str("; fwd=method"),
            Some(detail) => {
                let _ = write!(out, "; fwd=bypass; detail={detail}");
            }
            None => out.push_str("; fwd=bypass"),
        },
    }
    HeaderValue::from_str(&out).ok()
}

/// `fwd=` for a lookup that found nothing usable (RFC 9211 section 2.2).
fn miss_kind(state: &CacheState) -> &'static str {
    if state.forced.is_some() {
        // A stored answer existed but this request may not be served it.
        "request"
    } else if state.vary_miss {
        "vary-miss"
    } else {
        "uri-miss"
    }
}

/// Why the answer was not stored, as an RFC 8941 token.
fn not_stored(reason: NoCacheReason, state: &CacheState) -> Option<&'static str> {
    Some(match reason {
        NoCacheReason::Custom(why) => why,
        NoCacheReason::ResponseTooLarge | NoCacheReason::PredictedResponseTooLarge => "too-large",
        NoCacheReason::CacheLockTimeout => "lock-timeout",
        NoCacheReason::CacheLockGiveUp => "collapsed-uncacheable",
        NoCacheReason::StorageError => "storage",
        NoCacheReason::UpstreamError => "upstream-error",
        NoCacheReason::OriginNotCache => state.not_stored.unwrap_or("origin"),
        _ => return None,
    })
}

/// An RFC 8941 token of the simple kind used here: a letter, then letters, digits and `-`.
fn is_token(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_alphabetic())
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

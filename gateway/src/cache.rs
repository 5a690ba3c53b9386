//! The edge cache's phase glue: `portcullis-cache` (the store, the policy, the key,
//! `Cache-Status`) called from the `ProxyHttp` cache phases with what this request learnt.
//!
//! A request reaches the cache only after the request phase admitted it (identity, route,
//! auth, rate limit): pingora runs `request_filter` before any cache phase, hit or miss. Then:
//!
//! | pingora phase | here | decides |
//! |---|---|---|
//! | `request_cache_filter` | [`request`] | route opted in, GET/HEAD without a body, not an upgrade; enables the store, lock, predictor |
//! | `cache_key_callback` | [`key`] → `key::primary` | the key (host, scheme, upstream target, route `vary`) |
//! | `cache_vary_filter` | [`vary`] → `key::variance` | the upstream's `Vary` |
//! | `cache_hit_filter` | [`hit`] | a credentialed request may use this stored answer? |
//! | `cache_miss` | [`miss`] | notes the kind of miss |
//! | `response_cache_filter` | [`response`] → `policy::decide` | store it? (RFC 9111 and the credential rule) |
//! | `should_serve_stale` | [`serve_stale`] | stale-while-revalidate, stale-if-error |
//! | `response_filter` | [`stamp`] | `Cache-Status` |
//! | `logging` | [`record`] | `portcullis_cache_requests_total`, the log's `cache` |
//!
//! Stampedes: pingora's cache lock lets one request per key fetch while the others wait (up to
//! `[cache] lock_timeout`) and then read what it stored. Ranges: pingora fetches whole objects
//! (it drops `Range` and validators upstream) and answers 206 from the store; an object over
//! `max_object_size` streams through unstored, and its URL is remembered (pingora's predictor,
//! bounded) so later requests for it bypass the cache and their `Range` reaches the upstream.

use std::time::SystemTime;

use http::header::{HeaderName, HOST};
use pingora::cache::key::HashBinary;
use pingora::cache::lock::CacheKeyLockImpl;
use pingora::cache::{CacheKey, CacheMeta, CacheOptionOverrides, ForcedFreshness, RespCacheable};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::Session;

use portcullis_cache::{key, policy, status, EdgeCache};

use crate::ctx::RequestCtx;
use crate::forward::{forwarded_value, X_FORWARDED_HOST_NAME};
use crate::state::State;

/// `request_cache_filter`: enables the cache for GET and HEAD on a route that opted in.
pub fn request(cache: &'static EdgeCache, session: &mut Session, ctx: &mut RequestCtx) {
    let Some(policy) = ctx.target.route.as_ref().and_then(|r| r.cache.as_ref()) else {
        return;
    };
    if !matches!(
        session.req_header().method,
        http::Method::GET | http::Method::HEAD
    ) {
        ctx.cache.bypass = Some("method");
        return;
    }
    if session.is_upgrade_req() {
        ctx.cache.bypass = Some("upgrade");
        return;
    }
    // A GET or HEAD with a body: the backend may read it (Express's body parsers read GET
    // bodies), so its answer may depend on bytes the key does not hold. Never served
    // from the cache, never stored.
    if !session.is_body_empty() {
        ctx.cache.bypass = Some("body");
        return;
    }
    let req = session.req_header();

    let max_object_size = policy.max_object_size;
    let identified = ctx.identity.credential.is_some()
        || ctx.identity.user.is_some()
        || !ctx.identity.forward_headers.is_empty();
    ctx.cache.credentialed = policy::credentialed(req, identified);
    let mut overrides = CacheOptionOverrides::default();
    overrides.wait_timeout = Some(cache.settings.lock_timeout);
    let lock: &'static CacheKeyLockImpl = &cache.lock;
    session.cache.enable(
        &cache.store,
        None,
        Some(&cache.predictor),
        Some(lock),
        Some(overrides),
    );
    session.cache.set_max_file_size_bytes(max_object_size);
    ctx.cache.enabled = true;
}

/// `cache_key_callback`: the key's parts as the upstream receives them.
pub fn key(session: &Session, ctx: &RequestCtx) -> CacheKey {
    let req = session.req_header();
    let cache = ctx.target.route.as_ref().and_then(|r| r.cache.as_ref());
    let vary: Vec<(&HeaderName, Vec<u8>)> = cache
        .map(|c| {
            c.vary
                .iter()
                .map(|name| (name, forwarded_value(req, ctx, name)))
                .collect()
        })
        .unwrap_or_default();
    key::primary(&key::KeyParts {
        route: ctx.route_name(),
        https: ctx.client.https,
        host: &forwarded_value(req, ctx, &HOST),
        forwarded_host: &forwarded_value(req, ctx, &X_FORWARDED_HOST_NAME),
        target: ctx
            .target
            .upstream_target
            .as_deref()
            .unwrap_or(&ctx.target.path),
        vary: &vary,
        path: &ctx.target.path,
        max_object_size: cache.map_or(0, |c| c.max_object_size),
    })
}

/// `cache_vary_filter`: the variance of the stored answer's `Vary`, from the request as
/// forwarded.
pub fn vary(meta: &CacheMeta, ctx: &mut RequestCtx, req: &RequestHeader) -> Option<HashBinary> {
    if ctx.cache.found.is_none() && ctx.answer.status == 0 {
        ctx.cache.vary_looked_up = true;
    }
    key::variance(meta, |name| forwarded_value(req, ctx, name))
}

/// `cache_hit_filter`: a credentialed request is served a stored answer only if the
/// upstream marked it shareable; otherwise it goes to the upstream as a miss.
pub fn hit(meta: &CacheMeta, is_fresh: bool, ctx: &mut RequestCtx) -> Option<ForcedFreshness> {
    ctx.cache.found = Some(is_fresh);
    if ctx.cache.credentialed && !policy::shareable(meta.response_header()) {
        ctx.cache.forced = Some("credentialed");
        ctx.cache.found = None;
        return Some(ForcedFreshness::ForceMiss);
    }
    None
}

/// `cache_miss`.
pub fn miss(session: &mut Session, ctx: &mut RequestCtx) {
    if ctx.cache.found.is_none() && ctx.cache.vary_looked_up && ctx.cache.forced.is_none() {
        ctx.cache.vary_miss = true;
    }
    session.cache.cache_miss();
}

/// `response_cache_filter`.
pub fn response(session: &Session, resp: &ResponseHeader, ctx: &mut RequestCtx) -> RespCacheable {
    ctx.cache.bypassed = session.cache.bypassing();
    let Some(policy) = ctx.target.route.as_ref().and_then(|r| r.cache.as_ref()) else {
        return RespCacheable::Uncacheable(pingora::cache::NoCacheReason::NeverEnabled);
    };
    let decision = policy::decide(resp, policy, ctx.cache.credentialed, SystemTime::now());
    if let RespCacheable::Uncacheable(pingora::cache::NoCacheReason::Custom(why)) = &decision {
        ctx.cache.not_stored = Some(why);
    }
    decision
}

/// `should_serve_stale`: during a revalidation (`error` is `None`) the stale copy is served
/// within its stale-while-revalidate window; after a failure, within stale-if-error, for
/// anything the upstream side did (refused connection, timeout, 5xx, an open circuit, the
/// retry deadline) but never for the client's own faults. pingora has checked the window.
pub fn serve_stale(
    state: &State,
    session: &Session,
    ctx: &mut RequestCtx,
    error: Option<&Error>,
) -> bool {
    let Some(e) = error else {
        return true;
    };
    if *e.esource() == ErrorSource::Downstream {
        return false;
    }
    let (cause, status) = match e.etype() {
        ErrorType::HTTPStatus(code) => ("upstream error", Some(*code)),
        ErrorType::Custom("portcullis refusal") => match ctx.upstream.peek_refusal() {
            Some(crate::error::Rejection::UpstreamUnavailable { .. }) => ("circuit open", None),
            _ => ("upstream timeout", None),
        },
        ErrorType::ReadTimedout | ErrorType::WriteTimedout | ErrorType::ConnectTimedout => {
            ("upstream timeout", None)
        }
        _ => ("upstream unreachable", None),
    };
    if let Some(code) = status {
        // pingora serves the stale copy before the answer reaches the upstream-response
        // phase: the breaker and the accounting still hear of it.
        ctx.upstream.record_answer(state, code);
    }
    let _ = session;
    ctx.cache.stale_cause = Some(cause);
    ctx.cache.stale_status = status;
    true
}

/// `response_filter` (hits and misses alike) and generated answers: `Cache-Status` on
/// every response of a cached route.
pub fn stamp(session: &Session, resp: &mut ResponseHeader, ctx: &RequestCtx) -> Result<()> {
    if ctx.target.route.as_ref().is_none_or(|r| r.cache.is_none()) {
        return Ok(());
    }
    match status::header(&session.cache, &ctx.cache, resp.status.as_u16()) {
        Some(value) => resp.insert_header("cache-status", value),
        None => Ok(()),
    }
}

/// `logging`: counts the request by result and returns the result for the access log.
pub fn record(state: &State, session: &Session, ctx: &RequestCtx) -> Option<&'static str> {
    let route = ctx.target.route.as_ref().filter(|r| r.cache.is_some())?;
    let result = status::result(&session.cache, &ctx.cache);
    state
        .metrics
        .cache_requests
        .with_label_values(&[route.name.as_str(), result])
        .inc();
    Some(result)
}

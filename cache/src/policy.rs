//! What may be stored and who may be served it: RFC 9111 with a shared cache's duties, plus
//! the gateway's credential rule.
//!
//! **The credential rule.** A request carried credentials when it had an `Authorization`
//! header, any `Cookie` (a token cookie is a credential, and the legacy app's own session
//! cookie reaches it on routes the gateway does not authenticate), a signed URL, or an identity
//! the gateway verified and forwards (`forward_claims` headers). For such a request the answer
//! is stored, and a stored answer is served, only when the upstream marked it `public` or gave
//! it `s-maxage` (RFC 9111 section 3.5 names exactly these as the marks that let a shared cache
//! keep an answer to an authorized request; the gateway holds cookies and signed URLs to the
//! same rule, and does not take `must-revalidate` as such a mark). `private` is never stored,
//! whoever asked. Since a shareable answer is the same for everyone by the upstream's word, the
//! identity is not part of the key: the decision is made on the credential, not on luck.

use std::time::{Duration, SystemTime};

use http::header::{AUTHORIZATION, COOKIE, SET_COOKIE, VARY};
use http::StatusCode;
use pingora_cache::cache_control::{CacheControl, InterpretCacheControl};
use pingora_cache::filters::{calculate_fresh_until, calculate_serve_stale_durations};
use pingora_cache::NoCacheReason;
use pingora_cache::{CacheMeta, CacheMetaDefaults, RespCacheable};
use pingora_http::{RequestHeader, ResponseHeader};
use portcullis_config::RouteCache;

/// Why an answer was not stored (the `detail` of `Cache-Status`, and the predictor's memory:
/// `credentialed` is about the request, not the URL, so it is never remembered).
pub mod reason {
    pub const STATUS: &str = "status";
    pub const SET_COOKIE: &str = "set-cookie";
    pub const VARY_STAR: &str = "vary-star";
    pub const NO_STORE: &str = "no-store";
    pub const PRIVATE: &str = "private";
    pub const CREDENTIALED: &str = "credentialed";
    pub const NO_FRESHNESS: &str = "no-freshness";
    pub const EVENT_STREAM: &str = "event-stream";
    pub const UNKNOWN_LENGTH: &str = "unknown-length";
}

/// The predictor remembers a URL as uncacheable for the next request, except for reasons that
/// belong to one request rather than to the URL.
pub fn reason_belongs_to_the_request(reason: &'static str) -> bool {
    reason == reason::CREDENTIALED
}

/// Whether the request carried credentials (see the module documentation); `identified`:
/// the gateway verified a credential, a user or claims for it.
pub fn credentialed(req: &RequestHeader, identified: bool) -> bool {
    identified || req.headers.contains_key(AUTHORIZATION) || req.headers.contains_key(COOKIE)
}

/// Whether a stored answer may be served to a credentialed request: `public` or `s-maxage`,
/// and not `private`.
pub fn shareable(resp: &ResponseHeader) -> bool {
    CacheControl::from_resp_headers(resp)
        .is_some_and(|cc| !cc.private() && (cc.public() || cc.has_key("s-maxage")))
}

/// Statuses stored at all: those RFC 9110 section 15.1 calls heuristically cacheable (the
/// route's `ttl` may apply to them), and redirects that carry explicit freshness. Never a
/// 206 (the gateway fetches whole objects), a 304, an upstream's 401/403/429 (the gateway
/// answers those itself, per request), or a 5xx.
fn storable(status: StatusCode) -> bool {
    heuristic(status) || matches!(status.as_u16(), 302 | 307)
}

fn heuristic(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 410
    )
}

/// The store-or-not decision for an upstream answer (`response_cache_filter`).
pub fn decide(
    resp: &ResponseHeader,
    route: &RouteCache,
    credentialed: bool,
    now: SystemTime,
) -> RespCacheable {
    let skip = |why: &'static str| RespCacheable::Uncacheable(NoCacheReason::Custom(why));
    if !storable(resp.status) {
        return skip(reason::STATUS);
    }
    // A cookie set for one client must never be replayed to another.
    if resp.headers.contains_key(SET_COOKIE) {
        return skip(reason::SET_COOKIE);
    }
    // A stream of events has no end to store (and must not be cut at max_object_size).
    let event_stream = resp
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if event_stream {
        return skip(reason::EVENT_STREAM);
    }
    // A fill streams to its readers as it arrives, and pingora cuts one that outgrows
    // max_object_size: media of unknown length (a transcoder's pipe) is never stored, so it
    // is never cut. (A JSON or text answer of unknown length that outgrows max_object_size is
    // cut once, and its URL is then remembered and bypassed.)
    let media = resp
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| {
            let v = v.as_bytes();
            v.starts_with(b"audio/")
                || v.starts_with(b"video/")
                || v.starts_with(b"application/octet-stream")
        });
    if media && !resp.headers.contains_key(http::header::CONTENT_LENGTH) {
        return skip(reason::UNKNOWN_LENGTH);
    }
    // RFC 9111 section 4.1: `Vary: *` never matches a later request.
    let vary_star = resp.headers.get_all(VARY).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|name| name.trim() == "*"))
    });
    if vary_star {
        return skip(reason::VARY_STAR);
    }
    let cc = CacheControl::from_resp_headers(resp);
    if let Some(cc) = &cc {
        if cc.no_store() {
            return skip(reason::NO_STORE);
        }
        if cc.private() {
            return skip(reason::PRIVATE);
        }
    }
    if credentialed && !shareable(resp) {
        return skip(reason::CREDENTIALED);
    }
    // The answer's own freshness (s-maxage, max-age, no-cache as 0, Expires), else the
    // route's ttl for heuristically cacheable statuses.
    let own = calculate_fresh_until(now, cc.as_ref(), resp, false, &NO_DEFAULTS);
    let fresh_until = match own {
        Some(at) => at,
        None if heuristic(resp.status) && !route.ttl.is_zero() => now + route.ttl,
        None => return skip(reason::NO_FRESHNESS),
    };
    let defaults = CacheMetaDefaults::new(
        |_| None,
        secs(route.stale_while_revalidate),
        secs(route.stale_if_error),
    );
    // The answer's own stale-while-revalidate / stale-if-error win; must-revalidate,
    // proxy-revalidate and s-maxage forbid serving it stale (RFC 9111 sections 5.2.2.2, 5.2.2.8,
    // 5.2.2.10).
    let (swr, sie) = calculate_serve_stale_durations(cc.as_ref(), &defaults);
    let mut stored = resp.clone();
    if let Some(cc) = &cc {
        // `no-cache="field"`: those fields are not kept (RFC 9111 section 5.2.2.4).
        cc.strip_private_headers(&mut stored);
    }
    RespCacheable::Cacheable(CacheMeta::new(fresh_until, now, swr, sie, stored))
}

const NO_DEFAULTS: CacheMetaDefaults = CacheMetaDefaults::new(|_| None, 0, 0);

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> RouteCache {
        RouteCache {
            ttl: Duration::from_secs(60),
            max_object_size: 1 << 20,
            stale_while_revalidate: Duration::from_secs(30),
            stale_if_error: Duration::from_secs(300),
            vary: vec![],
        }
    }

    fn resp(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(status, None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn stored(status: u16, headers: &[(&str, &str)], credentialed: bool) -> Option<CacheMeta> {
        match decide(
            &resp(status, headers),
            &route(),
            credentialed,
            SystemTime::now(),
        ) {
            RespCacheable::Cacheable(meta) => Some(meta),
            RespCacheable::Uncacheable(_) => None,
        }
    }

    #[test]
    fn an_answer_without_freshness_gets_the_route_ttl() {
        let now = SystemTime::now();
        let meta = stored(200, &[], false).unwrap();
        let ttl = meta.fresh_until().duration_since(now).unwrap();
        assert!(ttl > Duration::from_secs(58) && ttl <= Duration::from_secs(61));
        assert_eq!(meta.stale_if_error_sec(), 300);
        assert_eq!(meta.stale_while_revalidate_sec(), 30);
        assert!(
            stored(302, &[], false).is_none(),
            "a 302 needs its own freshness"
        );
        assert!(stored(302, &[("cache-control", "max-age=5")], false).is_some());
    }

    #[test]
    fn the_upstreams_directives_win() {
        let meta = stored(
            200,
            &[("cache-control", "max-age=5, stale-if-error=7")],
            false,
        )
        .unwrap();
        assert!(meta.fresh_until() < SystemTime::now() + Duration::from_secs(6));
        assert_eq!(meta.stale_if_error_sec(), 7);
        let meta = stored(
            200,
            &[("cache-control", "max-age=5, must-revalidate")],
            false,
        )
        .unwrap();
        assert_eq!(
            meta.stale_if_error_sec(),
            0,
            "must-revalidate forbids serving stale"
        );
        let meta = stored(200, &[("cache-control", "no-cache")], false).unwrap();
        assert!(
            !meta.is_fresh(SystemTime::now()),
            "no-cache is stored but always revalidated"
        );
        for never in [
            &[("cache-control", "no-store")][..],
            &[("cache-control", "private, max-age=60")],
            &[("set-cookie", "a=b")],
            &[("vary", "accept, *")],
            &[("content-type", "text/event-stream")],
            &[("content-type", "audio/mpeg")],
        ] {
            assert!(stored(200, never, false).is_none(), "{never:?} stored");
        }
        for status in [206, 304, 401, 403, 429, 500, 502, 503] {
            assert!(stored(status, &[("cache-control", "public, max-age=60")], false).is_none());
        }
    }

    #[test]
    fn credentialed_requests_share_only_public_or_s_maxage_answers() {
        assert!(stored(200, &[], true).is_none());
        assert!(stored(200, &[("cache-control", "max-age=60")], true).is_none());
        assert!(stored(
            200,
            &[("cache-control", "max-age=60, must-revalidate")],
            true
        )
        .is_none());
        assert!(stored(200, &[("cache-control", "public, max-age=60")], true).is_some());
        assert!(stored(200, &[("cache-control", "s-maxage=60")], true).is_some());
        assert!(stored(200, &[("cache-control", "public, private")], true).is_none());
        assert!(shareable(&resp(200, &[("cache-control", "public")])));
        assert!(!shareable(&resp(200, &[("cache-control", "max-age=9")])));
        assert!(!shareable(&resp(200, &[])));
    }
}

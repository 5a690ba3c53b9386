//! The cache key: everything the upstream's answer may depend on, and nothing a client can use
//! to reach another entry.
//!
//! The primary key frames, each part length-prefixed so no two requests can spell the same key:
//! the route, the scheme, the `Host` the upstream sees (the request's one authority reading,
//! `:authority` over h2 and `Host` over HTTP/1, normalised; a TLS upstream's own name) and the
//! `X-Forwarded-Host` it sees, the upstream target (the normalised path with the route's
//! prefix replaced, and the query without a signed URL's `exp`/`sig`, so every signed link to
//! one file shares one entry), and the values of the route's `vary` headers. The upstream's
//! own `Vary` splits further through pingora's variance (secondary keys under the primary).
//!
//! Every header value in the key and the variance is the one the upstream receives
//! ([`forwarded_value`]), not the client's: a backend that varies on `X-User-Id` saw the
//! gateway's verified claim (the client's copy is stripped), on `X-Real-IP` the client's
//! address as the gateway reads it, on `Authorization` or `Cookie` only what was forwarded.
//! Identity is not in the key otherwise: the credential rule decides what is shared (`policy`).

use http::header::{HeaderName, HOST};
use pingora::cache::key::{hash_key, HashBinary};
use pingora::cache::{CacheKey, CacheMeta, VarianceBuilder};
use pingora::http::RequestHeader;

use super::store::Label;
use crate::ctx::RequestCtx;
use crate::forward::forwarded_value;

const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

const VERSION: &[u8] = b"portcullis-cache-1";

pub fn primary(req: &RequestHeader, ctx: &RequestCtx) -> CacheKey {
    let mut key = Vec::with_capacity(256);
    key.extend_from_slice(VERSION);
    let mut part = |bytes: &[u8]| {
        key.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        key.extend_from_slice(bytes);
    };
    part(ctx.route_name().as_bytes());
    part(if ctx.client.https { b"https" } else { b"http" });
    part(&forwarded_value(req, ctx, &HOST));
    part(&forwarded_value(req, ctx, &X_FORWARDED_HOST));
    part(
        ctx.target
            .upstream_target
            .as_deref()
            .unwrap_or(&ctx.target.path)
            .as_bytes(),
    );
    if let Some(policy) = ctx.target.route.as_ref().and_then(|r| r.cache.as_ref()) {
        for name in &policy.vary {
            part(name.as_str().as_bytes());
            part(&forwarded_value(req, ctx, name));
        }
    }
    // pingora hashes the primary key on every use (the predictor, the lookup, the lock):
    // hashed once here instead.
    let hash = hash_key(&key);
    let mut key = CacheKey::new(key, "");
    key.set_primary_bin_override(hash);
    key.extensions.insert(Label {
        path: ctx.target.path.as_str().into(),
        max_object_size: ctx
            .target
            .route
            .as_ref()
            .and_then(|r| r.cache.as_ref())
            .map_or(0, |c| c.max_object_size),
    });
    key
}

/// The variance of a stored answer's `Vary` for this request (`cache_vary_filter`), from the
/// request as forwarded; `None` when the answer names none.
///
/// An answer that allows one origin (`Access-Control-Allow-Origin` other than `*`) varies by
/// `Origin` whether or not it says so: a backend that reflects the request's origin without
/// `Vary: Origin` would otherwise have the gateway hand one site's grant to every other site.
pub fn variance(meta: &CacheMeta, req: &RequestHeader, ctx: &RequestCtx) -> Option<HashBinary> {
    let mut names: Vec<String> = Vec::new();
    let one_origin = meta
        .headers()
        .get(http::header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .is_some_and(|v| v.as_bytes().trim_ascii() != b"*");
    if one_origin {
        names.push("origin".to_string());
    }
    for value in meta.headers().get_all(http::header::VARY) {
        let Ok(value) = value.to_str() else { continue };
        for name in value.split(',') {
            let name = name.trim().to_ascii_lowercase();
            if !name.is_empty() && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    if names.is_empty() {
        return None;
    }
    let mut builder = VarianceBuilder::new();
    for name in names {
        let value = match HeaderName::from_bytes(name.as_bytes()) {
            Ok(header) => forwarded_value(req, ctx, &header),
            Err(_) => Vec::new(),
        };
        builder.add_owned_name_value(name, value);
    }
    builder.finalize()
}

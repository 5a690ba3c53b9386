//! The cache key: everything the upstream's answer may depend on, and nothing a client can use
//! to reach another entry.
//!
//! The primary key frames, each part length-prefixed so no two requests can spell the same key:
//! the route, the scheme, the `Host` the upstream sees (and a trusted proxy's
//! `X-Forwarded-Host`), the upstream target (the normalised path with the route's prefix
//! replaced, and the query without a signed URL's `exp`/`sig`, so every signed link to one
//! file shares one entry), and the values of the route's `vary` headers. The upstream's own
//! `Vary` splits further through pingora's variance (secondary keys under the primary).
//! Identity is not in the key: the credential rule decides what is shared (`policy`).

use http::header::{HeaderName, HOST};
use pingora::cache::key::{hash_key, HashBinary};
use pingora::cache::{CacheKey, CacheMeta, VarianceBuilder};
use pingora::http::RequestHeader;

use super::store::Label;
use crate::ctx::RequestCtx;

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
    let host = req.headers.get(HOST).map_or(&[][..], |h| h.as_bytes());
    part(&host.to_ascii_lowercase());
    let forwarded_host = req
        .headers
        .get("x-forwarded-host")
        .filter(|_| ctx.client.peer_trusted)
        .map_or(&[][..], |h| h.as_bytes());
    part(&forwarded_host.to_ascii_lowercase());
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
            part(&joined(req, name));
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

/// The variance of a stored answer's `Vary` for this request (`cache_vary_filter`); `None`
/// when the answer names none.
///
/// An answer that allows one origin (`Access-Control-Allow-Origin` other than `*`) varies by
/// `Origin` whether or not it says so: a backend that reflects the request's origin without
/// `Vary: Origin` would otherwise have the gateway hand one site's grant to every other site.
pub fn variance(meta: &CacheMeta, req: &RequestHeader) -> Option<HashBinary> {
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
            Ok(header) => joined(req, &header),
            Err(_) => Vec::new(),
        };
        builder.add_owned_name_value(name, value);
    }
    builder.finalize()
}

/// Every value of `name`, in order, joined by `,` (absent is empty, which differs from any
/// present value... except an empty one, which means the same).
fn joined(req: &RequestHeader, name: &HeaderName) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, value) in req.headers.get_all(name).iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(value.as_bytes().trim_ascii());
    }
    out
}

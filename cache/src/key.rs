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
//! Every header value in the key and the variance is the one the upstream receives (the
//! gateway hands them in), not the client's: a backend that varies on `X-User-Id` saw the
//! gateway's verified claim (the client's copy is stripped), on `X-Real-IP` the client's
//! address as the gateway reads it, on `Authorization` or `Cookie` only what was forwarded.
//! Identity is not in the key otherwise: the credential rule decides what is shared (`policy`).

use http::header::HeaderName;
use pingora_cache::key::{hash_key, HashBinary};
use pingora_cache::{CacheKey, CacheMeta, VarianceBuilder};

use crate::store::Label;

const VERSION: &[u8] = b"portcullis-cache-1";

/// What a request's primary key is made of, each value as the upstream receives it.
pub struct KeyParts<'a> {
    pub route: &'a str,
    pub https: bool,
    /// The `Host` the upstream receives.
    pub host: &'a [u8],
    /// The `X-Forwarded-Host` the upstream receives.
    pub forwarded_host: &'a [u8],
    /// Path and query sent upstream.
    pub target: &'a str,
    /// The route's `vary` names, each with its value as forwarded.
    pub vary: &'a [(&'a HeaderName, Vec<u8>)],
    /// The normalised request path (the store's purge index).
    pub path: &'a str,
    /// The route's `max_object_size`.
    pub max_object_size: usize,
}

pub fn primary(parts: &KeyParts<'_>) -> CacheKey {
    let mut key = Vec::with_capacity(256);
    key.extend_from_slice(VERSION);
    let mut part = |bytes: &[u8]| {
        key.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        key.extend_from_slice(bytes);
    };
    part(parts.route.as_bytes());
    part(if parts.https { b"https" } else { b"http" });
    part(parts.host);
    part(parts.forwarded_host);
    part(parts.target.as_bytes());
    for (name, value) in parts.vary {
        part(name.as_str().as_bytes());
        part(value);
    }
    // pingora hashes the primary key on every use (the predictor, the lookup, the lock):
    // hashed once here instead.
    let hash = hash_key(&key);
    let mut key = CacheKey::new(key, "");
    key.set_primary_bin_override(hash);
    key.extensions.insert(Label {
        path: parts.path.into(),
        max_object_size: parts.max_object_size,
    });
    key
}

/// The variance of a stored answer's `Vary` for this request (`cache_vary_filter`), from the
/// request as forwarded (`forwarded` gives a header's value as the upstream receives it);
/// `None` when the answer names none.
///
/// An answer that allows one origin (`Access-Control-Allow-Origin` other than `*`) varies by
/// `Origin` whether or not it says so: a backend that reflects the request's origin without
/// `Vary: Origin` would otherwise have the gateway hand one site's grant to every other site.
pub fn variance(
    meta: &CacheMeta,
    forwarded: impl Fn(&HeaderName) -> Vec<u8>,
) -> Option<HashBinary> {
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
            Ok(header) => forwarded(&header),
            Err(_) => Vec::new(),
        };
        builder.add_owned_name_value(name, value);
    }
    builder.finalize()
}

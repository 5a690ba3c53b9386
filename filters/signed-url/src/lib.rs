//! Signed media URLs: a link that carries its own short-lived credential.
//!
//! A browser fetches `<img src>`, `<audio src>` and `<video src>` itself and never attaches
//! an `Authorization` header, so a media route cannot ask it for a bearer token. Instead the
//! application hands out a URL whose query proves that a key holder allowed this path, until
//! `exp`, optionally for one user. The gateway checks it and forwards the request without the
//! proof. No I/O; `now` is always the caller's.
//!
//! # The algorithm (version 1)
//!
//! ```text
//! message = "portcullis-url-v1" LF path LF exp LF user
//! sig     = base64url-without-padding( HMAC-SHA256(key, message) )     43 characters
//! query   = "exp=" exp [ "&user=" percent-encoded(user) ] "&sig=" sig
//! ```
//!
//! - `path` is the request path **as the gateway normalises it** (`portcullis_routing::
//!   normalize`; RFC 3986 sections 5.2.4 and 6.2.2): `.` and `..` resolved, `//` collapsed,
//!   escapes of unreserved characters decoded, other escapes in upper-case hex, no query. So
//!   `/media/a/../b.mp3` and `/media/%62.mp3` are both signed as `/media/b.mp3`. Sign clean
//!   paths (non-ASCII escaped in upper-case hex, as `encodeURI` does) and they are already
//!   normalised. The comparison is exact, case included, even where routing ignores case:
//!   `/Media/b.mp3` needs a signature of its own.
//! - `exp` is the expiry in unix seconds, in decimal without leading zeros.
//! - `user` is the user id (UTF-8, 1 to 256 bytes, no control characters), or empty when the
//!   URL is for anyone. An empty user id is refused, so "no user" has a signature of its own.
//! - `key` is the bytes of a configured `keys` string (UTF-8), at least 32 of them. The first
//!   key signs; every key verifies (rotation: add the new key first, drop the old one once
//!   its URLs have expired).
//! - The query is read as `application/x-www-form-urlencoded`, so `user` may be encoded by
//!   `encodeURIComponent` or `URLSearchParams` alike (`+` is a space). Parameter order is free.
//!
//! A request is accepted when some key's HMAC equals `sig` (compared in constant time by
//! aws-lc-rs) and `now <= exp <= now + max_ttl`. Refused ([`SignedUrlError`]): only one of
//! `exp`/`sig`, any of the three parameters twice, `exp` not a plain decimal, `sig` not 43
//! base64url characters, a tampered path, `exp` or user, an expired URL, and one that
//! expires further ahead than `max_ttl` (a URL minted with a longer life than the route
//! allows, or a leaked long-lived one).
//!
//! **Not signed:** the host, the method and every other query parameter. Anyone holding a
//! signed URL can add parameters to it, so the upstream must not let a query parameter widen
//! what the path grants (`?file=other.mp3`).
//!
//! On a route with signed URLs, `exp`, `sig` and `user` belong to the gateway: a request
//! with `exp` or `sig` is judged as a signed URL, and once accepted all three are removed
//! ([`strip_params`]) before the request goes upstream. A request with neither is not a
//! signed request ([`SignedUrls::verify`] answers `Ok(None)`) and keeps its query as sent.
//!
//! # Minting URLs in a Node.js application
//!
//! ```js
//! const crypto = require('crypto');
//!
//! // `path` as the gateway will normalise it; `exp` in unix seconds; `user` optional.
//! function signUrl(key, path, exp, user) {
//!   const message = `portcullis-url-v1\n${path}\n${exp}\n${user ?? ''}`;
//!   const sig = crypto.createHmac('sha256', key).update(message).digest('base64url');
//!   const query = new URLSearchParams({ exp: String(exp) });
//!   if (user) query.set('user', user);
//!   query.set('sig', sig);
//!   return `${path}?${query}`;
//! }
//!
//! signUrl('portcullis-example-key-0123456789abcdef', '/media/b.mp3', 1767225600, 'alice');
//! // '/media/b.mp3?exp=1767225600&user=alice&sig=gaEcmrybbkZYT_QbKfffd42hEcdXmX1o3a5mvyZBRz8'
//! ```
//!
//! The same vector in Rust:
//!
//! ```
//! use std::time::Duration;
//! use portcullis_signed_url::{Signed, SignedUrls};
//!
//! let urls = SignedUrls::new(&["portcullis-example-key-0123456789abcdef"], Duration::from_secs(3600))?;
//! let query = urls.sign("/media/b.mp3", 1767225600, Some("alice"))?;
//! assert_eq!(query, "exp=1767225600&user=alice&sig=gaEcmrybbkZYT_QbKfffd42hEcdXmX1o3a5mvyZBRz8");
//! let signed = urls.verify("/media/b.mp3", Some(&query), 1767225600 - 600)?;
//! assert_eq!(signed, Some(Signed { user: Some("alice".into()), exp: 1767225600 }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod query;
mod signer;
#[cfg(test)]
mod tests;

pub use error::{KeyError, SignError, SignedUrlError};
pub use query::strip_params;
pub use signer::{Signed, SignedUrls, MAX_KEYS, MAX_USER_BYTES, MIN_KEY_BYTES};

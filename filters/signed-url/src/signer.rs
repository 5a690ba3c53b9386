//! [`SignedUrls`]: mints and checks the `exp`/`user`/`sig` parameters of one route.

use std::fmt;
use std::io::Write as _;
use std::time::Duration;

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::query;
use crate::{KeyError, SignError, SignedUrlError};

/// The first line of every signed string: a new algorithm gets a new label, so a signature
/// of one version can never be read as one of another.
const VERSION: &str = "portcullis-url-v1";

/// HMAC keys shorter than this are refused: a signed URL is public, and a short key can be
/// found offline from it (RFC 2104 section 3 asks for at least the hash length).
pub const MIN_KEY_BYTES: usize = 32;

/// At most this many keys: every one is tried before a URL is refused.
pub const MAX_KEYS: usize = 8;

/// Longest user id signed or accepted.
pub const MAX_USER_BYTES: usize = 256;

/// An HMAC-SHA256 tag in base64url without padding: 32 bytes, 43 characters.
const SIG_CHARS: usize = 43;
const SIG_BYTES: usize = 32;

/// The characters of a user id that are not escaped in the query: RFC 3986 `unreserved`.
const USER_ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// What a valid signed URL vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The user the URL was minted for, when one was: the request is authenticated as them.
    pub user: Option<String>,
    /// When the URL expires (unix seconds); a cached answer must not outlive it.
    pub exp: u64,
}

/// The signed-URL keys and lifetime bound of one route.
///
/// `keys[0]` signs; every key verifies, so a key is rotated by putting the new one first,
/// keeping the old one second until the URLs it signed have expired, then removing it.
pub struct SignedUrls {
    /// `keys[0]`, apart so that signing needs no "no key" branch.
    signing: hmac::Key,
    /// Every key, the signing one first.
    keys: Vec<hmac::Key>,
    max_ttl: Duration,
}

impl fmt::Debug for SignedUrls {
    /// Counts the keys, never shows them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedUrls")
            .field("keys", &self.keys.len())
            .field("max_ttl", &self.max_ttl)
            .finish()
    }
}

// === impl SignedUrls ===

impl SignedUrls {
    /// Keys as configured (the bytes of each string), newest first, and the longest lifetime
    /// a URL may have left when it is used. 1 to [`MAX_KEYS`] keys of at least
    /// [`MIN_KEY_BYTES`] each.
    pub fn new<K: AsRef<[u8]>>(keys: &[K], max_ttl: Duration) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::NoKeys);
        }
        if keys.len() > MAX_KEYS {
            return Err(KeyError::TooMany { max: MAX_KEYS });
        }
        if let Some((index, key)) = keys
            .iter()
            .enumerate()
            .find(|(_, k)| k.as_ref().len() < MIN_KEY_BYTES)
        {
            return Err(KeyError::TooShort {
                index,
                len: key.as_ref().len(),
                min: MIN_KEY_BYTES,
            });
        }
        let keys: Vec<hmac::Key> = keys
            .iter()
            .map(|k| hmac::Key::new(hmac::HMAC_SHA256, k.as_ref()))
            .collect();
        let Some(signing) = keys.first().cloned() else {
            return Err(KeyError::NoKeys);
        };
        Ok(SignedUrls {
            signing,
            keys,
            max_ttl,
        })
    }

    /// The longest lifetime a URL may have left when it is used.
    pub fn max_ttl(&self) -> Duration {
        self.max_ttl
    }

    /// The query to append to `path` (after `?`, or `&` when it has a query already):
    /// `exp=EXP&sig=SIG`, or `exp=EXP&user=USER&sig=SIG` with the user percent-encoded.
    ///
    /// `path` must be the normalised path the gateway will see (`portcullis_routing::normalize`
    /// of the request path); `exp` is in unix seconds.
    pub fn sign(&self, path: &str, exp: u64, user: Option<&str>) -> Result<String, SignError> {
        if !valid_path(path) {
            return Err(SignError::Path);
        }
        if user.is_some_and(|u| !valid_user(u)) {
            return Err(SignError::User);
        }
        let tag = hmac::sign(&self.signing, &message(path, exp, user));
        let sig = URL_SAFE_NO_PAD.encode(tag.as_ref());
        Ok(match user {
            Some(user) => format!(
                "exp={exp}&user={}&sig={sig}",
                utf8_percent_encode(user, USER_ESCAPED)
            ),
            None => format!("exp={exp}&sig={sig}"),
        })
    }

    /// Checks the signed-URL parameters of a request for the normalised `path` with the
    /// query `query` (without `?`) at `now` (unix seconds).
    ///
    /// `Ok(None)`: neither `exp` nor `sig` is present, so this is not a signed request and
    /// other credentials decide. `Ok(Some(_))`: a key vouches for the path, `exp` and user,
    /// and `now <= exp <= now + max_ttl`. The signature is checked before the times, so
    /// [`SignedUrlError::Expired`] and [`SignedUrlError::TooFar`] only ever describe genuine
    /// URLs and a tampered one is always [`SignedUrlError::BadSignature`].
    pub fn verify(
        &self,
        path: &str,
        query: Option<&str>,
        now: u64,
    ) -> Result<Option<Signed>, SignedUrlError> {
        let params = query::params(query.unwrap_or(""));
        let (exp, sig) = match (params.exp, params.sig) {
            (None, None) => return Ok(None),
            (Some(exp), Some(sig)) => (exp, sig),
            _ => {
                return Err(SignedUrlError::Malformed(
                    "a signed URL needs both exp and sig",
                ))
            }
        };
        if params.exp_or_sig_twice || params.user_twice {
            return Err(SignedUrlError::Malformed(
                "a signed URL parameter appears twice",
            ));
        }
        let exp = decimal(exp).ok_or(SignedUrlError::Malformed(
            "exp is not a plain decimal number",
        ))?;
        let sig = signature(sig).ok_or(SignedUrlError::Malformed(
            "sig is not 43 base64url characters",
        ))?;
        let user = params.user.map(user_param).transpose()?;
        if !valid_path(path) {
            return Err(SignedUrlError::Malformed("the path cannot be signed"));
        }
        let message = message(path, exp, user.as_deref());
        if !self
            .keys
            .iter()
            .any(|key| hmac::verify(key, &message, &sig).is_ok())
        {
            return Err(SignedUrlError::BadSignature);
        }
        if exp < now {
            return Err(SignedUrlError::Expired);
        }
        if exp > now.saturating_add(self.max_ttl.as_secs()) {
            return Err(SignedUrlError::TooFar);
        }
        Ok(Some(Signed { user, exp }))
    }
}

/// `portcullis-url-v1 \n path \n exp \n user`. Unambiguous: the version and `exp` hold no
/// `\n`, the path holds none (a control character), and the user comes last, so every
/// (path, exp, user) has its own string; "no user" and the empty user would share one, which
/// is why an empty user id is refused.
fn message(path: &str, exp: u64, user: Option<&str>) -> Vec<u8> {
    let user = user.unwrap_or("");
    let mut m = Vec::with_capacity(VERSION.len() + path.len() + user.len() + 24);
    m.extend_from_slice(VERSION.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(path.as_bytes());
    m.push(b'\n');
    // Writing into a Vec cannot fail.
    let _ = write!(m, "{exp}");
    m.push(b'\n');
    m.extend_from_slice(user.as_bytes());
    m
}

fn valid_path(path: &str) -> bool {
    path.starts_with('/') && !path.chars().any(char::is_control)
}

fn valid_user(user: &str) -> bool {
    !user.is_empty() && user.len() <= MAX_USER_BYTES && !user.chars().any(char::is_control)
}

/// Digits only, without a sign, a leading zero or an overflow: one spelling per number.
fn decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.len() <= 20
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

/// 43 base64url characters decoding to 32 bytes. The decoder refuses non-zero unused bits
/// in the last character, so every tag has exactly one spelling.
fn signature(text: &str) -> Option<Vec<u8>> {
    if text.len() != SIG_CHARS {
        return None;
    }
    URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .filter(|bytes| bytes.len() == SIG_BYTES)
}

/// The decoded `user` parameter: UTF-8, 1 to [`MAX_USER_BYTES`] bytes, no control character.
fn user_param(raw: &str) -> Result<String, SignedUrlError> {
    let bad = SignedUrlError::Malformed("the user parameter is not a usable user id");
    let bytes = query::decode(raw).ok_or(bad)?;
    let user = String::from_utf8(bytes.into_owned()).map_err(|_| bad)?;
    if valid_user(&user) {
        Ok(user)
    } else {
        Err(bad)
    }
}

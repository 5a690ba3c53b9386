//! A route's `signed_urls = { keys = [...], max_ttl = "1h" }`.

use std::time::Duration;

use crate::model::{Secret, SignedUrlPolicy};
use crate::reader::{Diag, Field};

/// HMAC keys shorter than this are refused: a signed URL is public, and a short key can be
/// recovered offline from one (RFC 2104 section 3: at least the hash length). The same
/// bound as `portcullis_signed_url::MIN_KEY_BYTES`.
const MIN_KEY_BYTES: usize = 32;

/// Every key is tried on a mismatch, so the list stays short (`portcullis_signed_url::
/// MAX_KEYS`).
const MAX_KEYS: usize = 8;

const DEFAULT_MAX_TTL: Duration = Duration::from_secs(3600);
const LONGEST_MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

pub(crate) fn signed_urls(field: &Field, d: &mut Diag) -> Option<SignedUrlPolicy> {
    let mut s = field.section(d)?;
    let keys = s.require("keys", d).and_then(|f| keys(&f, d));
    let max_ttl = s.get("max_ttl").map_or(Some(DEFAULT_MAX_TTL), |f| {
        let ttl = f.positive_duration(d)?;
        if ttl > LONGEST_MAX_TTL {
            f.error(d, "must be at most \"7d\" (a leaked URL works that long)");
            return None;
        }
        Some(ttl)
    });
    s.finish(d);
    Some(SignedUrlPolicy {
        keys: keys?,
        max_ttl: max_ttl?,
    })
}

fn keys(field: &Field, d: &mut Diag) -> Option<Vec<Secret>> {
    let keys = field.list(d, |f, d| {
        let key = f.string(d)?;
        if key.len() < MIN_KEY_BYTES {
            f.error(
                d,
                format!(
                    "a signed-URL key needs at least {MIN_KEY_BYTES} bytes (a short HMAC key \
                     can be guessed from one signed URL); this one has {}",
                    key.len()
                ),
            );
            return None;
        }
        Some(Secret::new(key))
    })?;
    if keys.is_empty() {
        field.error(d, "must list at least one key");
        return None;
    }
    if keys.len() > MAX_KEYS {
        field.error(
            d,
            format!("at most {MAX_KEYS} keys (each is tried on a mismatch)"),
        );
        return None;
    }
    Some(keys)
}

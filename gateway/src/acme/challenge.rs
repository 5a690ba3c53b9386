//! Pending challenges: what the CA's validation is answered with while an order runs.
//!
//! - HTTP-01 (RFC 8555 section 8.3): `GET /.well-known/acme-challenge/{token}` on a plain
//!   listener answers the token's key authorization.
//! - TLS-ALPN-01 (RFC 8737): a handshake offering `acme-tls/1` for a name gets a self-signed
//!   certificate for that name carrying the critical `acmeIdentifier` extension (the SHA-256
//!   of the key authorization).
//!
//! This replica's own challenges are in memory; with a shared store they are also written
//! there (with a 10-minute expiry), so a replica that did not order answers them too: the CA's
//! validation may reach any replica behind the load balancer. Bounds: one entry per name of
//! the certificate for the order running on this replica; challenge certificates built for
//! another replica's order are cached up to [`MAX_CACHED`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use portcullis_ratelimit::shared::SharedStore;

use crate::tls::TlsMaterial;

/// How long a challenge stays in the shared store (an order finishes well within it).
pub const CHALLENGE_TTL: Duration = Duration::from_secs(600);

/// Challenge certificates kept for other replicas' orders.
const MAX_CACHED: usize = 256;

/// Shared-store look-ups per second for challenges another replica may have published. The
/// challenge path and `acme-tls/1` handshakes are answered before any ban or rate limit, so
/// this bounds what a flood of made-up tokens costs the store; the CA's few validation
/// requests fit well within it.
pub const STORE_LOOKUPS_PER_SECOND: u32 = 50;

/// A TLS-ALPN-01 challenge: the acmeIdentifier digest and the certificate carrying it.
type AlpnEntry = (Vec<u8>, Arc<TlsMaterial>);

#[derive(Default)]
pub struct Challenges {
    /// token -> key authorization.
    http: Mutex<HashMap<String, String>>,
    /// name -> (acmeIdentifier digest, its certificate).
    alpn: Mutex<HashMap<String, AlpnEntry>>,
    /// Store look-ups made in the current second: (unix second, count).
    lookups: Mutex<(u64, u32)>,
}

/// A token as RFC 8555 section 8.1 makes them: base64url characters only (and short).
pub fn valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Challenges {
    pub fn add_http(&self, token: &str, key_authorization: &str) {
        lock(&self.http).insert(token.to_string(), key_authorization.to_string());
    }

    pub fn add_alpn(&self, name: &str, digest: &[u8]) -> Result<(), String> {
        let cert = Arc::new(alpn_certificate(name, digest)?);
        lock(&self.alpn).insert(name.to_string(), (digest.to_vec(), cert));
        Ok(())
    }

    /// Whether one more store look-up fits in this second's budget.
    fn may_ask_store(&self) -> bool {
        let second = crate::clock::unix_secs();
        let mut lookups = lock(&self.lookups);
        if lookups.0 != second {
            *lookups = (second, 0);
        }
        if lookups.1 >= STORE_LOOKUPS_PER_SECOND {
            return false;
        }
        lookups.1 += 1;
        true
    }

    /// Forgets this replica's challenges (the order ended).
    pub fn clear(&self) {
        lock(&self.http).clear();
        lock(&self.alpn).clear();
    }

    /// The key authorization for `token`: this replica's, else the shared store's.
    pub async fn http(&self, token: &str, store: Option<&SharedStore>) -> Option<String> {
        if !valid_token(token) {
            return None;
        }
        if let Some(found) = lock(&self.http).get(token).cloned() {
            return Some(found);
        }
        let store = store.filter(|_| self.may_ask_store())?;
        match store.acme_get(&format!("http:{token}")).await {
            Ok(found) => found,
            Err(e) => {
                log::warn!("ACME challenge lookup in the shared store failed: {e}");
                None
            }
        }
    }

    /// The TLS-ALPN-01 certificate for `name`: this replica's, else built from the digest
    /// the ordering replica left in the shared store.
    pub async fn alpn(&self, name: &str, store: Option<&SharedStore>) -> Option<Arc<TlsMaterial>> {
        let local = lock(&self.alpn).get(name).map(|(_, c)| c.clone());
        if local.is_some() || store.is_none() || !self.may_ask_store() {
            return local;
        }
        let hex = match store?.acme_get(&format!("alpn:{name}")).await {
            Ok(found) => found?,
            Err(e) => {
                log::warn!("ACME challenge lookup in the shared store failed: {e}");
                return None;
            }
        };
        let digest = from_hex(&hex)?;
        let mut cache = lock(&self.alpn);
        if let Some((d, cert)) = cache.get(name) {
            if *d == digest {
                return Some(cert.clone());
            }
        }
        let cert = Arc::new(alpn_certificate(name, &digest).ok()?);
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(name.to_string(), (digest, cert.clone()));
        Some(cert)
    }
}

/// RFC 8737 section 3: a self-signed certificate for exactly `name`, with the critical
/// `id-pe-acmeIdentifier` extension holding the SHA-256 digest of the key authorization.
pub fn alpn_certificate(name: &str, digest: &[u8]) -> Result<TlsMaterial, String> {
    let key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_string()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    TlsMaterial::from_pem(
        cert.pem().as_bytes(),
        "the challenge certificate",
        key.serialize_pem().as_bytes(),
        "the challenge key",
    )
    .map_err(|e| e.to_string())
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_base64url_only() {
        assert!(valid_token("LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"));
        assert!(!valid_token(""));
        assert!(!valid_token("../etc"));
        assert!(!valid_token("a.b"));
    }

    #[test]
    fn the_challenge_certificate_carries_the_critical_acme_identifier() {
        let digest = [7u8; 32];
        let cert = alpn_certificate("music.example.com", &digest).unwrap();
        let der = cert.leaf.to_der().unwrap();
        // id-pe-acmeIdentifier (1.3.6.1.5.5.7.1.31), critical, OCTET STRING of the digest.
        let oid = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f];
        let at = der
            .windows(oid.len())
            .position(|w| w == oid)
            .expect("the extension is there");
        let rest = &der[at + oid.len()..];
        assert_eq!(&rest[..3], &[0x01, 0x01, 0xff], "critical");
        assert!(rest.windows(32).any(|w| w == digest));
        let names: Vec<String> = cert
            .leaf
            .subject_alt_names()
            .unwrap()
            .iter()
            .filter_map(|n| n.dnsname().map(str::to_string))
            .collect();
        assert_eq!(names, vec!["music.example.com".to_string()]);
    }

    #[test]
    fn store_lookups_are_bounded_per_second() {
        let challenges = Challenges::default();
        let allowed = (0..STORE_LOOKUPS_PER_SECOND * 3)
            .filter(|_| challenges.may_ask_store())
            .count();
        // At most one second boundary can fall inside the loop.
        assert!(allowed as u32 <= STORE_LOOKUPS_PER_SECOND * 2, "{allowed}");
        assert!(allowed as u32 >= STORE_LOOKUPS_PER_SECOND);
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(
            from_hex(&to_hex(&[0, 1, 254, 255])),
            Some(vec![0, 1, 254, 255])
        );
        assert_eq!(from_hex("abc"), None);
    }
}

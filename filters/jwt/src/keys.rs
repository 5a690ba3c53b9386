//! Verification keys: the configured HMAC secret or PEM public key, and JWKS documents
//! (RFC 7517). Each key knows its family, so a token is only ever checked against keys of its
//! algorithm's family, and, when the key says so, only for one algorithm.

use std::path::Path;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::DecodingKey;
use portcullis_config::{Jwt, JwtAlgorithm, KeyFamily};
use serde_json::Value;

use crate::KeyError;

/// Most keys one JWKS document may hold; a larger one is refused (the old keys keep serving).
pub const MAX_JWKS_KEYS: usize = 100;

/// One verification key.
#[derive(Clone)]
pub struct Key {
    pub(crate) kid: Option<String>,
    pub(crate) family: KeyFamily,
    /// When set, the only algorithm this key verifies (a JWK's `alg`, or its curve for EC).
    pub(crate) alg: Option<JwtAlgorithm>,
    pub(crate) decoding: DecodingKey,
    /// Identifies the key material (the PEM text, or the JWK), to tell whether a new JWKS
    /// document or a reload changed anything.
    pub(crate) fingerprint: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// Whether this key may verify a token of `alg` that names `kid`. A key without a `kid`
    /// (the configured secret or PEM key) matches any; a key with one matches a token naming
    /// the same `kid`, or naming none.
    pub(crate) fn fits(&self, alg: JwtAlgorithm, kid: Option<&str>) -> bool {
        self.family == alg.family()
            && self.alg.is_none_or(|a| a == alg)
            && match (kid, self.kid.as_deref()) {
                (Some(wanted), Some(own)) => wanted == own,
                _ => true,
            }
    }

    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
}

/// The keys `[jwt]` configures directly: the HMAC secret and the PEM public key file.
pub fn configured(jwt: &Jwt) -> Result<Vec<Key>, KeyError> {
    let mut keys = Vec::new();
    if let Some(secret) = &jwt.secret {
        keys.push(Key {
            kid: None,
            family: KeyFamily::Hmac,
            alg: None,
            decoding: DecodingKey::from_secret(secret),
            fingerprint: String::new(),
        });
    }
    if let Some(path) = &jwt.public_key_file {
        let key = pem_file(path)?;
        if !jwt.algorithms.iter().any(|a| a.family() == key.family) {
            return Err(KeyError::Pem(format!(
                "{} holds {} key, which none of the allowed algorithms uses",
                path.display(),
                family_name(key.family)
            )));
        }
        keys.push(key);
    }
    Ok(keys)
}

/// A PEM decoder of one key family.
type PemParser = fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>;

fn pem_file(path: &Path) -> Result<Key, KeyError> {
    let pem = std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8_lossy(&pem);
    if text.contains("PRIVATE KEY") {
        return Err(KeyError::Pem(format!(
            "{} holds a private key; give the gateway only the public key",
            path.display()
        )));
    }
    let parsers: [(KeyFamily, PemParser); 3] = [
        (KeyFamily::Rsa, DecodingKey::from_rsa_pem),
        (KeyFamily::Ec, DecodingKey::from_ec_pem),
        (KeyFamily::Ed, DecodingKey::from_ed_pem),
    ];
    for (family, parse) in parsers {
        if let Ok(decoding) = parse(&pem) {
            return Ok(Key {
                kid: None,
                family,
                alg: None,
                decoding,
                fingerprint: String::from_utf8_lossy(&pem).into_owned(),
            });
        }
    }
    Err(KeyError::Pem(format!(
        "{} is not a PEM RSA, EC or Ed25519 public key",
        path.display()
    )))
}

/// The signing keys of a JWKS document. Keys meant for encryption, symmetric keys (a
/// published HMAC key would let anyone sign), unsupported curves and keys whose `alg` is not
/// allowed are skipped; a document with no usable key is an error, so the caller keeps the
/// keys it had.
pub fn jwks(document: &[u8], allowed: &[JwtAlgorithm]) -> Result<Vec<Key>, KeyError> {
    let doc: Value =
        serde_json::from_slice(document).map_err(|e| KeyError::Jwks(format!("not JSON: {e}")))?;
    let Some(entries) = doc.get("keys").and_then(Value::as_array) else {
        return Err(KeyError::Jwks("no \"keys\" array".into()));
    };
    if entries.len() > MAX_JWKS_KEYS {
        return Err(KeyError::Jwks(format!(
            "{} keys, more than the {MAX_JWKS_KEYS} accepted",
            entries.len()
        )));
    }
    let keys: Vec<Key> = entries.iter().filter_map(|e| jwk(e, allowed)).collect();
    if keys.is_empty() {
        return Err(KeyError::Jwks(
            "no signing key usable with the allowed algorithms".into(),
        ));
    }
    Ok(keys)
}

fn jwk(entry: &Value, allowed: &[JwtAlgorithm]) -> Option<Key> {
    let text = |name: &str| entry.get(name).and_then(Value::as_str);
    if text("use").is_some_and(|u| u != "sig") {
        return None;
    }
    let (family, curve_alg) = match (text("kty")?, text("crv")) {
        ("RSA", _) => (KeyFamily::Rsa, None),
        ("EC", Some("P-256")) => (KeyFamily::Ec, Some(JwtAlgorithm::ES256)),
        ("EC", Some("P-384")) => (KeyFamily::Ec, Some(JwtAlgorithm::ES384)),
        ("OKP", Some("Ed25519")) => (KeyFamily::Ed, None),
        _ => return None,
    };
    let alg = match text("alg") {
        Some(name) => {
            let alg = JwtAlgorithm::from_name(name)?;
            if alg.family() != family || curve_alg.is_some_and(|c| c != alg) {
                return None;
            }
            Some(alg)
        }
        None => curve_alg,
    };
    if !allowed
        .iter()
        .any(|a| a.family() == family && alg.is_none_or(|k| k == *a))
    {
        return None;
    }
    let parsed: Jwk = serde_json::from_value(entry.clone()).ok()?;
    let decoding = DecodingKey::from_jwk(&parsed).ok()?;
    Some(Key {
        kid: text("kid").map(str::to_owned),
        family,
        alg,
        decoding,
        fingerprint: entry.to_string(),
    })
}

fn family_name(family: KeyFamily) -> &'static str {
    match family {
        KeyFamily::Hmac => "an HMAC",
        KeyFamily::Rsa => "an RSA",
        KeyFamily::Ec => "an EC",
        KeyFamily::Ed => "an Ed25519",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[JwtAlgorithm] = &JwtAlgorithm::ALL;

    fn doc(keys: &[Value]) -> Vec<u8> {
        serde_json::json!({ "keys": keys }).to_string().into_bytes()
    }

    fn ec_p256() -> Value {
        serde_json::json!({"kty":"EC","crv":"P-256","kid":"ec1",
            "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"})
    }

    #[test]
    fn symmetric_encryption_and_unsupported_keys_are_skipped() {
        let keys = jwks(
            &doc(&[
                serde_json::json!({"kty":"oct","k":"c2VjcmV0","kid":"hmac"}),
                serde_json::json!({"kty":"EC","crv":"P-521","x":"AA","y":"AA"}),
                {
                    let mut enc = ec_p256();
                    enc["use"] = "enc".into();
                    enc
                },
                ec_p256(),
            ]),
            ALL,
        )
        .unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid(), Some("ec1"));
        assert_eq!(keys[0].alg, Some(JwtAlgorithm::ES256));
    }

    #[test]
    fn a_key_whose_alg_contradicts_its_type_is_skipped() {
        let mut wrong = ec_p256();
        wrong["alg"] = "RS256".into();
        let mut other_curve = ec_p256();
        other_curve["alg"] = "ES384".into();
        assert!(jwks(&doc(&[wrong, other_curve]), ALL).is_err());
    }

    #[test]
    fn documents_without_usable_keys_are_errors() {
        assert!(jwks(b"not json", ALL).is_err());
        assert!(jwks(b"{}", ALL).is_err());
        assert!(jwks(&doc(&[]), ALL).is_err());
        assert!(jwks(&doc(&[ec_p256()]), &[JwtAlgorithm::RS256]).is_err());
        let many: Vec<Value> = (0..=MAX_JWKS_KEYS).map(|_| ec_p256()).collect();
        assert!(jwks(&doc(&many), ALL).is_err());
    }

    #[test]
    fn kid_selects_only_among_loaded_keys() {
        let key = &jwks(&doc(&[ec_p256()]), ALL).unwrap()[0];
        assert!(key.fits(JwtAlgorithm::ES256, Some("ec1")));
        assert!(key.fits(JwtAlgorithm::ES256, None));
        assert!(!key.fits(JwtAlgorithm::ES256, Some("../ec1")));
        assert!(!key.fits(JwtAlgorithm::ES384, Some("ec1")));
        assert!(!key.fits(JwtAlgorithm::HS256, Some("ec1")));
    }
}

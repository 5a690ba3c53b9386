//! [`Verifier`]: one token in, an identity or a typed refusal out, through the caches.
//!
//! Order of work for a token: the verified cache (a SHA-256 and a hash lookup), the failed
//! cache, then the header checks of [`crate::token`], key selection by family and `kid`, the
//! signature (jsonwebtoken with aws-lc-rs), and the claims. Time checks are done here against
//! the caller's `now` (jsonwebtoken's own are switched off), so the cache and the claims agree
//! on one clock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use http::{HeaderName, HeaderValue};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use portcullis_config::{Jwt, JwtAlgorithm};
use serde_json::{Map, Value};

use crate::cache::{Keyer, TtlCache};
use crate::keys::{self, Key};
use crate::token;
use crate::{AuthError, KeyError};

/// At most this many keys are tried for one token (a token without `kid` against a JWKS of
/// many keys must not cost many signature checks).
const MAX_CANDIDATES: usize = 4;

/// Longest claim value forwarded as a header.
const MAX_FORWARDED_VALUE: usize = 1024;

/// Who a verified token says is asking.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// The `user_claim` value, for per-user rate limits and the access log.
    pub user: Option<Arc<str>>,
    /// `forward_claims` as upstream request headers.
    pub forward: Vec<(HeaderName, HeaderValue)>,
    /// The claims a revocation can name: `jti`, `sub` and `iat`.
    pub jti: Option<Arc<str>>,
    pub subject: Option<Arc<str>>,
    pub issued_at: Option<u64>,
}

/// The answer for one token, and whether a cache gave it.
#[derive(Debug)]
pub struct Outcome {
    pub result: Result<Arc<Identity>, AuthError>,
    pub cached: bool,
}

/// What [`Verifier::install_jwks`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksChange {
    pub keys: usize,
    /// The key set differs from the previous one: both caches were emptied.
    pub changed: bool,
}

pub struct Verifier {
    algorithms: Vec<JwtAlgorithm>,
    validations: HashMap<JwtAlgorithm, Validation>,
    leeway_secs: u64,
    user_claim: String,
    forward_claims: Vec<(String, HeaderName)>,
    configured: Vec<Key>,
    uses_jwks: bool,
    jwks: ArcSwap<Vec<Key>>,
    jwks_loaded: AtomicBool,
    /// Bumped whenever the key set changes; cache entries of an older generation are misses.
    generation: AtomicU64,
    /// The caches' key: a keyed hash of the token, under this verifier's own random key.
    keyer: Keyer,
    verified: TtlCache<Arc<Identity>>,
    failed: TtlCache<AuthError>,
    ttl: Duration,
    failed_ttl: Duration,
    max_lifetime_secs: Option<u64>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.algorithms)
            .field("configured", &self.configured)
            .field("jwks", &self.jwks.load())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Builds the verifier of `[jwt]`, reading `public_key_file` (the only I/O here).
    pub fn new(jwt: &Jwt) -> Result<Self, KeyError> {
        let configured = keys::configured(jwt)?;
        let validations = jwt
            .algorithms
            .iter()
            .map(|&alg| (alg, validation(jwt, alg)))
            .collect();
        Ok(Verifier {
            algorithms: jwt.algorithms.clone(),
            validations,
            leeway_secs: jwt.leeway.as_secs(),
            user_claim: jwt.user_claim.clone(),
            forward_claims: jwt
                .forward_claims
                .iter()
                .map(|(c, h)| (c.clone(), h.clone()))
                .collect(),
            configured,
            uses_jwks: jwt.jwks_url.is_some(),
            jwks: ArcSwap::from_pointee(Vec::new()),
            jwks_loaded: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            keyer: Keyer::random(),
            verified: TtlCache::new(jwt.cache_capacity),
            failed: TtlCache::new(jwt.negative_cache_capacity),
            ttl: jwt.cache_ttl,
            failed_ttl: jwt.negative_cache_ttl,
            max_lifetime_secs: jwt.max_token_lifetime.map(|d| d.as_secs()),
        })
    }

    /// Whether no token can be judged yet: a JWKS is configured, no key was ever loaded from
    /// it, and no other key is configured. Auth-required requests then get 503, not 401.
    pub fn awaiting_keys(&self) -> bool {
        self.uses_jwks && self.configured.is_empty() && !self.jwks_loaded.load(Ordering::Acquire)
    }

    /// Verifies `token` at `now`.
    pub fn verify(&self, token: &str, now: SystemTime) -> Outcome {
        let now_ms = millis(now);
        let generation = self.generation.load(Ordering::Acquire);
        let key = self.keyer.digest(token);
        if let Some(identity) = self.verified.get(&key, now_ms, generation) {
            return Outcome {
                result: Ok(identity),
                cached: true,
            };
        }
        if let Some(error) = self.failed.get(&key, now_ms, generation) {
            return Outcome {
                result: Err(error),
                cached: true,
            };
        }
        let result = self.verify_uncached(token, now_ms);
        match &result {
            Ok((identity, exp_ms)) => {
                let until = now_ms.saturating_add(millis_of(self.ttl)).min(*exp_ms);
                self.verified
                    .insert(key, Arc::clone(identity), until, now_ms, generation);
            }
            Err(error) if !error.depends_on_keys() => {
                let until = now_ms.saturating_add(millis_of(self.failed_ttl));
                self.failed
                    .insert(key, error.clone(), until, now_ms, generation);
            }
            Err(_) => {}
        }
        Outcome {
            result: result.map(|(identity, _)| identity),
            cached: false,
        }
    }

    /// Replaces the JWKS keys with those of `document`. On an error the previous keys stay.
    /// When the key set changed, both caches are emptied: a withdrawn key stops validating
    /// at once, cached tokens included, and tokens refused for an unknown `kid` are looked at
    /// again.
    pub fn install_jwks(&self, document: &[u8]) -> Result<JwksChange, KeyError> {
        let keys = keys::jwks(document, &self.algorithms)?;
        let fingerprints = |ks: &[Key]| {
            let mut f: Vec<&str> = ks.iter().map(|k| k.fingerprint.as_str()).collect();
            f.sort_unstable();
            f.join("\n")
        };
        let changed = fingerprints(&keys) != fingerprints(&self.jwks.load());
        let count = keys.len();
        if changed {
            self.jwks.store(Arc::new(keys));
            self.generation.fetch_add(1, Ordering::AcqRel);
            self.verified.clear();
            self.failed.clear();
        }
        self.jwks_loaded.store(true, Ordering::Release);
        Ok(JwksChange {
            keys: count,
            changed,
        })
    }

    /// Identifies the configured key material (the `public_key_file` content as read), so a
    /// reload can tell whether the keys changed without reading the file again.
    pub fn configured_fingerprint(&self) -> String {
        self.configured
            .iter()
            .map(|k| k.fingerprint.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Changes whenever the key set changes.
    pub fn key_generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Entries in the verified-token cache.
    pub fn cached_tokens(&self) -> usize {
        self.verified.len()
    }

    /// The `kid` of every key in use, configured keys first, each with whether it came from
    /// the JWKS (for the status page: key ids only, never key material).
    pub fn key_ids(&self) -> Vec<(Option<String>, bool)> {
        let jwks = self.jwks.load();
        let configured = self.configured.iter().map(|k| (k.kid.clone(), false));
        configured
            .chain(jwks.iter().map(|k| (k.kid.clone(), true)))
            .collect()
    }

    fn verify_uncached(&self, token: &str, now_ms: u64) -> Result<(Arc<Identity>, u64), AuthError> {
        let header = token::header(token, &self.algorithms)?;
        if self.awaiting_keys() {
            return Err(AuthError::NoKeys);
        }
        let validation = self
            .validations
            .get(&header.alg)
            .ok_or(AuthError::UnsupportedAlg)?;
        let jwks = self.jwks.load();
        let candidates: Vec<&Key> = self
            .configured
            .iter()
            .chain(jwks.iter())
            .filter(|k| k.fits(header.alg, header.kid.as_deref()))
            .take(MAX_CANDIDATES)
            .collect();
        if candidates.is_empty() {
            return Err(if header.kid.is_some() && self.uses_jwks {
                AuthError::UnknownKid
            } else {
                AuthError::InvalidSignature
            });
        }
        let mut claims = None;
        for key in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, validation) {
                Ok(data) => {
                    claims = Some(data.claims);
                    break;
                }
                Err(e) => match map_error(e.kind()) {
                    AuthError::InvalidSignature => continue,
                    other => return Err(other),
                },
            }
        }
        let claims = claims.ok_or(AuthError::InvalidSignature)?;
        let exp = self.check_times(&claims, now_ms / 1000)?;
        Ok((Arc::new(self.identity(&claims)), exp.saturating_mul(1000)))
    }

    /// `exp` (required), `nbf` and `iat`, each with `leeway`. Returns `exp`.
    fn check_times(&self, claims: &Map<String, Value>, now: u64) -> Result<u64, AuthError> {
        let time = |name: &str| -> Result<Option<u64>, AuthError> {
            match claims.get(name) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                    .map(Some)
                    .ok_or(AuthError::InvalidClaims("a time claim is not a number")),
            }
        };
        let exp = time("exp")?.ok_or(AuthError::InvalidClaims("the token has no exp"))?;
        if exp.saturating_add(self.leeway_secs) < now {
            return Err(AuthError::Expired);
        }
        let latest = now.saturating_add(self.leeway_secs);
        if time("nbf")?.is_some_and(|nbf| nbf > latest) {
            return Err(AuthError::InvalidClaims("the token is not valid yet"));
        }
        let iat = time("iat")?;
        if iat.is_some_and(|iat| iat > latest) {
            return Err(AuthError::InvalidClaims(
                "the token was issued in the future",
            ));
        }
        // A revocation is kept for `max_token_lifetime`: a token allowed to live longer
        // could outlive its revocation.
        if let Some(max) = self.max_lifetime_secs {
            let start = iat.unwrap_or(now).min(now.saturating_add(self.leeway_secs));
            if exp > start.saturating_add(max).saturating_add(self.leeway_secs) {
                return Err(AuthError::InvalidClaims(
                    "the token lives longer than this gateway accepts",
                ));
            }
        }
        Ok(exp)
    }

    fn identity(&self, claims: &Map<String, Value>) -> Identity {
        let user = claims.get(&self.user_claim).and_then(|v| match v {
            Value::String(s) if !s.is_empty() => Some(Arc::from(s.as_str())),
            Value::Number(n) => Some(Arc::from(n.to_string().as_str())),
            _ => None,
        });
        let forward = self
            .forward_claims
            .iter()
            .filter_map(|(claim, header)| {
                let text = match claims.get(claim)? {
                    Value::String(s) => s.clone(),
                    Value::Null => return None,
                    Value::Array(items) => items
                        .iter()
                        .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                        .collect::<Vec<_>>()
                        .join(","),
                    other => other.to_string(),
                };
                if text.len() > MAX_FORWARDED_VALUE {
                    return None;
                }
                // HeaderValue refuses CR, LF and NUL: a claim cannot inject a header.
                let value = HeaderValue::from_str(&text).ok()?;
                Some((header.clone(), value))
            })
            .collect();
        let text = |name: &str| match claims.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Some(Arc::from(s.as_str())),
            Some(Value::Number(n)) => Some(Arc::from(n.to_string().as_str())),
            _ => None,
        };
        Identity {
            user,
            forward,
            jti: text("jti"),
            subject: text("sub"),
            issued_at: claims
                .get("iat")
                .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64))),
        }
    }
}

fn validation(jwt: &Jwt, alg: JwtAlgorithm) -> Validation {
    let mut v = Validation::new(algorithm(alg));
    // Times are checked in `check_times` against the caller's clock.
    v.validate_exp = false;
    v.validate_nbf = false;
    v.leeway = jwt.leeway.as_secs();
    let mut required = vec!["exp"];
    if let Some(issuer) = &jwt.issuer {
        v.set_issuer(&[issuer]);
        required.push("iss");
    }
    if jwt.audience.is_empty() {
        v.validate_aud = false;
    } else {
        v.set_audience(&jwt.audience);
        required.push("aud");
    }
    v.set_required_spec_claims(&required);
    v
}

fn algorithm(alg: JwtAlgorithm) -> Algorithm {
    match alg {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::HS384 => Algorithm::HS384,
        JwtAlgorithm::HS512 => Algorithm::HS512,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::RS384 => Algorithm::RS384,
        JwtAlgorithm::RS512 => Algorithm::RS512,
        JwtAlgorithm::PS256 => Algorithm::PS256,
        JwtAlgorithm::PS384 => Algorithm::PS384,
        JwtAlgorithm::PS512 => Algorithm::PS512,
        JwtAlgorithm::ES256 => Algorithm::ES256,
        JwtAlgorithm::ES384 => Algorithm::ES384,
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

fn map_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidIssuer => AuthError::InvalidClaims("the token's issuer is not accepted"),
        ErrorKind::InvalidAudience => {
            AuthError::InvalidClaims("the token's audience is not accepted")
        }
        ErrorKind::MissingRequiredClaim(_) => {
            AuthError::InvalidClaims("the token lacks a required claim")
        }
        ErrorKind::InvalidClaimFormat(_) => AuthError::InvalidClaims("a claim has the wrong type"),
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::InvalidClaims("the token is not valid yet"),
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => AuthError::Malformed("the token cannot be decoded"),
        ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm => AuthError::UnsupportedAlg,
        // A signature that does not verify, or a key that cannot verify this token (an EC
        // key of another curve): either way this key does not vouch for it.
        _ => AuthError::InvalidSignature,
    }
}

fn millis(t: SystemTime) -> u64 {
    millis_of(t.duration_since(UNIX_EPOCH).unwrap_or_default())
}

fn millis_of(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

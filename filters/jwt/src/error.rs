//! Why a token was refused, and why keys could not be loaded.

use std::path::PathBuf;

/// Why a token was refused. [`AuthError::result`] is the `result` label of
/// `portcullis_jwt_validations_total`; the `Display` text is the RFC 6750
/// `error_description`, so it never echoes attacker-controlled bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Malformed(&'static str),
    #[error("the token's algorithm is not accepted")]
    UnsupportedAlg,
    #[error("the token's signature is invalid")]
    InvalidSignature,
    #[error("the token has expired")]
    Expired,
    #[error("{0}")]
    InvalidClaims(&'static str),
    /// The token names a `kid` that no loaded key has. The gateway may refresh the JWKS once
    /// and verify again; after that it is an invalid signature.
    #[error("no key matches the token's kid")]
    UnknownKid,
    /// A JWKS is configured but no key was ever loaded: no token can be judged (503, not 401).
    #[error("no verification key has been loaded yet")]
    NoKeys,
    /// A valid token that a revocation withdrew (by `jti`, or its `sub` before `iat`).
    #[error("the token has been revoked")]
    Revoked,
}

impl AuthError {
    /// The `result` label of `portcullis_jwt_validations_total`.
    pub fn result(&self) -> &'static str {
        match self {
            AuthError::Malformed(_) => "malformed",
            AuthError::UnsupportedAlg => "unsupported_alg",
            AuthError::InvalidSignature | AuthError::UnknownKid | AuthError::NoKeys => {
                "invalid_signature"
            }
            AuthError::Expired => "expired",
            AuthError::InvalidClaims(_) => "invalid_claims",
            AuthError::Revoked => "revoked",
        }
    }

    /// Whether the answer depends on the key set rather than on the token alone, so it must
    /// not be remembered in the failed-token cache.
    pub(crate) fn depends_on_keys(&self) -> bool {
        matches!(self, AuthError::UnknownKid | AuthError::NoKeys)
    }
}

/// Keys that could not be loaded: at start or reload (refused with the config key) or from a
/// JWKS document (the previous keys keep serving).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Pem(String),
    #[error("JWKS: {0}")]
    Jwks(String),
}

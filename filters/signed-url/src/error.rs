//! Why a signed URL was refused, why one could not be minted, and why keys were refused.
//!
//! No message or `Debug` output holds a signature, a key or any other request byte: they go
//! to logs and metrics.

/// Why [`crate::SignedUrls::verify`] refused a request (the gateway answers 403
/// `forbidden`). [`SignedUrlError::reason`] is the short label for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignedUrlError {
    /// The signature is genuine and `exp` has passed.
    #[error("the signed URL has expired")]
    Expired,
    /// The signature is genuine and `exp` lies further ahead than `max_ttl`: minted with a
    /// longer lifetime than the route allows now (or by a clock far ahead).
    #[error("the signed URL expires further ahead than the route allows")]
    TooFar,
    /// No key vouches for this path, `exp` and user: tampered, another path, a removed key.
    #[error("the URL signature does not match")]
    BadSignature,
    /// The parameters cannot be read: one of `exp`/`sig` alone, a parameter twice, `exp` not
    /// a plain decimal, `sig` not 43 base64url characters, an unusable `user`.
    #[error("{0}")]
    Malformed(&'static str),
}

impl SignedUrlError {
    /// `expired`, `too_far`, `bad_signature` or `malformed`.
    pub fn reason(&self) -> &'static str {
        match self {
            SignedUrlError::Expired => "expired",
            SignedUrlError::TooFar => "too_far",
            SignedUrlError::BadSignature => "bad_signature",
            SignedUrlError::Malformed(_) => "malformed",
        }
    }
}

/// Why [`crate::SignedUrls::sign`] minted nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The path must be the gateway's normalised path: it starts with `/` and holds no
    /// control character (the signed string separates its fields with `\n`).
    #[error("the path must start with `/` and hold no control characters")]
    Path,
    /// A user id is 1 to 256 bytes without control characters. An empty one is refused so
    /// that "no user" and "the user with the empty id" can never share a signature.
    #[error("the user id must be 1 to 256 bytes without control characters")]
    User,
}

/// Why [`crate::SignedUrls::new`] refused its keys (the config loader checks the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("at least one key is needed")]
    NoKeys,
    #[error("at most {max} keys are accepted (each is tried on a mismatch)")]
    TooMany { max: usize },
    /// A short HMAC key can be guessed offline from one signed URL.
    #[error("key {index} has {len} bytes; at least {min} are needed")]
    TooShort {
        index: usize,
        len: usize,
        min: usize,
    },
}

//! `[jwt]`: token verification, its sources, and the key material it holds.

use std::path::PathBuf;
use std::time::Duration;

use http::HeaderName;

#[derive(Debug, Clone, PartialEq)]
pub struct Jwt {
    /// The allow-list; never contains `none`.
    pub algorithms: Vec<JwtAlgorithm>,
    pub secret: Option<Vec<u8>>,
    pub public_key_file: Option<PathBuf>,
    pub jwks_url: Option<String>,
    pub jwks_refresh: Duration,
    /// Shortest time between two refreshes triggered by unknown `kid`s.
    pub jwks_cooldown: Duration,
    pub jwks_timeout: Duration,
    pub issuer: Option<String>,
    pub audience: Vec<String>,
    pub leeway: Duration,
    pub cache_capacity: usize,
    pub cache_ttl: Duration,
    /// How long a failed verification is remembered.
    pub negative_cache_ttl: Duration,
    pub negative_cache_capacity: usize,
    pub user_claim: String,
    /// claim name -> upstream request header.
    pub forward_claims: Vec<(String, HeaderName)>,
    /// Where tokens are looked for, in order; never empty, no duplicates. Default `[Header]`.
    pub sources: Vec<TokenSource>,
    /// `false`: the credential that was verified (the `Authorization` header or the token
    /// cookie) is removed from the upstream request. Default `true`.
    pub forward_credentials: bool,
    /// The longest a token may live (`exp` minus `iat`, or minus now without `iat`); longer
    /// ones are refused. Also how long a revocation is kept when it names no `expires`.
    pub max_token_lifetime: Option<Duration>,
    /// Most revocations held at once (each replica holds all of them in memory).
    pub max_revocations: usize,
}

/// Where a token may come from (`[jwt] sources`, a route's `auth_sources`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TokenSource {
    /// `Authorization: Bearer` (RFC 6750 section 2.1); written `"header"`.
    Header,
    /// The cookie of this name, for browser sessions; written `"cookie:NAME"`. The name is
    /// an RFC 6265 `cookie-name` (an RFC 9110 token), compared case-sensitively.
    Cookie(String),
}

impl std::fmt::Display for TokenSource {
    /// As written in the file: `header` or `cookie:NAME`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Header => f.write_str("header"),
            TokenSource::Cookie(name) => write!(f, "cookie:{name}"),
        }
    }
}

/// Key material read from the file (usually through `${ENV}`). `Debug` never shows it, so
/// a logged or printed configuration leaks no key; `==` compares the bytes, so a reload can
/// tell that a key changed (compare with `==`, not through `Debug`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }

    /// The key bytes, for building the key; never for printing.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Secret {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwtAlgorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

/// Which kind of key an algorithm needs. A token is only checked against keys of its own
/// family, so an HS256 token can never be "verified" with an RSA public key as HMAC secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyFamily {
    Hmac,
    Rsa,
    Ec,
    Ed,
}

impl JwtAlgorithm {
    pub const ALL: [JwtAlgorithm; 12] = [
        Self::HS256,
        Self::HS384,
        Self::HS512,
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::ES256,
        Self::ES384,
        Self::EdDSA,
    ];

    /// The exact JOSE name (RFC 7518 section 3.1); matching is case-sensitive.
    pub fn name(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::HS384 => "HS384",
            Self::HS512 => "HS512",
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::EdDSA => "EdDSA",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    pub fn family(self) -> KeyFamily {
        match self {
            Self::HS256 | Self::HS384 | Self::HS512 => KeyFamily::Hmac,
            Self::RS256 | Self::RS384 | Self::RS512 | Self::PS256 | Self::PS384 | Self::PS512 => {
                KeyFamily::Rsa
            }
            Self::ES256 | Self::ES384 => KeyFamily::Ec,
            Self::EdDSA => KeyFamily::Ed,
        }
    }
}

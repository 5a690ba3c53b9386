//! JWT verification for the gateway's request phase.
//!
//! | module | does |
//! |---|---|
//! | [`token`] | finds the bearer token and reads its header, refusing what must never be parsed further |
//! | [`cookie`] | finds the token cookie of a browser session, and takes it out of `Cookie` for the upstream |
//! | [`keys`] | the verification keys: the configured secret or PEM file, and JWKS documents |
//! | [`verify`] | [`Verifier`]: signature, claims, identity and the verified-token cache |
//! | [`revocation`] | [`Revocations`]: tokens withdrawn by `jti`, subjects logged out by `sub` and `issued_before` |
//!
//! Everything here is synchronous and does no I/O apart from reading `public_key_file` once:
//! the gateway fetches JWKS documents and hands them to [`Verifier::install_jwks`]. Every
//! time-dependent call takes `now`, so tests move the clock instead of sleeping.
//!
//! What jsonwebtoken leaves to its caller is done here: the 8 KiB size limit before parsing,
//! `none` in any spelling, an unknown `crit`, `nbf`, a future `iat`, and the key family check
//! (an HS256 token is never checked against an RSA public key used as an HMAC secret).

mod cache;
pub mod cookie;
mod error;
mod fetch_log;
pub mod keys;
pub mod revocation;
pub mod source;
pub mod token;
pub mod verify;

pub use cookie::{cookie_token, strip_cookie, without_cookie};
pub use error::{AuthError, KeyError};
pub use fetch_log::{FetchLog, Fetches};
pub use keys::Key;
pub use revocation::{Revocation, RevocationError, RevocationSet, Revocations, Revoked};
pub use source::{credential, Credential, SourceKind};
pub use token::{bearer, MAX_TOKEN_BYTES};
pub use verify::{Identity, JwksChange, Outcome, Verifier};

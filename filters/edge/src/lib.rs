//! Edge policies: security response headers (and, as they land, CORS, HTTPS redirects and
//! suspicious-request detection). Plain Rust, no pingora: each policy returns header
//! operations or a verdict, and the gateway applies them.

pub mod ban;
pub mod cors;
pub mod https;
pub mod security_headers;
pub mod suspicious;

pub use ban::BanList;
pub use cors::{CorsPolicy, Preflight};
pub use security_headers::SecurityHeaders;
pub use suspicious::{Detector, Finding};

use http::{HeaderName, HeaderValue};

/// One change to a response's headers.
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderOp {
    /// Replace every value of the header with this one.
    Set(HeaderName, HeaderValue),
    /// Add a value, keeping existing ones (e.g. `Vary`).
    Append(HeaderName, HeaderValue),
    Remove(HeaderName),
}

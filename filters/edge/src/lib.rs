//! Edge policies: security response headers, CORS, the HTTPS redirect and the cross-site rule
//! for cookie sessions. (Suspicious-request detection and bans are `portcullis-suspicious`.)
//!
//! Plain Rust, no pingora: a policy looks at request parts and returns header operations or a
//! verdict; the gateway applies them in one place, so every response (proxied or generated)
//! gets the same treatment.
//!
//! | module | decides |
//! |---|---|
//! | [`security_headers`] | the Helmet-grade response headers, per scheme |
//! | [`cors`] | preflight answers and the CORS headers of actual responses |
//! | [`cross_site`] | whether a cookie-authenticated request may have been started by another site |
//! | [`https`] | where a plain-HTTP request is redirected, if anywhere |

pub mod cors;
pub mod cross_site;
pub mod https;
pub mod security_headers;

pub use cors::{CorsPolicy, Preflight};
pub use cross_site::cross_site_refused;
pub use https::{Redirect, RedirectError};
pub use security_headers::SecurityHeaders;

use http::{HeaderName, HeaderValue};

/// One change to a response's header section, applied by the gateway in list order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderOp {
    /// Replace every value of the header with this one (an upstream value cannot survive).
    Set(HeaderName, HeaderValue),
    /// Add a value and keep the existing ones (list headers such as `Vary`, RFC 9110
    /// section 5.3).
    Append(HeaderName, HeaderValue),
    /// Drop every value of the header.
    Remove(HeaderName),
}

//! Routing and forwarding: path normalisation, route selection, the client IP by the
//! trusted-proxy rule, request ids, hop-by-hop headers and the client headers that must not
//! reach the upstream.

pub mod client_headers;
pub mod client_ip;
pub mod forwarding;
pub mod path;
pub mod request_id;
pub mod router;

pub use client_headers::ClientHeaders;
pub use client_ip::TrustedProxies;
pub use path::{normalize, NormalPath, PathError};
pub use router::{replace_prefix, RouteMatch, Router};

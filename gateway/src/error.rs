//! Every reason the gateway answers a request itself, typed. `respond.rs` turns each into a
//! response in one place, so all of them get the same JSON body, request id, security and
//! rate-limit headers, metrics and log line.

use http::{HeaderValue, Method};

/// What a 405 for a method the gateway never proxies (`CONNECT`, `TRACE`) lists as allowed.
pub const PROXIED_METHODS: &[Method] = &[
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("{0}")]
    BadRequest(String),
    #[error("{message}")]
    Unauthorized {
        challenge: HeaderValue,
        message: String,
        /// The validation result (`missing`, `expired`, ...), for the access log.
        reason: &'static str,
    },
    #[error("{message}")]
    Forbidden {
        message: String,
        reason: &'static str,
    },
    #[error("no route matches this request")]
    NoRoute,
    #[error("method {method} is not allowed on this route")]
    MethodNotAllowed { method: Method, allow: Vec<Method> },
    #[error("rate limit exceeded, retry later")]
    RateLimited,
    #[error("request header section too large")]
    HeadersTooLarge,
    #[error("the request header section did not arrive in time")]
    HeaderTimeout,
    #[error("the upstream could not be reached")]
    BadGateway,
    #[error("{message}")]
    UpstreamUnavailable {
        retry_after: Option<u64>,
        message: String,
    },
    #[error("the upstream did not answer in time")]
    UpstreamTimeout,
}

impl Rejection {
    pub fn status(&self) -> u16 {
        match self {
            Rejection::BadRequest(_) => 400,
            Rejection::Unauthorized { .. } => 401,
            Rejection::Forbidden { .. } => 403,
            Rejection::NoRoute => 404,
            Rejection::MethodNotAllowed { .. } => 405,
            Rejection::RateLimited => 429,
            Rejection::HeadersTooLarge => 431,
            Rejection::HeaderTimeout => 408,
            Rejection::BadGateway => 502,
            Rejection::UpstreamUnavailable { .. } => 503,
            Rejection::UpstreamTimeout => 504,
        }
    }

    /// The contract's error code, also the access log's `reason`.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::BadRequest(_) => "bad_request",
            Rejection::Unauthorized { .. } => "unauthorized",
            Rejection::Forbidden { .. } => "forbidden",
            Rejection::NoRoute => "no_route",
            Rejection::MethodNotAllowed { .. } => "method_not_allowed",
            Rejection::RateLimited => "rate_limited",
            Rejection::HeadersTooLarge => "request_header_fields_too_large",
            Rejection::HeaderTimeout => "request_timeout",
            Rejection::BadGateway => "bad_gateway",
            Rejection::UpstreamUnavailable { .. } => "upstream_unavailable",
            Rejection::UpstreamTimeout => "upstream_timeout",
        }
    }

    /// A more specific log reason where one exists (which rule blocked, why 401).
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Forbidden { reason, .. } | Rejection::Unauthorized { reason, .. } => reason,
            other => other.code(),
        }
    }
}

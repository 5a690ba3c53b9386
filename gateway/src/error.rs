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

/// Which bound stopped a request or a connection: the `limit` label of
/// `portcullis_request_limits_total` and the access log's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    BodySize,
    BodyTimeout,
    BodyRate,
    ConnectionsPerClient,
    InFlightPerClient,
    Connections,
    BodyBufferMemory,
    WebsocketIdle,
    WebsocketDuration,
}

impl Limit {
    pub const ALL: [Limit; 9] = [
        Limit::BodySize,
        Limit::BodyTimeout,
        Limit::BodyRate,
        Limit::ConnectionsPerClient,
        Limit::InFlightPerClient,
        Limit::Connections,
        Limit::BodyBufferMemory,
        Limit::WebsocketIdle,
        Limit::WebsocketDuration,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Limit::BodySize => "body_size",
            Limit::BodyTimeout => "body_timeout",
            Limit::BodyRate => "body_rate",
            Limit::ConnectionsPerClient => "connections_per_client",
            Limit::InFlightPerClient => "in_flight_per_client",
            Limit::Connections => "connections",
            Limit::BodyBufferMemory => "body_buffer_memory",
            Limit::WebsocketIdle => "websocket_idle",
            Limit::WebsocketDuration => "websocket_duration",
        }
    }
}

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
    #[error("the request body is larger than this route accepts ({limit} bytes)")]
    PayloadTooLarge { limit: usize },
    /// `BodyTimeout` (a stall) or `BodyRate` (a trickle).
    #[error("the request body did not arrive in time")]
    BodyTimeout(Limit),
    /// `Connections` or `BodyBufferMemory`: the gateway's own capacity.
    #[error("the gateway is at capacity, retry later")]
    Overloaded(Limit),
    /// `ConnectionsPerClient` or `InFlightPerClient`.
    #[error("too many connections or requests from this client, retry later")]
    ClientLimit(Limit),
    #[error("a request body of this size on this route must declare its Content-Length")]
    LengthRequired,
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
            Rejection::PayloadTooLarge { .. } => 413,
            Rejection::BodyTimeout(_) => 408,
            Rejection::Overloaded(_) => 503,
            Rejection::ClientLimit(_) => 429,
            Rejection::LengthRequired => 411,
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
            Rejection::PayloadTooLarge { .. } => "payload_too_large",
            Rejection::BodyTimeout(_) => "request_timeout",
            Rejection::Overloaded(_) => "overloaded",
            Rejection::ClientLimit(_) => "rate_limited",
            Rejection::LengthRequired => "length_required",
        }
    }

    /// A more specific log reason where one exists (which rule blocked, why 401).
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Forbidden { reason, .. } | Rejection::Unauthorized { reason, .. } => reason,
            other => match other.limit() {
                Some(limit) => limit.label(),
                None => other.code(),
            },
        }
    }

    /// The bound behind this answer (`portcullis_request_limits_total`'s `limit`).
    pub fn limit(&self) -> Option<Limit> {
        match self {
            Rejection::PayloadTooLarge { .. } => Some(Limit::BodySize),
            Rejection::BodyTimeout(l) | Rejection::Overloaded(l) | Rejection::ClientLimit(l) => {
                Some(*l)
            }
            _ => None,
        }
    }

    /// Seconds for `Retry-After`: capacity refusals pass quickly.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Rejection::Overloaded(_) | Rejection::ClientLimit(_) => Some(1),
            _ => None,
        }
    }

    /// Whether the connection closes after this answer: a body left unread (or cut), or a
    /// connection that should not have been admitted.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            Rejection::PayloadTooLarge { .. }
                | Rejection::BodyTimeout(_)
                | Rejection::LengthRequired
                | Rejection::Overloaded(_)
                | Rejection::ClientLimit(Limit::ConnectionsPerClient)
        )
    }
}

//! What a client may send after its header section, and how many connections and requests it
//! may hold: `[server]`'s bounds and each route's. Keys, defaults and why: docs/configuration.md
//! ("Bounded requests").

use std::time::Duration;

pub use crate::units::ByteRate;

/// `[server]`'s bounds on request bodies, connections and requests in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestBounds {
    /// The default body limit of every route (a route's `max_request_body` overrides it).
    pub max_request_body: usize,
    /// Longest wait for the next part of a request body (RFC 9110 section 15.5.9, 408).
    pub request_body_timeout: Duration,
    /// Once a body has taken longer than `request_body_timeout`, its average rate since the
    /// header section must stay at least this (slow-POST defence); zero switches it off.
    pub min_request_body_rate: ByteRate,
    /// Client connections held at once, all listeners together. `None`: derived by the
    /// gateway from the process's descriptor limit (`RLIMIT_NOFILE`).
    pub max_connections: Option<usize>,
    /// Client connections one client bucket may hold (trusted proxies exempt).
    pub max_connections_per_client: usize,
    /// Requests (HTTP/1 requests and h2 streams) one identified client may have in flight.
    pub max_requests_in_flight_per_client: usize,
    /// All buffered request bodies together (`buffer_request_body` routes).
    pub body_buffer_memory: usize,
    /// IPv6 clients are counted per prefix of this length (48..=128).
    pub ipv6_prefix: u8,
}

impl RequestBounds {
    pub const DEFAULT_MAX_REQUEST_BODY: usize = 1 << 20;
    pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_MIN_BODY_RATE: ByteRate = ByteRate {
        bytes_per_sec: 1024,
    };
    /// 50 browsers behind one NAT, 6 HTTP/1.1 connections each, is 300; a page spread over
    /// several host names, or a larger office, more. One address still holds at most a tenth of
    /// the default 10,000 connections.
    pub const DEFAULT_PER_CLIENT: usize = 1024;
    pub const DEFAULT_IN_FLIGHT_PER_CLIENT: usize = 1024;
    pub const DEFAULT_BODY_BUFFER_MEMORY: usize = 128 << 20;
}

impl Default for RequestBounds {
    fn default() -> Self {
        RequestBounds {
            max_request_body: Self::DEFAULT_MAX_REQUEST_BODY,
            request_body_timeout: Self::DEFAULT_BODY_TIMEOUT,
            min_request_body_rate: Self::DEFAULT_MIN_BODY_RATE,
            max_connections: None,
            max_connections_per_client: Self::DEFAULT_PER_CLIENT,
            max_requests_in_flight_per_client: Self::DEFAULT_IN_FLIGHT_PER_CLIENT,
            body_buffer_memory: Self::DEFAULT_BODY_BUFFER_MEMORY,
            ipv6_prefix: super::DEFAULT_IPV6_PREFIX,
        }
    }
}

/// A route's bounds on request bodies and WebSocket tunnels.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteBounds {
    /// `None`: the server's `max_request_body`.
    pub max_request_body: Option<usize>,
    /// The whole body is read (up to the limit) before an upstream peer is chosen.
    pub buffer_request_body: bool,
    /// A WebSocket tunnel with no byte either way for this long is closed.
    pub websocket_idle_timeout: Duration,
    /// Any WebSocket tunnel is closed after this long.
    pub websocket_max_duration: Duration,
}

impl RouteBounds {
    pub const DEFAULT_WEBSOCKET_IDLE: Duration = Duration::from_secs(300);
    pub const DEFAULT_WEBSOCKET_MAX: Duration = Duration::from_secs(86_400);

    /// The body limit on this route, given the server's.
    pub fn body_limit(&self, server: &RequestBounds) -> usize {
        self.max_request_body.unwrap_or(server.max_request_body)
    }
}

impl Default for RouteBounds {
    fn default() -> Self {
        RouteBounds {
            max_request_body: None,
            buffer_request_body: false,
            websocket_idle_timeout: Self::DEFAULT_WEBSOCKET_IDLE,
            websocket_max_duration: Self::DEFAULT_WEBSOCKET_MAX,
        }
    }
}

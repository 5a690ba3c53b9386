//! `[server]`'s and `[[routes]]`' bounds on what a client sends after its header section:
//! body size and pace, request buffering, connections, requests in flight, WebSocket tunnels.

use crate::model::{RequestBounds, RouteBounds, DEFAULT_IPV6_PREFIX};
use crate::reader::{Diag, Section};

/// Largest `max_connections` accepted (far beyond any descriptor limit a host grants).
const MAX_CONNECTIONS: i64 = 10_000_000;

/// Reads the bounds keys of `[server]`.
pub(crate) fn server_bounds(s: &mut Section, d: &mut Diag) -> Option<RequestBounds> {
    let default = RequestBounds::default();
    let max_body = s
        .get("max_request_body")
        .map_or(Some(default.max_request_body), |f| f.size(d));
    let body_timeout = s
        .get("request_body_timeout")
        .map_or(Some(default.request_body_timeout), |f| {
            f.positive_duration(d)
        });
    let min_rate = s
        .get("min_request_body_rate")
        .map_or(Some(default.min_request_body_rate), |f| f.byte_rate(d));
    let max_connections_field = s.get("max_connections");
    let max_connections = match &max_connections_field {
        None => Some(None),
        Some(f) => f.int(d, 1, MAX_CONNECTIONS).map(|n| Some(n as usize)),
    };
    let per_client_field = s.get("max_connections_per_client");
    let per_client = per_client_field
        .as_ref()
        .map_or(Some(default.max_connections_per_client as i64), |f| {
            f.int(d, 1, MAX_CONNECTIONS)
        })
        .map(|n| n as usize);
    let in_flight = s
        .get("max_requests_in_flight_per_client")
        .map_or(
            Some(default.max_requests_in_flight_per_client as i64),
            |f| f.int(d, 1, MAX_CONNECTIONS),
        )
        .map(|n| n as usize);
    let buffer_memory = s
        .get("body_buffer_memory")
        .map_or(Some(default.body_buffer_memory), |f| {
            let size = f.size(d)?;
            if size < 64 * 1024 {
                f.error(d, "must be at least 64KiB");
                return None;
            }
            Some(size)
        });
    let ipv6_prefix = s
        .get("ipv6_prefix")
        .map_or(Some(i64::from(DEFAULT_IPV6_PREFIX)), |f| f.int(d, 48, 128))
        .map(|n| n as u8);
    if let (Some(Some(total)), Some(per_client), Some(f)) =
        (max_connections, per_client, &per_client_field)
    {
        if per_client > total {
            f.error(
                d,
                format!("{per_client} is more than max_connections ({total}): one client could take every connection"),
            );
            return None;
        }
    }
    Some(RequestBounds {
        max_request_body: max_body?,
        request_body_timeout: body_timeout?,
        min_request_body_rate: min_rate?,
        max_connections: max_connections?,
        max_connections_per_client: per_client?,
        max_requests_in_flight_per_client: in_flight?,
        body_buffer_memory: buffer_memory?,
        ipv6_prefix: ipv6_prefix?,
    })
}

/// Reads a route's bounds keys. `body_buffer_memory` is the server's (when it was valid): a
/// buffered route whose limit exceeds it could never be served.
pub(crate) fn route_bounds(
    s: &mut Section,
    body_buffer_memory: Option<usize>,
    d: &mut Diag,
) -> Option<RouteBounds> {
    let default = RouteBounds::default();
    let max_body_field = s.get("max_request_body");
    let max_body = match &max_body_field {
        None => Some(None),
        Some(f) => f.size(d).map(Some),
    };
    let buffer = s
        .get("buffer_request_body")
        .map_or(Some(false), |f| f.bool(d));
    let idle = s
        .get("websocket_idle_timeout")
        .map_or(Some(default.websocket_idle_timeout), |f| {
            f.positive_duration(d)
        });
    let max_duration = s
        .get("websocket_max_duration")
        .map_or(Some(default.websocket_max_duration), |f| {
            f.positive_duration(d)
        });
    if let (Some(true), Some(Some(limit)), Some(memory), Some(f)) =
        (buffer, max_body, body_buffer_memory, &max_body_field)
    {
        if limit > memory {
            f.error(
                d,
                format!("a buffered route's limit must fit in server.body_buffer_memory ({memory} bytes)"),
            );
            return None;
        }
    }
    Some(RouteBounds {
        max_request_body: max_body?,
        buffer_request_body: buffer?,
        websocket_idle_timeout: idle?,
        websocket_max_duration: max_duration?,
    })
}

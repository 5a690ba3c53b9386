//! Bounds on what a client may send after its header section, and on how much of the
//! process one client may hold: body size and pace, request buffering, connections, requests
//! in flight and WebSocket tunnels (docs/reference.md, "Bounded requests").
//!
//! | bound | where it holds | answer |
//! |---|---|---|
//! | `max_request_body` | request phase (`Content-Length`, before `100 Continue`), each body chunk | 413 |
//! | `request_body_timeout`, `min_request_body_rate` | each body read (HTTP/1 read timeout; the buffered read; each chunk's pace) | 408 |
//! | `buffer_request_body`, `body_buffer_memory` | request phase: the whole body before a peer is chosen | 503 past the memory |
//! | `max_connections` | the accept (intake), all listeners | 503, closed |
//! | `max_connections_per_client` | the accept (intake), per client bucket; trusted proxies exempt | 429, closed |
//! | `max_requests_in_flight_per_client` | request phase, per identified client, h2 streams too | 429 |
//! | `websocket_idle_timeout`, `websocket_max_duration` | the intake, around an upgraded tunnel | tunnel closed |
//!
//! Every table here is bounded: the per-client tables hold one entry per client with at least
//! one connection or request held, so they never outgrow `max_connections` (resp. the
//! requests in flight), and the buffered bodies never outgrow `body_buffer_memory`.

pub mod body;
pub mod buffer;
pub mod clients;
pub mod connections;
pub mod tunnel;

pub use body::Bounded;
pub use buffer::BufferBudget;
pub use clients::{ClientCounts, ClientPermit};
pub use connections::{ConnectionGate, ConnectionPermit};

use std::sync::Arc;

use pingora::proxy::Session;

use crate::ctx::RequestCtx;
use crate::error::Rejection;
use crate::state::State;

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

/// The process-wide side of the bounds: what is held across requests and connections. The
/// limits themselves are read from the current snapshot, so a reload changes them for new
/// connections and requests.
pub struct Bounds {
    pub connections: Arc<ConnectionGate>,
    pub in_flight: Arc<ClientCounts>,
    pub buffers: BufferBudget,
}

impl Bounds {
    pub fn new(max_connections: usize) -> Self {
        Bounds {
            connections: ConnectionGate::new(max_connections),
            // One entry per client with a request in flight; the bound is a backstop.
            in_flight: ClientCounts::new(clients::MAX_CLIENTS),
            buffers: BufferBudget::default(),
        }
    }
}

/// The request phase's bounds, once the request is routed and admitted by every policy:
/// the identified client's requests in flight (h2 streams included; a trusted proxy's
/// clients each count as themselves), then the body (`body::admit`).
pub async fn admit(
    state: &State,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), Rejection> {
    let server = &ctx.snapshot.config.server.bounds;
    let bucket = portcullis_routing::client_ip::bucket(ctx.client.ip, server.ipv6_prefix);
    match state
        .bounds
        .in_flight
        .try_acquire(bucket, server.max_requests_in_flight_per_client)
    {
        Some(permit) => ctx.bounds.in_flight = Some(permit),
        None => return Err(Rejection::ClientLimit(Limit::InFlightPerClient)),
    }
    let Some(route) = ctx.target.route.clone() else {
        return Ok(());
    };
    let snapshot = ctx.snapshot.clone();
    let server = &snapshot.config.server.bounds;
    body::admit(
        state,
        session,
        route.bounds.body_limit(server),
        &route.bounds,
        ctx.started,
        server,
        &mut ctx.bounds,
    )
    .await
}

/// `fail_to_proxy`: the bound that cut a streamed body (`request_body_filter`), or a stalled
/// HTTP/1 body (the session's read timeout, set to `request_body_timeout` for the body).
pub fn refusal(e: &pingora::Error, ctx: &mut RequestCtx) -> Option<Rejection> {
    if let Some(limit) = ctx.bounds.refused.take() {
        return Some(match limit {
            Limit::BodySize => Rejection::PayloadTooLarge {
                limit: ctx.bounds.meter.as_ref().map_or(0, |m| m.limit()),
            },
            other => Rejection::BodyTimeout(other),
        });
    }
    let stalled = *e.etype() == pingora::ErrorType::ReadTimedout
        && *e.esource() == pingora::ErrorSource::Downstream
        && ctx.bounds.meter.is_some();
    stalled.then_some(Rejection::BodyTimeout(Limit::BodyTimeout))
}

/// `response_filter`: a 101 opens the tunnel its watch guards.
pub fn tunnel_opened(resp: &pingora::http::ResponseHeader, ctx: &RequestCtx) {
    if resp.status != http::StatusCode::SWITCHING_PROTOCOLS {
        return;
    }
    if let (Some(watch), Some(route)) = (&ctx.bounds.tunnel, &ctx.target.route) {
        watch.arm(
            route.bounds.websocket_idle_timeout,
            route.bounds.websocket_max_duration,
            &route.name,
            &ctx.client.request_id,
        );
    }
}

/// A tunnel chunk went either way.
pub fn tunnel_alive(ctx: &RequestCtx) {
    if let Some(watch) = &ctx.bounds.tunnel {
        watch.touch();
    }
}

/// Counts a bound's refusal or cut in `portcullis_request_limits_total`.
pub fn count(state: &crate::state::State, route: &str, limit: Limit) {
    state
        .metrics
        .request_limits
        .with_label_values(&[route, limit.label()])
        .inc();
}

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

/// Which bound stopped a request: with the rejections it names (`error.rs`).
pub use crate::error::Limit;
pub use body::Bounded;
pub use buffer::BufferBudget;
pub use clients::{ClientCounts, ClientPermit};
pub use connections::{ConnectionGate, ConnectionPermit};

use std::sync::Arc;

use crate::error::Rejection;
use crate::metrics::Metrics;

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

/// `fail_to_proxy`: the bound that cut a streamed body (`request_body_filter`), or a stalled
/// HTTP/1 body (the session's read timeout, set to `request_body_timeout` for the body).
pub fn refusal(e: &pingora::Error, bounds: &mut Bounded) -> Option<Rejection> {
    if let Some(limit) = bounds.refused.take() {
        return Some(match limit {
            Limit::BodySize => Rejection::PayloadTooLarge {
                limit: bounds.meter.as_ref().map_or(0, |m| m.limit()),
            },
            other => Rejection::BodyTimeout(other),
        });
    }
    let stalled = *e.etype() == pingora::ErrorType::ReadTimedout
        && *e.esource() == pingora::ErrorSource::Downstream
        && bounds.meter.is_some();
    stalled.then_some(Rejection::BodyTimeout(Limit::BodyTimeout))
}

/// Counts a bound's refusal or cut in `portcullis_request_limits_total`.
pub fn count(metrics: &Metrics, route: &str, limit: Limit) {
    metrics
        .request_limits
        .with_label_values(&[route, limit.label()])
        .inc();
}

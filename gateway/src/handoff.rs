//! What the intake hands to the proxy phases of the request it admitted: the snapshot it
//! judged the head by, and the connection's WebSocket watch. They travel as task-locals
//! because pingora runs the phases (`new_ctx` first) inside the intake's own task; h2 streams
//! run on tasks of their own, find nothing here, and take the current snapshot.
//!
//! Its own module so the intake and the proxy both depend on it, not on each other.

use std::future::Future;
use std::sync::Arc;

use crate::bounds::tunnel::TunnelWatch;
use crate::snapshot::Snapshot;

tokio::task_local! {
    static REQUEST_SNAPSHOT: Arc<Snapshot>;
    static REQUEST_TUNNEL: Arc<TunnelWatch>;
}

/// Runs `served` (one request through pingora) with the snapshot and the tunnel watch handed
/// over.
pub async fn scope<F: Future>(
    snapshot: Arc<Snapshot>,
    tunnel: Arc<TunnelWatch>,
    served: F,
) -> F::Output {
    REQUEST_SNAPSHOT
        .scope(snapshot, REQUEST_TUNNEL.scope(tunnel, served))
        .await
}

/// The snapshot the intake took for the request being served on this task, if any.
pub fn request_snapshot() -> Option<Arc<Snapshot>> {
    REQUEST_SNAPSHOT.try_with(Arc::clone).ok()
}

/// The WebSocket watch of the HTTP/1 connection serving this task's request, if any.
pub fn request_tunnel() -> Option<Arc<TunnelWatch>> {
    REQUEST_TUNNEL.try_with(Arc::clone).ok()
}

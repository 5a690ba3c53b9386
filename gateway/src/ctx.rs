//! Per-request context, shared across the proxy phases.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderName, HeaderValue};
use portcullis_config::Route;

use crate::respond_ops::HeaderOp;
use crate::snapshot::Snapshot;
use crate::state::InFlight;
use crate::upstream::Attempt;

/// Where a request's verified credential came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// `Authorization: Bearer`.
    Header,
    /// A token cookie (`[jwt] sources`).
    Cookie,
    /// A signed URL's `exp`/`sig` (route `signed_urls`).
    SignedUrl,
}

pub struct RequestCtx {
    /// The snapshot this request started on (a reload mid-request changes nothing for it).
    pub snapshot: Arc<Snapshot>,
    pub started: Instant,
    pub request_id: String,
    pub client_ip: IpAddr,
    /// The peer is a trusted proxy (its X-Forwarded-* headers are believed).
    pub peer_trusted: bool,
    /// The request arrived over TLS, directly or per a trusted proxy's X-Forwarded-Proto.
    pub https: bool,
    /// Lower-cased Host without port.
    pub host: Option<String>,
    /// The normalised path (what routing, policies and the log see).
    pub path: String,
    pub route: Option<Arc<Route>>,
    /// Path and query sent upstream (normalised, prefix replaced).
    pub upstream_target: Option<String>,
    pub user: Option<String>,
    /// What authenticated the request, when something did.
    pub credential: Option<CredentialKind>,
    /// Claim headers to send upstream.
    pub forward_headers: Vec<(HeaderName, HeaderValue)>,
    /// Response headers from policies (CORS, rate limits) for this request.
    pub response_ops: Vec<HeaderOp>,
    /// The upstream leg (peer choice, breaker, retries, accounting), written only by itself.
    pub upstream: Attempt,
    pub status: u16,
    pub reason: Option<&'static str>,
    pub bytes_sent: usize,
    /// What the edge cache did for this request.
    pub cache: crate::cache::CacheState,
    _in_flight: InFlight,
}

impl RequestCtx {
    pub fn new(snapshot: Arc<Snapshot>, in_flight: InFlight) -> Self {
        RequestCtx {
            snapshot,
            started: Instant::now(),
            request_id: String::new(),
            client_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            peer_trusted: false,
            https: false,
            host: None,
            path: String::new(),
            route: None,
            upstream_target: None,
            user: None,
            credential: None,
            forward_headers: Vec::new(),
            response_ops: Vec::new(),
            upstream: Attempt::default(),
            status: 0,
            reason: None,
            bytes_sent: 0,
            cache: Default::default(),
            _in_flight: in_flight,
        }
    }

    pub fn route_name(&self) -> &str {
        self.route.as_ref().map_or("none", |r| r.name.as_str())
    }
}

//! Per-request context, grouped by what each phase learns. Each group is written in one place:
//!
//! | group | written by | holds |
//! |---|---|---|
//! | [`Client`] | `identify::identify` | request id, client IP, scheme, authority and host |
//! | [`Target`] | `admission::route` | the normalised path, the route, the upstream target |
//! | [`Identity`] | `admission::authenticate` | the user and what vouched for them |
//! | [`Attempt`] | `upstream::Attempt` itself | peers tried, breaker, retries |
//! | [`Answer`] | the policies (headers), `respond` (generated answers) | response headers, status, log reason |

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderName, HeaderValue};
use portcullis_config::Route;

use crate::respond_ops::HeaderOp;
use crate::snapshot::{RouteHandles, Snapshot};
use crate::state::InFlight;
use crate::upstream::Attempt;

pub struct RequestCtx {
    /// The snapshot this request started on (a reload mid-request changes nothing for it).
    pub snapshot: Arc<Snapshot>,
    pub started: Instant,
    pub client: Client,
    pub target: Target,
    pub identity: Identity,
    /// The upstream leg (peer choice, breaker, retries, accounting), written only by itself.
    pub upstream: Attempt,
    pub answer: Answer,
    /// What the edge cache did for this request.
    pub cache: portcullis_cache::CacheState,
    /// Body meter or buffered body, in-flight permit, tunnel watch (`bounds`).
    pub bounds: crate::bounds::Bounded,
    /// The request's trace context (with `[tracing]`), written by `admission::trace`.
    pub trace: Option<portcullis_trace_context::RequestTrace>,
    /// A sampled request's INTERNAL spans.
    pub spans: Option<Box<crate::trace::SpanLog>>,
    _in_flight: InFlight,
}

/// Who is asking.
pub struct Client {
    pub request_id: String,
    pub ip: IpAddr,
    /// The connection's peer (the client, or the trusted proxy in front of it).
    pub peer: IpAddr,
    /// The peer is a trusted proxy (its X-Forwarded-* headers are believed).
    pub peer_trusted: bool,
    /// The request arrived over TLS, directly or per a trusted proxy's X-Forwarded-Proto.
    pub https: bool,
    /// Lower-cased Host without port.
    pub host: Option<String>,
    /// The one reading of the request's authority (`:authority` over h2, `Host` over
    /// HTTP/1): lower-cased, the scheme's default port left out. Routing sees its host; the
    /// upstream's `Host`, `X-Forwarded-Host` and the cache key are this.
    pub authority: Option<String>,
}

/// Where the request goes, once routed.
#[derive(Default)]
pub struct Target {
    /// The normalised path (what routing, policies and the log see); empty until routed.
    pub path: String,
    pub route: Option<Arc<Route>>,
    /// The route's resolved upstream, policy and verifier handles.
    pub handles: Option<Arc<RouteHandles>>,
    /// Path and query sent upstream (normalised, prefix replaced).
    pub upstream_target: Option<String>,
}

/// Who the request is, once authenticated.
#[derive(Default)]
pub struct Identity {
    pub user: Option<String>,
    /// What authenticated the request, when something did.
    pub credential: Option<CredentialKind>,
    /// Claim headers to send upstream.
    pub forward_headers: Vec<(HeaderName, HeaderValue)>,
}

/// What goes back: the policies' response headers, and for generated answers their status
/// and log reason (a proxied answer's status is the one pingora wrote).
#[derive(Default)]
pub struct Answer {
    /// Response headers from policies (CORS, rate limits, signed URLs) for this request.
    pub policy_headers: Vec<HeaderOp>,
    pub status: u16,
    pub reason: Option<&'static str>,
    pub bytes_sent: usize,
}

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

impl RequestCtx {
    pub fn new(snapshot: Arc<Snapshot>, in_flight: InFlight) -> Self {
        RequestCtx {
            snapshot,
            started: Instant::now(),
            client: Client {
                request_id: String::new(),
                ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                peer: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                peer_trusted: false,
                https: false,
                host: None,
                authority: None,
            },
            target: Target::default(),
            identity: Identity::default(),
            upstream: Attempt::default(),
            answer: Answer::default(),
            cache: Default::default(),
            bounds: Default::default(),
            trace: None,
            spans: None,
            _in_flight: in_flight,
        }
    }

    pub fn route_name(&self) -> &str {
        self.target
            .route
            .as_ref()
            .map_or("none", |r| r.name.as_str())
    }
}

//! OpenTelemetry tracing: W3C trace context in and out, a request's spans, and their export
//! over OTLP/HTTP (protobuf).
//!
//! | piece | job |
//! |---|---|
//! | [`Tracer`] | per snapshot (`[tracing]`): whose context to continue, the sampler, where spans go |
//! | [`SpanLog`] | a sampled request's own INTERNAL spans (JWT verification, JWKS fetch, Redis) |
//! | `upstream::Attempt` | each try's CLIENT span (it already times and ends every try) |
//! | `outcome::spans` | at the end of a sampled request: its spans, handed to the exporter |
//! | [`Exporter`] | process-wide: a bounded queue, batches, gzip, POST with retries, on its own thread |
//!
//! The request path never waits for the collector: it hands a finished request's spans to the
//! queue without blocking ([`Exporter::offer`]), and past the bound they are dropped and
//! counted. An unsampled request costs two random ids and one 55-byte header.

pub mod export;
mod otlp;
pub mod record;
pub mod slow;

use std::sync::Arc;
use std::time::Instant;

use pingora::http::RequestHeader;
use portcullis_config::{TraceTrust, Tracing};
use portcullis_trace_context::{RequestTrace, Sampler, TrustIncoming};

pub use export::Exporter;
pub use record::SpanLog;

/// The incoming trace-context headers (W3C Trace Context, level 1).
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// `[tracing]` of one snapshot.
pub struct Tracer {
    trust: TrustIncoming,
    sampler: Sampler,
    /// Where this snapshot's spans go. Kept across a reload that does not change it; a
    /// request's spans go where its own snapshot said, even when a reload changed it since.
    pub destination: Arc<Destination>,
    pub config: Tracing,
}

/// An OTLP endpoint and the resource its spans are reported under.
pub struct Destination {
    pub config: Tracing,
    /// The encoded resource (`service.name`, `service.version`), built once.
    pub resource: Vec<u8>,
}

impl Tracer {
    pub fn new(config: &Tracing, previous: Option<&Tracer>) -> Tracer {
        let destination = match previous.filter(|p| same_destination(&p.config, config)) {
            Some(p) => p.destination.clone(),
            None => Arc::new(Destination {
                resource: otlp::resource(&config.service_name),
                config: config.clone(),
            }),
        };
        Tracer {
            trust: match config.trust_incoming {
                TraceTrust::All => TrustIncoming::All,
                TraceTrust::TrustedProxies => TrustIncoming::TrustedProxies,
                TraceTrust::None => TrustIncoming::None,
            },
            sampler: Sampler::new(config.sample_ratio),
            destination,
            config: config.clone(),
        }
    }

    /// The request's trace: the incoming context continued when its sender is trusted,
    /// otherwise a new trace sampled by ratio.
    pub fn start(&self, req: &RequestHeader, peer_trusted: bool) -> RequestTrace {
        let trusted = match self.trust {
            TrustIncoming::All => true,
            TrustIncoming::TrustedProxies => peer_trusted,
            TrustIncoming::None => false,
        };
        if !trusted {
            // An untrusted sender's headers are not even looked up.
            let none = std::iter::empty();
            return RequestTrace::start(self.trust, false, none.clone(), none, &self.sampler);
        }
        let values = |name| req.headers.get_all(name).iter().map(|v| v.as_bytes());
        RequestTrace::start(
            self.trust,
            peer_trusted,
            values(TRACEPARENT),
            values(TRACESTATE),
            &self.sampler,
        )
    }
}

fn same_destination(a: &Tracing, b: &Tracing) -> bool {
    a.otlp_endpoint == b.otlp_endpoint
        && a.service_name == b.service_name
        && a.headers == b.headers
        && a.export_timeout == b.export_timeout
        && a.batch_delay == b.batch_delay
}

/// Instants to Unix nanoseconds, against one reading of both clocks.
pub(crate) struct Clock {
    wall_ns: u64,
    now: Instant,
}

impl Clock {
    pub(crate) fn now() -> Clock {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Clock {
            wall_ns: u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX),
            now: Instant::now(),
        }
    }

    pub(crate) fn unix_ns(&self, at: Instant) -> u64 {
        let ago = self.now.saturating_duration_since(at).as_nanos();
        self.wall_ns
            .saturating_sub(u64::try_from(ago).unwrap_or(u64::MAX))
    }
}

// === [tracing] ===

use std::time::Duration;

use http::{HeaderName, HeaderValue};

/// `[tracing]`: OpenTelemetry spans exported over OTLP/HTTP (protobuf), W3C trace context
/// propagated upstream. Absent: no spans, no `traceparent` added.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracing {
    pub otlp_endpoint: OtlpEndpoint,
    /// The resource's `service.name`.
    pub service_name: String,
    /// Share of new traces sampled (0..=1) when no trusted parent decided.
    pub sample_ratio: f64,
    pub trust_incoming: TraceTrust,
    /// Most spans waiting for export; past it new spans are dropped and counted.
    pub queue_size: usize,
    /// Longest wait for spans to gather before a batch is sent.
    pub batch_delay: Duration,
    /// Bound on one export POST, connection included.
    pub export_timeout: Duration,
    /// Sent with every export (a collector's credentials); never part of a span.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// A link to a trace in the operator's trace viewer, `{trace_id}` standing for the id
    /// (the status page's trace search).
    pub trace_link: Option<String>,
}

/// `[tracing] trust_incoming`: whose `traceparent`/`tracestate` continue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceTrust {
    All,
    TrustedProxies,
    None,
}

/// `otlp_endpoint`, parsed once: spans go to `{scheme}://{authority}{path}/v1/traces`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpEndpoint {
    pub tls: bool,
    /// Host name or address, without brackets.
    pub host: String,
    pub port: u16,
    /// `host:port` as written (the `Host` header).
    pub authority: String,
    /// The export path: the endpoint's own path (no trailing `/`) plus `/v1/traces`.
    pub path: String,
}

impl OtlpEndpoint {
    /// The URL spans are POSTed to.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority, self.path)
    }
}

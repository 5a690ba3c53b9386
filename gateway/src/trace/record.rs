//! A sampled request's spans: recorded as the request runs (cheap: instants and static
//! names), assembled into [`FinishedTrace`] once it ends, and turned into OTLP messages only
//! on the exporter's thread.
//!
//! Attribute values are chosen, never copied wholesale from the request: the normalised path
//! without its query, the route, the method, status codes, addresses, the request id and the
//! refusal reason. No header value, cookie, token, query string, signature or key is read into
//! a span, so none can leak through one.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use portcullis_trace_context::{SpanId, TraceId};

use super::{Clock, Destination};

/// Most INTERNAL spans one request records (a token, a JWKS fetch, a rate-limit call: a
/// handful); past it further ones are not recorded.
const MAX_INTERNAL_SPANS: usize = 16;

/// A sampled request's INTERNAL spans: where the gateway itself waited.
#[derive(Default)]
pub struct SpanLog {
    spans: Vec<Internal>,
}

struct Internal {
    name: &'static str,
    started: Instant,
    ended: Instant,
    attributes: Vec<(&'static str, Value)>,
    error: bool,
}

impl SpanLog {
    /// Records a finished INTERNAL span that began at `started`.
    pub fn record(
        &mut self,
        name: &'static str,
        started: Instant,
        attributes: Vec<(&'static str, Value)>,
        error: bool,
    ) {
        if self.spans.len() < MAX_INTERNAL_SPANS {
            self.spans.push(Internal {
                name,
                started,
                ended: Instant::now(),
                attributes,
                error,
            });
        }
    }

    /// The recorded spans as children of the request's SERVER span `parent`.
    pub fn into_spans(self, parent: SpanId, clock: &Clock) -> impl Iterator<Item = SpanData> + '_ {
        self.spans.into_iter().map(move |s| SpanData {
            span_id: SpanId::random(),
            parent: Some(parent),
            name: Cow::Borrowed(s.name),
            kind: Kind::Internal,
            start_ns: clock.unix_ns(s.started),
            end_ns: clock.unix_ns(s.ended),
            attributes: s.attributes,
            error: s.error,
        })
    }
}

/// An attribute value.
#[derive(Debug, Clone)]
pub enum Value {
    Str(Cow<'static, str>),
    Int(i64),
}

impl From<&'static str> for Value {
    fn from(s: &'static str) -> Self {
        Value::Str(Cow::Borrowed(s))
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(Cow::Owned(s))
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

/// The span kinds the gateway records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Server,
    Client,
    Internal,
}

/// One finished span, ready for the exporter.
pub struct SpanData {
    pub span_id: SpanId,
    pub parent: Option<SpanId>,
    pub name: Cow<'static, str>,
    pub kind: Kind,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attributes: Vec<(&'static str, Value)>,
    pub error: bool,
}

/// A finished request's spans, on their way to the exporter.
pub struct FinishedTrace {
    pub destination: Arc<Destination>,
    pub trace_id: TraceId,
    pub tracestate: Option<String>,
    pub spans: Vec<SpanData>,
}

/// The method as the conventions name it: the standard ones, else `_OTHER` (a client cannot
/// mint span names).
pub fn semconv_method(method: &http::Method) -> &'static str {
    match crate::metrics::method_label(method) {
        "OTHER" => "_OTHER",
        known => known,
    }
}

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

use pingora::proxy::Session;
use portcullis_trace_context::{RequestTrace, SpanId, TraceId};

use super::slow::SlowTrace;
use super::{Clock, Destination};
use crate::ctx::RequestCtx;
use crate::state::State;

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

/// The end of a sampled request: its SERVER span, a CLIENT span per upstream try and its
/// INTERNAL spans, queued for export. Unsampled and untraced requests return at once.
pub fn finish(
    state: &State,
    session: &Session,
    ctx: &RequestCtx,
    status: u16,
    cache: Option<&'static str>,
    internal: Option<Box<SpanLog>>,
) {
    let Some(trace) = ctx.trace.as_ref().filter(|t| t.sampled) else {
        return;
    };
    let Some(tracer) = ctx.snapshot.tracer.as_ref() else {
        return;
    };
    let clock = Clock::now();
    let end_ns = clock.unix_ns(Instant::now());
    let server = server_span(session, ctx, trace, status, cache, &clock, end_ns);
    let mut spans = Vec::with_capacity(1 + ctx.upstream.tries());
    spans.push(server);
    spans.extend(
        ctx.upstream
            .client_spans(session, trace.span_id, &clock, end_ns),
    );
    if let Some(log) = internal {
        spans.extend(log.spans.into_iter().map(|s| SpanData {
            span_id: SpanId::random(),
            parent: Some(trace.span_id),
            name: Cow::Borrowed(s.name),
            kind: Kind::Internal,
            start_ns: clock.unix_ns(s.started),
            end_ns: clock.unix_ns(s.ended),
            attributes: s.attributes,
            error: s.error,
        }));
    }
    let duration_us = ctx.started.elapsed().as_micros() as u64;
    state.tracing.slow.offer(duration_us, |at_ms| SlowTrace {
        at_ms,
        duration_us,
        route: ctx.route_name().to_string(),
        status,
        trace_id: trace.trace_id,
    });
    state.tracing.offer(FinishedTrace {
        destination: tracer.destination.clone(),
        trace_id: trace.trace_id,
        tracestate: trace.tracestate.clone(),
        spans,
    });
}

/// The SERVER span, with the HTTP semantic conventions' attributes
/// (<https://opentelemetry.io/docs/specs/semconv/http/http-spans/>).
fn server_span(
    session: &Session,
    ctx: &RequestCtx,
    trace: &RequestTrace,
    status: u16,
    cache: Option<&'static str>,
    clock: &Clock,
    end_ns: u64,
) -> SpanData {
    let req = session.req_header();
    let method = semconv_method(&req.method);
    // The normalised path once routed, else the path as sent: never the query.
    let path = if ctx.target.path.is_empty() {
        req.uri.path().to_string()
    } else {
        ctx.target.path.clone()
    };
    let route = ctx.target.route.as_ref();
    let name = match route {
        Some(r) => {
            let mut name = String::with_capacity(method.len() + 1 + r.path_prefix.len());
            name.push_str(method);
            name.push(' ');
            name.push_str(&r.path_prefix);
            Cow::Owned(name)
        }
        None => Cow::Borrowed(method),
    };
    let mut attributes: Vec<(&'static str, Value)> = Vec::with_capacity(12);
    attributes.push(("http.request.method", method.into()));
    attributes.push(("url.path", path.into()));
    attributes.push((
        "url.scheme",
        if ctx.client.https { "https" } else { "http" }.into(),
    ));
    attributes.push(("http.response.status_code", i64::from(status).into()));
    attributes.push(("client.address", ip_text(ctx.client.ip).into()));
    attributes.push(("network.protocol.version", protocol(req.version).into()));
    if let Some(route) = route {
        attributes.push(("http.route", route.path_prefix.clone().into()));
        attributes.push(("portcullis.route", route.name.clone().into()));
    }
    attributes.push((
        "portcullis.request_id",
        ctx.client.request_id.clone().into(),
    ));
    if let Some(reason) = ctx.answer.reason {
        attributes.push(("portcullis.reason", reason.into()));
    }
    if let Some(cache) = cache {
        attributes.push(("portcullis.cache", cache.into()));
    }
    if status >= 500 {
        attributes.push(("error.type", status.to_string().into()));
    }
    SpanData {
        span_id: trace.span_id,
        parent: trace.parent,
        name,
        kind: Kind::Server,
        start_ns: clock.unix_ns(ctx.started),
        end_ns,
        attributes,
        error: status >= 500,
    }
}

/// An address as text: IPv4 digit by digit (`Display` costs a thousand instructions through
/// the formatting machinery, twice per sampled request), IPv6 by `Display`.
pub fn ip_text(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut out = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
            out
        }
        v6 => v6.to_string(),
    }
}

/// The method as the conventions name it: the standard ones, else `_OTHER` (a client cannot
/// mint span names).
pub fn semconv_method(method: &http::Method) -> &'static str {
    match crate::metrics::method_label(method) {
        "OTHER" => "_OTHER",
        known => known,
    }
}

fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    #[test]
    fn addresses_read_as_display_writes_them() {
        for text in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.100.255",
            "203.0.113.7",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(super::ip_text(ip), ip.to_string());
        }
    }
}

//! A finished request's spans: its SERVER span, a CLIENT span per upstream try and the
//! INTERNAL spans it recorded, assembled from what the request context learnt and handed to
//! the exporter (`trace::Exporter`) without waiting.

use std::borrow::Cow;
use std::time::Instant;

use pingora::proxy::Session;
use portcullis_trace_context::RequestTrace;

use crate::ctx::RequestCtx;
use crate::state::State;
use crate::trace::record::{semconv_method, FinishedTrace, Kind, SpanData, SpanLog, Value};
use crate::trace::slow::SlowTrace;
use crate::trace::Clock;

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
        spans.extend(log.into_spans(trace.span_id, &clock));
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
    attributes.push((
        "client.address",
        portcullis_routing::client_ip::text(ctx.client.ip).into(),
    ));
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

fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

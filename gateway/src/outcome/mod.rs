//! The end of a request: upstream failures mapped to the contract's answers (never a 500),
//! and the metrics and access-log line every request gets; a sampled request's spans
//! ([`spans`]).

mod spans;

use std::sync::Arc;

use pingora::prelude::*;
use pingora::proxy::{FailToProxy, Session};
use portcullis_status::Slot;

use crate::access_log::{timestamp, Entry};
use crate::ctx::RequestCtx;
use crate::error::Rejection;
use crate::metrics::{method_label, RouteSeries};
use crate::respond;
use crate::state::State;

/// Upstream-side failures by kind (the upstream leg counted them as they happened).
fn classify(e: &Error) -> Option<Rejection> {
    use ErrorType::*;
    let connect = matches!(
        e.etype(),
        ConnectTimedout
            | ConnectRefused
            | ConnectNoRoute
            | ConnectError
            | BindError
            | ConnectProxyFailure
            | TLSHandshakeFailure
            | TLSHandshakeTimedout
            | InvalidCert
            | HandshakeError
    );
    // Pingora reports some client-side faults with connect error types too (a pipelined
    // request arriving mid-exchange is a downstream `ConnectError`): only the upstream's own
    // are the upstream's failures.
    if connect && *e.esource() != ErrorSource::Downstream {
        return Some(Rejection::BadGateway);
    }
    if *e.esource() != ErrorSource::Upstream {
        return None;
    }
    match e.etype() {
        ReadTimedout | WriteTimedout => Some(Rejection::UpstreamTimeout),
        _ => Some(Rejection::BadGateway),
    }
}

pub async fn fail(session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
    let decided =
        crate::bounds::refusal(e, &mut ctx.bounds).or_else(|| ctx.upstream.take_refusal());
    let rejection = match decided.or_else(|| classify(e)) {
        Some(rejection) => rejection,
        // The client's side broke (closed, sent garbage): answer 400 if it can still hear us.
        None => match e.etype() {
            ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed => {
                return FailToProxy {
                    error_code: 0,
                    can_reuse_downstream: false,
                }
            }
            ErrorType::HTTPStatus(code) if (400..500).contains(code) => {
                Rejection::BadRequest(e.to_string())
            }
            // The client sent its next request before this one's answer (HTTP pipelining),
            // which pingora 0.9 serves only when every session opts in; refused as the
            // client's fault, never counted against the upstream.
            ErrorType::ConnectError => Rejection::BadRequest(
                "pipelined requests are not supported: send the next request after this answer"
                    .into(),
            ),
            _ if *e.esource() == ErrorSource::Downstream => {
                Rejection::BadRequest("malformed request".into())
            }
            _ => Rejection::BadGateway,
        },
    };
    let status = rejection.status();
    if session.response_written().is_none() {
        if let Err(write_error) = respond::reject(session, ctx, &rejection).await {
            log::debug!("could not answer {status} to the client: {write_error}");
        }
    } else {
        // Headers already went out: the body is cut short, nothing more can be said.
        ctx.answer.reason = Some(rejection.reason());
        ctx.bounds.limit_hit = rejection.limit();
    }
    FailToProxy {
        error_code: status,
        can_reuse_downstream: false,
    }
}

pub fn log(state: &Arc<State>, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
    let status = session
        .response_written()
        .map(|r| r.status.as_u16())
        .unwrap_or(ctx.answer.status);
    // nginx's 499: the client went away before any answer.
    let status = if status == 0 && e.is_some() {
        499
    } else {
        status
    };
    let elapsed = ctx.started.elapsed();
    let internal_spans = ctx.spans.take();
    let route = ctx.route_name();
    let req = session.req_header();
    let method = method_label(&req.method);
    let series = ctx.target.handles.as_ref().map(|h| &h.series);
    match series {
        Some(series) => series.observe_duration(&state.metrics, route, elapsed.as_secs_f64()),
        None => state
            .metrics
            .request_duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64()),
    }
    let peer = ctx.upstream.peer();
    let path = if ctx.target.path.is_empty() {
        req.uri.path()
    } else {
        ctx.target.path.as_str()
    };
    let cache = crate::cache::record(state, session, ctx);
    if let Some(limit) = ctx.bounds.limit_hit {
        crate::bounds::count(&state.metrics, route, limit);
    }
    spans::finish(state, session, ctx, status, cache, internal_spans);
    let mut trace_hex = [0u8; 32];
    let trace_id = ctx
        .trace
        .as_ref()
        .filter(|t| t.sampled)
        .map(|t| t.trace_id.hex(&mut trace_hex));
    let entry = Entry {
        ts: timestamp(std::time::SystemTime::now()),
        request_id: &ctx.client.request_id,
        client_ip: portcullis_routing::client_ip::text(ctx.client.ip),
        method: req.method.as_str(),
        path,
        route: ctx.target.route.as_ref().map(|r| r.name.as_str()),
        status,
        duration_ms: duration_ms(elapsed),
        upstream: ctx.upstream.upstream(),
        peer,
        user: ctx.identity.user.as_deref(),
        reason: ctx.answer.reason,
        tries: (ctx.upstream.tries() > 1).then_some(ctx.upstream.tries() as u32),
        cache,
        bytes_sent: session.body_bytes_sent().max(ctx.answer.bytes_sent),
        trace_id,
    };
    let slot = ctx
        .target
        .handles
        .as_ref()
        .map_or(Slot::UNROUTED, |h| h.status_slot);
    record(state, route, series, slot, method, &entry);
}

/// Counts a finished request in `requests_total` and writes its access-log line (counting it
/// as dropped if the log is full). Every answer ends here: proxied, generated in a phase, or
/// refused by the intake before any phase ran.
pub fn record(
    state: &State,
    route: &str,
    series: Option<&RouteSeries>,
    slot: Slot,
    method: &'static str,
    entry: &Entry,
) {
    state.status.record(slot, entry.status, entry.duration_ms);
    match series {
        Some(series) => series.count_request(&state.metrics, route, method, entry.status),
        None => state
            .metrics
            .requests
            .with_label_values(&[route, method, entry.status.to_string().as_str()])
            .inc(),
    }
    if !state.log.write(entry) {
        state.metrics.access_log_dropped.inc();
    }
}

/// The access log's `duration_ms`: milliseconds with microsecond precision.
pub fn duration_ms(elapsed: std::time::Duration) -> f64 {
    (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

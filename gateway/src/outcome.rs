//! The end of a request: upstream failures mapped to the contract's answers (never a 500),
//! and the metrics and access-log line every request gets.

use std::sync::Arc;

use pingora::prelude::*;
use pingora::proxy::{FailToProxy, Session};

use crate::access_log::{timestamp, Entry};
use crate::ctx::RequestCtx;
use crate::error::Rejection;
use crate::metrics::method_label;
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
    let decided = ctx.upstream.take_refusal();
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
        ctx.reason = Some(rejection.reason());
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
        .unwrap_or(ctx.status);
    // nginx's 499: the client went away before any answer.
    let status = if status == 0 && e.is_some() {
        499
    } else {
        status
    };
    let elapsed = ctx.started.elapsed();
    let route = ctx.route_name().to_string();
    let req = session.req_header();
    let method = method_label(&req.method);
    state
        .metrics
        .request_duration
        .with_label_values(&[route.as_str()])
        .observe(elapsed.as_secs_f64());
    let peer = ctx.upstream.peer();
    let path = if ctx.path.is_empty() {
        req.uri.path()
    } else {
        ctx.path.as_str()
    };
    let cache = crate::cache::EdgeCache::record(state, session, ctx);
    let entry = Entry {
        ts: timestamp(std::time::SystemTime::now()),
        request_id: &ctx.request_id,
        client_ip: ctx.client_ip.to_string(),
        method: req.method.as_str(),
        path,
        route: ctx.route.as_ref().map(|r| r.name.as_str()),
        status,
        duration_ms: duration_ms(elapsed),
        upstream: ctx.upstream.upstream(),
        peer,
        user: ctx.user.as_deref(),
        reason: ctx.reason,
        tries: (ctx.upstream.tries() > 1).then_some(ctx.upstream.tries() as u32),
        cache,
        bytes_sent: session.body_bytes_sent().max(ctx.bytes_sent),
    };
    record(state, &route, method, &entry);
}

/// Counts a finished request in `requests_total` and writes its access-log line (counting it
/// as dropped if the log is full). Every answer ends here: proxied, generated in a phase, or
/// refused by the intake before any phase ran.
pub fn record(state: &State, route: &str, method: &'static str, entry: &Entry) {
    state
        .metrics
        .requests
        .with_label_values(&[route, method, itoa(entry.status).as_str()])
        .inc();
    if !state.log.write(entry) {
        state.metrics.access_log_dropped.inc();
    }
}

/// The access log's `duration_ms`: milliseconds with microsecond precision.
pub fn duration_ms(elapsed: std::time::Duration) -> f64 {
    (elapsed.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

fn itoa(n: u16) -> String {
    n.to_string()
}

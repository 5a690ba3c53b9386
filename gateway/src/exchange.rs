//! Upstream exchanges with status-driven retries, for upstreams that configure `retry`.
//!
//! Pingora retries only connection failures, and replays at most its small fixed retry buffer,
//! so an upstream answering 503 cannot be retried from inside pingora's own proxy loop
//! (cloudflare/pingora#873). Requests to retry-enabled upstreams are therefore exchanged here,
//! through pingora's own connector (same connection pools, timeouts and TLS), and the final
//! answer is streamed to the client chunk by chunk. Nothing reaches the client before the
//! decision to stop retrying is made.
//!
//! Bounds: the request body is buffered only up to `max_replay_body`; a larger body is
//! streamed through and never retried once sent. Tries plus waits stay within the retry
//! policy's deadline, and the retry budget caps retries to a share of recent requests.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use portcullis_resilience::{Failure, RetryDecision};

use crate::admission::Stop;
use crate::ctx::RequestCtx;
use crate::error::Rejection;
use crate::state::State;
use crate::upstream::UpstreamPool;
use crate::{forward, outcome, respond};

/// The request body as far as it was read: all of it, or the first `max_replay_body` bytes
/// with the rest still unread on the client connection.
struct Body {
    head: Bytes,
    complete: bool,
}

/// What one try produced.
enum Try {
    Answered { upstream: Box<HttpSession>, response: ResponseHeader, peer: HttpPeer },
    Failed { failure: Failure, sent: bool, reused: bool },
}

pub async fn run(state: &Arc<State>, session: &mut Session, ctx: &mut RequestCtx, pool: &Arc<UpstreamPool>) -> Result<(), Stop> {
    let Some(retry) = pool.retry.clone() else {
        return Err(Rejection::BadGateway.into());
    };
    let started = Instant::now();
    retry.record_request(started);
    let mut body = read_body(session, retry.max_replay_body()).await?;
    let method = session.req_header().method.clone();
    let route_unsafe_ok = ctx.route.as_ref().is_some_and(|r| r.retry_non_idempotent);
    let mut attempt: u32 = 0;
    let mut stale_connection_retry = true;
    loop {
        attempt += 1;
        let permit = match outcome::breaker_acquire(state, pool) {
            Ok(permit) => permit,
            Err(rejection) => return Err(rejection.into()),
        };
        let Some(index) = pool.select(&ctx.tried) else { return Err(Rejection::BadGateway.into()) };
        ctx.tried.push(index);
        let Some(peer) = pool.http_peer(index) else { return Err(Rejection::BadGateway.into()) };
        let result = try_once(state, session, ctx, peer, &mut body).await?;
        let now = Instant::now();
        match result {
            Try::Answered { upstream, response, peer } => {
                let status = response.status.as_u16();
                outcome::breaker_record(state, pool, permit, status < 500);
                outcome::count_upstream(state, ctx, if status >= 500 { "error" } else { "success" });
                let retry_after = response.headers.get(http::header::RETRY_AFTER).and_then(|v| {
                    portcullis_resilience::parse_retry_after(v, std::time::SystemTime::now())
                });
                let failure = Failure::Status { code: status, retry_after };
                if body.complete {
                    if let RetryDecision::Retry { after } = retry.decide(&method, &failure, attempt, route_unsafe_ok, started, now) {
                        // The answer is discarded unread; its connection is not reused.
                        drop(upstream);
                        wait_and_count(state, pool, after).await;
                        continue;
                    }
                }
                return stream_answer(state, session, ctx, upstream, response, &peer).await;
            }
            Try::Failed { failure, sent, reused } => {
                outcome::breaker_record(state, pool, permit, false);
                let label = match failure {
                    Failure::Connect => "connect_error",
                    Failure::Timeout => "timeout",
                    Failure::Status { .. } => "error",
                };
                outcome::count_upstream(state, ctx, label);
                // A pooled connection the upstream had already closed: the request never got
                // an answer, so one immediate retry on a fresh connection is always safe.
                if reused && stale_connection_retry && body.complete {
                    stale_connection_retry = false;
                    attempt -= 1;
                    ctx.tried.pop();
                    continue;
                }
                let replayable = body.complete || !sent;
                let decision = if replayable {
                    retry.decide(&method, &failure, attempt, route_unsafe_ok, started, now)
                } else {
                    RetryDecision::GiveUp(portcullis_resilience::GiveUpReason::NotRetryable)
                };
                match decision {
                    RetryDecision::Retry { after } => {
                        wait_and_count(state, pool, after).await;
                        continue;
                    }
                    RetryDecision::GiveUp(_) => {
                        return Err(match failure {
                            Failure::Timeout => Rejection::UpstreamTimeout,
                            _ => Rejection::BadGateway,
                        }
                        .into())
                    }
                }
            }
        }
    }
}

async fn wait_and_count(state: &State, pool: &UpstreamPool, after: std::time::Duration) {
    state.metrics.upstream_retries.with_label_values(&[pool.name()]).inc();
    if !after.is_zero() {
        tokio::time::sleep(after).await;
    }
}

/// Reads the client's body up to `limit` bytes (bounded: never more is held in memory).
async fn read_body(session: &mut Session, limit: usize) -> Result<Body, Stop> {
    let mut buf = BytesMut::new();
    loop {
        if buf.len() >= limit {
            return Ok(Body { head: buf.freeze(), complete: false });
        }
        match session.read_request_body().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            Ok(None) => return Ok(Body { head: buf.freeze(), complete: true }),
            Err(e) => return Err(Rejection::BadRequest(format!("cannot read the request body: {e}")).into()),
        }
    }
}

async fn try_once(state: &State, session: &mut Session, ctx: &RequestCtx, peer: HttpPeer, body: &mut Body) -> Result<Try, Stop> {
    let (mut upstream, reused) = match state.connector.get_http_session(&peer).await {
        Ok(s) => s,
        Err(e) => {
            log::debug!("connect to {peer} failed: {e}");
            return Ok(Try::Failed { failure: Failure::Connect, sent: false, reused: false });
        }
    };
    upstream.set_read_timeout(peer.options.read_timeout);
    upstream.set_write_timeout(peer.options.write_timeout);
    let mut request = session.req_header().clone();
    forward::upstream_request(session, &mut request, ctx).map_err(|e| Stop::Reject(Rejection::BadRequest(e.to_string())))?;
    let has_body = !body.head.is_empty() || !body.complete;
    request.remove_header(&TRANSFER_ENCODING);
    if body.complete {
        if has_body || request.headers.contains_key(CONTENT_LENGTH) {
            request.insert_header(CONTENT_LENGTH, body.head.len()).map_err(|e| Stop::Reject(Rejection::BadRequest(e.to_string())))?;
        }
    } else {
        request.remove_header(&CONTENT_LENGTH);
        request.insert_header(TRANSFER_ENCODING, "chunked").map_err(|e| Stop::Reject(Rejection::BadRequest(e.to_string())))?;
    }
    let sent_failure = |e: Box<Error>| {
        let failure = if matches!(e.etype(), ErrorType::ReadTimedout | ErrorType::WriteTimedout) { Failure::Timeout } else { Failure::Status { code: 502, retry_after: None } };
        Try::Failed { failure, sent: true, reused }
    };
    if let Err(e) = upstream.write_request_header(Box::new(request)).await {
        // Nothing of the body went out; treat like a failed connection.
        log::debug!("writing to {peer} failed: {e}");
        return Ok(Try::Failed { failure: Failure::Connect, sent: false, reused });
    }
    if has_body {
        if let Err(e) = upstream.write_request_body(body.head.clone(), body.complete).await {
            return Ok(sent_failure(e));
        }
        if !body.complete {
            // Stream the rest straight through; from here on this request cannot be replayed.
            body.head = Bytes::new();
            loop {
                match session.read_request_body().await {
                    Ok(Some(chunk)) => {
                        if let Err(e) = upstream.write_request_body(chunk, false).await {
                            return Ok(sent_failure(e));
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Err(Rejection::BadRequest(format!("cannot read the request body: {e}")).into()),
                }
            }
        }
    }
    if let Err(e) = upstream.finish_request_body().await {
        return Ok(sent_failure(e));
    }
    if let Err(e) = upstream.read_response_header().await {
        log::debug!("no answer from {peer}: {e}");
        return Ok(sent_failure(e));
    }
    let Some(response) = upstream.response_header().cloned() else {
        return Ok(Try::Failed { failure: Failure::Status { code: 502, retry_after: None }, sent: true, reused });
    };
    Ok(Try::Answered { upstream: Box::new(upstream), response, peer })
}

/// Streams the final answer to the client, finishing its headers like any proxied answer.
async fn stream_answer(
    state: &State,
    session: &mut Session,
    ctx: &mut RequestCtx,
    mut upstream: Box<HttpSession>,
    mut response: ResponseHeader,
    peer: &HttpPeer,
) -> Result<(), Stop> {
    forward::upstream_response(&mut response);
    ctx.status = response.status.as_u16();
    respond::finish_headers(&mut response, ctx).map_err(|_| Stop::Reject(Rejection::BadGateway))?;
    let head_only = session.req_header().method == http::Method::HEAD || upstream.response_done();
    if session.write_response_header(Box::new(response), head_only).await.is_err() {
        return Ok(()); // the client went away
    }
    if !head_only {
        loop {
            match upstream.read_response_body().await {
                Ok(Some(chunk)) => {
                    ctx.bytes_sent += chunk.len();
                    if session.write_response_body(Some(chunk), false).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // Headers are out: all we can do is cut the body short and say why.
                    log::warn!("upstream body from {peer} broke off: {e}");
                    ctx.reason = Some("upstream_body_error");
                    return Ok(());
                }
            }
        }
        if session.write_response_body(None, true).await.is_err() {
            return Ok(());
        }
    }
    if upstream.response_done() {
        state.connector.release_http_session(*upstream, peer, peer.options.idle_timeout).await;
    }
    Ok(())
}

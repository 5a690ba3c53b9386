//! Upstream exchanges for upstreams with `retry` or `circuit_breaker`: status-driven retries
//! with backoff, and the breaker in front of every try.
//!
//! Pingora retries only connection failures and replays at most its small retry buffer, so an
//! upstream answering 503 cannot be retried from inside pingora's proxy loop
//! (cloudflare/pingora#873). Requests to these upstreams are exchanged here instead, through
//! pingora's own connector (same connection pools, timeouts and TLS), and the final answer is
//! streamed to the client chunk by chunk. Nothing reaches the client before the decision to
//! stop retrying is made.
//!
//! Bounds: the request body is buffered only up to `max_replay_body`; a larger body is
//! streamed through once and never retried after it was sent. Tries plus waits stay within the
//! retry policy's `deadline`, and the retry budget caps retries at a share of recent requests.
//! The decisions themselves live in `portcullis_resilience`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, RETRY_AFTER, TRANSFER_ENCODING};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use portcullis_resilience::{
    parse_retry_after, CallOutcome, Failure, GiveUpReason, Permit, RetryDecision, Transition,
};

use crate::admission::Stop;
use crate::ctx::RequestCtx;
use crate::error::Rejection;
use crate::state::{json_fields, State};
use crate::upstream::UpstreamPool;
use crate::{forward, outcome, respond};

/// Whether requests to `pool` go through this module.
pub fn applies(pool: &UpstreamPool, session: &Session) -> bool {
    let upgrade = session
        .req_header()
        .headers
        .contains_key(http::header::UPGRADE);
    (pool.retry.is_some() || pool.breaker.is_some()) && !upgrade
}

/// The request body as far as it was read: all of it, or the first `max_replay_body` bytes
/// with the rest still unread on the client connection.
struct Body {
    head: Bytes,
    complete: bool,
}

/// What one try produced.
enum Try {
    Answered {
        upstream: Box<HttpSession>,
        response: ResponseHeader,
        peer: Box<HttpPeer>,
    },
    Failed {
        failure: Failure,
        /// Some of the request reached the upstream.
        sent: bool,
    },
}

/// Performs the exchange and answers the client. `Err` carries an answer not yet written.
pub async fn run(
    state: &Arc<State>,
    session: &mut Session,
    ctx: &mut RequestCtx,
    pool: &Arc<UpstreamPool>,
) -> Result<(), Stop> {
    let started = Instant::now();
    if let Some(retry) = &pool.retry {
        retry.record_request(started);
    }
    let method = session.req_header().method.clone();
    let route_non_idempotent = ctx.route.as_ref().is_some_and(|r| r.retry_non_idempotent);
    let replay_limit = pool.config.retry.as_ref().map_or(0, |r| r.max_replay_body);
    let deadline = pool.config.retry.as_ref().map(|r| r.deadline);
    let mut body: Option<Body> = None;
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let permit = acquire(state, ctx, pool)?;
        if body.is_none() {
            body = Some(read_body(session, replay_limit).await?);
        }
        let Some(body) = body.as_mut() else {
            return Err(Rejection::BadGateway.into());
        };
        let Some(index) = pool.select(&ctx.tried) else {
            return Err(Rejection::BadGateway.into());
        };
        ctx.tried.push(index);
        let Some(peer) = pool.http_peer(index) else {
            return Err(Rejection::BadGateway.into());
        };
        let left = deadline.map(|d| d.saturating_sub(started.elapsed()));
        let result = match left {
            Some(left) => tokio::time::timeout(left, try_once(state, session, ctx, peer, body))
                .await
                .unwrap_or(Ok(Try::Failed {
                    failure: Failure::Timeout,
                    sent: true,
                })),
            None => try_once(state, session, ctx, peer, body).await,
        }?;
        let now = Instant::now();
        let retry_after_failure = |failure: &Failure| {
            retry_wait(
                pool,
                &method,
                failure,
                attempt,
                route_non_idempotent,
                started,
                now,
            )
        };
        match result {
            Try::Answered {
                upstream,
                response,
                peer,
            } => {
                let status = response.status.as_u16();
                record(state, pool, permit, CallOutcome::for_status(status));
                outcome::count_upstream(
                    state,
                    ctx,
                    if status >= 500 { "error" } else { "success" },
                );
                let retry_after = response
                    .headers
                    .get(RETRY_AFTER)
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                let failure = Failure::Status {
                    code: status,
                    retry_after,
                };
                if body.complete && status >= 400 {
                    if let Some(after) = retry_after_failure(&failure) {
                        // The answer is dropped unread; its connection is not reused.
                        drop(upstream);
                        wait(state, pool, after).await;
                        continue;
                    }
                }
                stream_answer(state, session, ctx, upstream, response, &peer).await;
                return Ok(());
            }
            Try::Failed { failure, sent } => {
                record(state, pool, permit, CallOutcome::Failure);
                let label = match failure {
                    Failure::Connect => "connect_error",
                    Failure::Timeout => "timeout",
                    Failure::Status { .. } => "error",
                };
                outcome::count_upstream(state, ctx, label);
                if body.complete || !sent {
                    if let Some(after) = retry_after_failure(&failure) {
                        wait(state, pool, after).await;
                        continue;
                    }
                }
                return Err(match failure {
                    Failure::Timeout => Rejection::UpstreamTimeout,
                    _ => Rejection::BadGateway,
                }
                .into());
            }
        }
    }
}

/// The breaker's leave for one try; an open breaker answers 503 at once.
fn acquire(
    state: &State,
    ctx: &mut RequestCtx,
    pool: &UpstreamPool,
) -> Result<Option<Permit>, Stop> {
    let Some(breaker) = &pool.breaker else {
        return Ok(None);
    };
    match breaker.try_acquire(Instant::now()) {
        Ok(permit) => {
            if let Some(t) = permit.transition() {
                transition(state, pool, t);
            }
            Ok(Some(permit))
        }
        Err(rejected) => {
            outcome::count_upstream(state, ctx, "rejected_open");
            Err(Rejection::UpstreamUnavailable {
                retry_after: Some(rejected.retry_after_secs()),
                message: format!(
                    "upstream {} is unavailable (circuit {})",
                    pool.name(),
                    rejected.state
                ),
            }
            .into())
        }
    }
}

fn record(state: &State, pool: &UpstreamPool, permit: Option<Permit>, outcome: CallOutcome) {
    if let (Some(breaker), Some(permit)) = (&pool.breaker, permit) {
        if let Some(t) = breaker.record(permit, outcome, Instant::now()) {
            transition(state, pool, t);
        }
    }
}

fn transition(state: &State, pool: &UpstreamPool, t: Transition) {
    state
        .metrics
        .breaker_state
        .with_label_values(&[pool.name()])
        .set(t.to.gauge());
    log::warn!("upstream {}: circuit breaker {t}", pool.name());
    state.event(
        "circuit_breaker",
        json_fields([
            ("upstream", pool.name().into()),
            ("from", t.from.as_str().into()),
            ("to", t.to.as_str().into()),
        ]),
    );
}

/// How long to wait before the next try, or `None` to give up with what we have.
fn retry_wait(
    pool: &UpstreamPool,
    method: &http::Method,
    failure: &Failure,
    attempt: u32,
    route_non_idempotent: bool,
    started: Instant,
    now: Instant,
) -> Option<Duration> {
    let retry = pool.retry.as_ref()?;
    match retry.decide(method, failure, attempt, route_non_idempotent, started, now) {
        RetryDecision::Retry { after } => Some(after),
        RetryDecision::GiveUp(reason) => {
            if reason != GiveUpReason::NotRetryable {
                log::debug!("upstream {}: no retry ({})", pool.name(), reason.as_str());
            }
            None
        }
    }
}

async fn wait(state: &State, pool: &UpstreamPool, after: Duration) {
    state
        .metrics
        .upstream_retries
        .with_label_values(&[pool.name()])
        .inc();
    if !after.is_zero() {
        tokio::time::sleep(after).await;
    }
}

/// Reads the client's body up to `limit` bytes (never more is held in memory).
async fn read_body(session: &mut Session, limit: usize) -> Result<Body, Stop> {
    let mut buf = BytesMut::new();
    loop {
        if buf.len() > limit {
            return Ok(Body {
                head: buf.freeze(),
                complete: false,
            });
        }
        match session.read_request_body().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            Ok(None) => {
                return Ok(Body {
                    head: buf.freeze(),
                    complete: true,
                })
            }
            Err(e) => {
                return Err(
                    Rejection::BadRequest(format!("cannot read the request body: {e}")).into(),
                )
            }
        }
    }
}

fn bad_request(e: Box<Error>) -> Stop {
    Stop::Reject(Rejection::BadRequest(e.to_string()))
}

async fn try_once(
    state: &State,
    session: &mut Session,
    ctx: &RequestCtx,
    peer: HttpPeer,
    body: &mut Body,
) -> Result<Try, Stop> {
    let (mut upstream, _reused) = match state.connector.get_http_session(&peer).await {
        Ok(s) => s,
        Err(e) => {
            log::debug!("connect to {peer} failed: {e}");
            return Ok(Try::Failed {
                failure: Failure::Connect,
                sent: false,
            });
        }
    };
    upstream.set_read_timeout(peer.options.read_timeout);
    upstream.set_write_timeout(peer.options.write_timeout);
    let mut request = session.req_header().clone();
    forward::upstream_request(session, &mut request, ctx).map_err(bad_request)?;
    let has_body = !body.head.is_empty() || !body.complete;
    request.remove_header(&TRANSFER_ENCODING);
    if body.complete {
        request.remove_header(&CONTENT_LENGTH);
        if has_body || session.req_header().headers.contains_key(CONTENT_LENGTH) {
            request
                .insert_header(CONTENT_LENGTH, body.head.len())
                .map_err(bad_request)?;
        }
    } else {
        request.remove_header(&CONTENT_LENGTH);
        request
            .insert_header(TRANSFER_ENCODING, "chunked")
            .map_err(bad_request)?;
    }
    let sent_failure = |e: Box<Error>| {
        let failure = if matches!(
            e.etype(),
            ErrorType::ReadTimedout | ErrorType::WriteTimedout
        ) {
            Failure::Timeout
        } else {
            Failure::Status {
                code: 502,
                retry_after: None,
            }
        };
        Try::Failed {
            failure,
            sent: true,
        }
    };
    if let Err(e) = upstream.write_request_header(Box::new(request)).await {
        // Nothing went out: like a failed connection (a pooled one the upstream had closed).
        log::debug!("writing to {peer} failed: {e}");
        return Ok(Try::Failed {
            failure: Failure::Connect,
            sent: false,
        });
    }
    if has_body {
        if let Err(e) = upstream
            .write_request_body(body.head.clone(), body.complete)
            .await
        {
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
                    Err(e) => {
                        return Err(Rejection::BadRequest(format!(
                            "cannot read the request body: {e}"
                        ))
                        .into())
                    }
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
        return Ok(sent_failure(Error::new(ErrorType::InvalidHTTPHeader)));
    };
    Ok(Try::Answered {
        upstream: Box::new(upstream),
        response,
        peer: Box::new(peer),
    })
}

/// Streams the final answer to the client, its headers finished like any proxied answer.
/// Failures after the headers went out can only cut the body short; they are logged.
async fn stream_answer(
    state: &State,
    session: &mut Session,
    ctx: &mut RequestCtx,
    mut upstream: Box<HttpSession>,
    mut response: ResponseHeader,
    peer: &HttpPeer,
) {
    forward::upstream_response(&mut response);
    ctx.status = response.status.as_u16();
    if respond::finish_headers(&mut response, ctx).is_err() {
        ctx.reason = Some("bad_upstream_headers");
    }
    let head_only = session.req_header().method == http::Method::HEAD
        || upstream.response_done()
        || matches!(ctx.status, 204 | 304);
    if session
        .write_response_header(Box::new(response), head_only)
        .await
        .is_err()
    {
        ctx.reason = Some("client_closed");
        return;
    }
    if !head_only {
        loop {
            match upstream.read_response_body().await {
                Ok(Some(chunk)) => {
                    ctx.bytes_sent += chunk.len();
                    if session
                        .write_response_body(Some(chunk), false)
                        .await
                        .is_err()
                    {
                        ctx.reason = Some("client_closed");
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    log::warn!("upstream body from {peer} broke off: {e}");
                    ctx.reason = Some("upstream_body_error");
                    return;
                }
            }
        }
        if session.write_response_body(None, true).await.is_err() {
            ctx.reason = Some("client_closed");
            return;
        }
    }
    if upstream.response_done() {
        state
            .connector
            .release_http_session(*upstream, peer, peer.options.idle_timeout)
            .await;
    }
}

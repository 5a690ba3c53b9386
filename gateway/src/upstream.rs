//! One request's leg to its upstream, inside pingora's proxy loop: peer choice, the circuit
//! breaker's permission and record, status-driven retries with backoff, `Retry-After`, the
//! deadline and the retry budget, and the only writer of the upstream accounting
//! (`portcullis_upstream_requests_total`, `portcullis_upstream_retries_total`, the peer and
//! tries in the log).
//!
//! pingora calls `upstream_peer` for every try and tries again while the last try's error has
//! `retry` set. The hooks map onto that loop:
//!
//! | pingora phase | here | decides |
//! |---|---|---|
//! | `upstream_peer` | [`Attempt::next_peer`] | the backoff wait, the deadline, the breaker's leave, the peer |
//! | `fail_to_connect` | [`Attempt::connect_failed`] | a connect failure: retry (nothing was sent) or give up |
//! | `upstream_response_filter` | [`Attempt::answered`] | an answer: pass it on, or drop it and retry (its status is in `on_status`) |
//! | `error_while_proxy` | [`Attempt::failed`] | a try that broke after connecting: retry when the body can be replayed |
//!
//! Nothing reaches the client before the decision to stop retrying: an answer that is
//! retried is dropped in `upstream_response_filter`, before pingora writes anything
//! downstream. The request body is replayed from pingora's retry buffer (64 KiB, fixed in
//! pingora; `max_replay_body` caps it lower), so a body that outgrew it, or `max_replay_body`,
//! is never sent twice.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::header::RETRY_AFTER;
use http::Method;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use portcullis_resilience::{
    parse_retry_after, CallOutcome, Failure, GiveUpReason, Permit, RetryDecision, Transition,
};

use crate::error::Rejection;
use crate::pool::UpstreamPool;
use crate::state::{json_fields, State};
use crate::trace::record::{semconv_method, Kind, SpanData, Value};
use crate::trace::Clock;
use portcullis_routing::client_ip;
use portcullis_trace_context::SpanId;
use std::borrow::Cow;

/// The upstream leg of one request. Written only by its own methods, from the proxy phases.
#[derive(Default)]
pub struct Attempt {
    /// The route's upstream, set when the route is chosen.
    pool: Option<Arc<UpstreamPool>>,
    /// Peers tried so far (indices into the pool), in order.
    tried: Vec<usize>,
    /// When the first try began: the retry deadline counts from here.
    started: Option<Instant>,
    /// The breaker's leave for the try in flight.
    permit: Option<Permit>,
    /// The wait before the next try, when one was decided.
    wait: Option<Duration>,
    /// `answered` dropped the answer to retry: the error it raised is a decided retry.
    retrying: bool,
    /// Request body bytes read from the client so far.
    body_bytes: usize,
    /// An answer decided before any try (an open breaker, the deadline passed).
    refusal: Option<Rejection>,
    /// Each try's timing and result, kept for a sampled request's CLIENT spans.
    traced: Option<Vec<TracedTry>>,
}

/// One try, as its CLIENT span reports it.
pub struct TracedTry {
    span_id: SpanId,
    /// The pool's peer index.
    peer: usize,
    started: Instant,
    ended: Option<Instant>,
    status: Option<u16>,
    /// How it failed (the `outcome` label of `portcullis_upstream_requests_total`).
    failure: Option<&'static str>,
}

/// How the last try ended, for the breaker and the accounting.
enum Ended {
    Answered(u16),
    Failed(Failure),
}

impl Attempt {
    pub fn new(pool: Arc<UpstreamPool>) -> Self {
        Attempt {
            pool: Some(pool),
            ..Attempt::default()
        }
    }

    pub fn pool(&self) -> Option<&Arc<UpstreamPool>> {
        self.pool.as_ref()
    }

    /// The upstream's name once a try was made (the log's `upstream`).
    pub fn upstream(&self) -> Option<&str> {
        self.pool
            .as_ref()
            .filter(|_| !self.tried.is_empty())
            .map(|p| p.name())
    }

    /// The last peer tried (the log's `peer`).
    pub fn peer(&self) -> Option<String> {
        let pool = self.pool.as_ref()?;
        let slot = pool.peers.get(*self.tried.last()?)?;
        Some(slot.label.clone())
    }

    pub fn tries(&self) -> usize {
        self.tried.len()
    }

    /// Keeps each try's timing and result from now on (a sampled request's CLIENT spans).
    pub fn trace_tries(&mut self) {
        self.traced = Some(Vec::new());
    }

    /// The CLIENT span of the try in flight: the parent the upstream's `traceparent` names.
    pub fn try_span(&self) -> Option<SpanId> {
        self.traced.as_ref()?.last().map(|t| t.span_id)
    }

    /// A CLIENT span per try, children of `parent`. The last try, when it answered, ends
    /// with the request (its body was streamed to the client until then).
    pub fn client_spans(
        &self,
        session: &Session,
        parent: SpanId,
        clock: &Clock,
        end_ns: u64,
    ) -> Vec<SpanData> {
        let (Some(pool), Some(tries)) = (&self.pool, &self.traced) else {
            return Vec::new();
        };
        let method = semconv_method(&session.req_header().method);
        tries
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut attributes: Vec<(&'static str, Value)> = Vec::with_capacity(7);
                attributes.push(("http.request.method", method.into()));
                if let Some(slot) = pool.peers.get(t.peer) {
                    attributes.push(("server.address", slot.peer.host.clone().into()));
                    attributes.push(("server.port", i64::from(slot.peer.port).into()));
                    if let Some(addr) = slot.addr {
                        attributes
                            .push(("network.peer.address", client_ip::text(addr.ip()).into()));
                    }
                }
                attributes.push(("portcullis.upstream", pool.name().to_string().into()));
                if let Some(status) = t.status {
                    attributes.push(("http.response.status_code", i64::from(status).into()));
                }
                if i > 0 {
                    attributes.push(("http.request.resend_count", (i as i64).into()));
                }
                let error = match (t.failure, t.status) {
                    (Some(failure), _) => {
                        attributes.push(("error.type", failure.into()));
                        true
                    }
                    (None, Some(status)) if status >= 500 => {
                        attributes.push(("error.type", status.to_string().into()));
                        true
                    }
                    _ => false,
                };
                SpanData {
                    span_id: t.span_id,
                    parent: Some(parent),
                    name: Cow::Borrowed(method),
                    kind: Kind::Client,
                    start_ns: clock.unix_ns(t.started),
                    // The answer relayed to the client: its try lasts until the body went.
                    end_ns: match t.ended {
                        Some(e) if i + 1 < tries.len() || t.failure.is_some() => clock.unix_ns(e),
                        _ => end_ns,
                    },
                    attributes,
                    error,
                }
            })
            .collect()
    }

    /// The answer decided before a try, if any (the proxy's failure phase gives it).
    pub fn take_refusal(&mut self) -> Option<Rejection> {
        self.refusal.take()
    }

    /// The answer decided before a try, left in place.
    pub fn peek_refusal(&self) -> Option<&Rejection> {
        self.refusal.as_ref()
    }

    /// An answer pingora consumed before the upstream-response phase (a 5xx the edge cache
    /// answered with a stale copy instead): recorded with the breaker and in the accounting.
    pub fn record_answer(&mut self, state: &State, status: u16) {
        self.end(state, Ended::Answered(status));
    }

    /// Counts request body bytes as pingora reads them (`request_body_filter`).
    pub fn body_read(&mut self, bytes: usize) {
        self.body_bytes = self.body_bytes.saturating_add(bytes);
    }

    /// `upstream_peer`: waits out a decided backoff, checks the deadline and the breaker,
    /// and picks the next peer (another one than those tried, when there is one).
    pub async fn next_peer(&mut self, state: &State) -> Result<Box<HttpPeer>> {
        let pool = self
            .pool
            .clone()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no upstream chosen"))?;
        let started = match self.started {
            Some(at) => at,
            None => {
                let now = Instant::now();
                if let Some(retry) = &pool.retry {
                    retry.record_request(now);
                }
                self.started = Some(now);
                now
            }
        };
        if let Some(wait) = self.wait.take().filter(|w| !w.is_zero()) {
            tokio::time::sleep(wait).await;
        }
        let left = pool
            .retry
            .as_ref()
            .map(|r| r.remaining(started, Instant::now()));
        if left.is_some_and(|l| l.is_zero()) {
            return Err(self.refuse(Rejection::UpstreamTimeout, "the retry deadline passed"));
        }
        self.permit = None;
        if let Some(breaker) = &pool.breaker {
            match breaker.try_acquire(Instant::now()) {
                Ok(permit) => {
                    if let Some(t) = permit.transition() {
                        transition(state, &pool, t);
                    }
                    self.permit = Some(permit);
                }
                Err(rejected) => {
                    self.account(state, "rejected_open");
                    let message = format!(
                        "upstream {} is unavailable (circuit {})",
                        pool.name(),
                        rejected.state
                    );
                    return Err(self.refuse(
                        Rejection::UpstreamUnavailable {
                            retry_after: Some(rejected.retry_after_secs()),
                            message,
                        },
                        "the circuit is open",
                    ));
                }
            }
        }
        let (index, mut peer) = pool
            .select(&self.tried)
            .and_then(|i| pool.http_peer(i).map(|p| (i, p)))
            .ok_or_else(|| Error::explain(ErrorType::ConnectNoRoute, "no usable peer"))?;
        self.tried.push(index);
        if let Some(traced) = &mut self.traced {
            traced.push(TracedTry {
                span_id: SpanId::random(),
                peer: index,
                started: Instant::now(),
                ended: None,
                status: None,
                failure: None,
            });
        }
        // No try may outlive the deadline.
        if let Some(left) = left {
            let o = &mut peer.options;
            for timeout in [
                &mut o.connection_timeout,
                &mut o.total_connection_timeout,
                &mut o.read_timeout,
                &mut o.write_timeout,
            ] {
                *timeout = Some(timeout.map_or(left, |t| t.min(left)));
            }
        }
        Ok(Box::new(peer))
    }

    /// `fail_to_connect`: nothing was sent, so any method may go again.
    pub fn connect_failed(
        &mut self,
        state: &State,
        session: &Session,
        route_non_idempotent: bool,
        mut e: Box<Error>,
    ) -> Box<Error> {
        self.end(state, Ended::Failed(Failure::Connect));
        let retry = match self.pool.as_ref().map(|p| p.retry.is_some()) {
            Some(true) => self.decide(state, session, &Failure::Connect, route_non_idempotent),
            // Without a retry policy: fail over to a peer not tried yet.
            _ => self.tried.len() < self.pool.as_ref().map_or(0, |p| p.peers.len()),
        };
        e.set_retry(retry);
        e
    }

    /// `upstream_response_filter`: records the answer; `Err` drops it to try again (its
    /// status is one the policy retries, and the body can be replayed).
    pub fn answered(
        &mut self,
        state: &State,
        session: &Session,
        route_non_idempotent: bool,
        resp: &ResponseHeader,
    ) -> Result<()> {
        let status = resp.status.as_u16();
        self.end(state, Ended::Answered(status));
        if status < 400 || self.pool.as_ref().is_none_or(|p| p.retry.is_none()) {
            return Ok(());
        }
        let failure = Failure::Status {
            code: status,
            retry_after: resp
                .headers
                .get(RETRY_AFTER)
                .and_then(|v| parse_retry_after(v, SystemTime::now())),
        };
        if !self.decide(state, session, &failure, route_non_idempotent) {
            return Ok(());
        }
        self.retrying = true;
        let mut e = Error::explain(
            ErrorType::HTTPStatus(status),
            "the upstream's answer is retried",
        );
        e.set_retry(true);
        Err(e)
    }

    /// `error_while_proxy`: a try that broke after connecting (a timeout, a reset, a bad
    /// answer), or the retry `answered` decided.
    pub fn failed(
        &mut self,
        state: &State,
        session: &Session,
        route_non_idempotent: bool,
        client_reused: bool,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if std::mem::take(&mut self.retrying) {
            e.set_retry(true);
            return e;
        }
        if *e.esource() != ErrorSource::Upstream {
            // The client's side or ours: not the upstream's failure, and nothing to retry.
            e.set_retry(false);
            return e;
        }
        let failure = match e.etype() {
            ErrorType::ReadTimedout | ErrorType::WriteTimedout => Failure::Timeout,
            _ => Failure::Status {
                code: 502,
                retry_after: None,
            },
        };
        self.end(state, Ended::Failed(failure));
        if self.pool.as_ref().is_some_and(|p| p.retry.is_some()) {
            let retry = self.decide(state, session, &failure, route_non_idempotent);
            e.set_retry(retry);
        } else if !session.req_header().method.is_idempotent() || !self.replayable(session) {
            e.set_retry(false);
        } else {
            // pingora's own rule: a reused connection the upstream had closed is tried again.
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    /// Records a finished try with the breaker and in the accounting.
    fn end(&mut self, state: &State, ended: Ended) {
        let answered = match ended {
            Ended::Answered(status) => Some(status),
            Ended::Failed(_) => None,
        };
        let (outcome, label) = match ended {
            Ended::Answered(status) => (
                CallOutcome::for_status(status),
                if status >= 500 { "error" } else { "success" },
            ),
            Ended::Failed(failure) => (
                CallOutcome::Failure,
                match failure {
                    Failure::Connect => "connect_error",
                    Failure::Timeout => "timeout",
                    Failure::Status { .. } => "error",
                },
            ),
        };
        if let (Some(pool), Some(permit)) = (self.pool.clone(), self.permit.take()) {
            if let Some(breaker) = &pool.breaker {
                if let Some(t) = breaker.record(permit, outcome, Instant::now()) {
                    transition(state, &pool, t);
                }
            }
        }
        if let Some(last) = self.traced.as_mut().and_then(|t| t.last_mut()) {
            if last.ended.is_none() {
                last.ended = Some(Instant::now());
                last.status = answered;
                last.failure = answered.is_none().then_some(label);
            }
        }
        self.account(state, label);
    }

    /// The retry policy's decision after a failed try; a retry sets the wait before the next.
    fn decide(
        &mut self,
        state: &State,
        session: &Session,
        failure: &Failure,
        route_non_idempotent: bool,
    ) -> bool {
        let (Some(pool), Some(started)) = (self.pool.clone(), self.started) else {
            return false;
        };
        let Some(retry) = &pool.retry else {
            return false;
        };
        if *failure != Failure::Connect && !self.replayable(session) {
            return false;
        }
        let method: &Method = &session.req_header().method;
        let attempt = self.tried.len() as u32;
        match retry.decide(
            method,
            failure,
            attempt,
            route_non_idempotent,
            started,
            Instant::now(),
        ) {
            RetryDecision::Retry { after } => {
                state
                    .metrics
                    .upstream_retries
                    .with_label_values(&[pool.name()])
                    .inc();
                self.wait = Some(after);
                true
            }
            RetryDecision::GiveUp(reason) => {
                if reason != GiveUpReason::NotRetryable {
                    log::debug!("upstream {}: no retry ({})", pool.name(), reason.as_str());
                }
                false
            }
        }
    }

    /// Whether the request can be sent again as it was: every body byte read so far is in
    /// pingora's retry buffer and within `max_replay_body`.
    fn replayable(&self, session: &Session) -> bool {
        let limit = self
            .pool
            .as_ref()
            .and_then(|p| p.config.retry.as_ref())
            .map_or(usize::MAX, |r| r.max_replay_body);
        !session.retry_buffer_truncated() && self.body_bytes <= limit
    }

    fn account(&self, state: &State, outcome: &'static str) {
        if let Some(pool) = &self.pool {
            pool.outcomes.inc(outcome, || {
                state
                    .metrics
                    .upstream_requests
                    .with_label_values(&[pool.name(), outcome])
            });
        }
    }

    fn refuse(&mut self, rejection: Rejection, why: &'static str) -> Box<Error> {
        self.refusal = Some(rejection);
        Error::explain(ErrorType::Custom("portcullis refusal"), why)
    }
}

fn transition(state: &State, pool: &UpstreamPool, t: Transition) {
    state
        .metrics
        .breaker_state
        .with_label_values(&[pool.name()])
        .set(t.to.gauge());
    log::warn!("upstream {}: circuit breaker {t}", pool.name());
    state.status.breaker_changed(pool.name());
    state.event(
        "circuit_breaker",
        json_fields([
            ("upstream", pool.name().into()),
            ("from", t.from.as_str().into()),
            ("to", t.to.as_str().into()),
        ]),
    );
}

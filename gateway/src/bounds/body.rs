//! One request's body bounds: its size (`max_request_body`), its pace
//! (`request_body_timeout`, `min_request_body_rate`) and, on `buffer_request_body` routes,
//! the whole body held in memory before a peer is chosen.
//!
//! Streamed bodies (the default) are judged chunk by chunk in `request_body_filter`, before
//! a chunk is forwarded: the chunk that would cross the limit is never sent, and the refusal
//! ends the try with an error, so the upstream connection that got part of the body is
//! closed rather than pooled. A stalled HTTP/1 body is cut by the session's read timeout,
//! set to `request_body_timeout` for the body; a trickling one by the rate check.
//!
//! Buffered bodies are read here, in the request phase, under their own deadlines, so the
//! upstream never sees a connection until the body is complete. Pingora then sends a
//! request's body from its 64 KiB retry buffer, which is why the buffer is switched on only
//! for the body's last 64 KiB: it holds the tail, pingora hands the tail to
//! `request_body_filter` on every try, and the filter puts the whole body in its place, so a
//! buffered body is replayed on a retry whatever its size. A body without a declared length
//! gets no tail of its own: above 64 KiB it must declare its length (411).

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING};
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use portcullis_config::{RequestBounds, Route, RouteBounds};
use prometheus::IntGauge;

use super::buffer::{BufferBudget, Reservation};
use super::Limit;
use crate::error::Rejection;

/// pingora's retry buffer (`BODY_BUF_LIMIT`, fixed in pingora 0.9).
const RETRY_BUFFER: usize = 64 * 1024;

/// A body's size and pace, judged as its bytes arrive.
#[derive(Debug, Clone)]
pub struct BodyMeter {
    limit: usize,
    timeout: Duration,
    min_rate: u64,
    /// When the header section was complete: the pace counts from here.
    began: Instant,
    read: usize,
}

impl BodyMeter {
    pub fn new(limit: usize, server: &RequestBounds, began: Instant) -> Self {
        BodyMeter {
            limit,
            timeout: server.request_body_timeout,
            min_rate: server.min_request_body_rate.bytes_per_sec,
            began,
            read: 0,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn read(&self) -> usize {
        self.read
    }

    /// Counts `len` more bytes arrived at `now`: past the limit, or (once the body has
    /// taken longer than the timeout) below the minimum average rate, says which bound.
    pub fn take(&mut self, len: usize, now: Instant) -> Result<(), Limit> {
        self.read = self.read.saturating_add(len);
        if self.read > self.limit {
            return Err(Limit::BodySize);
        }
        if now >= self.rate_deadline() && !self.done_by_rate(now) {
            return Err(Limit::BodyRate);
        }
        Ok(())
    }

    /// The latest moment the next bytes may arrive, and the bound that passes then: the
    /// timeout from `now` (the last arrival), or the moment the average rate since the start
    /// falls below the minimum, whichever is first.
    pub fn next_deadline(&self, now: Instant) -> (Instant, Limit) {
        let stall = now + self.timeout;
        let rate = self.rate_deadline();
        if self.min_rate > 0 && rate < stall {
            (rate.max(now), Limit::BodyRate)
        } else {
            (stall, Limit::BodyTimeout)
        }
    }

    /// When the bytes read so far stop being enough for the minimum rate (never before the
    /// timeout has passed since the start).
    fn rate_deadline(&self) -> Instant {
        if self.min_rate == 0 {
            return self.began + Duration::from_secs(u64::MAX >> 2);
        }
        let covered = Duration::from_secs_f64(self.read as f64 / self.min_rate as f64);
        self.began + self.timeout.max(covered)
    }

    fn done_by_rate(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.began).as_secs_f64();
        self.read as f64 >= self.min_rate as f64 * elapsed
    }
}

/// What the request context holds for the bounds: the body's meter or buffered body, the
/// client's in-flight permit, the connection's tunnel watch, and the bound behind an answer.
#[derive(Default)]
pub struct Bounded {
    /// Set in the request phase for a request that may carry a body.
    pub meter: Option<BodyMeter>,
    /// The whole body, on a buffered route once read.
    pub buffered: Option<Bytes>,
    /// Its share of `body_buffer_memory`, held until the request ends.
    pub reservation: Option<Reservation>,
    /// The bound that cut a streamed body, for `fail_to_proxy`.
    pub refused: Option<Limit>,
    /// The bound behind this request's answer, counted when it is logged.
    pub limit_hit: Option<Limit>,
    /// The client's permit for its requests in flight.
    pub in_flight: Option<super::ClientPermit>,
    /// The connection's WebSocket watch (HTTP/1 only; h2 carries no upgrades).
    pub tunnel: Option<std::sync::Arc<super::tunnel::TunnelWatch>>,
}

impl Bounded {
    /// `response_filter`: a 101 opens the tunnel the connection's watch guards, under the
    /// route's WebSocket bounds.
    pub fn tunnel_opened(&self, status: http::StatusCode, route: &Route, request_id: &str) {
        if status != http::StatusCode::SWITCHING_PROTOCOLS {
            return;
        }
        if let Some(watch) = &self.tunnel {
            watch.arm(
                route.bounds.websocket_idle_timeout,
                route.bounds.websocket_max_duration,
                &route.name,
                request_id,
            );
        }
    }

    /// A tunnel chunk went either way.
    pub fn tunnel_alive(&self) {
        if let Some(watch) = &self.tunnel {
            watch.touch();
        }
    }
}

/// The request phase's body step: the declared length against the limit (before any
/// `100 Continue`), the read timeout for a streamed HTTP/1 body, and on buffered routes the
/// whole body.
pub async fn admit(
    buffers: &BufferBudget,
    buffered_bytes: &IntGauge,
    session: &mut Session,
    route: &RouteBounds,
    began: Instant,
    server: &RequestBounds,
    bounds: &mut Bounded,
) -> Result<(), Rejection> {
    let limit = route.body_limit(server);
    if session.is_upgrade_req() {
        // What follows the head of an upgrade is the tunnel, bounded by the tunnel's timeouts.
        session.set_read_timeout(None);
        return Ok(());
    }
    let declared = declared_length(session.req_header())?;
    if declared.is_some_and(|n| n > limit) {
        return Err(Rejection::PayloadTooLarge { limit });
    }
    if session.is_body_done() {
        return Ok(());
    }
    let meter = BodyMeter::new(limit, server, began);
    if !route.buffer_request_body {
        session.set_read_timeout(Some(server.request_body_timeout));
        bounds.meter = Some(meter);
        return Ok(());
    }
    let mut reservation = buffers.reserve(buffered_bytes);
    if let Some(n) = declared {
        // Reserved whole before a byte is read: a body that cannot fit is refused before
        // the client sends it.
        if !reservation.grow(n, server.body_buffer_memory) {
            return Err(Rejection::Overloaded(Limit::BodyBufferMemory));
        }
    }
    if expects_continue(session.req_header()) {
        session
            .write_continue_response()
            .await
            .map_err(|_| Rejection::BadRequest("the client went away".into()))?;
    }
    let body = read_whole(session, meter, declared, &mut reservation, server).await?;
    bounds.buffered = Some(body);
    bounds.reservation = Some(reservation);
    Ok(())
}

/// Reads the whole body under its deadlines, growing the reservation for a body of unknown
/// length as it arrives.
async fn read_whole(
    session: &mut Session,
    mut meter: BodyMeter,
    declared: Option<usize>,
    reservation: &mut Reservation,
    server: &RequestBounds,
) -> Result<Bytes, Rejection> {
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0));
    // The tail pingora will hand back on every try (see the module's comment).
    if declared.is_none_or(|n| n <= RETRY_BUFFER) {
        session.enable_retry_buffering();
    }
    loop {
        if declared.is_some_and(|n| n - meter.read() <= RETRY_BUFFER) {
            session.enable_retry_buffering();
        }
        let (deadline, limit) = meter.next_deadline(Instant::now());
        let chunk = tokio::time::timeout_at(deadline.into(), session.read_request_body()).await;
        let chunk = match chunk {
            Err(_) => return Err(Rejection::BodyTimeout(limit)),
            Ok(Err(e)) => {
                return Err(Rejection::BadRequest(format!(
                    "the request body could not be read: {}",
                    e.etype().as_str()
                )))
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(chunk))) => chunk,
        };
        if let Err(limit) = meter.take(chunk.len(), Instant::now()) {
            return Err(match limit {
                Limit::BodySize => Rejection::PayloadTooLarge {
                    limit: meter.limit(),
                },
                other => Rejection::BodyTimeout(other),
            });
        }
        if declared.is_none() && !reservation.grow(chunk.len(), server.body_buffer_memory) {
            return Err(Rejection::Overloaded(Limit::BodyBufferMemory));
        }
        body.extend_from_slice(&chunk);
    }
    if !body.is_empty() && session.get_retry_buffer().is_none() {
        return Err(Rejection::LengthRequired);
    }
    Ok(body.freeze())
}

/// `request_body_filter`: a buffered body takes the tail's place (every try); a streamed
/// chunk is judged before it is forwarded.
pub fn chunk(bounds: &mut Bounded, body: &mut Option<Bytes>) -> Result<(), Limit> {
    if let Some(whole) = &bounds.buffered {
        if body.is_some() {
            *body = Some(whole.clone());
        }
        return Ok(());
    }
    let (Some(meter), Some(chunk)) = (bounds.meter.as_mut(), body.as_ref()) else {
        return Ok(());
    };
    if let Err(limit) = meter.take(chunk.len(), Instant::now()) {
        bounds.refused = Some(limit);
        *body = None;
        return Err(limit);
    }
    Ok(())
}

/// The error that ends a try whose streamed body crossed a bound: from the client's side,
/// so it is never retried, and the upstream connection is dropped rather than pooled.
pub fn cut(limit: Limit) -> Box<pingora::Error> {
    pingora::Error::create(
        pingora::ErrorType::Custom("request body bound"),
        pingora::ErrorSource::Downstream,
        Some(limit.label().into()),
        None,
    )
}

/// `upstream_request_filter` for a buffered body: it is sent whole, with its length, and the
/// client's `Expect` was answered here already.
pub fn upstream_request(bounds: &Bounded, req: &mut RequestHeader) -> pingora::Result<()> {
    let Some(whole) = &bounds.buffered else {
        return Ok(());
    };
    req.remove_header(&EXPECT);
    req.remove_header(&TRANSFER_ENCODING);
    req.insert_header(CONTENT_LENGTH, whole.len())?;
    Ok(())
}

/// The `Content-Length` a request declares (the intake and pingora checked its form).
fn declared_length(req: &RequestHeader) -> Result<Option<usize>, Rejection> {
    match req.headers.get(CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(|n| Some(usize::try_from(n).unwrap_or(usize::MAX)))
            .ok_or_else(|| Rejection::BadRequest("malformed Content-Length".into())),
    }
}

fn expects_continue(req: &RequestHeader) -> bool {
    req.headers
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter(limit: usize, timeout_s: u64, rate: u64, began: Instant) -> BodyMeter {
        let server = RequestBounds {
            request_body_timeout: Duration::from_secs(timeout_s),
            min_request_body_rate: portcullis_config::ByteRate {
                bytes_per_sec: rate,
            },
            ..RequestBounds::default()
        };
        BodyMeter::new(limit, &server, began)
    }

    #[test]
    fn a_body_may_reach_the_limit_but_not_cross_it() {
        let t0 = Instant::now();
        let mut m = meter(10, 30, 1024, t0);
        assert_eq!(m.take(10, t0), Ok(()));
        assert_eq!(m.take(1, t0), Err(Limit::BodySize));
    }

    #[test]
    fn the_rate_counts_only_once_the_timeout_has_passed() {
        let t0 = Instant::now();
        let mut m = meter(1 << 20, 30, 1024, t0);
        // One byte at 29 s is slow, but within the grace of the timeout.
        assert_eq!(m.take(1, t0 + Duration::from_secs(29)), Ok(()));
        // At 31 s the average is far below 1 KiB/s.
        assert_eq!(
            m.take(1, t0 + Duration::from_secs(31)),
            Err(Limit::BodyRate)
        );
        // A body that kept up is fine at any age.
        let mut fast = meter(1 << 30, 30, 1024, t0);
        assert_eq!(fast.take(100 * 1024, t0 + Duration::from_secs(60)), Ok(()));
    }

    #[test]
    fn a_zero_rate_switches_the_rate_check_off() {
        let t0 = Instant::now();
        let mut m = meter(1 << 20, 30, 0, t0);
        assert_eq!(m.take(1, t0 + Duration::from_secs(3600)), Ok(()));
        assert_eq!(m.next_deadline(t0).1, Limit::BodyTimeout);
    }

    #[test]
    fn the_next_deadline_is_the_stall_or_the_rate_whichever_is_first() {
        let t0 = Instant::now();
        let mut m = meter(1 << 20, 30, 1024, t0);
        // Nothing read yet: the stall timeout (30 s) and the rate (at 30 s) coincide.
        assert_eq!(
            m.next_deadline(t0),
            (t0 + Duration::from_secs(30), Limit::BodyTimeout)
        );
        // 40 KiB by 10 s covers the rate until 40 s; from 25 s the stall would be at 55 s.
        m.take(40 * 1024, t0 + Duration::from_secs(10)).unwrap();
        let now = t0 + Duration::from_secs(25);
        assert_eq!(
            m.next_deadline(now),
            (t0 + Duration::from_secs(40), Limit::BodyRate)
        );
        // Early on, a stall comes first.
        assert_eq!(
            m.next_deadline(t0 + Duration::from_secs(5)),
            (t0 + Duration::from_secs(35), Limit::BodyTimeout)
        );
    }
}

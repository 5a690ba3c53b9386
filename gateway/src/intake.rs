//! The intake: every HTTP/1 request's header section is read here before pingora parses it,
//! so the gateway's own limits hold from the first byte rather than after pingora has buffered
//! up to 1 MiB at its 60-second-per-read pace:
//!
//! - a total deadline for the header section (`server.request_header_timeout`; slowloris),
//!   counted from the connection's accept for its first request and from the first byte of
//!   each later one (the idle time between requests is the keep-alive timeout's business);
//! - its size and field count (`max_request_header_bytes`, `max_request_headers`), 431;
//! - the framing rules a gateway in front of another parser must hold (request smuggling
//!   shapes), a well-formed section naming its host once, and a request target that is a
//!   path (or an absolute URI naming that same host), 400; `CONNECT`, 405.
//!
//! Together these leave pingora nothing to refuse with an answer of its own (a bare 400 or
//! 405 with `Server: Pingora`, no JSON body, no security headers, no log line).
//!
//! A refusal gets the contract's JSON body, request id and security headers (built by
//! `respond`, like every other generated answer), is counted and logged, and the connection is
//! closed. An accepted head goes to pingora as the session's first bytes: read from the socket
//! once, parsed by pingora as usual. HTTP/2 connections go to pingora directly (h2 frames
//! requests itself; the request phase checks their header limits).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{BufMut, BytesMut};
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use portcullis_intake::{self as head, Head};
use portcullis_routing::request_id;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::access_log::{timestamp, Entry};
use crate::bounds::tunnel::TunnelWatch;
use crate::bounds::{ConnectionGate, ConnectionPermit, Limit};
use crate::error::Rejection;
use crate::handoff;
use crate::metrics::method_label;
use crate::outcome;
use crate::proxy::Proxy;
use crate::respond::{self, Generated};
use crate::respond_ops::HeaderOp;
use crate::snapshot::Snapshot;
use crate::state::State;

/// How long a kept-alive connection may sit idle between requests (pingora's own default).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const INITIAL_BUFFER: usize = 2048;
/// How long a refused connection may take to deliver what it sends first (so closing it does
/// not reset the answer away).
const REFUSAL_LINGER: Duration = Duration::from_millis(100);
/// How long a new connection must have sent nothing before it may be closed to make room.
const SILENT_BEFORE_RECLAIM: Duration = Duration::from_secs(1);

/// The proxy service's application: the intake in front of pingora's HTTP proxy.
pub struct Intake {
    pub proxy: Arc<HttpProxy<Proxy>>,
    pub state: Arc<State>,
}

#[async_trait]
impl ServerApp for Intake {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // A TLS-ALPN-01 validation: the handshake was the whole exchange (RFC 8737).
        if matches!(stream.selected_alpn_proto(), Some(ALPN::Custom(p)) if p.protocol() == crate::tls::ACME_TLS_1)
        {
            return None;
        }
        // Every connection, h2 included, is counted against the connection caps first.
        let _held = match self.admit_connection(&stream) {
            Ok(permit) => permit,
            Err(rejection) => {
                self.refuse_connection(stream, &rejection).await;
                return None;
            }
        };
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return ServerApp::process_new(&self.proxy, stream, shutdown).await;
        }
        let mut stream = stream;
        let mut settings: Option<HttpPersistentSettings> = None;
        let tunnel = Arc::new(TunnelWatch::default());
        let gate = &self.state.bounds.connections;
        // The first request's deadline counts from the accept (a client that connects and
        // sends nothing is a slowloris too).
        let mut accepted = Some(Instant::now());
        loop {
            // One snapshot per request: the intake's limits and every phase after it.
            let snapshot = self.state.current();
            let head = match read_head(&snapshot, &mut stream, accepted, shutdown, gate).await {
                Ok(head) => head,
                Err(Ended::Quietly) => return None,
                Err(Ended::Refused(rejection, seen, began)) => {
                    refuse(&self.state, &snapshot, stream, &rejection, &seen, began).await;
                    return None;
                }
            };
            let mut session = ServerSession::new_http1(stream);
            match settings.take() {
                Some(kept) => kept.apply_to_session(&mut session),
                None => {
                    session.set_keepalive((!*shutdown.borrow()).then_some(KEEPALIVE_IDLE.as_secs()))
                }
            }
            session.set_pipelined_prefix(head);
            tunnel.reset();
            let served = handoff::scope(
                snapshot,
                tunnel.clone(),
                HttpServerApp::process_new_http(&self.proxy, session, shutdown),
            );
            // A WebSocket tunnel idle or open too long ends here: dropping the request's
            // future closes the client and the upstream connection.
            let reused = tokio::select! {
                biased;
                reused = served => reused?,
                closed = tunnel.expired() => {
                    tunnel_closed(&self.state, closed);
                    return None;
                }
            };
            let (next, kept) = reused.consume();
            stream = next;
            settings = kept;
            accepted = None;
        }
    }

    async fn cleanup(&self) {
        ServerApp::cleanup(self.proxy.as_ref()).await;
    }
}

enum Ended {
    /// The client went away, stayed idle past the keep-alive timeout, or the server is
    /// shutting down: close without a word.
    Quietly,
    /// Answer, then close. Carries the bytes seen (for the log's method) and when the
    /// header clock started (for the log's duration).
    Refused(Rejection, BytesMut, Instant),
}

impl Intake {
    /// The connection caps (`bounds::connections`): the total, and per client bucket unless
    /// the peer is a trusted proxy.
    fn admit_connection(&self, stream: &Stream) -> Result<ConnectionPermit, Rejection> {
        let snapshot = self.state.current();
        let bounds = &snapshot.config.server.bounds;
        let peer = peer_ip(stream);
        let bucket = portcullis_routing::client_ip::bucket(peer, bounds.ipv6_prefix);
        self.state
            .bounds
            .connections
            .admit(
                bucket,
                snapshot.trusted.contains(peer),
                bounds,
                &self.state.metrics.client_connections,
            )
            .map_err(|limit| match limit {
                Limit::Connections => Rejection::Overloaded(limit),
                other => Rejection::ClientLimit(other),
            })
    }

    /// A connection past a cap: HTTP/1 gets the answer (429 or 503, `Retry-After`,
    /// `Connection: close`) once what the client already sent is read (closing with unread
    /// bytes would reset the connection and lose the answer); h2 is closed. Either way it is
    /// counted and never holds its descriptor for more than a moment.
    async fn refuse_connection(&self, mut stream: Stream, rejection: &Rejection) {
        let snapshot = self.state.current();
        if let Some(limit) = rejection.limit() {
            crate::bounds::count(&self.state.metrics, "none", limit);
        }
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return;
        }
        let mut seen = BytesMut::with_capacity(INITIAL_BUFFER);
        let began = Instant::now();
        let deadline = tokio::time::Instant::from_std(began + REFUSAL_LINGER);
        while seen.len() < INITIAL_BUFFER && !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            match tokio::time::timeout_at(deadline, stream.read_buf(&mut seen)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => break,
            }
        }
        refuse(&self.state, &snapshot, stream, rejection, &seen, began).await;
    }
}

/// The client's address as the socket says (the per-client bucket of a connection).
fn peer_ip(stream: &Stream) -> std::net::IpAddr {
    stream
        .get_socket_digest()
        .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()))
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// Counts and logs a tunnel its watch closed.
fn tunnel_closed(state: &State, closed: crate::bounds::tunnel::Closed) {
    crate::bounds::count(&state.metrics, &closed.route, closed.limit);
    state.event(
        "websocket_closed",
        crate::state::json_fields([
            ("route", closed.route.into()),
            ("request_id", closed.request_id.into()),
            ("reason", closed.limit.label().into()),
            ("duration_ms", (closed.lasted.as_millis() as u64).into()),
        ]),
    );
}

/// Reads one request's header section (and whatever followed it in the same reads).
async fn read_head(
    snapshot: &Snapshot,
    stream: &mut Stream,
    accepted: Option<Instant>,
    shutdown: &ShutdownWatch,
    gate: &ConnectionGate,
) -> Result<BytesMut, Ended> {
    let server = &snapshot.config.server;
    let limits = head::Limits {
        bytes: server.max_request_header_bytes,
        fields: server.max_request_headers,
    };
    let mut shutdown = shutdown.clone();
    let mut buf = BytesMut::with_capacity(INITIAL_BUFFER);
    let began = match accepted {
        Some(at) => at,
        None => {
            if *shutdown.borrow() {
                return Err(Ended::Quietly);
            }
            tokio::select! {
                biased;
                read = tokio::time::timeout(KEEPALIVE_IDLE, stream.read_buf(&mut buf)) => match read {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return Err(Ended::Quietly),
                },
                _ = shutdown.wait_for(|down| *down) => return Err(Ended::Quietly),
                // Near max_connections, idle kept-alive connections make room first.
                _ = gate.make_room(&server.bounds) => return Err(Ended::Quietly),
            }
            Instant::now()
        }
    };
    let deadline = tokio::time::Instant::from_std(began + server.request_header_timeout);
    let mut scan = head::Scan::default();
    loop {
        let refusal = match scan.examine(&buf, &limits) {
            Head::Complete => return Ok(buf),
            Head::Partial => None,
            Head::TooLarge => Some(Rejection::HeadersTooLarge),
            Head::Malformed(reason) => Some(Rejection::BadRequest(reason.into_owned())),
            Head::Connect => Some(Rejection::MethodNotAllowed {
                method: http::Method::CONNECT,
                allow: crate::error::PROXIED_METHODS.to_vec(),
            }),
        };
        if let Some(r) = refusal {
            return Err(Ended::Refused(r, buf, began));
        }
        // Reads of a useful size (the examine above bounds the total).
        if buf.capacity() - buf.len() < 512 {
            buf.reserve(INITIAL_BUFFER);
        }
        tokio::select! {
            biased;
            read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)) => match read {
                Ok(Ok(0)) | Ok(Err(_)) => return Err(Ended::Quietly),
                Ok(Ok(_)) => {}
                Err(_) => return Err(Ended::Refused(Rejection::HeaderTimeout, buf, began)),
            },
            _ = shutdown.wait_for(|down| *down) => return Err(Ended::Quietly),
            // A new connection that has sent nothing for a second is as idle as a kept-alive
            // one: near max_connections it makes room too (nginx's "reusable" connections).
            // Never at once, or the connection just admitted could take its own wake-up.
            _ = async {
                tokio::time::sleep_until((began + SILENT_BEFORE_RECLAIM).into()).await;
                gate.make_room(&server.bounds).await
            }, if buf.is_empty() => return Err(Ended::Quietly),
        }
    }
}

/// Answers a refused header section with the contract's error response, closes the
/// connection, and counts and logs it like any other request.
async fn refuse(
    state: &State,
    snapshot: &Snapshot,
    mut stream: Stream,
    rejection: &Rejection,
    seen: &[u8],
    began: Instant,
) {
    let id = request_id::generate();
    let https = stream.get_ssl_digest().is_some();
    let generated = Generated::from(rejection);
    let cors = cors_headers(snapshot, seen);
    let wire = generated.header().and_then(|mut head| {
        respond::stamp(&mut head, &id, snapshot, https, &cors)?;
        Ok(serialize(&head, &generated.body))
    });
    match wire {
        Ok(bytes) => {
            let written = async {
                stream.write_all(&bytes).await?;
                stream.flush().await
            };
            // A client that does not read its answer does not hold the connection open.
            match tokio::time::timeout(Duration::from_secs(5), written).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::debug!("could not send the intake's answer: {e}"),
                Err(_) => log::debug!("the client did not take the intake's answer in time"),
            }
        }
        Err(e) => log::warn!("could not build the intake's answer: {e}"),
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;

    let method = method_of(seen);
    let client_ip = peer_ip(&stream).to_string();
    let entry = Entry {
        ts: timestamp(std::time::SystemTime::now()),
        request_id: &id,
        client_ip,
        method,
        path: "",
        route: None,
        status: generated.status,
        duration_ms: outcome::duration_ms(began.elapsed()),
        upstream: None,
        peer: None,
        user: None,
        reason: Some(generated.reason),
        tries: None,
        cache: None,
        bytes_sent: generated.body.len(),
        trace_id: None,
    };
    outcome::record(
        state,
        "none",
        None,
        portcullis_status::Slot::UNROUTED,
        method,
        &entry,
    );
}

/// The CORS headers for a refused head, so a browser's script can read the refusal too: the
/// `Origin` field is looked for in the bytes seen (one field, on a line of its own, in the
/// part of the section that arrived) and judged by the `[cors]` policy like any request's.
fn cors_headers(snapshot: &Snapshot, seen: &[u8]) -> Vec<HeaderOp> {
    let Some(policy) = &snapshot.cors else {
        return Vec::new();
    };
    let mut origins = seen.split(|b| *b == b'\n').skip(1).filter_map(|line| {
        let colon = line.iter().position(|b| *b == b':')?;
        let (name, value) = line.split_at(colon);
        name.eq_ignore_ascii_case(b"origin")
            .then(|| value[1..].trim_ascii())
    });
    let (Some(origin), None) = (origins.next(), origins.next()) else {
        return Vec::new();
    };
    let Ok(value) = http::HeaderValue::from_bytes(origin) else {
        return Vec::new();
    };
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.headers.insert(http::header::ORIGIN, value);
    policy.response_headers(&parts)
}

/// An HTTP/1.1 response head (header lines as pingora writes them) and body as bytes,
/// closing the connection.
fn serialize(head: &pingora::http::ResponseHeader, body: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(1024 + body.len());
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(head.status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(head.status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
    head.header_to_h1_wire(&mut out);
    out.put_slice(b"Connection: close\r\n\r\n");
    out.put_slice(body);
    out
}

/// The method label for what was seen of the request line.
fn method_of(seen: &[u8]) -> &'static str {
    let line = seen
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .map_or(&[][..], |start| &seen[start..]);
    let token = line.split(|b| *b == b' ').next().unwrap_or_default();
    http::Method::from_bytes(token).map_or("OTHER", |m| method_label(&m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_method_comes_from_the_request_line() {
        assert_eq!(method_of(b"POST /x HTTP/1.1\r\n"), "POST");
        assert_eq!(method_of(b"\r\nGET"), "GET");
        assert_eq!(method_of(b"\x00\x01"), "OTHER");
        assert_eq!(method_of(b""), "OTHER");
    }
}

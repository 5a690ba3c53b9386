//! The intake: every HTTP/1 request's header section is read here before pingora parses it,
//! so the gateway's own limits hold from the first byte rather than after pingora has buffered
//! up to 1 MiB at its 60-second-per-read pace:
//!
//! - a total deadline for the header section (`server.request_header_timeout`; slowloris),
//!   counted from the connection's accept for its first request and from the first byte of
//!   each later one (the idle time between requests is the keep-alive timeout's business);
//! - its size and field count (`max_request_header_bytes`, `max_request_headers`), 431;
//! - the framing rules a gateway in front of another parser must hold (request smuggling
//!   shapes) and a well-formed section, 400.
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
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use portcullis_routing::request_id;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::access_log::{timestamp, Entry};
use crate::error::Rejection;
use crate::metrics::method_label;
use crate::proxy::Proxy;
use crate::respond::{self, Generated};
use crate::state::State;

/// How long a kept-alive connection may sit idle between requests (pingora's own default).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// CR/LF bytes tolerated before a request line (RFC 9112 section 2.2 asks to ignore at least
/// one empty line; more is someone probing).
const MAX_LEADING_EMPTY: usize = 4;
/// The most header fields the configuration can allow (`max_request_headers`' upper bound).
const MAX_FIELDS: usize = 256;
const INITIAL_BUFFER: usize = 2048;

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
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return ServerApp::process_new(&self.proxy, stream, shutdown).await;
        }
        let mut stream = stream;
        let mut settings = None;
        // The first request's deadline counts from the accept (a client that connects and
        // sends nothing is a slowloris too).
        let mut accepted = Some(Instant::now());
        loop {
            let began = Instant::now();
            let head = match read_head(&self.state, &mut stream, accepted, shutdown).await {
                Ok(head) => head,
                Err(Ended::Quietly) => return None,
                Err(Ended::Refused(rejection, seen)) => {
                    refuse(&self.state, stream, &rejection, &seen, began).await;
                    return None;
                }
            };
            let mut session = ServerSession::new_http1(stream);
            match settings.take() {
                Some(kept) => {
                    pingora::apps::HttpPersistentSettings::apply_to_session(kept, &mut session)
                }
                None => session.set_keepalive((!*shutdown.borrow()).then_some(60)),
            }
            session.set_pipelined_prefix(head);
            let reused = HttpServerApp::process_new_http(&self.proxy, session, shutdown).await?;
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
    /// Answer, then close. Carries the bytes seen, for the log's method.
    Refused(Rejection, BytesMut),
}

/// Reads one request's header section (and whatever followed it in the same reads).
async fn read_head(
    state: &State,
    stream: &mut Stream,
    accepted: Option<Instant>,
    shutdown: &ShutdownWatch,
) -> Result<BytesMut, Ended> {
    let snapshot = state.current();
    let server = &snapshot.config.server;
    let limits = Limits {
        bytes: server.max_request_header_bytes,
        fields: server.max_request_headers.min(MAX_FIELDS),
    };
    let mut shutdown = shutdown.clone();
    let mut buf = BytesMut::with_capacity(INITIAL_BUFFER);
    let deadline = match accepted {
        Some(at) => at + server.request_header_timeout,
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
            }
            Instant::now() + server.request_header_timeout
        }
    };
    let deadline = tokio::time::Instant::from_std(deadline);
    let mut scan = Scan::default();
    loop {
        match scan.examine(&buf, &limits) {
            Examined::Complete => return Ok(buf),
            Examined::Refused(r) => return Err(Ended::Refused(r, buf)),
            Examined::Partial => {}
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
                Err(_) => return Err(Ended::Refused(Rejection::HeaderTimeout, buf)),
            },
            _ = shutdown.wait_for(|down| *down) => return Err(Ended::Quietly),
        }
    }
}

/// Answers a refused header section with the contract's error response, closes the
/// connection, and counts and logs it like any other request.
async fn refuse(
    state: &State,
    mut stream: Stream,
    rejection: &Rejection,
    seen: &[u8],
    began: Instant,
) {
    let snapshot = state.current();
    let id = request_id::generate();
    let https = stream.get_ssl_digest().is_some();
    let generated = Generated::from(rejection);
    let wire = generated.header().and_then(|mut head| {
        respond::stamp(&mut head, &id, &snapshot, https, &[])?;
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
    let status = generated.status;
    state
        .metrics
        .requests
        .with_label_values(&["none", method, status.to_string().as_str()])
        .inc();
    let client_ip = stream
        .get_socket_digest()
        .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()))
        .map_or_else(String::new, |ip| ip.to_string());
    let entry = Entry {
        ts: timestamp(std::time::SystemTime::now()),
        request_id: &id,
        client_ip,
        method,
        path: "",
        route: None,
        status,
        duration_ms: (began.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0,
        upstream: None,
        peer: None,
        user: None,
        reason: Some(generated.reason),
        tries: None,
        bytes_sent: generated.body.len(),
    };
    if !state.log.write(&entry) {
        state.metrics.access_log_dropped.inc();
    }
}

/// An HTTP/1.1 response head and body as bytes, closing the connection.
fn serialize(head: &pingora::http::ResponseHeader, body: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(1024 + body.len());
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(head.status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(head.status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
    for (name, value) in head.headers.iter() {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"connection: close\r\n\r\n");
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

struct Limits {
    bytes: usize,
    fields: usize,
}

enum Examined {
    Partial,
    Complete,
    Refused(Rejection),
}

/// Looks for the end of the header section incrementally (each byte is searched once, so a
/// client trickling bytes cannot make the gateway re-parse a growing buffer), then parses it
/// once, whole.
#[derive(Default)]
struct Scan {
    searched: usize,
}

impl Scan {
    fn examine(&mut self, buf: &[u8], limits: &Limits) -> Examined {
        let start = buf
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        if start > MAX_LEADING_EMPTY {
            return Examined::Refused(bad("empty lines before the request line"));
        }
        match section_end(buf, self.searched.max(start)) {
            Some(end) if end > limits.bytes => Examined::Refused(Rejection::HeadersTooLarge),
            Some(end) => match check(&buf[..end], limits) {
                Ok(()) => Examined::Complete,
                Err(r) => Examined::Refused(r),
            },
            None if buf.len() > limits.bytes => Examined::Refused(Rejection::HeadersTooLarge),
            None => {
                self.searched = buf.len().saturating_sub(2).max(start);
                Examined::Partial
            }
        }
    }
}

/// The offset just past the blank line ending a header section (CRLF or bare LF line ends),
/// searching from `from`.
fn section_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(offset) = buf.get(i..)?.iter().position(|b| *b == b'\n') {
        let lf = i + offset;
        match (buf.get(lf + 1), buf.get(lf + 2)) {
            (Some(b'\n'), _) => return Some(lf + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(lf + 3),
            (None, _) | (Some(b'\r'), None) => return None,
            _ => i = lf + 1,
        }
    }
    None
}

fn bad(message: &str) -> Rejection {
    Rejection::BadRequest(message.into())
}

/// Parses a complete header section and applies the framing rules.
fn check(head: &[u8], limits: &Limits) -> Result<(), Rejection> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut storage[..limits.fields]);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => framing(req.version, req.headers).map_err(bad),
        Ok(httparse::Status::Partial) => Err(bad("malformed request header section")),
        Err(httparse::Error::TooManyHeaders) => Err(Rejection::HeadersTooLarge),
        // Pingora percent-encodes bytes a request target may not hold raw (`|`, `{`, a space
        // in the path...) rather than refuse them, so judge the rest of the section with those
        // bytes masked; pingora still reads the original.
        Err(httparse::Error::Token) | Err(httparse::Error::Version) => {
            let masked = mask_target(head);
            let mut storage = [httparse::EMPTY_HEADER; MAX_FIELDS];
            let mut req = httparse::Request::new(&mut storage[..limits.fields]);
            match req.parse(&masked) {
                Ok(httparse::Status::Complete(_)) => framing(req.version, req.headers).map_err(bad),
                Err(httparse::Error::TooManyHeaders) => Err(Rejection::HeadersTooLarge),
                Ok(httparse::Status::Partial) | Err(_) => Err(bad("malformed request line")),
            }
        }
        Err(e) => Err(bad(&format!("malformed request header section: {e}"))),
    }
}

/// A copy of the section with every byte of the request target that is not plainly legal
/// replaced by `x` (the target is everything between the request line's first and last space).
fn mask_target(head: &[u8]) -> Vec<u8> {
    let mut out = head.to_vec();
    let start = out
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(0);
    let line_end = out[start..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(out.len(), |i| start + i);
    let line = &out[start..line_end];
    let (Some(first), Some(last)) = (
        line.iter().position(|b| *b == b' '),
        line.iter().rposition(|b| *b == b' '),
    ) else {
        return out;
    };
    if last <= first {
        return out;
    }
    for b in &mut out[start + first + 1..start + last] {
        let plain = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%#[]".contains(b);
        if !plain {
            *b = b'x';
        }
    }
    out
}

/// The framing rules: one way to find the body's end and one authority.
///
/// Transfer-Encoding must be exactly `chunked`, never beside Content-Length (RFC 9112 section
/// 6.1: the two parsers behind a gateway may disagree on which wins) and never in HTTP/1.0;
/// Content-Length appears at most once, as digits; Host at most once (section 3.2).
pub fn framing(version: Option<u8>, headers: &[httparse::Header<'_>]) -> Result<(), &'static str> {
    let (mut lengths, mut length_ok, mut hosts) = (0usize, true, 0usize);
    let (mut encoded, mut codings, mut only_chunked) = (false, 0usize, true);
    for field in headers {
        let name = field.name;
        if name.eq_ignore_ascii_case("content-length") {
            lengths += 1;
            let digits = field.value.trim_ascii();
            length_ok &=
                !digits.is_empty() && digits.len() <= 18 && digits.iter().all(u8::is_ascii_digit);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            encoded = true;
            for coding in field.value.split(|b| *b == b',') {
                let coding = coding.trim_ascii();
                if coding.is_empty() {
                    continue;
                }
                codings += 1;
                only_chunked &= coding.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        }
    }
    if encoded {
        if version == Some(0) {
            return Err("Transfer-Encoding is not allowed in an HTTP/1.0 request");
        }
        if lengths > 0 {
            return Err("Content-Length together with Transfer-Encoding is ambiguous");
        }
        if codings != 1 || !only_chunked {
            return Err("only a single chunked transfer coding is accepted");
        }
    }
    if lengths > 1 {
        return Err("more than one Content-Length");
    }
    if !length_ok {
        return Err("Content-Length is not a number");
    }
    if hosts > 1 {
        return Err("more than one Host header");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        bytes: 16 * 1024,
        fields: 100,
    };

    fn verdict(bytes: &[u8]) -> Result<bool, u16> {
        match Scan::default().examine(bytes, &LIMITS) {
            Examined::Complete => Ok(true),
            Examined::Partial => Ok(false),
            Examined::Refused(r) => Err(r.status()),
        }
    }

    #[test]
    fn a_plain_request_is_complete_and_a_prefix_is_partial() {
        let req = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(verdict(req), Ok(true));
        for cut in 0..req.len() {
            assert_eq!(verdict(&req[..cut]), Ok(false), "cut at {cut}");
        }
        assert_eq!(verdict(b"GET / HTTP/1.1\nHost: x\n\n"), Ok(true));
        assert_eq!(verdict(b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"), Ok(true));
    }

    #[test]
    fn trickled_bytes_are_searched_once_and_still_found() {
        let req = b"POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
        let mut scan = Scan::default();
        let mut done = None;
        for end in 1..=req.len() {
            if let Examined::Complete = scan.examine(&req[..end], &LIMITS) {
                done = Some(end);
                break;
            }
        }
        assert_eq!(done, Some(req.len() - 3));
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        for req in [
            &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
            b"POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
            b"HELLO\r\n\r\n",
            b"\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(verdict(req), Err(400), "{}", String::from_utf8_lossy(req));
        }
    }

    #[test]
    fn targets_pingora_would_escape_are_accepted() {
        assert_eq!(
            verdict(b"GET /a|b?q={1} HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(true)
        );
        assert_eq!(
            verdict(
                b"POST /a|b HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"
            ),
            Err(400)
        );
    }

    #[test]
    fn sizes_and_counts_over_the_limits_get_431() {
        let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 17 * 1024));
        assert_eq!(verdict(&big), Err(431), "no end in sight");
        big.extend(b"\r\n\r\n");
        assert_eq!(verdict(&big), Err(431), "complete but too large");
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..101 {
            many.extend(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend(b"\r\n");
        assert_eq!(verdict(&many), Err(431));
    }

    /// Request-shaped bytes: known pieces of request lines and fields, mixed with noise.
    fn head_like() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            Just(b"GET / HTTP/1.1\r\n".to_vec()),
            Just(b"POST /a|b HTTP/1.0\r\n".to_vec()),
            Just(b"Host: x\r\n".to_vec()),
            Just(b"Content-Length: 5\r\n".to_vec()),
            Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
            Just(b"Transfer-Encoding: gzip,chunked\r\n".to_vec()),
            Just(b" folded\r\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b" ".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..12),
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|p| p.concat())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]

        /// Whatever arrives, the intake answers without panicking, and reading the bytes in
        /// pieces (as the network delivers them) reaches the same verdict as reading them whole.
        #[test]
        fn trickled_and_whole_reads_agree_and_never_panic(
            bytes in head_like(),
            cuts in proptest::collection::vec(proptest::prelude::any::<proptest::sample::Index>(), 0..6),
        ) {
            let whole = verdict(&bytes);
            let mut ends: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
            ends.push(bytes.len());
            ends.sort_unstable();
            let mut scan = Scan::default();
            let mut pieces = Ok(false);
            for end in ends {
                pieces = match scan.examine(&bytes[..end], &LIMITS) {
                    Examined::Complete => Ok(true),
                    Examined::Partial => Ok(false),
                    Examined::Refused(r) => Err(r.status()),
                };
                if pieces != Ok(false) {
                    break;
                }
            }
            proptest::prop_assert_eq!(whole, pieces);
            let _ = method_of(&bytes);
            proptest::prop_assert_eq!(mask_target(&bytes).len(), bytes.len());
        }
    }

    #[test]
    fn the_log_method_comes_from_the_request_line() {
        assert_eq!(method_of(b"POST /x HTTP/1.1\r\n"), "POST");
        assert_eq!(method_of(b"\r\nGET"), "GET");
        assert_eq!(method_of(b"\x00\x01"), "OTHER");
        assert_eq!(method_of(b""), "OTHER");
    }
}

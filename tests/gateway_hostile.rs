//! Hostile HTTP/1.1 through the real binary, raw bytes on a socket: request-smuggling shapes
//! and malformed framing are refused with 400, oversized header sections with 431, a header
//! section that does not arrive in time (slowloris) with 408; each connection is closed and
//! nothing reaches the upstream.

#[path = "harness/mod.rs"]
mod harness;

use std::io::{BufReader, Read, Write};
use std::time::{Duration, Instant};

use harness::*;

/// Sends `raw` and reads one response; then checks the gateway closed the connection even
/// though more bytes follow (a smuggled second request must never be read).
fn exchange(port: u16, raw: &[u8]) -> (Response, bool) {
    let mut stream = connect(port, Duration::from_secs(5));
    stream.write_all(raw).unwrap();
    let smuggled = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let _ = stream.write_all(smuggled);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let response = read_response(&mut reader, "POST").expect("a response");
    (response, closed_by_peer(&mut reader))
}

/// Whether the gateway closed the connection: end of stream (or a reset) with no further
/// byte. A read that times out is a connection still open, and any byte (an answer to the
/// smuggled request) is not a close either.
fn closed_by_peer(reader: &mut impl Read) -> bool {
    let mut byte = [0u8; 1];
    match reader.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
        ),
    }
}

#[test]
fn smuggling_shapes_are_refused_and_the_connection_closed() {
    let app = Backend::start("app");
    let (port, admin) = (free_port(), free_port());
    let config = server_section(port, admin, "")
        + &format!("[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n", app.port)
        + "[[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"app\"\n";
    let gw = Gateway::start("hostile", port, admin, &config, &[]);

    // Every shape is refused by the gateway's intake before pingora parses anything: the
    // contract's JSON body, security headers, a request id, and the connection closed.
    let shapes: &[(&str, &[u8])] = &[
        ("CL + TE", b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("TE gzip, chunked", b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
        ("TE chunked twice", b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("TE in HTTP/1.0", b"POST /a HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("duplicate Content-Length", b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        ("identical duplicate Content-Length", b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
        ("malformed Content-Length", b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5x\r\n\r\nhello"),
        ("negative Content-Length", b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
        ("obs-fold", b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"),
        ("space before colon", b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length : 0\r\n\r\n"),
        ("two Host headers", b"GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        ("control byte in a value", b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n"),
        ("not HTTP at all", b"HELLO THERE\r\n\r\n"),
        ("unknown version", b"GET /a HTTP/3.7\r\nHost: x\r\n\r\n"),
    ];
    for (name, raw) in shapes {
        let (resp, closed) = exchange(port, raw);
        assert_eq!(
            (resp.status, resp.error_code().as_str()),
            (400, "bad_request"),
            "{name}"
        );
        assert_eq!(
            resp.header("x-content-type-options"),
            Some("nosniff"),
            "{name}"
        );
        assert!(resp.header("x-request-id").is_some(), "{name}");
        assert_eq!(resp.header("server"), None, "{name}");
        assert!(closed, "{name}: the connection must be closed");
    }
    // A target with bytes that must be escaped is not malformed: pingora percent-encodes it.
    let mut plain = connect(port, Duration::from_secs(5));
    plain
        .write_all(b"GET /a|b?q={1} HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let resp = read_response(&mut BufReader::new(plain), "GET").expect("an answer");
    assert_eq!(resp.status, 200);
    app.seen.lock().unwrap().clear();
    let mut long = b"GET /".to_vec();
    long.extend(std::iter::repeat_n(b'a', 70_000));
    long.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
    let (resp, closed) = exchange(port, &long);
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (431, "request_header_fields_too_large"),
        "absurd URI"
    );
    assert!(closed);

    assert_eq!(
        app.count(),
        0,
        "no smuggling shape and no smuggled request reached the upstream"
    );
    // A bad chunk size is only found while the body streams, after the checked headers went
    // upstream: the upstream gets a truncated request, the client an error, and the
    // connection closes.
    let (resp, closed) = exchange(
        port,
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    );
    assert!(resp.status >= 400, "bad chunk size: {}", resp.status);
    assert!(closed);
    // The gateway is unharmed.
    assert_eq!(gw.get("/ok").status, 200);
}

/// Nothing reached the upstream, and that is not because the upstream is unreachable: an
/// ordinary request afterwards reaches it.
fn nothing_reached(gw: &Gateway, app: &Backend) {
    assert_eq!(app.count(), 0, "nothing reached the upstream");
    assert_eq!(
        gw.get("/control").status,
        200,
        "an ordinary request is proxied"
    );
    assert_eq!(app.count(), 1, "the ordinary request reached the upstream");
}

fn gateway_with_deadline(name: &str, deadline: &str) -> (Backend, Gateway) {
    let app = Backend::start("app");
    let (port, admin) = (free_port(), free_port());
    let config = server_section(
        port,
        admin,
        &format!("request_header_timeout = \"{deadline}\"\n"),
    ) + &format!("[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n", app.port)
        + "[[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"app\"\n";
    let gw = Gateway::start(name, port, admin, &config, &[]);
    (app, gw)
}

/// Trickles `head` one byte every 100 ms (each read well inside pingora's 60 s per-read
/// timeout) until the gateway answers; returns the answer (read to the connection's close) and
/// when it came.
fn trickle(port: u16, head: &[u8]) -> (Response, Duration) {
    let mut stream = connect(port, Duration::from_millis(100));
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    for byte in head.iter().cycle() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no answer to a trickled header section"
        );
        if stream.write_all(&[*byte]).is_err() {
            break;
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&chunk[..n]);
                break;
            }
            Err(_) => continue,
        }
    }
    let answered = started.elapsed();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = stream.read_to_end(&mut answer);
    let mut reader = BufReader::new(std::io::Cursor::new(answer));
    let response =
        read_response(&mut reader, "GET").expect("an answer before the connection closed");
    (response, answered)
}

#[test]
fn a_trickled_header_section_gets_408_at_the_deadline() {
    let (app, gw) = gateway_with_deadline("slowloris", "1s");
    let (resp, answered) = trickle(gw.port, b"GET /a HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (408, "request_timeout")
    );
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(resp.header("x-request-id").is_some());
    assert_eq!(resp.header("x-frame-options"), Some("SAMEORIGIN"));
    assert!(
        answered >= Duration::from_millis(900) && answered < Duration::from_secs(10),
        "answered after {answered:?}"
    );

    // A connection that sends nothing at all is cut at the same deadline.
    let mut idle = connect(gw.port, Duration::from_secs(10));
    let started = Instant::now();
    let mut silent = Vec::new();
    let _ = idle.read_to_end(&mut silent);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        String::from_utf8_lossy(&silent).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&silent)
    );

    nothing_reached(&gw, &app);
    assert_eq!(
        gw.metric(
            "portcullis_requests_total",
            &[("route", "none"), ("status", "408")]
        ),
        2.0
    );
    assert!(gw
        .access_log()
        .iter()
        .any(|l| l["status"] == 408 && l["reason"] == "request_timeout" && l["method"] == "GET"));
}

#[test]
fn an_oversized_header_section_gets_431_as_soon_as_it_passes_the_limit() {
    let (app, gw) = gateway_with_deadline("oversized", "10s");
    // 16 KiB of header without an end: refused once the limit is passed, not at 1 MiB.
    let mut stream = connect(gw.port, Duration::from_secs(5));
    let mut head = b"GET /a HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 17 * 1024));
    stream.write_all(&head).unwrap();
    let resp = read_response(&mut BufReader::new(stream), "GET").expect("a 431");
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (431, "request_header_fields_too_large")
    );
    // 101 fields, small ones.
    let mut many = b"GET /a HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..100 {
        many.extend(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend(b"\r\n");
    let (resp, closed) = exchange(gw.port, &many);
    assert_eq!(resp.status, 431);
    assert!(closed);
    nothing_reached(&gw, &app);
}

#[test]
fn the_deadline_covers_the_header_section_only() {
    let (app, gw) = gateway_with_deadline("deadline-scope", "1s");
    let mut stream = connect(gw.port, Duration::from_secs(10));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    // A body slower than the header deadline is not cut: the deadline is for headers.
    stream
        .write_all(b"POST /slow-body HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
        .unwrap();
    for byte in b"0123456789" {
        std::thread::sleep(Duration::from_millis(150));
        stream.write_all(&[*byte]).unwrap();
    }
    let resp = read_response(&mut reader, "POST").expect("the upstream's answer");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["body"], "0123456789");
    // Idle time between requests on a kept-alive connection is not header time either.
    std::thread::sleep(Duration::from_millis(1500));
    stream
        .write_all(b"GET /after-idle HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let resp = read_response(&mut reader, "GET").expect("a second answer on the same connection");
    assert_eq!(resp.status, 200);
    // But the second request's own header section has the deadline from its first byte.
    stream.write_all(b"GET /third HTTP/1.1\r\n").unwrap();
    let resp = read_response(&mut reader, "GET").expect("a 408");
    assert_eq!(resp.status, 408);
    assert_eq!(app.count(), 2);
}

#[test]
fn a_request_pipelined_mid_exchange_is_the_clients_fault_not_the_upstreams() {
    let app = Backend::start_with("app", Duration::from_millis(300), &[]);
    let (port, admin) = (free_port(), free_port());
    let config = server_section(port, admin, "")
        + &format!("[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n", app.port)
        + "[[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"app\"\n";
    let gw = Gateway::start("pipelined", port, admin, &config, &[]);
    // Two requests in one write: the first is answered, then the connection closes.
    let mut both = connect(port, Duration::from_secs(5));
    both.write_all(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(both);
    assert_eq!(
        read_response(&mut reader, "GET").map(|r| r.status),
        Some(200)
    );
    // The next request sent while the upstream is still working on the first one: pingora
    // gives up the exchange; the client hears 400 and the upstream is not blamed.
    let mut mid = connect(port, Duration::from_secs(5));
    mid.write_all(b"GET /slow-one HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || app.count() >= 2));
    mid.write_all(b"GET /two HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let resp = read_response(&mut BufReader::new(mid), "GET").expect("an answer");
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (400, "bad_request")
    );
    assert_eq!(
        gw.metric(
            "portcullis_upstream_requests_total",
            &[("outcome", "connect_error")]
        ),
        0.0
    );
}

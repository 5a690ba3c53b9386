//! Hostile HTTP/1.1 through the real binary, raw bytes on a socket: request-smuggling shapes
//! and malformed framing are refused with 400, the connection is closed, and nothing reaches
//! the upstream.

#[path = "harness/mod.rs"]
mod harness;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use harness::*;

/// Sends `raw` and reads one response; then checks the gateway closed the connection even
/// though more bytes follow (a smuggled second request must never be read).
fn exchange(port: u16, raw: &[u8]) -> (Response, bool) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(raw).unwrap();
    let smuggled = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let _ = stream.write_all(smuggled);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let response = read_response(&mut reader, "POST").expect("a response");
    let closed = read_response(&mut reader, "GET").is_none();
    (response, closed)
}

#[test]
fn smuggling_shapes_are_refused_and_the_connection_closed() {
    let app = Backend::start("app");
    let (port, admin) = (free_port(), free_port());
    let config = server_section(port, admin, "")
        + &format!("[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n", app.port)
        + "[[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"app\"\n";
    let gw = Gateway::start("hostile", port, admin, &config, &[]);

    // Refused by the gateway's own framing check: JSON body, security headers.
    let ours: &[(&str, &[u8])] = &[
        ("CL + TE", b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("TE gzip, chunked", b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
        ("TE chunked twice", b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ];
    for (name, raw) in ours {
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
        assert!(closed, "{name}: the connection must be closed");
    }
    // Refused by pingora's parser before any gateway phase.
    let parser: &[(&str, &[u8])] = &[
        (
            "duplicate Content-Length",
            b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        ),
        (
            "malformed Content-Length",
            b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5x\r\n\r\nhello",
        ),
        (
            "negative Content-Length",
            b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        ),
        (
            "obs-fold",
            b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
        ),
        (
            "space before colon",
            b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length : 0\r\n\r\n",
        ),
        (
            "two Host headers",
            b"GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ),
    ];
    for (name, raw) in parser {
        let (resp, closed) = exchange(port, raw);
        assert_eq!(resp.status, 400, "{name}");
        assert!(closed, "{name}: the connection must be closed");
    }
    let mut long = b"GET /".to_vec();
    long.extend(std::iter::repeat_n(b'a', 70_000));
    long.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
    let (resp, closed) = exchange(port, &long);
    assert!(
        matches!(resp.status, 400 | 414 | 431),
        "absurd URI: {}",
        resp.status
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

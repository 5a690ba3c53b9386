//! Bounded requests against the real binary, over HTTP/1.1 (raw sockets, so every byte and
//! every pause is the test's) and h2 (Node's http2 client over TLS): body size (413), slow and trickling
//! bodies (408), request buffering (the upstream sees a connection only once the body is
//! whole, and a retry replays it whole), the buffer memory (503), requests in flight and
//! connections per client (429), the connection cap (503), and WebSocket idle and duration
//! limits. The backend records what reached it: it never sees a byte past a limit.

#[path = "harness/mod.rs"]
mod harness;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::*;

const LIMIT: usize = 64 * 1024;

/// A gateway in front of `app` with the routes every test uses: `/up` streams (64 KiB
/// limit), `/buf` buffers (1 MiB), `/ws` tunnels. `server` goes into `[server]`.
fn gateway(name: &str, app: u16, server: &str, upstream_extra: &str) -> Gateway {
    let (port, admin) = (free_port(), free_port());
    let text = format!(
        "{}[upstreams.app]\npeers = [\"127.0.0.1:{app}\"]\n{upstream_extra}\n\n\
         [[routes]]\nname = \"up\"\npath_prefix = \"/up\"\nupstream = \"app\"\nmax_request_body = \"64KiB\"\n\n\
         [[routes]]\nname = \"buf\"\npath_prefix = \"/buf\"\nupstream = \"app\"\nmax_request_body = \"1MiB\"\nbuffer_request_body = true\n\n\
         [[routes]]\nname = \"ws\"\npath_prefix = \"/ws\"\nupstream = \"app\"\nwebsocket_idle_timeout = \"1s\"\n\n\
         [[routes]]\nname = \"wsmax\"\npath_prefix = \"/wsmax\"\nupstream = \"app\"\nwebsocket_idle_timeout = \"10s\"\nwebsocket_max_duration = \"1s\"\n",
        server_section(port, admin, server)
    );
    Gateway::start(name, port, admin, &text, &[])
}

fn head(port: u16, method: &str, path: &str, headers: &[&str]) -> String {
    let mut h = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for line in headers {
        h.push_str(line);
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    h
}

/// Writes what it can: the gateway may close a refused request's connection mid-body.
fn write_some(stream: &mut TcpStream, bytes: &[u8]) -> bool {
    stream.write_all(bytes).is_ok()
}

fn answer(stream: TcpStream) -> Response {
    read_response(&mut BufReader::new(stream), "POST").expect("an answer")
}

/// `portcullis_request_limits_total{route, limit}` once it reaches `expected` (the count is
/// made when the request is logged, just after the answer went out), or as it is after 10 s.
fn limit_count(gw: &Gateway, route: &str, limit: &str, expected: f64) -> f64 {
    let read = || {
        gw.metric(
            "portcullis_request_limits_total",
            &[("route", route), ("limit", limit)],
        )
    };
    wait_until(Duration::from_secs(10), || read() >= expected);
    read()
}

/// The access log's `reason` on the latest line with `status` (the log is written in the
/// background: polled).
fn log_reason(gw: &Gateway, status: u64) -> Option<String> {
    let mut found = None;
    wait_until(Duration::from_secs(10), || {
        found = gw
            .access_log()
            .iter()
            .rev()
            .find(|l| l["status"] == status)
            .and_then(|l| l["reason"].as_str().map(str::to_string));
        found.is_some()
    });
    found
}

/// A connection to the gateway from another loopback address (another client bucket).
fn connect_from(source: &str, port: u16) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let from: SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&from.into()).unwrap();
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    socket.connect(&to.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream
}

fn get_on(mut stream: TcpStream, port: u16, path: &str) -> Response {
    stream
        .write_all(head(port, "GET", path, &["Connection: close"]).as_bytes())
        .unwrap();
    read_response(&mut BufReader::new(stream), "GET").expect("an answer")
}

// === body size ===

#[test]
fn a_declared_body_over_the_limit_is_refused_before_the_upstream_is_contacted() {
    let app = Recorder::start();
    let gw = gateway("bounds-declared", app.port, "", "");
    let too_big = (LIMIT + 1).to_string();

    // With Expect: 100-continue the refusal comes before the client sends a byte of body.
    let mut s = connect(gw.port, Duration::from_secs(10));
    let cl = format!("Content-Length: {too_big}");
    s.write_all(head(gw.port, "POST", "/up/x", &[&cl, "Expect: 100-continue"]).as_bytes())
        .unwrap();
    let r = answer(s);
    assert_eq!(r.status, 413);
    assert_eq!(r.error_code(), "payload_too_large");
    assert!(r.header("x-request-id").is_some());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("connection"), Some("close"));

    // Without it, the head is enough too: the body is never read, never forwarded.
    let mut s = connect(gw.port, Duration::from_secs(10));
    write_some(&mut s, head(gw.port, "POST", "/up/x", &[&cl]).as_bytes());
    write_some(&mut s, &vec![b'a'; 4096]);
    assert_eq!(answer(s).status, 413);

    // A body within the limit goes through whole.
    let r = gw.request("POST", "/up/x", &[], &vec![b'a'; LIMIT]);
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, format!("got {LIMIT}").as_bytes())
    );
    assert_eq!(
        app.connections(),
        1,
        "only the accepted request reached the upstream"
    );
    assert_eq!(limit_count(&gw, "up", "body_size", 2.0), 2.0);
    assert_eq!(log_reason(&gw, 413).as_deref(), Some("body_size"));
}

#[test]
fn a_chunked_body_is_cut_where_it_crosses_the_limit_and_its_upstream_connection_closed() {
    let app = Recorder::start();
    let gw = gateway("bounds-chunked", app.port, "", "");
    let mut s = connect(gw.port, Duration::from_secs(10));
    s.write_all(head(gw.port, "POST", "/up/x", &["Transfer-Encoding: chunked"]).as_bytes())
        .unwrap();
    let chunk = [
        format!("{:x}\r\n", 16 * 1024).into_bytes(),
        vec![b'c'; 16 * 1024],
        b"\r\n".to_vec(),
    ]
    .concat();
    for _ in 0..8 {
        if !write_some(&mut s, &chunk) {
            break;
        }
    }
    let r = answer(s);
    assert_eq!(r.status, 413);
    assert_eq!(r.error_code(), "payload_too_large");
    assert!(
        app.body_bytes() <= LIMIT,
        "the upstream got {} bytes",
        app.body_bytes()
    );
    assert!(
        app.complete().is_empty(),
        "the upstream never got a whole request"
    );
    assert!(
        wait_until(Duration::from_secs(10), || app.connections() > 0
            && app.closed() == app.connections()),
        "the upstream connection that got part of the body is closed, not pooled"
    );
    assert_eq!(limit_count(&gw, "up", "body_size", 1.0), 1.0);
}

// === slow bodies ===

#[test]
fn a_stalled_body_gets_408_and_both_connections_close() {
    let app = Recorder::start();
    let gw = gateway(
        "bounds-stall",
        app.port,
        "request_body_timeout = \"1s\"",
        "",
    );
    let mut s = connect(gw.port, Duration::from_secs(15));
    s.write_all(head(gw.port, "POST", "/up/x", &["Content-Length: 1000"]).as_bytes())
        .unwrap();
    s.write_all(&[b'a'; 10]).unwrap();
    let started = Instant::now();
    let r = answer(s);
    assert_eq!(r.status, 408);
    assert_eq!(r.error_code(), "request_timeout");
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(
        wait_until(Duration::from_secs(10), || app.closed()
            == app.connections()),
        "the upstream connection is closed too"
    );
    assert!(app.complete().is_empty());
    assert_eq!(limit_count(&gw, "up", "body_timeout", 1.0), 1.0);
    assert_eq!(log_reason(&gw, 408).as_deref(), Some("body_timeout"));
}

#[test]
fn a_trickling_body_gets_408_for_its_rate() {
    let app = Recorder::start();
    let gw = gateway(
        "bounds-trickle",
        app.port,
        "request_body_timeout = \"1s\"\nmin_request_body_rate = \"1KiB/s\"",
        "",
    );
    let mut s = connect(gw.port, Duration::from_secs(15));
    s.write_all(head(gw.port, "POST", "/up/x", &["Content-Length: 1000"]).as_bytes())
        .unwrap();
    let mut writer = s.try_clone().unwrap();
    // One byte every 200 ms: never a stall of a second, far below 1 KiB/s.
    let trickle = std::thread::spawn(move || {
        for _ in 0..100 {
            if writer.write_all(b"a").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let r = answer(s);
    assert_eq!(r.status, 408);
    assert_eq!(r.error_code(), "request_timeout");
    assert_eq!(limit_count(&gw, "up", "body_rate", 1.0), 1.0);
    assert_eq!(log_reason(&gw, 408).as_deref(), Some("body_rate"));
    assert!(app.complete().is_empty());
    drop(trickle);
}

// === request buffering ===

#[test]
fn a_buffered_body_reaches_the_upstream_only_whole() {
    let app = Recorder::start();
    let gw = gateway("bounds-buffer", app.port, "", "");
    let size = 200 * 1024;
    let mut s = connect(gw.port, Duration::from_secs(15));
    let cl = format!("Content-Length: {size}");
    s.write_all(head(gw.port, "POST", "/buf/x", &[&cl, "Expect: 100-continue"]).as_bytes())
        .unwrap();
    // The gateway says to go on itself: the upstream is not asked.
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 100"), "{line}");
    let mut blank = String::new();
    reader.read_line(&mut blank).unwrap();
    s.write_all(&vec![b'b'; size / 2]).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || gw
            .metric("portcullis_buffered_body_bytes", &[])
            == size as f64),
        "the body's size is reserved in the buffer memory"
    );
    // Half the body is in; over a short window, the upstream sees no connection.
    assert!(!wait_until(Duration::from_millis(400), || app
        .connections()
        > 0));
    s.write_all(&vec![b'b'; size - size / 2]).unwrap();
    let r = read_response(&mut reader, "POST").expect("an answer");
    assert_eq!(
        (r.status, r.body),
        (200, format!("got {size}").into_bytes())
    );
    assert_eq!(app.complete(), vec![size]);
    let expects = app
        .heads()
        .iter()
        .any(|h| h.to_ascii_lowercase().contains("expect:"));
    assert!(!expects, "the client's Expect was answered by the gateway");
    assert!(wait_until(Duration::from_secs(5), || gw
        .metric("portcullis_buffered_body_bytes", &[])
        == 0.0));
}

#[test]
fn a_buffered_body_is_replayed_whole_on_a_retry_whatever_its_size() {
    let app = Recorder::start();
    let gw = gateway(
        "bounds-replay",
        app.port,
        "",
        "[upstreams.app.retry]\nattempts = 2\nbackoff_base = \"1ms\"\nbackoff_max = \"5ms\"\n",
    );
    app.record
        .fail_next
        .store(1, std::sync::atomic::Ordering::SeqCst);
    let size = 300 * 1024;
    let r = gw.request("PUT", "/buf/x", &[], &vec![b'r'; size]);
    assert_eq!(
        (r.status, r.body),
        (200, format!("got {size}").into_bytes())
    );
    assert_eq!(
        app.complete(),
        vec![size, size],
        "sent whole twice: the failed try and the retry"
    );
}

#[test]
fn buffered_bodies_share_a_bounded_memory() {
    let app = Recorder::start();
    let (port, admin) = (free_port(), free_port());
    let text = format!(
        "{}[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n[[routes]]\nname = \"buf\"\npath_prefix = \"/buf\"\nupstream = \"app\"\nmax_request_body = \"64KiB\"\nbuffer_request_body = true\n",
        server_section(port, admin, "body_buffer_memory = \"64KiB\""),
        app.port
    );
    let gw = Gateway::start("bounds-memory", port, admin, &text, &[]);
    let first = 60 * 1024;
    let mut a = connect(port, Duration::from_secs(15));
    let cl = format!("Content-Length: {first}");
    a.write_all(head(port, "POST", "/buf/a", &[&cl]).as_bytes())
        .unwrap();
    a.write_all(&[b'a'; 1024]).unwrap();
    assert!(wait_until(Duration::from_secs(10), || gw
        .metric("portcullis_buffered_body_bytes", &[])
        == first as f64));
    let r = gw.request("POST", "/buf/b", &[], &vec![b'b'; 10 * 1024]);
    assert_eq!(r.status, 503);
    assert_eq!(r.error_code(), "overloaded");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(limit_count(&gw, "buf", "body_buffer_memory", 1.0), 1.0);
    a.write_all(&vec![b'a'; first - 1024]).unwrap();
    let r = answer(a);
    assert_eq!(r.status, 200);
    assert_eq!(app.complete(), vec![first]);
}

// === requests in flight, connections ===

#[test]
fn a_client_past_its_requests_in_flight_gets_429_counted_by_identified_client() {
    let app = Backend::start_with("app", Duration::from_secs(3), &[]);
    let (port, admin) = (free_port(), free_port());
    let text = format!(
        "{}[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n[[routes]]\nname = \"api\"\npath_prefix = \"/\"\nupstream = \"app\"\n",
        server_section(
            port,
            admin,
            "max_requests_in_flight_per_client = 2\ntrusted_proxies = [\"127.0.0.3\"]"
        ),
        app.port
    );
    let gw = Gateway::start("bounds-inflight", port, admin, &text, &[]);
    // Two slow requests for one user behind the trusted proxy.
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let mut s = connect_from("127.0.0.3", port);
            s.write_all(
                head(
                    port,
                    "GET",
                    "/slow",
                    &["X-Forwarded-For: 198.51.100.7", "Connection: close"],
                )
                .as_bytes(),
            )
            .unwrap();
            s
        })
        .collect();
    assert!(wait_until(Duration::from_secs(10), || app.count() == 2));
    let third = connect_from("127.0.0.3", port);
    let mut t = third;
    t.write_all(
        head(
            port,
            "GET",
            "/fast",
            &["X-Forwarded-For: 198.51.100.7", "Connection: close"],
        )
        .as_bytes(),
    )
    .unwrap();
    let r = read_response(&mut BufReader::new(t), "GET").unwrap();
    assert_eq!(r.status, 429);
    assert_eq!(r.error_code(), "rate_limited");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(
        log_reason(&gw, 429).as_deref(),
        Some("in_flight_per_client")
    );
    // Another user behind the same proxy is another client.
    let mut other = connect_from("127.0.0.3", port);
    other
        .write_all(
            head(
                port,
                "GET",
                "/fast",
                &["X-Forwarded-For: 198.51.100.8", "Connection: close"],
            )
            .as_bytes(),
        )
        .unwrap();
    assert_eq!(
        read_response(&mut BufReader::new(other), "GET")
            .unwrap()
            .status,
        200
    );
    for s in slow {
        assert_eq!(
            read_response(&mut BufReader::new(s), "GET").unwrap().status,
            200
        );
    }
    assert_eq!(limit_count(&gw, "api", "in_flight_per_client", 1.0), 1.0);
}

#[test]
fn a_client_past_its_connections_gets_429_and_close_but_a_trusted_proxy_does_not() {
    let app = Recorder::start();
    let gw = gateway(
        "bounds-conns",
        app.port,
        "max_connections_per_client = 2\ntrusted_proxies = [\"127.0.0.3\"]",
        "",
    );
    let held: Vec<_> = (0..2).map(|_| connect_from("127.0.0.2", gw.port)).collect();
    assert!(wait_until(Duration::from_secs(10), || gw
        .metric("portcullis_client_connections", &[])
        == 2.0));
    let r = get_on(connect_from("127.0.0.2", gw.port), gw.port, "/up/x");
    assert_eq!(r.status, 429);
    assert_eq!(r.error_code(), "rate_limited");
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(limit_count(&gw, "none", "connections_per_client", 1.0), 1.0);
    // Another client is not affected; neither is a trusted proxy holding more.
    assert_eq!(
        get_on(connect_from("127.0.0.4", gw.port), gw.port, "/up/x").status,
        200
    );
    let proxy: Vec<_> = (0..3).map(|_| connect_from("127.0.0.3", gw.port)).collect();
    for s in proxy {
        assert_eq!(get_on(s, gw.port, "/up/x").status, 200);
    }
    drop(held);
}

#[test]
fn past_max_connections_every_new_connection_gets_503_and_open_ones_are_served() {
    let app = Recorder::start();
    let gw = gateway(
        "bounds-max",
        app.port,
        "max_connections = 3\nmax_connections_per_client = 3",
        "",
    );
    // Connections with part of a request in (not idle: nothing to reclaim near the cap).
    let mut held: Vec<_> = (0..3)
        .map(|_| {
            let mut s = connect(gw.port, Duration::from_secs(15));
            s.write_all(b"GET /up/x HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    assert!(wait_until(Duration::from_secs(10), || gw
        .metric("portcullis_client_connections", &[])
        == 3.0));
    let r = get_on(connect_from("127.0.0.5", gw.port), gw.port, "/up/x");
    assert_eq!(r.status, 503);
    assert_eq!(r.error_code(), "overloaded");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(limit_count(&gw, "none", "connections", 1.0), 1.0);
    // The status page shows what is held and what was refused.
    let status = gw.admin_get("/status.json").expect("status.json").json();
    let bounds = &status["bounds"];
    assert_eq!(bounds["connections"], 3);
    assert_eq!(bounds["max_connections"], 3);
    let refused = bounds["refusals"].as_array().unwrap();
    assert_eq!(refused.len(), 9, "every limit is listed");
    let connections = refused
        .iter()
        .find(|r| r["limit"] == "connections")
        .unwrap();
    assert_eq!(connections["total"], 1);
    // Connections already open are served.
    let mut open = held.pop().unwrap();
    let rest = format!("Host: 127.0.0.1:{}\r\nConnection: close\r\n\r\n", gw.port);
    open.write_all(rest.as_bytes()).unwrap();
    let r = read_response(&mut BufReader::new(open), "GET").expect("an answer");
    assert_eq!(r.status, 200);
    assert!(wait_until(Duration::from_secs(10), || gw
        .metric("portcullis_client_connections", &[])
        == 2.0));
    assert_eq!(
        get_on(connect_from("127.0.0.5", gw.port), gw.port, "/up/x").status,
        200
    );
}

#[test]
fn near_max_connections_a_silent_connection_makes_room_for_a_new_one() {
    let app = Recorder::start();
    let gw = gateway(
        "bounds-reclaim",
        app.port,
        "max_connections = 4\nmax_connections_per_client = 4",
        "",
    );
    let silent: Vec<_> = (0..3)
        .map(|_| connect(gw.port, Duration::from_secs(15)))
        .collect();
    assert!(wait_until(Duration::from_secs(10), || gw
        .metric("portcullis_client_connections", &[])
        == 3.0));
    // The fourth reaches 90% of the cap: the longest-silent connection is closed for it, and
    // a fifth is served rather than refused.
    let fourth = connect(gw.port, Duration::from_secs(15));
    assert!(wait_until(Duration::from_secs(10), || gw
        .metric("portcullis_client_connections", &[])
        == 3.0));
    assert_eq!(
        get_on(connect(gw.port, Duration::from_secs(15)), gw.port, "/up/x").status,
        200
    );
    let closed = silent
        .iter()
        .filter(|s| {
            let mut s = s.try_clone().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            matches!(s.read(&mut [0u8; 64]), Ok(0))
        })
        .count();
    assert!(closed >= 1, "a silent connection made room");
    assert_eq!(limit_count(&gw, "none", "connections", 0.0), 0.0);
    drop(fourth);
}

// === WebSockets ===

fn open_tunnel(port: u16, path: &str) -> TcpStream {
    let mut s = connect(port, Duration::from_secs(15));
    s.write_all(
        head(
            port,
            "GET",
            path,
            &[
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Version: 13",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            ],
        )
        .as_bytes(),
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "the tunnel's head");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s.write_all(b"ping").unwrap();
    let mut echo = [0u8; 4];
    s.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"ping");
    s
}

/// Reads until the gateway closes the tunnel; how long that took.
fn until_closed(mut s: TcpStream) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return started.elapsed(),
            Ok(_) => {}
        }
    }
}

#[test]
fn an_idle_tunnel_is_closed_and_a_busy_one_at_its_maximum() {
    let app = Recorder::start();
    let gw = gateway("bounds-ws", app.port, "", "");
    let idle = open_tunnel(gw.port, "/ws");
    let lasted = until_closed(idle);
    assert!(
        lasted >= Duration::from_millis(800) && lasted < Duration::from_secs(10),
        "{lasted:?}"
    );
    assert_eq!(limit_count(&gw, "ws", "websocket_idle", 1.0), 1.0);

    let busy = open_tunnel(gw.port, "/wsmax");
    let mut writer = busy.try_clone().unwrap();
    let chatter = std::thread::spawn(move || {
        while writer.write_all(b"x").is_ok() {
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let lasted = until_closed(busy);
    assert!(lasted < Duration::from_secs(10), "{lasted:?}");
    chatter.join().unwrap();
    assert_eq!(limit_count(&gw, "wsmax", "websocket_duration", 1.0), 1.0);
    let events: Vec<_> = gw
        .stdout()
        .lines()
        .filter(|l| l.contains("\"websocket_closed\""))
        .map(str::to_string)
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events[0].contains("websocket_idle") && events[1].contains("websocket_duration"));
}

// === h2 ===

fn make_cert(dir: &Path) {
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        .arg("-keyout")
        .arg(dir.join("gw.key"))
        .arg("-out")
        .arg(dir.join("gw.crt"))
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success());
}

fn tls_gateway(name: &str, app: u16) -> (Gateway, u16) {
    let (port, tls_port, admin) = (free_port(), free_port(), free_port());
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\ntls_listen = [\"127.0.0.1:{tls_port}\"]\ntls_cert = \"gw.crt\"\ntls_key = \"gw.key\"\ngrace_period = \"3s\"\nrequest_body_timeout = \"1s\"\n\n\
         [admin]\nlisten = \"127.0.0.1:{admin}\"\n\n[upstreams.app]\npeers = [\"127.0.0.1:{app}\"]\n\n\
         [[routes]]\nname = \"up\"\npath_prefix = \"/up\"\nupstream = \"app\"\nmax_request_body = \"64KiB\"\n\n\
         [[routes]]\nname = \"buf\"\npath_prefix = \"/buf\"\nupstream = \"app\"\nmax_request_body = \"1MiB\"\nbuffer_request_body = true\n"
    );
    let gw = Gateway::start_with_files(name, port, admin, &text, &[], make_cert);
    (gw, tls_port)
}

/// An h2 client (Node's `http2`, which reads a complete answer even when the server then
/// resets the rest of the upload with `NO_ERROR`, as RFC 9113 section 8.1 allows; curl 7.88
/// drops such an answer). Writes `size` bytes, with or without `content-length`.
const H2_CLIENT: &str = r#"
const http2 = require('http2');
const [url, size, declare, hold] = process.argv.slice(1);
const u = new URL(url);
const client = http2.connect(u.origin, { rejectUnauthorized: false });
client.on('error', (e) => { console.log('0\n' + e.message); process.exit(0); });
const headers = { ':method': 'POST', ':path': u.pathname };
if (declare === '1') headers['content-length'] = size;
const req = client.request(headers);
let status = 0, body = '';
req.on('response', (h) => { status = h[':status']; });
req.on('data', (d) => { body += d; });
const done = () => { console.log(status + '\n' + body); client.close(); process.exit(0); };
req.on('end', done);
req.on('close', done);
req.on('error', () => {});
req.write(Buffer.alloc(Number(size), 97));
setTimeout(() => req.end(), Number(hold));
"#;

/// Uploads `size` bytes over h2 (declaring the length or not), ending the upload only after
/// `hold`: (status, body).
fn h2_upload(
    tls_port: u16,
    path: &str,
    size: usize,
    declare: bool,
    hold: Duration,
) -> (u16, String) {
    let out = Command::new("node")
        .args(["-e", H2_CLIENT, "--"])
        .arg(format!("https://127.0.0.1:{tls_port}{path}"))
        .arg(size.to_string())
        .arg(if declare { "1" } else { "0" })
        .arg(hold.as_millis().to_string())
        .stderr(Stdio::inherit())
        .output()
        .expect("node");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (status, body) = text.split_once('\n').unwrap_or((text.as_str(), ""));
    (status.trim().parse().unwrap_or(0), body.trim().to_string())
}

#[test]
fn over_h2_bodies_are_bounded_with_or_without_a_length() {
    let app = Recorder::start();
    let (gw, tls) = tls_gateway("bounds-h2", app.port);
    // Declared too large.
    let (status, body) = h2_upload(tls, "/up/x", LIMIT + 1, true, Duration::ZERO);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("payload_too_large"));
    // No length: cut where it crosses the limit.
    let (status, body) = h2_upload(tls, "/up/x", 4 * LIMIT, false, Duration::ZERO);
    assert_eq!(status, 413, "{body}");
    assert!(
        app.body_bytes() <= LIMIT,
        "the upstream got {} bytes",
        app.body_bytes()
    );
    assert!(app.complete().is_empty());
    // Buffered: whole, once.
    let (status, body) = h2_upload(tls, "/buf/x", 200 * 1024, true, Duration::ZERO);
    assert_eq!((status, body.as_str()), (200, "got 204800"));
    // Buffered and stalled: 408, and the upstream never saw it.
    let before = app.connections();
    let (status, body) = h2_upload(tls, "/buf/x", 10, false, Duration::from_secs(5));
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("request_timeout"));
    assert_eq!(app.connections(), before);
    assert_eq!(limit_count(&gw, "up", "body_size", 2.0), 2.0);
    // Ten bytes and a stall: the rate falls short at the same moment the stall is long
    // enough; whichever the gateway met first names it.
    let timeout = limit_count(&gw, "buf", "body_timeout", 0.0);
    assert_eq!(
        timeout + limit_count(&gw, "buf", "body_rate", 1.0 - timeout),
        1.0
    );
}

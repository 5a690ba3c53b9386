//! Bounded request bodies against the real binary, over HTTP/1.1 (raw sockets, so every byte
//! and every pause is the test's) and h2 (Node's http2 client over TLS): body size (413), slow
//! and trickling bodies (408), request buffering (the upstream sees a connection only once the
//! body is whole, and a retry replays it whole) and the buffer memory (503). The backend
//! records what reached it: it never sees a byte past a limit.

#[path = "harness/mod.rs"]
mod harness;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::*;

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

// === h2 ===

fn tls_gateway(name: &str, app: u16) -> (Gateway, u16) {
    let (port, tls_port, admin) = (free_port(), free_port(), free_port());
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\ntls_listen = [\"127.0.0.1:{tls_port}\"]\ntls_cert = \"gw.crt\"\ntls_key = \"gw.key\"\ngrace_period = \"3s\"\nrequest_body_timeout = \"1s\"\n\n\
         [admin]\nlisten = \"127.0.0.1:{admin}\"\n\n[upstreams.app]\npeers = [\"127.0.0.1:{app}\"]\n\n\
         [[routes]]\nname = \"up\"\npath_prefix = \"/up\"\nupstream = \"app\"\nmax_request_body = \"64KiB\"\n\n\
         [[routes]]\nname = \"buf\"\npath_prefix = \"/buf\"\nupstream = \"app\"\nmax_request_body = \"1MiB\"\nbuffer_request_body = true\n"
    );
    let gw = Gateway::start_with_files(name, port, admin, &text, &[], |dir| {
        make_cert(dir, "gw", "localhost", 2);
    });
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

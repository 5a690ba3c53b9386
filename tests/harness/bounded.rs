//! What the bounded-request tests share (tests/gateway_bounds_*.rs): a gateway with the
//! routes they use, raw request heads, connections from other loopback addresses (other
//! client buckets), and the limit counter and log reason, polled.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::*;

pub const LIMIT: usize = 64 * 1024;

/// A gateway in front of `app` with the routes every test uses: `/up` streams (64 KiB
/// limit), `/buf` buffers (1 MiB), `/ws` tunnels. `server` goes into `[server]`.
pub fn gateway(name: &str, app: u16, server: &str, upstream_extra: &str) -> Gateway {
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

pub fn head(port: u16, method: &str, path: &str, headers: &[&str]) -> String {
    let mut h = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for line in headers {
        h.push_str(line);
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    h
}

/// Writes what it can: the gateway may close a refused request's connection mid-body.
pub fn write_some(stream: &mut TcpStream, bytes: &[u8]) -> bool {
    stream.write_all(bytes).is_ok()
}

pub fn answer(stream: TcpStream) -> Response {
    read_response(&mut BufReader::new(stream), "POST").expect("an answer")
}

/// `portcullis_request_limits_total{route, limit}` once it reaches `expected` (the count is
/// made when the request is logged, just after the answer went out), or as it is after 10 s.
pub fn limit_count(gw: &Gateway, route: &str, limit: &str, expected: f64) -> f64 {
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
pub fn log_reason(gw: &Gateway, status: u64) -> Option<String> {
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
pub fn connect_from(source: &str, port: u16) -> TcpStream {
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

pub fn get_on(mut stream: TcpStream, port: u16, path: &str) -> Response {
    stream
        .write_all(head(port, "GET", path, &["Connection: close"]).as_bytes())
        .unwrap();
    read_response(&mut BufReader::new(stream), "GET").expect("an answer")
}

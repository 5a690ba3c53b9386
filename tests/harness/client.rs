//! The raw HTTP/1.1 client: sends exactly the bytes it is given, reads one response.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A connection to `port` on loopback whose reads give up after `read_timeout`.
pub fn connect(port: u16, read_timeout: Duration) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the gateway");
    stream
        .set_read_timeout(Some(read_timeout))
        .expect("set the read timeout");
    stream
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub elapsed: Duration,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    pub fn error_code(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
    /// The echo backend's view of the request: `None` when the backend did not get the
    /// header. A response that is not the echo backend's JSON fails the test, so a check that
    /// a header was stripped cannot pass on an answer the backend never gave.
    pub fn echoed_header(&self, name: &str) -> Option<String> {
        let echo = self.json();
        let Some(headers) = echo["headers"].as_object() else {
            panic!(
                "not an echo backend's answer (status {}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            );
        };
        headers
            .get(&name.to_ascii_lowercase())
            .and_then(|v| v.as_str())
            .map(str::to_string)
    }

    /// Every header the echo backend received, in order, as (name, value): repeated and
    /// oddly spelled names included. Empty for an answer that is not the echo backend's.
    pub fn echoed_list(&self) -> Vec<(String, String)> {
        let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
        self.json()["header_list"]
            .as_array()
            .map(|list| list.iter().map(|p| (text(&p[0]), text(&p[1]))).collect())
            .unwrap_or_default()
    }
}

pub fn request(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = connect(port, Duration::from_secs(15));
    send(&mut stream, port, method, target, headers, body, true);
    read_response(&mut BufReader::new(stream), method).expect("a response")
}

pub fn send(
    stream: &mut TcpStream,
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    close: bool,
) {
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
}

/// Reads one response from a socket (or from bytes already read, for a connection that closed
/// after answering).
pub fn read_response(reader: &mut impl BufRead, method: &str) -> Option<Response> {
    let started = Instant::now();
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if method != "HEAD" && status != 204 && status != 304 {
        if get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).ok()?;
                let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
                if n == 0 {
                    let mut end = String::new();
                    reader.read_line(&mut end).ok()?;
                    break;
                }
                let mut chunk = vec![0; n + 2];
                reader.read_exact(&mut chunk).ok()?;
                body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(len) = get("content-length").and_then(|l| l.parse::<usize>().ok()) {
            body = vec![0; len];
            reader.read_exact(&mut body).ok()?;
        } else {
            reader.read_to_end(&mut body).ok()?;
        }
    }
    Some(Response {
        status,
        headers,
        body,
        elapsed: started.elapsed(),
    })
}

//! The admin listener's HTTP/1.1: one request per connection, its head capped at 8 KiB and its
//! body at 64 KiB (the admin API's documents are small), all within a 5 s deadline.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX_HEAD: usize = 8 * 1024;
const MAX_BODY: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;
const DEADLINE: Duration = Duration::from_secs(5);

pub struct Request {
    pub method: String,
    /// The path without its query, still percent-encoded.
    pub path: String,
    pub authorization: Option<Vec<u8>>,
    /// The `Host` header; `None` when there is none or more than one (RFC 9112 §3.2: a
    /// request with several is invalid), which the listener refuses like a foreign one.
    pub host: Option<Vec<u8>>,
    pub body: Vec<u8>,
}

pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// `WWW-Authenticate` for a 401.
    pub challenge: Option<&'static str>,
}

impl Answer {
    pub fn text(status: u16, body: &str) -> Self {
        Answer {
            status,
            content_type: "text/plain",
            body: body.as_bytes().to_vec(),
            challenge: None,
        }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        let mut body = crate::json_line::to_vec(value).unwrap_or_default();
        body.push(b'\n');
        Answer {
            status,
            content_type: "application/json",
            body,
            challenge: None,
        }
    }

    /// The gateway's error body, `{"error": code, "message": text}`.
    pub fn error(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self::json(
            status,
            &serde_json::json!({"error": code, "message": message.into()}),
        )
    }

    pub fn with_body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    pub fn empty(status: u16) -> Self {
        Answer {
            status,
            content_type: "application/json",
            body: Vec::new(),
            challenge: None,
        }
    }
}

/// Why no request could be read.
pub enum ReadError {
    /// Nothing worth answering (closed, timed out).
    Gone,
    /// A request that gets this answer.
    Refuse(Answer),
}

pub async fn read(stream: &mut TcpStream) -> Result<Request, ReadError> {
    tokio::time::timeout(DEADLINE, read_inner(stream))
        .await
        .unwrap_or(Err(ReadError::Gone))
}

async fn read_inner(stream: &mut TcpStream) -> Result<Request, ReadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let (head_len, method, path, authorization, host, length) = loop {
        let n = stream.read(&mut chunk).await.map_err(|_| ReadError::Gone)?;
        if n == 0 {
            return Err(ReadError::Gone);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let method = req.method.unwrap_or_default().to_string();
                let target = req.path.unwrap_or_default();
                let path = target.split('?').next().unwrap_or_default().to_string();
                let header = |name: &str| {
                    req.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| h.value.to_vec())
                };
                if header("transfer-encoding").is_some() {
                    return Err(ReadError::Refuse(Answer::error(
                        411,
                        "bad_request",
                        "send the body with Content-Length",
                    )));
                }
                let length = match header("content-length") {
                    None => 0,
                    Some(v) => std::str::from_utf8(&v)
                        .ok()
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .ok_or_else(|| {
                            ReadError::Refuse(Answer::error(
                                400,
                                "bad_request",
                                "invalid Content-Length",
                            ))
                        })?,
                };
                let mut hosts = req
                    .headers
                    .iter()
                    .filter(|h| h.name.eq_ignore_ascii_case("host"));
                let host = match (hosts.next(), hosts.next()) {
                    (Some(h), None) => Some(h.value.to_vec()),
                    _ => None,
                };
                break (len, method, path, header("authorization"), host, length);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => {
                return Err(ReadError::Refuse(Answer::error(
                    431,
                    "bad_request",
                    "request header section too large",
                )))
            }
            Err(_) => {
                return Err(ReadError::Refuse(Answer::error(
                    400,
                    "bad_request",
                    "malformed request",
                )))
            }
        }
    };
    if length > MAX_BODY {
        return Err(ReadError::Refuse(Answer::error(
            413,
            "bad_request",
            "the body is larger than 64 KiB",
        )));
    }
    let mut body = buf.split_off(head_len.min(buf.len()));
    while body.len() < length {
        let n = stream.read(&mut chunk).await.map_err(|_| ReadError::Gone)?;
        if n == 0 {
            return Err(ReadError::Gone);
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(Request {
        method,
        path,
        authorization,
        host,
        body,
    })
}

pub async fn write(stream: &mut TcpStream, answer: &Answer, head_only: bool) {
    let reason = http::StatusCode::from_u16(answer.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let challenge = answer
        .challenge
        .map(|c| format!("WWW-Authenticate: {c}\r\n"))
        .unwrap_or_default();
    let content = if answer.status == 204 {
        String::new()
    } else {
        format!(
            "Content-Type: {}\r\nContent-Length: {}\r\n",
            answer.content_type,
            answer.body.len()
        )
    };
    // Like every answer the process gives, with a request id to quote.
    let head = format!(
        "HTTP/1.1 {} {reason}\r\n{content}{challenge}Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nContent-Security-Policy: {}\r\nReferrer-Policy: no-referrer\r\nx-request-id: {}\r\nConnection: close\r\n\r\n",
        answer.status,
        portcullis_status::CONTENT_SECURITY_POLICY,
        portcullis_routing::request_id::generate(),
    );
    let _ = stream.write_all(head.as_bytes()).await;
    if !head_only && answer.status != 204 {
        let _ = stream.write_all(&answer.body).await;
    }
    let _ = stream.shutdown().await;
}

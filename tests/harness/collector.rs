//! An OTLP/HTTP collector on loopback: `POST /v1/traces` bodies (protobuf, gzip or not)
//! decoded with the official definitions (`opentelemetry-proto`), every span and every raw
//! byte kept for the test to read. It can also be told to answer 503 or to never answer.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;

/// How the collector answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CollectorMode {
    Accept = 0,
    /// 503 to every export.
    Refuse = 1,
    /// Reads the request and never answers (the connection stays open).
    Hang = 2,
}

/// A span as received, with its resource's attributes.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub span: Span,
    pub resource: Vec<(String, String)>,
}

impl ReceivedSpan {
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }
    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }
    pub fn parent_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }
    /// The span kind: 1 internal, 2 server, 3 client.
    pub fn kind(&self) -> i32 {
        self.span.kind
    }
    /// An attribute as text (integers printed), if present.
    pub fn attr(&self, key: &str) -> Option<String> {
        self.span
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .map(|v| match v {
                AnyValue::StringValue(s) => s.clone(),
                AnyValue::IntValue(n) => n.to_string(),
                AnyValue::BoolValue(b) => b.to_string(),
                AnyValue::DoubleValue(d) => d.to_string(),
                other => format!("{other:?}"),
            })
    }
    /// The status code: 0 unset, 1 ok, 2 error.
    pub fn status(&self) -> i32 {
        self.span.status.as_ref().map_or(0, |s| s.code)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub struct Collector {
    pub port: u16,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    /// Every request body, un-gzipped, as received.
    raw: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Every request's headers.
    headers: Arc<Mutex<Vec<Vec<(String, String)>>>>,
    requests: Arc<AtomicUsize>,
    mode: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
}

impl Collector {
    pub fn start() -> Collector {
        Self::start_on(0)
    }

    pub fn start_on(port: u16) -> Collector {
        let listener = super::bind_loopback(port, "collector");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let c = Collector {
            port,
            spans: Default::default(),
            raw: Default::default(),
            headers: Default::default(),
            requests: Default::default(),
            mode: Arc::new(AtomicU8::new(CollectorMode::Accept as u8)),
            stop: Default::default(),
        };
        let shared = (
            c.spans.clone(),
            c.raw.clone(),
            c.headers.clone(),
            c.requests.clone(),
            c.mode.clone(),
            c.stop.clone(),
        );
        std::thread::spawn(move || {
            while !shared.5.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let shared = shared.clone();
                        std::thread::spawn(move || {
                            serve(
                                conn, &shared.0, &shared.1, &shared.2, &shared.3, &shared.4,
                                &shared.5,
                            )
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        c
    }

    pub fn set_mode(&self, mode: CollectorMode) {
        self.mode.store(mode as u8, Ordering::Relaxed);
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }

    /// The spans of one trace (hex id).
    pub fn trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        self.spans()
            .into_iter()
            .filter(|s| s.trace_id() == trace_id)
            .collect()
    }

    pub fn raw_bodies(&self) -> Vec<Vec<u8>> {
        self.raw.lock().unwrap().clone()
    }

    pub fn request_headers(&self) -> Vec<Vec<(String, String)>> {
        self.headers.lock().unwrap().clone()
    }

    /// Export requests received (answered or not).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn serve(
    conn: TcpStream,
    spans: &Mutex<Vec<ReceivedSpan>>,
    raw: &Mutex<Vec<Vec<u8>>>,
    headers_seen: &Mutex<Vec<Vec<(String, String)>>>,
    requests: &AtomicUsize,
    mode: &AtomicU8,
    stop: &AtomicBool,
) {
    conn.set_nonblocking(false).ok();
    conn.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    loop {
        let mut line = String::new();
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            match reader.read_line(&mut line) {
                Ok(0) => return,
                Ok(_) => break,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(_) => return,
            }
        }
        conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let Some(head) = super::backend::read_head(&line, &mut reader) else {
            return;
        };
        let mut body = vec![0; head.length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        conn.set_read_timeout(Some(Duration::from_millis(200))).ok();
        requests.fetch_add(1, Ordering::Relaxed);
        let gzipped = head
            .headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("content-encoding") && v == "gzip");
        headers_seen.lock().unwrap().push(head.headers.clone());
        match CollectorMode::from(mode.load(Ordering::Relaxed)) {
            CollectorMode::Hang => {
                // Hold the connection open, answering nothing, until the test ends.
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return;
            }
            CollectorMode::Refuse => {
                let _ = conn
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
                continue;
            }
            CollectorMode::Accept => {}
        }
        let plain = if gzipped {
            let mut out = Vec::new();
            if flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut out)
                .is_err()
            {
                let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
                continue;
            }
            out
        } else {
            body
        };
        let Ok(request) = ExportTraceServiceRequest::decode(&plain[..]) else {
            let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            continue;
        };
        raw.lock().unwrap().push(plain);
        let mut received = Vec::new();
        for rs in request.resource_spans {
            let resource: Vec<(String, String)> = rs
                .resource
                .map(|r| {
                    r.attributes
                        .into_iter()
                        .filter_map(|kv| match kv.value?.value? {
                            AnyValue::StringValue(s) => Some((kv.key, s)),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    received.push(ReceivedSpan {
                        span,
                        resource: resource.clone(),
                    });
                }
            }
        }
        spans.lock().unwrap().extend(received);
        // An empty ExportTraceServiceResponse.
        let _ = conn.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n",
        );
    }
}

impl From<u8> for CollectorMode {
    fn from(n: u8) -> Self {
        match n {
            1 => CollectorMode::Refuse,
            2 => CollectorMode::Hang,
            _ => CollectorMode::Accept,
        }
    }
}

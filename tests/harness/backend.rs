//! Echo backends on loopback: every request answered with JSON describing it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Answers every request with JSON describing it; records requests; `/health` answers
/// `health_status`; paths starting with `/slow` wait `delay` first.
pub struct Backend {
    pub name: String,
    pub port: u16,
    pub seen: Arc<Mutex<Vec<String>>>,
    pub health_status: Arc<AtomicU16>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    pub fn start(name: &str) -> Backend {
        Self::start_with(name, Duration::ZERO, &[])
    }

    pub fn start_with(name: &str, delay: Duration, extra: &[(&str, &str)]) -> Backend {
        Self::start_at(name, 0, delay, extra)
    }

    /// A backend on a given port (to restart one where the previous one listened).
    pub fn start_on(name: &str, port: u16) -> Backend {
        Self::start_at(name, port, Duration::ZERO, &[])
    }

    fn start_at(name: &str, port: u16, delay: Duration, extra: &[(&str, &str)]) -> Backend {
        let listener = super::bind_loopback(port, "backend");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let health_status = Arc::new(AtomicU16::new(200));
        let stop = Arc::new(AtomicBool::new(false));
        let extra: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (s, h, st, n) = (
            seen.clone(),
            health_status.clone(),
            stop.clone(),
            name.to_string(),
        );
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (s, h, n, e, st2) =
                            (s.clone(), h.clone(), n.clone(), extra.clone(), st.clone());
                        std::thread::spawn(move || serve(conn, &n, &s, &h, delay, &e, &st2));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Backend {
            name: name.to_string(),
            port,
            seen,
            health_status,
            stop,
        }
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    conn: TcpStream,
    name: &str,
    seen: &Mutex<Vec<String>>,
    health: &AtomicU16,
    delay: Duration,
    extra: &[(String, String)],
    stop: &AtomicBool,
) {
    conn.set_nonblocking(false).ok();
    conn.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    while !stop.load(Ordering::Relaxed) {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let Some(head) = read_head(&line, &mut reader) else {
            return;
        };
        let (method, target, length) = (head.method, head.target, head.length);
        let mut headers = serde_json::Map::new();
        let mut list = Vec::new();
        for (k, v) in head.headers {
            list.push(serde_json::json!([k.clone(), v.clone()]));
            let joined = match headers.get(&k).and_then(|x| x.as_str()) {
                Some(prev) => format!("{prev}, {v}"),
                None => v,
            };
            headers.insert(k, joined.into());
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        seen.lock().unwrap().push(target.clone());
        let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
        let status = if path == "/health" {
            health.load(Ordering::Relaxed)
        } else {
            200
        };
        if path.starts_with("/slow") {
            std::thread::sleep(delay);
        }
        let payload = serde_json::json!({
            "backend": name, "method": method, "target": target, "path": path, "query": query,
            "headers": headers, "header_list": list, "body": String::from_utf8_lossy(&body),
        })
        .to_string();
        let mut head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            payload.len()
        );
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        // One write: a head and body in two small writes meet Nagle and delayed ACKs (40 ms).
        head.push_str(&payload);
        if conn.write_all(head.as_bytes()).is_err() {
            return;
        }
    }
}

/// Answers every request with the status it is set to (200 at first), one request per
/// connection: an upstream that fails and recovers on cue.
pub struct Switchable {
    pub port: u16,
    pub status: Arc<AtomicU16>,
    stop: Arc<AtomicBool>,
}

impl Switchable {
    pub fn start() -> Switchable {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the backend");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let status = Arc::new(AtomicU16::new(200));
        let stop = Arc::new(AtomicBool::new(false));
        let (answer, st) = (status.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let Ok((conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let code = answer.load(Ordering::Relaxed);
                std::thread::spawn(move || {
                    conn.set_nonblocking(false).ok();
                    conn.set_read_timeout(Some(Duration::from_secs(5))).ok();
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut line = String::new();
                    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                        line.clear();
                    }
                    let body = format!("{{\"status\":{code}}}");
                    let mut conn = conn;
                    let _ = conn.write_all(
                        format!(
                            "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    );
                });
            }
        });
        Switchable { port, status, stop }
    }

    pub fn set(&self, status: u16) {
        self.status.store(status, Ordering::Relaxed);
    }
}

impl Drop for Switchable {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A request's head as the loopback servers of the harness read it: the request line's
/// method and target, the fields (names lower-cased), and the body's `Content-Length`.
pub(super) struct RequestHead {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub length: usize,
}

/// Reads the fields after the request line `line`; `None` when the connection ends first.
pub(super) fn read_head(line: &str, reader: &mut impl BufRead) -> Option<RequestHead> {
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    let mut length = 0;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
            if k == "content-length" {
                length = v.parse().unwrap_or(0);
            }
            headers.push((k, v));
        }
    }
    Some(RequestHead {
        method,
        target,
        headers,
        length,
    })
}

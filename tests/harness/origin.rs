//! A scriptable origin on loopback: each request is answered by a handler the test writes
//! (status, headers, body, a delay), and every request it received is recorded. Dropping it
//! closes the listener and every connection, like a backend that stopped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct OriginRequest {
    pub method: String,
    pub target: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl OriginRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct OriginResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
    /// Send the head and the first half of the body, wait this long, then the rest.
    pub trickle: Duration,
    /// Frame the body with chunked transfer coding instead of Content-Length.
    pub chunked: bool,
}

impl OriginResponse {
    pub fn ok(body: impl Into<Vec<u8>>, headers: &[(&str, &str)]) -> OriginResponse {
        OriginResponse {
            status: 200,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.into(),
            delay: Duration::ZERO,
            trickle: Duration::ZERO,
            chunked: false,
        }
    }

    pub fn trickled(mut self, pause: Duration) -> Self {
        self.trickle = pause;
        self
    }

    pub fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }

    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Handler = dyn Fn(&OriginRequest) -> OriginResponse + Send + Sync;

pub struct Origin {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<OriginRequest>>>,
    stop: Arc<AtomicBool>,
}

impl Origin {
    pub fn start(
        handler: impl Fn(&OriginRequest) -> OriginResponse + Send + Sync + 'static,
    ) -> Origin {
        Self::start_on(0, handler)
    }

    /// An origin on a given port (to bring one back where a stopped one listened).
    pub fn start_on(
        port: u16,
        handler: impl Fn(&OriginRequest) -> OriginResponse + Send + Sync + 'static,
    ) -> Origin {
        let listener = super::bind_loopback(port, "origin");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (s, st) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (s, st, h) = (s.clone(), st.clone(), handler.clone());
                        std::thread::spawn(move || serve(conn, &s, &st, &*h));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Origin { port, seen, stop }
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn requests(&self) -> Vec<OriginRequest> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Let the accept loop see the flag and close the listener.
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn serve(conn: TcpStream, seen: &Mutex<Vec<OriginRequest>>, stop: &AtomicBool, handler: &Handler) {
    conn.set_nonblocking(false).ok();
    conn.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    loop {
        let mut line = String::new();
        // Poll so a stopped origin also closes its idle keep-alive connections.
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
        let (method, target, headers, length) =
            (head.method, head.target, head.headers, head.length);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        conn.set_read_timeout(Some(Duration::from_millis(200))).ok();
        let path = target.split('?').next().unwrap_or("").to_string();
        let request = OriginRequest {
            method: method.clone(),
            target,
            path,
            headers,
            body,
        };
        seen.lock().unwrap().push(request.clone());
        let response = handler(&request);
        if !response.delay.is_zero() {
            std::thread::sleep(response.delay);
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let mut out = format!("HTTP/1.1 {} X\r\n", response.status).into_bytes();
        let mut has_length = false;
        for (k, v) in &response.headers {
            has_length |= k.eq_ignore_ascii_case("content-length");
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        let no_body = response.status == 304 || response.status == 204;
        if response.chunked {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        } else if !has_length && !no_body {
            out.extend_from_slice(
                format!("Content-Length: {}\r\n", response.body.len()).as_bytes(),
            );
        }
        out.extend_from_slice(b"\r\n");
        let mut body = Vec::new();
        if method != "HEAD" && !no_body {
            if response.chunked {
                for chunk in response.body.chunks(16 * 1024) {
                    body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    body.extend_from_slice(chunk);
                    body.extend_from_slice(b"\r\n");
                }
                body.extend_from_slice(b"0\r\n\r\n");
            } else {
                body.extend_from_slice(&response.body);
            }
        }
        let half = if response.trickle.is_zero() {
            body.len()
        } else {
            body.len() / 2
        };
        out.extend_from_slice(&body[..half]);
        if conn.write_all(&out).is_err() {
            return;
        }
        if half < body.len() {
            std::thread::sleep(response.trickle);
            if conn.write_all(&body[half..]).is_err() {
                return;
            }
        }
    }
}

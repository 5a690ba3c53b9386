//! A backend that records what reached it, byte by byte: connections accepted and closed,
//! request heads, body bytes as they arrive (Content-Length or chunked), requests held at
//! once. Answers `200` with `got N` once a body is complete; `/ws` answers 101 and then
//! echoes (a WebSocket-shaped tunnel); `/fail` closes the connection after reading the body
//! (an upstream that breaks mid-request).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
pub struct Record {
    pub connections: AtomicUsize,
    pub closed: AtomicUsize,
    /// Body bytes received, all requests together.
    pub body_bytes: AtomicUsize,
    /// Bodies received whole: their lengths.
    pub complete: Mutex<Vec<usize>>,
    pub heads: Mutex<Vec<String>>,
    pub holding: AtomicUsize,
    pub most_held: AtomicUsize,
    /// This many requests from now get their connection closed once their body is in.
    pub fail_next: AtomicUsize,
}

pub struct Recorder {
    pub port: u16,
    pub record: Arc<Record>,
    stop: Arc<AtomicBool>,
}

impl Recorder {
    pub fn start() -> Recorder {
        let listener = super::bind_loopback(0, "recorder");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let record = Arc::new(Record::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (r, st) = (record.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        r.connections.fetch_add(1, Ordering::SeqCst);
                        let r = r.clone();
                        std::thread::spawn(move || {
                            serve(conn, &r);
                            r.closed.fetch_add(1, Ordering::SeqCst);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Recorder { port, record, stop }
    }

    pub fn connections(&self) -> usize {
        self.record.connections.load(Ordering::SeqCst)
    }
    pub fn closed(&self) -> usize {
        self.record.closed.load(Ordering::SeqCst)
    }
    pub fn body_bytes(&self) -> usize {
        self.record.body_bytes.load(Ordering::SeqCst)
    }
    pub fn complete(&self) -> Vec<usize> {
        self.record.complete.lock().unwrap().clone()
    }
    pub fn heads(&self) -> Vec<String> {
        self.record.heads.lock().unwrap().clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(conn: TcpStream, r: &Record) {
    conn.set_nonblocking(false).ok();
    conn.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let end = line == "\r\n" && !head.is_empty();
            head.push_str(&line);
            if end {
                break;
            }
        }
        r.heads.lock().unwrap().push(head.clone());
        let lower = head.to_ascii_lowercase();
        let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
        if target.starts_with("/ws") {
            let _ = conn.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            );
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if conn.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        }
        let held = r.holding.fetch_add(1, Ordering::SeqCst) + 1;
        r.most_held.fetch_max(held, Ordering::SeqCst);
        let length = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let chunked = lower.contains("transfer-encoding: chunked");
        let got = if chunked {
            read_chunked(&mut reader, r)
        } else {
            read_exact(&mut reader, length.unwrap_or(0), r)
        };
        r.holding.fetch_sub(1, Ordering::SeqCst);
        let Some(got) = got else { return };
        r.complete.lock().unwrap().push(got);
        let fail = r
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return;
        }
        let body = format!("got {got}");
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if conn.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

fn read_exact(reader: &mut impl Read, mut left: usize, r: &Record) -> Option<usize> {
    let total = left;
    let mut buf = [0u8; 16 * 1024];
    while left > 0 {
        let n = reader.read(&mut buf[..left.min(16 * 1024)]).ok()?;
        if n == 0 {
            return None;
        }
        r.body_bytes.fetch_add(n, Ordering::SeqCst);
        left -= n;
    }
    Some(total)
}

fn read_chunked(reader: &mut impl BufRead, r: &Record) -> Option<usize> {
    let mut total = 0;
    loop {
        let mut size = String::new();
        if reader.read_line(&mut size).ok()? == 0 {
            return None;
        }
        let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
        if n == 0 {
            let mut end = String::new();
            reader.read_line(&mut end).ok()?;
            return Some(total);
        }
        read_exact(reader, n, r)?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf).ok()?;
        total += n;
    }
}

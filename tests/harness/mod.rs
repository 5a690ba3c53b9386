//! A small harness for end-to-end tests: the real `portcullis` binary (PORTCULLIS_BIN, else
//! target/release/portcullis), echo backends on loopback, and a raw HTTP/1.1 client that
//! sends exactly the bytes it is given. Every wait polls with a deadline; nothing sleeps and
//! hopes.
#![allow(dead_code)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub fn binary() -> PathBuf {
    let path = std::env::var_os("PORTCULLIS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/portcullis")
        });
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --release` first (scripts/test does)",
        path.display()
    );
    path
}

/// A loopback port nobody listens on, never handed out twice in this process.
pub fn free_port() -> u16 {
    static USED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let used = USED.get_or_init(|| Mutex::new(HashSet::new()));
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind");
        if used.lock().unwrap().insert(port) {
            return port;
        }
    }
}

pub fn wait_until(timeout: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if probe() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// === raw HTTP client ===

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
    /// The echo backend's view of the request.
    pub fn echoed_header(&self, name: &str) -> Option<String> {
        self.json()["headers"][name.to_ascii_lowercase()]
            .as_str()
            .map(str::to_string)
    }
}

pub fn request(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the gateway");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
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

// === echo backend ===

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
        let mut bound = TcpListener::bind(("127.0.0.1", port));
        for _ in 0..100 {
            if bound.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            bound = TcpListener::bind(("127.0.0.1", port));
        }
        let listener = bound.expect("bind the backend");
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
        let mut parts = line.split_whitespace();
        let (method, target) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut headers = serde_json::Map::new();
        let mut list = Vec::new();
        let mut length = 0;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
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
                list.push(serde_json::json!([k.clone(), v.clone()]));
                let joined = match headers.get(&k).and_then(|x| x.as_str()) {
                    Some(prev) => format!("{prev}, {v}"),
                    None => v,
                };
                headers.insert(k, joined.into());
            }
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

// === the gateway process ===

pub struct Gateway {
    pub port: u16,
    pub admin: u16,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    child: Option<Child>,
}

pub fn server_section(port: u16, admin: u16, extra: &str) -> String {
    format!("[server]\nlisten = [\"127.0.0.1:{port}\"]\ngrace_period = \"3s\"\n{extra}\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n")
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "portcullis-e2e-{}-{}-{}",
        name,
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Gateway {
    /// Starts the binary on `config` (which must use `port` and `admin`), waiting until
    /// `/healthz` answers and the listener accepts.
    pub fn start(name: &str, port: u16, admin: u16, config: &str, env: &[(&str, &str)]) -> Gateway {
        Self::start_with_files(name, port, admin, config, env, |_| {})
    }

    /// Like `start`, after `prepare` wrote extra files (certificates, keys) into the gateway's
    /// directory, which relative paths in the config resolve against.
    pub fn start_with_files(
        name: &str,
        port: u16,
        admin: u16,
        config: &str,
        env: &[(&str, &str)],
        prepare: impl FnOnce(&Path),
    ) -> Gateway {
        let gw = Self::spawn(name, port, admin, config, env, prepare, &[]);
        gw.await_ready(name);
        gw
    }

    /// Like `start`, with extra command-line arguments.
    pub fn start_with_args(
        name: &str,
        port: u16,
        admin: u16,
        config: &str,
        args: &[&str],
    ) -> Gateway {
        let gw = Self::spawn(name, port, admin, config, &[], |_| {}, args);
        gw.await_ready(name);
        gw
    }

    /// Starts a second process with `--upgrade`, which takes the listening sockets over once
    /// the running one gets SIGQUIT. Returns at once (the old process still answers).
    pub fn start_upgrade(name: &str, old: &Gateway, config: &str, sock: &Path) -> Gateway {
        let sock = sock.to_str().expect("utf-8 path");
        Self::spawn(
            name,
            old.port,
            old.admin,
            config,
            &[],
            |_| {},
            &["--upgrade", "--upgrade-sock", sock],
        )
    }

    fn spawn(
        name: &str,
        port: u16,
        admin: u16,
        config: &str,
        env: &[(&str, &str)],
        prepare: impl FnOnce(&Path),
        args: &[&str],
    ) -> Gateway {
        let dir = scratch(name);
        prepare(&dir);
        let config_path = dir.join("portcullis.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut cmd = Command::new(binary());
        cmd.arg("--config")
            .arg(&config_path)
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::null());
        cmd.stdout(std::fs::File::create(dir.join("stdout.log")).unwrap());
        cmd.stderr(std::fs::File::create(dir.join("stderr.log")).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start portcullis");
        Gateway {
            port,
            admin,
            dir,
            config_path,
            child: Some(child),
        }
    }

    fn await_ready(&self, name: &str) {
        let ready = wait_until(Duration::from_secs(15), || {
            self.admin_get("/healthz").is_some_and(|r| r.status == 200)
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
        if !ready {
            let stderr = std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default();
            panic!("gateway {name} not ready in 15 s; stderr:\n{stderr}");
        }
    }

    pub fn get(&self, target: &str) -> Response {
        request(self.port, "GET", target, &[], b"")
    }

    pub fn request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        request(self.port, method, target, headers, body)
    }

    pub fn admin_get(&self, path: &str) -> Option<Response> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.admin)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .ok()?;
        read_response(&mut BufReader::new(stream), "GET")
    }

    /// The value of a metric sample whose line starts with `prefix` (name and labels), summed.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let Some(resp) = self.admin_get("/metrics") else {
            return 0.0;
        };
        let text = String::from_utf8_lossy(&resp.body).to_string();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .filter(|l| {
                labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum()
    }

    /// The gateway process's resident memory in KiB (Linux /proc).
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    pub fn signal(&self, sig: i32) {
        if let Some(child) = &self.child {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, sig) };
        }
    }

    pub fn reload(&self, config: &str) {
        let tmp = self.dir.join("next.toml");
        std::fs::write(&tmp, config).unwrap();
        std::fs::rename(&tmp, &self.config_path).unwrap();
        self.signal(libc::SIGHUP);
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status.code();
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// Access-log lines (JSON objects with a request_id).
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        self.stdout()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.get("request_id").is_some())
            .collect()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.signal(libc::SIGTERM);
        if self.wait_exit(Duration::from_secs(5)).is_none() {
            self.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the binary to completion: (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run portcullis");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

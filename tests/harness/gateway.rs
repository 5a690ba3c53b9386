//! The gateway process: start it on a config, signal it, read its metrics and logs.

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// A self-signed certificate for `cn`, valid `days`, written as `name.crt` / `name.key`.
pub fn make_cert(dir: &Path, name: &str, cn: &str, days: u32) -> (PathBuf, PathBuf) {
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days",
        ])
        .arg(days.to_string())
        .args([
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            &format!("subjectAltName=DNS:{cn}"),
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success());
    (crt, key)
}

pub struct Gateway {
    pub port: u16,
    pub admin: u16,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    child: Option<Child>,
}

/// The admin token of tests that use the admin API's writes.
pub const ADMIN_TEST_TOKEN: &str = "admin-test-token-0123456789abcdef";

/// `[admin] token` for [`ADMIN_TEST_TOKEN`]: append it right after `server_section`, whose
/// text ends inside `[admin]`.
pub const ADMIN_TOKEN_LINE: &str = "token = \"admin-test-token-0123456789abcdef\"\n\n";

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

    /// `POST path` on the admin listener with a JSON body.
    /// An admin API write, with the bearer credential of [`ADMIN_TEST_TOKEN`] (configure it
    /// with [`ADMIN_TOKEN_LINE`] right after `server_section`).
    pub fn admin_post(&self, path: &str, body: &str) -> Option<Response> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.admin)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        stream
            .write_all(
                format!(
                    "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {ADMIN_TEST_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    self.admin,
                    body.len()
                )
                .as_bytes(),
            )
            .ok()?;
        read_response(&mut BufReader::new(stream), "POST")
    }

    pub fn admin_get(&self, path: &str) -> Option<Response> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.admin)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        stream
            .write_all(
                format!(
                    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                    self.admin
                )
                .as_bytes(),
            )
            .ok()?;
        read_response(&mut BufReader::new(stream), "GET")
    }

    /// The body of `GET /metrics`. A scrape that fails (no connection, no answer, a status
    /// other than 200, or a body that is not the Prometheus text format) fails the test: a
    /// check on a metric must never pass because the admin endpoint is down.
    pub fn scrape(&self) -> String {
        let Some(resp) = self.admin_get("/metrics") else {
            panic!(
                "scraping http://127.0.0.1:{}/metrics failed: no answer",
                self.admin
            );
        };
        let text = String::from_utf8_lossy(&resp.body).to_string();
        assert_eq!(
            resp.status, 200,
            "scraping http://127.0.0.1:{}/metrics answered {}: {text}",
            self.admin, resp.status
        );
        assert!(
            text.lines().any(|l| l.starts_with("# HELP "))
                && text.lines().any(|l| l.starts_with("# TYPE ")),
            "scraping http://127.0.0.1:{}/metrics: not a Prometheus exposition:\n{text}",
            self.admin
        );
        text
    }

    /// The samples of metric `name` carrying all of `labels`, summed; `None` when a successful
    /// scrape has no such sample. An unparsable sample line fails the test.
    pub fn sample(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let text = self.scrape();
        let mut found = None;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            if !(rest.starts_with('{') || rest.starts_with(' ')) {
                continue;
            }
            let has = |k: &str, v: &str| {
                rest.contains(&format!("{{{k}=\"{v}\"")) || rest.contains(&format!(",{k}=\"{v}\""))
            };
            if !labels.iter().all(|(k, v)| has(k, v)) {
                continue;
            }
            let value = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("unparsable sample line in /metrics: {line}"));
            *found.get_or_insert(0.0) += value;
        }
        found
    }

    /// A counter's value (samples of `name` with `labels`, summed). A counter never
    /// incremented has no sample yet, so absent from a successful scrape is 0; a failed scrape
    /// fails the test.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.sample(name, labels).unwrap_or(0.0)
    }

    /// The value of a metric the gateway always exports (a gauge it sets at start, a counter
    /// without labels): absent from the scrape fails the test instead of reading as 0.
    pub fn exported_metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.sample(name, labels)
            .unwrap_or_else(|| panic!("{name} {labels:?} is not exported:\n{}", self.scrape()))
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

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
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

    /// The process's standard output so far. The file is created before the process starts,
    /// so failing to read it fails the test (a check that a line is absent must not pass on
    /// output that could not be read).
    pub fn stdout(&self) -> String {
        self.output("stdout.log")
    }

    pub fn stderr(&self) -> String {
        self.output("stderr.log")
    }

    fn output(&self, file: &str) -> String {
        let path = self.dir.join(file);
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        String::from_utf8_lossy(&bytes).into_owned()
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

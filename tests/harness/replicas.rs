//! Gateway replicas sharing revocations, bans and rate limits through real redis-server
//! processes, for the shared-state tests (gateway_shared_state.rs, gateway_redis_cluster.rs).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

use super::*;

pub use super::cached::SECRET;
pub const ADMIN_TOKEN: &str = "admin-token-e2e-0123456789abcdef";

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn token(claims: serde_json::Value) -> String {
    let t = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    format!("Bearer {t}")
}

// === redis-server processes ===

pub struct Redis {
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl Redis {
    pub fn start(port: u16, extra: &[&str]) -> Redis {
        let dir = scratch(&format!("redis-{port}"));
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/install-deps installs it)");
        assert!(
            wait_until(Duration::from_secs(10), || redis_cli(port, &["PING"])
                .is_some_and(|o| o.trim() == "PONG")),
            "redis-server on {port} did not start"
        );
        Redis { port, child, dir }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `redis-cli -p PORT args...`, its output when it ran.
pub fn redis_cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

// === gateways ===

/// A replica: an auth route (`/api`), an open route (`/open`) limited per IP, suspicious
/// requests blocked with auto-bans, loopback trusted (X-Forwarded-For names the client).
pub fn replica(name: &str, app: &Backend, store: &str, admin: &str) -> Gateway {
    let (port, admin_port) = (free_port(), free_port());
    let config = format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\ngrace_period = \"3s\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n\
         [admin]\nlisten = \"127.0.0.1:{admin_port}\"\n{admin}\n\n\
         [upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n\
         [jwt]\nalgorithms = [\"HS256\"]\nsecret = \"{SECRET}\"\nmax_token_lifetime = \"1h\"\nmax_revocations = 3\n\n\
         [rate_limits.open]\nper_ip = \"5/min\"\n\n\
         {store}\n\n\
         [suspicious]\nmode = \"block\"\nban_threshold = 2\nban_window = \"1m\"\nban_duration = \"10m\"\n\n\
         [[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"app\"\nauth = \"required\"\nrate_limit = \"off\"\n\n\
         [[routes]]\nname = \"open\"\npath_prefix = \"/open\"\nupstream = \"app\"\nauth = \"none\"\nrate_limit = \"open\"\n\n\
         [[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\nrate_limit = \"off\"\n",
        app.port
    );
    Gateway::start(
        name,
        port,
        admin_port,
        &config,
        &[("ADMIN_TOKEN", ADMIN_TOKEN)],
    )
}

pub fn redis_store(port: u16, prefix: &str) -> String {
    format!("[rate_limit_store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{port}\"\ntimeout = \"100ms\"\nkey_prefix = \"{prefix}\"")
}

pub const WITH_TOKEN: &str = "token = \"${ADMIN_TOKEN}\"";

pub fn admin(gw: &Gateway, method: &str, path: &str, body: Option<serde_json::Value>) -> Response {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut headers = vec![("Authorization", auth.as_str())];
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    request(gw.admin, method, path, &headers, body.as_bytes())
}

pub fn api(gw: &Gateway, auth: &str) -> u16 {
    gw.request("GET", "/api/me", &[("Authorization", auth)], b"")
        .status
}

pub fn from(gw: &Gateway, client: &str, target: &str) -> Response {
    gw.request("GET", target, &[("X-Forwarded-For", client)], b"")
}

/// How long until `probe` holds, polled; `None` past `limit`.
pub fn time_until(limit: Duration, mut probe: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    wait_until(limit, &mut probe).then(|| start.elapsed())
}

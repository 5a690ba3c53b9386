//! `[acme]` against Debian's pebble, a real ACME server that really validates: HTTP-01 on
//! the plain listener and TLS-ALPN-01 on the TLS listener (pebble's `httpPort`/`tlsPort`
//! point at the gateway), the served chain verified against pebble's root, a restart that
//! serves the stored certificate and orders nothing, a renewal under an open connection,
//! pebble down at start and back, two replicas sharing one Redis, and `--check`.

#[path = "harness/mod.rs"]
mod harness;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use harness::*;

const NAME: &str = "music.example.com";
const OTHER: &str = "www.example.com";
const ISSUED_WITHIN: Duration = Duration::from_secs(60);

struct Ports {
    plain: u16,
    tls: u16,
    admin: u16,
}

impl Ports {
    fn new() -> Ports {
        Ports {
            plain: free_port(),
            tls: free_port(),
            admin: free_port(),
        }
    }
}

fn config(p: &Ports, app: &Backend, spec: &PebbleSpec, acme: &str, extra: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:{}\"]\ntls_listen = [\"127.0.0.1:{}\"]\ngrace_period = \"1s\"\n\n\
         [admin]\nlisten = \"127.0.0.1:{}\"\n\n\
         [acme]\ndirectory = \"{}\"\ncontact = [\"mailto:ops@example.com\"]\ndomains = [\"{NAME}\", \"{OTHER}\"]\n\
         directory_ca = \"{}\"\n{acme}\n\n{extra}\n\
         [upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n\
         [[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"app\"\n",
        p.plain,
        p.tls,
        p.admin,
        spec.directory(),
        spec.ca().display(),
        app.port
    )
}

/// A state directory outside the gateway's scratch directory (which goes with the process).
fn state_dir(name: &str) -> PathBuf {
    scratch(name).join("state")
}

/// Pebble's root, written beside its own files (they outlive any one gateway).
fn write_root(pebble: &Pebble) -> PathBuf {
    let path = pebble.spec.dir.join("pebble-root.pem");
    std::fs::write(&path, pebble.root().expect("pebble's root")).unwrap();
    path
}

#[track_caller]
fn await_verified(gw: &Gateway, tls_port: u16, root: &Path, pebble: &Pebble) {
    let issued = wait_until(ISSUED_WITHIN, || {
        tls_connect(tls_port, NAME, Some(root)).is_ok()
    });
    assert!(
        issued,
        "no certificate verifying against pebble's root within {ISSUED_WITHIN:?}\ngateway:\n{}\npebble:\n{}",
        gw.stderr(),
        pebble.log()
    );
}

fn orders(gw: &Gateway, result: &str) -> f64 {
    gw.exported_metric("portcullis_acme_orders_total", &[("result", result)])
}

#[test]
fn http_01_issues_a_certificate_that_verifies_and_a_restart_orders_nothing() {
    let app = Backend::start("acme-app");
    let p = Ports::new();
    let spec = PebbleSpec::new(p.plain, p.tls, 90 * 86_400);
    let pebble = Pebble::start(&spec);
    let state = state_dir("acme-http-state");
    let acme = format!(
        "state_dir = \"{}\"\nchallenge = \"http-01\"",
        state.display()
    );
    let text = config(&p, &app, &spec, &acme, "");
    let gw = Gateway::start("acme-http", p.plain, p.admin, &text, &[]);
    let root = write_root(&pebble);
    await_verified(&gw, p.tls, &root, &pebble);

    // One certificate for both names, its chain verifying against pebble's root.
    let mut conn = tls_connect(p.tls, OTHER, Some(&root)).expect("the second name verifies");
    assert_eq!(tls_get(&mut conn, OTHER, "/hello"), Some(200));
    assert_eq!(orders(&gw, "success"), 1.0);
    assert_eq!(orders(&gw, "error"), 0.0);
    let expiry = gw.exported_metric("portcullis_acme_certificate_expiry_timestamp_seconds", &[]);
    let in_days = (expiry - now() as f64) / 86_400.0;
    assert!(
        (89.0..=90.1).contains(&in_days),
        "expires in {in_days} days"
    );
    let ready = gw.admin_get("/readyz").expect("readyz");
    assert_eq!(ready.status, 200);
    assert!(String::from_utf8_lossy(&ready.body).contains("certificate: loaded"));

    // The status page's certificate row.
    let status = gw.admin_get("/status.json").expect("status.json");
    let status: serde_json::Value = serde_json::from_slice(&status.body).unwrap();
    let cert = &status["certificate"];
    assert_eq!(cert["state"], "valid", "{cert}");
    assert_eq!(cert["names"], serde_json::json!([NAME, OTHER]), "{cert}");
    assert!(
        cert["issuer"]
            .as_str()
            .is_some_and(|i| i.contains("Pebble")),
        "{cert}"
    );
    assert!(
        cert["not_after"].is_string() && cert["next_renewal"].is_string(),
        "{cert}"
    );
    assert!(cert["last_error"].is_null(), "{cert}");
    let page = gw.admin_get("/status").expect("status page");
    let page = String::from_utf8_lossy(&page.body);
    assert!(
        page.contains("id=\"certificate\"") && page.contains(NAME),
        "{page}"
    );

    // The state survives: a private directory, private files.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("account.json")), 0o600);
    assert_eq!(mode(&state.join("certificate.pem")), 0o600);

    // The challenge path answers only pending tokens and is never forwarded.
    let before = app.count();
    let unknown = gw.get("/.well-known/acme-challenge/LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0");
    assert_eq!(unknown.status, 404);
    assert!(String::from_utf8_lossy(&unknown.body).contains("not_found"));
    assert_eq!(
        app.count(),
        before,
        "challenge requests never reach the upstream"
    );

    let serial = served_serial(p.tls, NAME).expect("a certificate is served");
    drop(conn);
    drop(gw);

    // A restart serves the stored certificate from its first handshake and orders nothing.
    let gw = Gateway::start("acme-http-restart", p.plain, p.admin, &text, &[]);
    let mut first = None;
    assert!(wait_until(Duration::from_secs(10), || {
        first = served_serial(p.tls, NAME);
        first.is_some()
    }));
    assert_eq!(first.as_deref(), Some(serial.as_str()));
    assert!(tls_connect(p.tls, NAME, Some(&root)).is_ok());
    assert_eq!(orders(&gw, "success"), 0.0);
    assert!(
        !gw.stderr().contains("ordering a certificate"),
        "{}",
        gw.stderr()
    );
    drop(gw);

    // Another directory (staging to production): the stored certificate is not served, a new
    // one is ordered at once.
    let moved = text.replace("/dir\"", "/dir?moved\"");
    assert_ne!(moved, text);
    let gw = Gateway::start("acme-http-moved", p.plain, p.admin, &moved, &[]);
    assert!(
        wait_until(ISSUED_WITHIN, || orders(&gw, "success") == 1.0),
        "{}",
        gw.stderr()
    );
    assert_ne!(served_serial(p.tls, NAME), Some(serial));
    assert!(
        gw.stderr().contains("issued through another directory"),
        "{}",
        gw.stderr()
    );
    drop(pebble);
}

#[test]
fn tls_alpn_01_issues_a_certificate_in_the_handshake() {
    let app = Backend::start("acme-alpn-app");
    let p = Ports::new();
    let spec = PebbleSpec::new(p.plain, p.tls, 90 * 86_400);
    let pebble = Pebble::start(&spec);
    let state = state_dir("acme-alpn-state");
    let acme = format!(
        "state_dir = \"{}\"\nchallenge = \"tls-alpn-01\"",
        state.display()
    );
    let gw = Gateway::start(
        "acme-alpn",
        p.plain,
        p.admin,
        &config(&p, &app, &spec, &acme, ""),
        &[],
    );
    let root = write_root(&pebble);
    await_verified(&gw, p.tls, &root, &pebble);
    let mut conn = tls_connect(p.tls, NAME, Some(&root)).unwrap();
    assert_eq!(tls_get(&mut conn, NAME, "/"), Some(200));
    assert_eq!(orders(&gw, "success"), 1.0);

    // With nothing pending, an acme-tls/1 handshake gets no certificate at all.
    let mut builder = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls()).unwrap();
    builder.set_verify(openssl::ssl::SslVerifyMode::NONE);
    builder.set_alpn_protos(b"\x0aacme-tls/1").unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", p.tls)).unwrap();
    assert!(builder.build().connect(NAME, tcp).is_err());
}

#[test]
fn a_renewal_swaps_the_certificate_under_a_connection_that_stays_open() {
    let app = Backend::start("acme-renew-app");
    let p = Ports::new();
    // 30-second certificates renewed 20 s before their end: a renewal every ~10 s.
    let spec = PebbleSpec::new(p.plain, p.tls, 30);
    let pebble = Pebble::start(&spec);
    let state = state_dir("acme-renew-state");
    let acme = format!(
        "state_dir = \"{}\"\nrenew_before = \"20s\"",
        state.display()
    );
    let gw = Gateway::start(
        "acme-renew",
        p.plain,
        p.admin,
        &config(&p, &app, &spec, &acme, ""),
        &[],
    );
    let root = write_root(&pebble);
    await_verified(&gw, p.tls, &root, &pebble);
    let mut open = tls_connect(p.tls, NAME, Some(&root)).unwrap();
    let first = peer_serial(&open).unwrap();
    assert_eq!(tls_get(&mut open, NAME, "/one"), Some(200));

    let renewed = wait_until(Duration::from_secs(45), || {
        served_serial(p.tls, NAME).is_some_and(|s| s != first)
    });
    assert!(renewed, "no renewal served:\n{}", gw.stderr());
    assert!(
        tls_connect(p.tls, NAME, Some(&root)).is_ok(),
        "the renewed chain verifies"
    );
    // The connection opened before the swap keeps its certificate and keeps working.
    assert_eq!(tls_get(&mut open, NAME, "/two"), Some(200));
    assert_eq!(peer_serial(&open), Some(first));
    assert!(orders(&gw, "success") >= 2.0);
    assert_eq!(orders(&gw, "error"), 0.0);
}

#[test]
fn pebble_down_at_start_then_back() {
    let app = Backend::start("acme-down-app");
    let p = Ports::new();
    let spec = PebbleSpec::new(p.plain, p.tls, 90 * 86_400);
    let state = state_dir("acme-down-state");
    let acme = format!("state_dir = \"{}\"", state.display());
    let gw = Gateway::start(
        "acme-down",
        p.plain,
        p.admin,
        &config(&p, &app, &spec, &acme, ""),
        &[],
    );
    assert!(
        wait_until(Duration::from_secs(15), || orders(&gw, "error") >= 1.0),
        "{}",
        gw.stderr()
    );
    // Plain listeners serve; TLS listeners complete no handshake; /readyz says so.
    assert_eq!(gw.get("/plain").status, 200);
    assert_eq!(served_serial(p.tls, NAME), None);
    let ready = gw.admin_get("/readyz").unwrap();
    assert_eq!(ready.status, 200);
    assert!(String::from_utf8_lossy(&ready.body).contains("certificate: none yet"));
    let status = gw.admin_get("/status.json").unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.body).unwrap();
    assert!(
        status["certificate"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("unreachable")),
        "{status}"
    );

    let pebble = Pebble::start(&spec);
    let root = write_root(&pebble);
    await_verified(&gw, p.tls, &root, &pebble);
    assert_eq!(orders(&gw, "success"), 1.0);
}

/// Forwards each connection to the replica that does not hold the ordering lease, so the
/// CA's HTTP-01 validation reaches a replica that did not order (as behind a load balancer).
struct ToTheOtherReplica {
    port: u16,
    forwarded: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl ToTheOtherReplica {
    fn start(redis: u16, replicas: Vec<(u32, u16)>) -> ToTheOtherReplica {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let forwarded = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, done) = (forwarded.clone(), stop.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let holder = redis_cli(redis, &["--scan", "--pattern", "*acme:lease:*"])
                    .and_then(|keys| {
                        let key = keys.lines().next()?.to_string();
                        redis_cli(redis, &["GET", &key])
                    })
                    .unwrap_or_default();
                // The holder is "host-pid-random".
                let pid = holder
                    .trim()
                    .rsplit('-')
                    .nth(1)
                    .and_then(|p| p.parse::<u32>().ok());
                let Some(&(_, target)) = replicas.iter().find(|(p, _)| Some(*p) != pid) else {
                    continue;
                };
                if pid.is_none() {
                    continue;
                }
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                count.fetch_add(1, Ordering::Relaxed);
                client.set_nonblocking(false).unwrap();
                pipe(client.try_clone().unwrap(), upstream.try_clone().unwrap());
                pipe(upstream, client);
            }
        });
        ToTheOtherReplica {
            port,
            forwarded,
            stop,
        }
    }
}

impl Drop for ToTheOtherReplica {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

#[test]
fn two_replicas_sharing_one_redis_serve_the_same_certificate_after_one_order() {
    let redis = Redis::start(free_port(), &[]);
    let app = Backend::start("acme-replicas-app");
    let (a, b) = (Ports::new(), Ports::new());
    let store = redis_store(redis.port, "acme-e2e");
    // Pebble validates HTTP-01 through the forwarder (bound below, once both replicas run).
    let mut spec = PebbleSpec::new(0, a.tls, 90 * 86_400);
    let start = |name: &str, p: &Ports, spec: &PebbleSpec| {
        let acme = format!("state_dir = \"{}\"", state_dir(name).display());
        Gateway::start(
            name,
            p.plain,
            p.admin,
            &config(p, &app, spec, &acme, &store),
            &[],
        )
    };
    let gw_a = start("acme-replica-a", &a, &spec);
    let gw_b = start("acme-replica-b", &b, &spec);
    let replicas = vec![
        (gw_a.pid().unwrap(), a.plain),
        (gw_b.pid().unwrap(), b.plain),
    ];
    let forwarder = ToTheOtherReplica::start(redis.port, replicas);
    spec.http_port = forwarder.port;
    let pebble = Pebble::start(&spec);
    let root = write_root(&pebble);
    await_verified(&gw_a, a.tls, &root, &pebble);
    await_verified(&gw_b, b.tls, &root, &pebble);
    let serial_a = served_serial(a.tls, NAME).unwrap();
    let serial_b = served_serial(b.tls, NAME).unwrap();
    assert_eq!(serial_a, serial_b, "one certificate for both replicas");
    let issued = orders(&gw_a, "success") + orders(&gw_b, "success");
    assert_eq!(issued, 1.0, "one order for both replicas");
    assert!(
        forwarder.forwarded.load(Ordering::Relaxed) >= 1,
        "the replica that did not order answered the validation"
    );
}

#[test]
fn check_refuses_acme_mistakes_with_file_line_and_key() {
    let dir = scratch("acme-check");
    let base = "[server]\nlisten = [\"127.0.0.1:8080\"]\ntls_listen = [\"127.0.0.1:8443\"]\n";
    let routes = "[upstreams.app]\npeers = [\"127.0.0.1:3000\"]\n\n[[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"app\"\n";
    let acme = |body: &str| {
        format!("[acme]\ndirectory = \"https://127.0.0.1:14000/dir\"\ndomains = [\"music.example.com\"]\nstate_dir = \"state\"\n{body}\n")
    };
    let cases: Vec<(String, &str, &str)> = vec![
        (
            format!("[server]\nlisten = [\"127.0.0.1:8080\"]\ntls_listen = [\"127.0.0.1:8443\"]\ntls_cert = \"gw.crt\"\ntls_key = \"gw.key\"\n{}", acme("")),
            "server.tls_cert",
            "[acme] provides the TLS certificate",
        ),
        (format!("{base}{}", acme("challenge = \"dns-01\"")), "acme.challenge", "not offered"),
        (
            format!("{base}[acme]\ndirectory = \"https://127.0.0.1:14000/dir\"\nstate_dir = \"state\"\n"),
            "acme.domains",
            "required key is missing",
        ),
        (
            format!("{base}[acme]\ndirectory = \"http://127.0.0.1:14000/dir\"\ndomains = [\"music.example.com\"]\nstate_dir = \"state\"\n"),
            "acme.directory",
            "not an https:// URL",
        ),
    ];
    std::fs::write(dir.join("gw.crt"), "").unwrap();
    std::fs::write(dir.join("gw.key"), "").unwrap();
    for (i, (text, key, message)) in cases.iter().enumerate() {
        let path = dir.join(format!("case{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let (code, _, stderr) = run_cli(&["--config", path.to_str().unwrap(), "--check"]);
        assert_eq!(code, Some(2), "{text}\n{stderr}");
        let line = stderr
            .lines()
            .find(|l| l.contains(key))
            .unwrap_or_else(|| panic!("no error for {key}:\n{stderr}"));
        let prefix = format!("{}:", path.display());
        assert!(line.starts_with(&prefix), "{line}");
        let at: Vec<&str> = line[prefix.len()..].splitn(3, ':').collect();
        assert!(
            at[0].parse::<usize>().is_ok() && at[1].parse::<usize>().is_ok(),
            "{line}"
        );
        assert!(line.contains(message), "{line}");
    }

    // A valid file passes, and --check creates nothing (state_dir appears at start).
    let state = dir.join("state");
    let path = dir.join("valid.toml");
    std::fs::write(&path, format!("{base}{}{routes}", acme(""))).unwrap();
    let (code, stdout, stderr) = run_cli(&["--config", path.to_str().unwrap(), "--check"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("configuration ok"));
    assert!(!state.exists(), "--check created the state directory");

    // A state_dir that others can read is refused, by --check too.
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.join("loose.toml");
    std::fs::write(&path, format!("{base}{}{routes}", acme(""))).unwrap();
    let (code, _, stderr) = run_cli(&["--config", path.to_str().unwrap(), "--check"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("acme.state_dir") && stderr.contains("chmod 700"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

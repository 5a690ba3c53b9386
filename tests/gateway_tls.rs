//! TLS through the real binary and real clients (curl, openssl): HTTP/1.1 and HTTP/2 by ALPN,
//! HSTS only over HTTPS, the certificate swapped on SIGHUP, and `--check` on key/certificate
//! mismatch and near expiry.

#[path = "harness/mod.rs"]
mod harness;

use std::process::Command;
use std::time::Duration;

use harness::*;

/// curl over TLS: (HTTP version, response headers, the certificate subject line).
fn curl(port: u16, http2: bool) -> (String, String, String) {
    let out = Command::new("curl")
        .args([
            "-sk",
            "-v",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "-w",
            "version=%{http_version}",
        ])
        .arg(if http2 { "--http2" } else { "--http1.1" })
        .arg(format!("https://127.0.0.1:{port}/api/x"))
        .output()
        .expect("curl");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let version = stdout.rsplit("version=").next().unwrap_or("").to_string();
    let subject = stderr
        .lines()
        .find(|l| l.contains("subject:"))
        .unwrap_or("")
        .to_string();
    (version, stdout.to_ascii_lowercase(), subject)
}

fn config(port: u16, tls_port: u16, admin: u16, backend: u16) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\ntls_listen = [\"127.0.0.1:{tls_port}\"]\ntls_cert = \"gw.crt\"\ntls_key = \"gw.key\"\ngrace_period = \"3s\"\n\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n[upstreams.app]\npeers = [\"127.0.0.1:{backend}\"]\n\n[[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"app\"\n"
    )
}

#[test]
fn https_serves_h1_and_h2_with_hsts_and_swaps_the_certificate_on_reload() {
    let app = Backend::start("app");
    let (port, tls_port, admin) = (free_port(), free_port(), free_port());
    let text = config(port, tls_port, admin, app.port);
    // The gateway runs in its scratch directory; relative paths resolve against the config.
    let gw = Gateway::start_with_files("tls", port, admin, &text, &[], |dir| {
        make_cert(dir, "gw", "one.example", 90);
    });
    let (v1, headers, subject) = curl(tls_port, false);
    assert_eq!(v1, "1.1");
    assert!(headers.starts_with("http/1.1 200"), "{headers}");
    assert!(
        headers.contains("strict-transport-security: max-age=31536000; includesubdomains"),
        "{headers}"
    );
    assert!(subject.contains("one.example"), "{subject}");
    let (v2, headers2, _) = curl(tls_port, true);
    assert_eq!(v2, "2", "h2 by ALPN");
    assert!(headers2.contains("strict-transport-security"));
    let plain = gw.get("/api/x");
    assert_eq!(plain.status, 200);
    assert!(
        plain.header("strict-transport-security").is_none(),
        "no HSTS over plain HTTP"
    );

    // New certificate files, then SIGHUP: new handshakes get the new certificate.
    make_cert(&gw.dir, "gw", "two.example", 90);
    gw.reload(&text);
    assert!(
        wait_until(Duration::from_secs(10), || curl(tls_port, false)
            .2
            .contains("two.example")),
        "the reloaded certificate is served"
    );
}

#[test]
fn check_refuses_a_mismatched_key_and_warns_before_expiry() {
    let dir = scratch("tls-check");
    let (port, tls_port, admin) = (free_port(), free_port(), free_port());
    let text = config(port, tls_port, admin, 3000);
    let path = dir.join("p.toml");
    std::fs::write(&path, &text).unwrap();

    make_cert(&dir, "gw", "one.example", 10);
    let (code, out, err) = run_cli(&["--config", path.to_str().unwrap(), "--check"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("configuration ok"));
    assert!(
        err.contains("expires in"),
        "a 10-day certificate is warned about: {err}"
    );

    make_cert(&dir, "gw", "one.example", 365);
    let (code, out, err) = run_cli(&["--config", path.to_str().unwrap(), "--check"]);
    // No warning, from a check that ran to the end (a failed one prints none either).
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("configuration ok"), "{out}");
    assert!(!err.contains("expires in"), "{err}");

    make_cert(&dir, "other", "one.example", 365);
    std::fs::rename(dir.join("other.key"), dir.join("gw.key")).unwrap();
    let (code, _, err) = run_cli(&["--config", path.to_str().unwrap(), "--check"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("does not match"), "{err}");
    assert!(err.contains("p.toml:"), "the error names the file: {err}");
}

#[test]
fn a_tls_upstream_gets_the_configured_sni() {
    let dir = scratch("tls-upstream");
    let (crt, key) = make_cert(&dir, "backend", "backend.example", 30);
    let backend_port = free_port();
    // s_server with -servername_fatal ends any handshake whose SNI is not backend.example.
    let mut server = Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-accept"])
        .arg(backend_port.to_string())
        .arg("-cert")
        .arg(&crt)
        .arg("-key")
        .arg(&key)
        .arg("-cert2")
        .arg(&crt)
        .arg("-key2")
        .arg(&key)
        .args(["-servername", "backend.example", "-servername_fatal"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl s_server");
    assert!(wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", backend_port)).is_ok()
    }));
    let (port, admin) = (free_port(), free_port());
    let upstream = |name: &str, sni: &str| {
        format!("[upstreams.{name}]\npeers = [\"127.0.0.1:{backend_port}\"]\ntls = true\nsni = \"{sni}\"\ntls_verify = false\n\n")
    };
    let config = server_section(port, admin, "")
        + &upstream("good", "backend.example")
        + &upstream("wrong", "other.example")
        + "[[routes]]\nname = \"good\"\npath_prefix = \"/\"\nupstream = \"good\"\n\n"
        + "[[routes]]\nname = \"wrong\"\npath_prefix = \"/wrong\"\nupstream = \"wrong\"\nreplace_prefix = \"/\"\n";
    let gw = Gateway::start("tls-upstream", port, admin, &config, &[]);
    let good = gw.get("/");
    assert_eq!(good.status, 200);
    assert!(
        String::from_utf8_lossy(&good.body).contains("s_server"),
        "the answer came from the TLS backend"
    );
    let wrong = gw.get("/wrong");
    assert_eq!(
        (wrong.status, wrong.error_code().as_str()),
        (502, "bad_gateway")
    );
    let _ = server.kill();
    let _ = server.wait();
}

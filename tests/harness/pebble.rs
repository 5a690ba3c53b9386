//! Debian's `pebble` (a real ACME server) with `pebble-challtestsrv` as its DNS, answering
//! every name with 127.0.0.1, so pebble validates challenges against the gateway on loopback.
//! Also a small TLS client (OpenSSL) that checks what the gateway's TLS listener serves.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use openssl::ssl::{SslConnector, SslMethod, SslStream, SslVerifyMode};

use super::*;

/// Where a pebble listens and what it validates against; reusable to bring one back.
#[derive(Clone)]
pub struct PebbleSpec {
    pub port: u16,
    pub management: u16,
    pub dns: u16,
    /// The gateway's plain and TLS listeners, where pebble validates HTTP-01 and TLS-ALPN-01.
    pub http_port: u16,
    pub tls_port: u16,
    /// Lifetime of issued certificates (seconds).
    pub validity: u64,
    pub dir: PathBuf,
}

impl PebbleSpec {
    /// Free ports and a test CA for pebble's own HTTPS (`ca.pem`, the gateway's
    /// `directory_ca`).
    pub fn new(http_port: u16, tls_port: u16, validity: u64) -> PebbleSpec {
        let dir = scratch("pebble");
        let sh = format!(
            "set -e; cd '{}'; \
             openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=pebble-test-ca -keyout ca.key -out ca.pem; \
             openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost -keyout server.key -out server.csr; \
             printf 'subjectAltName=IP:127.0.0.1,DNS:localhost' > san.ext; \
             openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out server.pem",
            dir.display()
        );
        let status = Command::new("sh")
            .args(["-c", &sh])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success(), "making pebble's test certificate failed");
        PebbleSpec {
            port: free_port(),
            management: free_port(),
            dns: free_port(),
            http_port,
            tls_port,
            validity,
            dir,
        }
    }

    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
}

pub struct Pebble {
    pub spec: PebbleSpec,
    pebble: Child,
    dns: Child,
}

impl Pebble {
    pub fn start(spec: &PebbleSpec) -> Pebble {
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{}", spec.port),
            "managementListenAddress": format!("127.0.0.1:{}", spec.management),
            "certificate": spec.dir.join("server.pem"),
            "privateKey": spec.dir.join("server.key"),
            "httpPort": spec.http_port,
            "tlsPort": spec.tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": spec.validity,
        }});
        let path = spec.dir.join("pebble.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let log = |name: &str| std::fs::File::create(spec.dir.join(name)).unwrap();
        let dns = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{}", spec.dns)])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{}", free_port())])
            .stdout(log("challtestsrv.log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv (scripts/install-deps installs pebble)");
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(&path)
            .args(["-dnsserver", &format!("127.0.0.1:{}", spec.dns)])
            // No random validation delays, no refused nonces, every authorization validated.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log("pebble.log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble (scripts/install-deps installs it)");
        let p = Pebble {
            spec: spec.clone(),
            pebble,
            dns,
        };
        assert!(
            wait_until(Duration::from_secs(20), || p.root().is_some()),
            "pebble did not start:\n{}",
            p.log()
        );
        p
    }

    /// Pebble's root certificate (PEM), from its management API.
    pub fn root(&self) -> Option<String> {
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "2", "--cacert"])
            .arg(self.spec.ca())
            .arg(format!(
                "https://127.0.0.1:{}/roots/0",
                self.spec.management
            ))
            .output()
            .ok()?;
        let pem = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && pem.contains("BEGIN CERTIFICATE")).then_some(pem)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.spec.dir.join("pebble.log")).unwrap_or_default()
    }

    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        for child in [&mut self.pebble, &mut self.dns] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.kill();
    }
}

// === TLS client ===

/// A TLS connection to `127.0.0.1:port` naming `name` (SNI). With `root`, the chain and the
/// name are verified against it; without, any certificate is accepted (to read it).
pub fn tls_connect(
    port: u16,
    name: &str,
    root: Option<&Path>,
) -> Result<SslStream<TcpStream>, String> {
    let mut builder = SslConnector::builder(SslMethod::tls()).map_err(|e| e.to_string())?;
    match root {
        Some(root) => builder.set_ca_file(root).map_err(|e| e.to_string())?,
        None => builder.set_verify(SslVerifyMode::NONE),
    }
    builder
        .set_alpn_protos(b"\x08http/1.1")
        .map_err(|e| e.to_string())?;
    let connector = builder.build();
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    connector
        .connect(name, tcp)
        .map_err(|e| format!("TLS handshake with 127.0.0.1:{port} as {name}: {e}"))
}

/// The serial number (hex) of the leaf certificate a handshake for `name` gets; `None` when
/// no handshake completes.
pub fn served_serial(port: u16, name: &str) -> Option<String> {
    let stream = tls_connect(port, name, None).ok()?;
    peer_serial(&stream)
}

pub fn peer_serial(stream: &SslStream<TcpStream>) -> Option<String> {
    let cert = stream.ssl().peer_certificate()?;
    let bn = cert.serial_number().to_bn().ok()?;
    Some(bn.to_hex_str().ok()?.to_string())
}

/// `GET path` on an open (keep-alive) TLS connection; the status.
pub fn tls_get(stream: &mut SslStream<TcpStream>, host: &str, path: &str) -> Option<u16> {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .ok()?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).ok()?;
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(status)
}

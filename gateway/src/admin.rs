//! The admin listener: `GET /healthz`, `/readyz`, `/metrics`, and `POST /cache/purge`. It runs on its own thread and
//! runtime, apart from the proxy's listeners, so it keeps answering while the proxy drains
//! (`/readyz` says 503 then, which is what a load balancer needs to see). It also owns the
//! SIGHUP handler, so a reload never competes with proxy workers.
//!
//! Requests are tiny and the listener is never public (contract): each connection gets one
//! answer, a 5 s deadline and an 8 KiB cap on the request head.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::state::State;

const MAX_HEAD: usize = 8 * 1024;
/// The Prometheus text exposition format, version 0.0.4.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Binds now (so a taken address fails start-up) and serves on a dedicated thread.
pub fn start(listener: std::net::TcpListener, state: Arc<State>) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        log::error!("admin listener failed: {e}");
                        return;
                    }
                };
                tokio::spawn(reload_on_sighup(state.clone()));
                loop {
                    match listener.accept().await {
                        Ok((stream, _)) => {
                            tokio::spawn(serve(stream, state.clone()));
                        }
                        Err(e) => {
                            log::warn!("admin accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            })
        })?;
    Ok(())
}

async fn reload_on_sighup(state: Arc<State>) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot install the SIGHUP handler, reload is unavailable: {e}");
            return;
        }
    };
    while hangup.recv().await.is_some() {
        let state = state.clone();
        // Loading resolves DNS and reads key files: keep it off the async thread.
        if let Err(e) = tokio::task::spawn_blocking(move || state.reload()).await {
            log::error!("reload task failed: {e}");
        }
    }
}

async fn serve(mut stream: TcpStream, state: Arc<State>) {
    let mut head = Vec::with_capacity(512);
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return;
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    let (status, content_type, body): (&str, &str, Vec<u8>) = match (method, path) {
        (b"GET" | b"HEAD", b"/healthz") => ("200 OK", "text/plain", b"ok\n".to_vec()),
        (b"GET" | b"HEAD", b"/readyz") if state.draining.load(Ordering::Acquire) => (
            "503 Service Unavailable",
            "text/plain",
            b"draining\n".to_vec(),
        ),
        (b"GET" | b"HEAD", b"/readyz") => ("200 OK", "text/plain", b"ready\n".to_vec()),
        (b"GET" | b"HEAD", b"/metrics") => ("200 OK", PROMETHEUS_TEXT, state.metrics.render()),
        (b"POST", b"/cache/purge") => cache_purge(&mut stream, &head, &state).await,
        (b"GET" | b"HEAD", _) => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            b"method not allowed\n".to_vec(),
        ),
    };
    let head_only = method == b"HEAD";
    // Like every answer the process gives, with a request id to quote.
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nx-request-id: {}\r\nConnection: close\r\n\r\n",
        body.len(),
        portcullis_routing::request_id::generate(),
    );
    let _ = stream.write_all(response.as_bytes()).await;
    if !head_only {
        let _ = stream.write_all(&body).await;
    }
    let _ = stream.shutdown().await;
}

/// `POST /cache/purge` (`cache::purge`): reads the JSON body (at most `purge::MAX_BODY`
/// bytes, within the connection's 5 s) after the head and runs the purge.
async fn cache_purge(
    stream: &mut TcpStream,
    head: &[u8],
    state: &State,
) -> (&'static str, &'static str, Vec<u8>) {
    use crate::cache::purge;
    const JSON: &str = "application/json";
    let too_large = || {
        let body = br#"{"error":"bad_request","message":"the body is too large"}"#;
        ("413 Content Too Large", JSON, body.to_vec())
    };
    let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
        return too_large();
    };
    let length = std::str::from_utf8(&head[..end])
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            })
        })
        .unwrap_or(0);
    if length > purge::MAX_BODY {
        return too_large();
    }
    let mut body = head[end + 4..].to_vec();
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut buf = [0u8; 1024];
        while body.len() < length {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        body.clear();
    }
    body.truncate(length);
    let (status, answer) = purge::run(state.cache.store(), &body);
    let status = if status == 200 {
        "200 OK"
    } else {
        "400 Bad Request"
    };
    (status, JSON, answer.into_bytes())
}

/// Binds the admin listener with SO_REUSEPORT: during a zero-downtime upgrade the new process
/// binds it while the old one still drains (and still answers `/readyz` 503), instead of
/// failing with "address in use".
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

//! The admin listener: `GET /healthz`, `/readyz`, `/metrics`, the status page, and the admin
//! API (revocations, bans, `POST /cache/purge`). It runs on its own thread and runtime, apart from the proxy's listeners, so it keeps answering while the proxy drains
//! (`/readyz` says 503 then, which is what a load balancer needs to see). It also owns the
//! SIGHUP handler, so a reload never competes with proxy workers.
//!
//! Requests are tiny and the listener is never public (contract): each connection gets one
//! answer, a 5 s deadline and an 8 KiB cap on the request head (`wire.rs`). Only `Host`
//! values naming the listener itself, `localhost` or `[admin] hosts` are answered; others get
//! 421, which keeps DNS-rebinding pages out (`host.rs`). The admin API
//! (`api.rs`: revocations and bans) changes state, so its writes need the `[admin] token`.
//! The same runtime runs the sync of revocations and bans with the shared store
//! (`replication.rs`).

mod api;
mod host;
mod wire;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::state::State;
use wire::Answer;

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
                let replica = state.clone();
                tokio::spawn(async move {
                    let current = || replica.current();
                    crate::replication::run(&replica.replicated, &replica.metrics, current).await;
                });
                if let Some(acme) = state.acme.clone() {
                    let state = state.clone();
                    tokio::spawn(async move {
                        let store = || state.current().shared_limits.clone();
                        crate::acme::renewal::run(acme, &state.metrics, store).await;
                    });
                }
                tokio::spawn(crate::status::sample_every_second(state.clone()));
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
    let request = match wire::read(&mut stream).await {
        Ok(request) => request,
        Err(wire::ReadError::Gone) => return,
        Err(wire::ReadError::Refuse(answer)) => {
            wire::write(&mut stream, &answer, false).await;
            return;
        }
    };
    let head_only = request.method == "HEAD";
    let answer = match stream.local_addr() {
        Ok(local)
            if host::allowed(
                request.host.as_deref(),
                local,
                &state.current().config.admin.hosts,
            ) =>
        {
            route(&request, &state).await
        }
        _ => Answer::error(
            421,
            "misdirected_request",
            "this listener answers only Host values naming its own address, localhost, or one of [admin] hosts",
        ),
    };
    wire::write(&mut stream, &answer, head_only).await;
}

async fn route(request: &wire::Request, state: &State) -> Answer {
    let method = request.method.as_str();
    let path = request.path.as_str();
    let read = matches!(method, "GET" | "HEAD");
    match path {
        "/healthz" if read => Answer::text(200, "ok\n"),
        "/readyz" if read && state.draining.load(Ordering::Acquire) => {
            Answer::text(503, "draining\n")
        }
        "/readyz" if read => Answer::text(200, crate::acme::readiness(state.acme.as_deref())),
        "/metrics" if read => Answer {
            content_type: PROMETHEUS_TEXT,
            ..Answer::text(200, "")
        }
        .with_body(state.metrics.render()),
        _ if read && portcullis_status::serves(path.as_bytes()) => {
            let page = crate::status::answer(path.as_bytes(), state);
            Answer {
                content_type: page.content_type,
                ..Answer::text(200, "")
            }
            .with_body(page.body)
        }
        _ if api::handles(path) => api::answer(request, state).await,
        _ if read => Answer::text(404, "not found\n"),
        _ => Answer::text(405, "method not allowed\n"),
    }
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

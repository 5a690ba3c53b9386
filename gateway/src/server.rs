//! Assembles the pingora server: the proxy service (the intake in front of pingora's HTTP
//! proxy) on every plain and TLS listener (HTTP/1.1 and h2 by ALPN), the health-check
//! background service, and our own shutdown handling.

use std::sync::Arc;

use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::prelude::*;
use pingora::proxy::HttpProxy;
use pingora::server::configuration::ServerConf;
use pingora::server::RunArgs;
use pingora::services::listening::Service;

use crate::health::HealthChecker;
use crate::intake::Intake;
use crate::proxy::Proxy;
use crate::shutdown::DrainWatch;
use crate::state::State;
use crate::tls::CertificateResolver;

/// Plain listeners read without pingora's 64 KiB per-connection read buffer (allocated at
/// the accept, it made each silent connection cost ~70 KiB): the intake reads header
/// sections in 2 KiB steps, and pingora's body reader has its own buffer.
const PLAIN_BUFFERS: L4BufferSettings = L4BufferSettings {
    read: Some(0),
    write: None,
};
/// TLS reads one record at a time (at most 16 KiB and its header): a buffer of one record
/// saves the syscalls without the 64 KiB default.
const TLS_BUFFERS: L4BufferSettings = L4BufferSettings {
    read: Some(17 * 1024),
    write: None,
};

pub struct Options {
    /// Take the listening sockets over from a running instance (pingora graceful upgrade).
    pub upgrade: bool,
    pub upgrade_sock: Option<String>,
}

/// Runs until shutdown; returns the process exit code.
pub fn run(state: Arc<State>, options: Options) -> Result<(), String> {
    let snapshot = state.current();
    let server_cfg = &snapshot.config.server;
    let first_port = server_cfg
        .listen
        .iter()
        .chain(&server_cfg.tls_listen)
        .next()
        .map_or(0, |a| a.port());
    let conf = ServerConf {
        threads: server_cfg.threads,
        grace_period_seconds: Some(server_cfg.grace_period.as_secs_f64().ceil() as u64),
        graceful_shutdown_timeout_seconds: Some(1),
        upgrade_sock: options
            .upgrade_sock
            .unwrap_or_else(|| format!("/tmp/portcullis-upgrade-{first_port}.sock")),
        pid_file: format!("/tmp/portcullis-{first_port}.pid"),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: options.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let mut http = HttpProxy::new(
        Proxy {
            state: state.clone(),
        },
        server.configuration.clone(),
    );
    http.handle_init_modules();
    // pingora answers CONNECT itself with a bare 405 (no JSON body, no security headers, no
    // log line). Letting it through to the request phase lets the gateway refuse it the way
    // it refuses everything else; the HTTP/1 intake refuses it before pingora parses.
    let mut options = HttpServerOptions::default();
    options.allow_connect_method_proxying = true;
    http.server_options = Some(options);
    let mut proxy = Service::new(
        "portcullis proxy".to_string(),
        Intake {
            proxy: Arc::new(http),
            state: state.clone(),
        },
    );
    for addr in &server_cfg.listen {
        proxy.add_listener(ListenerConfig::tcp(addr.to_string()).l4_buffer(PLAIN_BUFFERS));
    }
    for addr in &server_cfg.tls_listen {
        let running = state.clone();
        // With [acme], its certificate (none until the first order succeeds); else the
        // snapshot's files.
        let current: Box<dyn Fn() -> _ + Send + Sync> = match state.acme.clone() {
            Some(acme) => Box::new(move || acme.certificate()),
            None => Box::new(move || running.current().tls.clone()),
        };
        let alpn = state
            .acme
            .clone()
            .filter(|a| a.settings.challenge == portcullis_config::AcmeChallenge::TlsAlpn01);
        let challenges = alpn.map(|a| a as Arc<dyn crate::tls::AlpnChallenges>);
        let with_alpn_01 = challenges.is_some();
        let mut settings = TlsSettings::with_callbacks(Box::new(CertificateResolver {
            current,
            challenges,
        }))
        .map_err(|e| format!("cannot set up TLS on {addr}: {e}"))?;
        settings.enable_h2();
        if with_alpn_01 {
            crate::tls::accept_acme_tls_1(&mut settings);
        }
        proxy.add_listener(
            ListenerConfig::tcp(addr.to_string())
                .tls(settings)
                .l4_buffer(TLS_BUFFERS),
        );
    }
    server.add_service(proxy);
    server.add_service(background_service(
        "health checks",
        HealthChecker {
            state: state.clone(),
        },
    ));
    server.run(RunArgs {
        shutdown_signal: Box::new(DrainWatch {
            state: state.clone(),
        }),
    });
    state.tracing.flush(std::time::Duration::from_secs(2));
    state.log.flush();
    Ok(())
}

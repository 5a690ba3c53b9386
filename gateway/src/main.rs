//! `portcullis`: a reverse-proxy security gateway on pingora.
//!
//! Exit codes (contract): 0 clean exit, 2 configuration error, 1 any other start-up failure,
//! always with one clear line naming the cause.

mod access_log;
mod acme;
mod admin;
mod admission;
mod auth;
mod bounds;
mod cache;
mod clock;
mod ctx;
mod error;
mod forward;
mod handoff;
mod health;
mod identify;
mod intake;
mod json_line;
mod lowercase;
mod metrics;
mod outcome;
mod pool;
mod proxy;
mod replication;
mod respond;
mod respond_ops;
mod server;
mod shutdown;
mod sign_url;
mod snapshot;
mod state;
mod status;
mod tls;
mod trace;
mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

use arc_swap::ArcSwap;
use clap::Parser;

use crate::snapshot::Snapshot;
use crate::state::State;

/// glibc malloc cost a fifth of the CPU of a proxied request in profiles; mimalloc's
/// thread-local free lists take most of that back (docs/performance.md). Built without its
/// transparent-huge-page advice (the `no_thp` feature), and `main` turns THP off for the
/// process: with 2 MiB pages behind its arenas, 10,000 in-flight requests held 784 MiB
/// resident instead of 161 MiB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Certificates closer than this to expiry get a warning from `--check`.
const EXPIRY_WARNING_SECS: i64 = 30 * 86_400;

#[derive(Parser, Debug)]
#[command(
    name = "portcullis",
    version,
    about = "A reverse-proxy security gateway"
)]
struct Cli {
    /// The configuration file.
    #[arg(long, short = 'c', default_value = "portcullis.toml", global = true)]
    config: PathBuf,
    /// Validate the configuration, print `configuration ok` or every error, and exit.
    #[arg(long)]
    check: bool,
    /// Take over the listening sockets of a running instance (send it SIGQUIT).
    #[arg(long)]
    upgrade: bool,
    /// The Unix socket used to hand listeners over during an upgrade.
    #[arg(long, value_name = "PATH")]
    upgrade_sock: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Print PATH with a signed-URL query (`exp`, `sig`) for a route's `signed_urls`.
    SignUrl {
        /// The route whose `signed_urls` keys sign.
        #[arg(long)]
        route: String,
        /// How long the URL stays valid (at most the route's `max_ttl`).
        #[arg(long, default_value = "10m")]
        ttl: String,
        /// The user the URL authenticates as (anonymous-signed without it).
        #[arg(long)]
        user: Option<String>,
        /// The path to sign, optionally with a query of its own.
        path: String,
    },
}

fn main() -> ExitCode {
    no_transparent_huge_pages();
    // A SIGHUP before the reload handler is installed must not kill the process.
    // SAFETY: setting a signal disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(1);
        }
    };
    if let Some(Command::SignUrl {
        route,
        ttl,
        user,
        path,
    }) = &cli.command
    {
        return sign_url::run(&sign_url::Request {
            config: &cli.config,
            route,
            ttl,
            user: user.as_deref(),
            path,
        });
    }
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("warn,portcullis=info"),
    )
    .target(env_logger::Target::Stderr)
    .init();

    let config = match portcullis_config::load(&cli.config) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    let snapshot = match Snapshot::build(config, None) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(tls) = &snapshot.tls {
        let left = tls.expires_in_secs();
        if left < EXPIRY_WARNING_SECS {
            let days = left / 86_400;
            eprintln!(
                "warning: {}: the certificate expires in {days} days",
                cli.config.display()
            );
        }
    }
    for warning in warnings(&snapshot.config) {
        eprintln!("warning: {}: {warning}", cli.config.display());
    }
    // `[acme] state_dir` holds private keys: permissions looser than 0700/0600 are refused
    // (by --check too, as a configuration error at the key; --check creates nothing).
    if let Some(settings) = &snapshot.config.acme {
        if let Err(e) = acme::state_dir::StateDir::check(&settings.state_dir) {
            let at = snapshot.config.locations.get("acme").map_or_else(
                || cli.config.display().to_string(),
                |l| format!("{}:{}:{}: acme.state_dir", l.file, l.line, l.col),
            );
            eprintln!("{at}: [acme] state_dir {e}");
            return ExitCode::from(2);
        }
    }
    if cli.check {
        println!("configuration ok");
        return ExitCode::SUCCESS;
    }
    let acme = match snapshot
        .config
        .acme
        .as_ref()
        .map(acme::Acme::open)
        .transpose()
    {
        Ok(acme) => acme.map(Arc::new),
        Err(e) => {
            eprintln!("portcullis: {e}");
            return ExitCode::from(1);
        }
    };
    match start(cli, snapshot, acme) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("portcullis: {message}");
            ExitCode::from(1)
        }
    }
}

fn start(cli: Cli, snapshot: Snapshot, acme: Option<Arc<acme::Acme>>) -> Result<(), String> {
    let server_cfg = &snapshot.config.server;
    if !cli.upgrade {
        // Pingora binds inside its service threads and would only log a failure; binding
        // here first turns "address already in use" into a clean exit 1.
        for addr in server_cfg.listen.iter().chain(&server_cfg.tls_listen) {
            probe_bind(*addr)?;
        }
    }
    let admin_addr = snapshot.config.admin.listen;
    let admin_listener = admin::bind(admin_addr)
        .map_err(|e| format!("cannot listen on {admin_addr} (admin): {e}"))?;
    let metrics = metrics::Metrics::new().map_err(|e| format!("cannot register metrics: {e}"))?;
    let log =
        access_log::AccessLog::start().map_err(|e| format!("cannot start the access log: {e}"))?;
    let limiter = portcullis_ratelimit::RateLimiter::new(snapshot.config.rate_limit_store.max_keys);
    let replicated = replication::Replicated::new(&snapshot.config);
    let cache =
        portcullis_cache::EdgeCache::start(&snapshot.config.cache, metrics.cache_bytes.clone());
    let tracing = trace::Exporter::new(
        metrics.tracing_spans_exported.clone(),
        metrics.tracing_spans_dropped.clone(),
    );
    let state = Arc::new(State {
        tracing,
        cache,
        limiter,
        replicated,
        config_path: cli.config.clone(),
        snapshot: ArcSwap::from_pointee(snapshot),
        metrics,
        log,
        draining: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
        status: portcullis_status::Status::new(),
        bounds: bounds::Bounds::new(bounds::connections::descriptor_budget().0),
        acme,
    });
    state.start_background();
    admin::start(admin_listener, state.clone())
        .map_err(|e| format!("cannot start the admin endpoint: {e}"))?;
    server::run(
        state,
        server::Options {
            upgrade: cli.upgrade,
            upgrade_sock: cli.upgrade_sock,
        },
    )
}

/// What `--check` (and a start) warns about: valid, but probably not what was meant.
fn warnings(config: &portcullis_config::Config) -> Vec<String> {
    let mut out = Vec::new();
    out.extend(bounds::connections::descriptor_warning(
        &config.server.bounds,
    ));
    if config.admin.token.is_none() {
        out.push("[admin] token is not set: the admin API's write endpoints (revocations, bans) answer 403".to_string());
    } else if config
        .jwt
        .as_ref()
        .is_some_and(|j| j.max_token_lifetime.is_none())
    {
        out.push("[jwt] max_token_lifetime is not set: a revocation without `expires` is kept 30 days, and a token living longer would be valid again after that".to_string());
    }
    for upstream in config.upstreams.values() {
        if let Some(retry) = upstream
            .retry
            .as_ref()
            .filter(|r| r.max_replay_body > portcullis_config::REPLAY_BUFFER)
        {
            out.push(format!(
                "upstreams.{}.retry.max_replay_body = {} is above the {} bytes pingora keeps for a replay; larger bodies are not retried",
                upstream.name,
                retry.max_replay_body,
                portcullis_config::REPLAY_BUFFER
            ));
        }
    }
    out
}

fn probe_bind(addr: SocketAddr) -> Result<(), String> {
    std::net::TcpListener::bind(addr)
        .map(drop)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}

/// Transparent huge pages off for this process (Linux `PR_SET_THP_DISABLE`, inherited by
/// nothing else): the allocator's arenas then grow by 4 KiB pages as they are touched, so
/// resident memory follows what is really in use. Failure only costs memory, so it is ignored.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

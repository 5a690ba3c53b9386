//! Active health checks, run as a pingora background service: every `interval`, each peer of
//! an upstream with a `health_check` gets `GET path`; a 2xx counts as healthy. A peer leaves
//! the rotation after `unhealthy_after` consecutive failures and comes back after
//! `healthy_after` consecutive successes. The checker always reads the current snapshot, so
//! reloaded upstreams are checked without restarting anything.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::lb::health_check::{HealthCheck as _, HttpHealthCheck};
use pingora::lb::Backend;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::pool::UpstreamPool;
use crate::state::{json_fields, State};

const TICK: Duration = Duration::from_millis(100);

pub struct HealthChecker {
    pub state: Arc<State>,
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(TICK) => {}
            }
            let snapshot = self.state.current();
            let now = Instant::now();
            for pool in snapshot.upstreams.values() {
                if pool.health_due(now) {
                    let pool = pool.clone();
                    let state = self.state.clone();
                    tokio::spawn(async move { check_pool(&state, &pool).await });
                }
            }
        }
    }
}

async fn check_pool(state: &Arc<State>, pool: &Arc<UpstreamPool>) {
    let Some(cfg) = pool.config.health_check.clone() else {
        return;
    };
    let mut probes = Vec::new();
    for (i, slot) in pool.peers.iter().enumerate() {
        let (Some(addr), Some(peer)) = (slot.addr, pool.http_peer(i)) else {
            continue;
        };
        let mut check = HttpHealthCheck::new(&pool.config.sni, pool.config.tls);
        let Ok(mut req) = pingora::http::RequestHeader::build("GET", cfg.path.as_bytes(), None)
        else {
            continue;
        };
        let host = if pool.config.tls {
            pool.config.sni.clone()
        } else {
            slot.label.clone()
        };
        if req.insert_header("host", host).is_err()
            || req
                .insert_header("user-agent", "portcullis-health-check")
                .is_err()
        {
            continue;
        }
        check.req = req;
        check.peer_template = peer;
        check.peer_template.options.connection_timeout = Some(cfg.timeout);
        check.peer_template.options.read_timeout = Some(cfg.timeout);
        check.validator = Some(Box::new(|resp: &pingora::http::ResponseHeader| {
            if resp.status.is_success() {
                Ok(())
            } else {
                pingora::Error::e_explain(
                    pingora::ErrorType::Custom("unhealthy status"),
                    resp.status.to_string(),
                )
            }
        }));
        let backend = Backend {
            addr: pingora::protocols::l4::socket::SocketAddr::Inet(addr),
            weight: 1,
            ext: Default::default(),
        };
        probes.push((i, tokio::spawn(async move { check.check(&backend).await })));
    }
    for (i, probe) in probes {
        let ok = matches!(probe.await, Ok(Ok(())));
        record(state, pool, i, ok, cfg.unhealthy_after, cfg.healthy_after);
    }
}

/// Applies one probe result with hysteresis and logs transitions.
fn record(
    state: &State,
    pool: &UpstreamPool,
    i: usize,
    ok: bool,
    unhealthy_after: u32,
    healthy_after: u32,
) {
    let Some(slot) = pool.peers.get(i) else {
        return;
    };
    let healthy = slot.healthy.load(Ordering::Acquire);
    if ok == healthy {
        slot.streak.store(0, Ordering::Release);
        return;
    }
    let streak = slot.streak.fetch_add(1, Ordering::AcqRel) + 1;
    let needed = if healthy {
        unhealthy_after
    } else {
        healthy_after
    };
    if streak >= needed {
        slot.healthy.store(ok, Ordering::Release);
        slot.streak.store(0, Ordering::Release);
        let status = if ok { "healthy" } else { "unhealthy" };
        log::warn!(
            "upstream {} peer {} is now {status}",
            pool.name(),
            slot.peer
        );
        state.event(
            "peer_health",
            json_fields([
                ("upstream", pool.name().into()),
                ("peer", slot.label.clone().into()),
                ("status", status.into()),
            ]),
        );
    }
}

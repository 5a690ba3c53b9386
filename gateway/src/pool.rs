//! Upstream pools: round-robin over healthy peers, pingora `HttpPeer`s with the configured
//! timeouts and TLS settings (pingora keeps a connection pool per peer, so connections are
//! reused across requests).
//!
//! Peer host names are resolved when the pool is built (at start and on reload), never on the
//! request path. When every peer is marked unhealthy the pool still answers with one of them
//! (fail open, as Envoy's panic threshold does): a health-check outage must not turn into a
//! full outage.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pingora::upstreams::peer::HttpPeer;
use portcullis_config::{Peer, Upstream};
use portcullis_resilience::{CircuitBreaker, RetryPolicy};

use crate::metrics::CounterCache;
use std::sync::Arc;

pub struct UpstreamPool {
    pub config: Upstream,
    /// `[upstreams.NAME.retry]` and its retry budget.
    pub retry: Option<Arc<RetryPolicy>>,
    /// `[upstreams.NAME.circuit_breaker]`.
    pub breaker: Option<Arc<CircuitBreaker>>,
    pub peers: Vec<PeerSlot>,
    /// `upstream_requests_total{upstream, outcome}` children, by outcome.
    pub outcomes: CounterCache<&'static str>,
    next: AtomicUsize,
    /// When the next active health check is due (milliseconds since `born`).
    next_check_ms: AtomicU64,
    born: Instant,
}

pub struct PeerSlot {
    pub peer: Peer,
    /// `host:port` as the log and the status page write it, formatted once.
    pub label: String,
    /// `None` when the name did not resolve; such a peer is never chosen.
    pub addr: Option<SocketAddr>,
    pub healthy: AtomicBool,
    /// Consecutive health-check results in the current direction.
    pub streak: AtomicU32,
}

impl UpstreamPool {
    /// The pool of `config`. The breaker and retry budget of `previous` carry over when the
    /// upstream's configuration did not change, so a reload neither closes an open breaker
    /// nor refills a spent budget.
    pub fn new(config: &Upstream, previous: Option<&UpstreamPool>) -> Self {
        let same = previous.filter(|p| p.config == *config);
        let retry = match same {
            Some(p) => p.retry.clone(),
            None => config.retry.as_ref().map(|r| Arc::new(RetryPolicy::new(r))),
        };
        let breaker = match same {
            Some(p) => p.breaker.clone(),
            None => config
                .circuit_breaker
                .as_ref()
                .map(|b| Arc::new(CircuitBreaker::new(b))),
        };
        let peers = config
            .peers
            .iter()
            .map(|peer| {
                let addr = resolve(peer);
                if addr.is_none() {
                    log::warn!("upstream {}: peer {} does not resolve; it is skipped until the next reload", config.name, peer);
                }
                PeerSlot { peer: peer.clone(), label: peer.to_string(), addr, healthy: AtomicBool::new(true), streak: AtomicU32::new(0) }
            })
            .collect();
        UpstreamPool {
            retry,
            breaker,
            config: config.clone(),
            peers,
            outcomes: CounterCache::default(),
            next: AtomicUsize::new(0),
            next_check_ms: AtomicU64::new(0),
            born: Instant::now(),
        }
    }

    /// True (once per interval) when this pool's health check should run now.
    pub fn health_due(&self, now: Instant) -> bool {
        let Some(hc) = &self.config.health_check else {
            return false;
        };
        let now_ms = now.saturating_duration_since(self.born).as_millis() as u64;
        let due = self.next_check_ms.load(Ordering::Acquire);
        now_ms >= due
            && self
                .next_check_ms
                .compare_exchange(
                    due,
                    now_ms + hc.interval.as_millis() as u64,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The next peer in round-robin order, skipping unhealthy ones and those in `tried`
    /// (so a retry goes to another peer when there is one).
    pub fn select(&self, tried: &[usize]) -> Option<usize> {
        let n = self.peers.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let usable = |i: usize, want_healthy: bool| {
            let slot = &self.peers[i];
            slot.addr.is_some() && (!want_healthy || slot.healthy.load(Ordering::Relaxed))
        };
        for want_healthy in [true, false] {
            for tried_ok in [false, true] {
                for k in 0..n {
                    let i = (start + k) % n;
                    if usable(i, want_healthy) && (tried_ok || !tried.contains(&i)) {
                        return Some(i);
                    }
                }
            }
        }
        None
    }

    /// A pingora peer for slot `i`, carrying the upstream's timeouts and TLS settings.
    pub fn http_peer(&self, i: usize) -> Option<HttpPeer> {
        let slot = self.peers.get(i)?;
        let addr = slot.addr?;
        let c = &self.config;
        let mut peer = HttpPeer::new(addr, c.tls, c.sni.clone());
        peer.options.connection_timeout = Some(c.connect_timeout);
        peer.options.total_connection_timeout = Some(c.connect_timeout + Duration::from_secs(1));
        peer.options.read_timeout = Some(c.read_timeout);
        peer.options.write_timeout = Some(c.write_timeout);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        peer.options.verify_cert = c.tls_verify;
        peer.options.verify_hostname = c.tls_verify;
        Some(peer)
    }
}

fn resolve(peer: &Peer) -> Option<SocketAddr> {
    (peer.host.as_str(), peer.port)
        .to_socket_addrs()
        .ok()?
        .next()
}

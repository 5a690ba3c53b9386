//! `max_connections` and `max_connections_per_client`: counted at the accept, for every
//! listener (plain and TLS, HTTP/1.1 and h2), before a byte of the request is read.
//!
//! `max_connections` keeps the process below its descriptor limit: every client connection
//! may hold an upstream connection too, so the default is half of `RLIMIT_NOFILE` less a
//! reserve for listeners, logs, the upstream pool and the shared store, and the process
//! never reaches `EMFILE` (where pingora's accept loop would sleep a second per failure).
//! Like nginx, near the cap the longest-idle connection (kept alive between requests, or new
//! and silent: nothing of a request received yet) is closed to make room for each new one,
//! before any new connection is refused.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use portcullis_config::RequestBounds;
use tokio::sync::Notify;

use super::clients::{ClientCounts, ClientPermit, MAX_CLIENTS};
use super::Limit;

/// Descriptors kept for everything but client and upstream connections.
const RESERVED_DESCRIPTORS: u64 = 256;
/// The derived default never goes above this (an operator may set more).
const DEFAULT_CEILING: usize = 10_000;

pub struct ConnectionGate {
    open: AtomicUsize,
    /// The default `max_connections` (from the descriptor limit).
    derived: usize,
    per_client: Arc<ClientCounts>,
    /// Idle keep-alive connections wait on this; one is woken (and closes) per connection
    /// admitted above the high-water mark.
    idle: Notify,
}

/// A held client connection, released on drop.
pub struct ConnectionPermit {
    gate: Arc<ConnectionGate>,
    gauge: prometheus::IntGauge,
    _client: Option<ClientPermit>,
}

impl ConnectionGate {
    pub fn new(derived: usize) -> Arc<Self> {
        Arc::new(ConnectionGate {
            open: AtomicUsize::new(0),
            derived,
            per_client: ClientCounts::new(MAX_CLIENTS),
            idle: Notify::new(),
        })
    }

    /// The cap in force: the configured one, else the derived default.
    pub fn cap(&self, bounds: &RequestBounds) -> usize {
        bounds.max_connections.unwrap_or(self.derived)
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Admits a new connection from `bucket` (its client bucket), or says which cap refuses
    /// it. A trusted proxy's connections are not capped per client (a load balancer carries
    /// many users' connections).
    pub fn admit(
        self: &Arc<Self>,
        bucket: IpAddr,
        trusted: bool,
        bounds: &RequestBounds,
        gauge: &prometheus::IntGauge,
    ) -> Result<ConnectionPermit, Limit> {
        let cap = self.cap(bounds);
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        if open > cap {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Limit::Connections);
        }
        let client = if trusted {
            None
        } else {
            match self
                .per_client
                .try_acquire(bucket, bounds.max_connections_per_client)
            {
                Some(permit) => Some(permit),
                None => {
                    self.open.fetch_sub(1, Ordering::AcqRel);
                    return Err(Limit::ConnectionsPerClient);
                }
            }
        };
        // Above 90% of the cap, each new connection closes the longest-idle kept-alive one.
        if open.saturating_mul(10) >= cap.saturating_mul(9) {
            self.idle.notify_one();
        }
        gauge.inc();
        Ok(ConnectionPermit {
            gate: self.clone(),
            gauge: gauge.clone(),
            _client: client,
        })
    }

    /// Resolves when this idle connection should close to make room: woken by an admission
    /// above the high-water mark, and the gateway still above it (a wake-up stored while no
    /// connection was idle may be taken later, when the pressure is gone: it is ignored then).
    pub async fn make_room(&self, bounds: &RequestBounds) {
        loop {
            self.idle.notified().await;
            let cap = self.cap(bounds);
            if self.open().saturating_mul(10) >= cap.saturating_mul(9) {
                return;
            }
        }
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.gate.open.fetch_sub(1, Ordering::AcqRel);
        self.gauge.dec();
    }
}

/// Raises the soft descriptor limit to the hard one (as Go's runtime and most servers do),
/// and returns the default `max_connections` it allows, with the limit it came from.
pub fn descriptor_budget() -> (usize, u64) {
    let limit = raise_nofile();
    let derived = limit.saturating_sub(RESERVED_DESCRIPTORS) / 2;
    ((derived as usize).clamp(16, DEFAULT_CEILING), limit)
}

/// `--check`'s warning for a `max_connections` the descriptor limit cannot hold (each client
/// connection may need an upstream one too).
pub fn descriptor_warning(bounds: &RequestBounds) -> Option<String> {
    let set = bounds.max_connections?;
    let (_, limit) = descriptor_budget();
    let safe = safe_max(limit);
    (set > safe).then(|| {
        format!(
            "server.max_connections = {set} is above what the descriptor limit allows ({limit} descriptors hold about {safe} client connections with their upstream connections): raise LimitNOFILE / ulimit -n, or the process may run out of descriptors before the cap"
        )
    })
}

/// The most `max_connections` that `limit` descriptors can hold without `EMFILE`.
pub fn safe_max(limit: u64) -> usize {
    (limit.saturating_sub(RESERVED_DESCRIPTORS) / 2) as usize
}

/// The hard `RLIMIT_NOFILE` (the soft one raised to it when allowed), or the soft one.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(total: usize, per_client: usize) -> RequestBounds {
        RequestBounds {
            max_connections: Some(total),
            max_connections_per_client: per_client,
            ..RequestBounds::default()
        }
    }

    #[test]
    fn the_total_and_the_per_client_caps_hold_and_release() {
        let gate = ConnectionGate::new(100);
        let gauge = prometheus::IntGauge::new("g", "g").unwrap();
        let b = bounds(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let c: IpAddr = "192.0.2.2".parse().unwrap();
        let first = gate.admit(a, false, &b, &gauge).unwrap();
        let _second = gate.admit(a, false, &b, &gauge).unwrap();
        assert_eq!(
            gate.admit(a, false, &b, &gauge).err(),
            Some(Limit::ConnectionsPerClient)
        );
        let _third = gate.admit(c, false, &b, &gauge).unwrap();
        assert_eq!(
            gate.admit(c, true, &b, &gauge).err(),
            Some(Limit::Connections)
        );
        assert_eq!((gate.open(), gauge.get()), (3, 3));
        drop(first);
        assert_eq!(gate.open(), 2);
        // A trusted proxy is not capped per client.
        let _proxy = gate.admit(a, true, &b, &gauge).unwrap();
    }

    #[test]
    fn the_default_leaves_room_for_upstream_connections() {
        assert_eq!(safe_max(20_000), (20_000 - 256) / 2);
        assert_eq!(safe_max(100), 0);
    }
}

//! Process-wide state shared by the proxy, the admin endpoint and the signal handlers.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::access_log::{self, AccessLog, Event};
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

pub struct State {
    pub config_path: PathBuf,
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: Metrics,
    pub log: AccessLog,
    /// Set on SIGTERM/SIGQUIT: `/readyz` answers 503 from then on.
    pub draining: AtomicBool,
    /// Requests between `new_ctx` and the end of `logging`.
    pub in_flight: AtomicUsize,
    /// Rate-limit buckets. Process-wide, so a reload keeps every client's budget.
    pub limiter: portcullis_ratelimit::RateLimiter,
    /// Revocations and bans: process-wide, so a reload keeps them; synced with the shared
    /// store when there is one.
    pub replicated: crate::replication::Replicated,
    /// The status page's rolling windows and records (process-wide, so a reload keeps them).
    pub status: portcullis_status::Status,
    /// The edge cache. Process-wide and sized once: a reload keeps what is stored.
    pub cache: &'static portcullis_cache::EdgeCache,
    /// Connections, requests in flight and buffered bodies held now (process-wide: a reload
    /// changes the limits, not what is held).
    pub bounds: crate::bounds::Bounds,
    /// The span exporter: process-wide, so spans queued before a reload are still exported.
    pub tracing: crate::trace::Exporter,
    /// `[acme]`: the certificate it ordered, its challenges and its progress. Read at start;
    /// a change to `[acme]` takes effect at the next restart.
    pub acme: Option<Arc<crate::acme::Acme>>,
}

impl State {
    pub fn current(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Starts the background work the current snapshot needs (the JWKS refresher); pieces
    /// kept from the previous snapshot are already running.
    pub fn start_background(&self) {
        let snapshot = self.current();
        self.status.adopt(snapshot.status_slots());
        if let Some(tracer) = &snapshot.tracer {
            self.tracing.configure(tracer.config.queue_size);
        }
        if let Some(auth) = &snapshot.auth {
            auth.start_refresher(self.metrics.jwks_refreshes.clone());
        }
        for pool in snapshot.upstreams.values() {
            if let Some(breaker) = &pool.breaker {
                self.metrics
                    .breaker_state
                    .with_label_values(&[pool.name()])
                    .set(breaker.state(std::time::Instant::now()).gauge());
            }
        }
    }

    /// Writes a structured event line (reloads, breaker transitions, suspicious requests).
    pub fn event(&self, event: &str, fields: serde_json::Map<String, serde_json::Value>) {
        let record = Event {
            ts: access_log::timestamp(std::time::SystemTime::now()),
            event,
            fields,
        };
        if !self.log.write(&record) {
            self.metrics.access_log_dropped.inc();
        }
    }

    /// Re-reads the configuration file and swaps in a new snapshot, or keeps the running one
    /// when the file is invalid. Runs off the request path (it may resolve DNS).
    pub fn reload(&self) {
        let previous = self.current();
        let built = portcullis_config::load(&self.config_path)
            .map_err(|errors| errors.to_string())
            .and_then(|config| Snapshot::build(config, Some(&previous)).map_err(|e| e.to_string()));
        match built {
            Ok(next) => {
                self.replicated.configure(&next.config);
                if next.config.acme.as_ref() != self.acme.as_ref().map(|a| &a.settings) {
                    log::warn!("[acme] changed: it takes effect at the next restart");
                }
                if next.config.cache != self.cache.settings {
                    log::warn!(
                        "[cache] changed: memory and lock_timeout take effect at the next restart"
                    );
                }
                self.snapshot.store(Arc::new(next));
                self.start_background();
                self.status.reloaded(Ok(()));
                self.metrics
                    .config_reloads
                    .with_label_values(&["success"])
                    .inc();
                log::info!("configuration reloaded from {}", self.config_path.display());
                self.event("config_reload", json_fields([("result", "success".into())]));
            }
            Err(errors) => {
                let errors: String = errors;
                self.status.reloaded(Err(&errors));
                self.metrics
                    .config_reloads
                    .with_label_values(&["error"])
                    .inc();
                log::error!(
                    "configuration reload failed; the running configuration stays:\n{errors}"
                );
                self.event(
                    "config_reload",
                    json_fields([
                        ("result", "error".into()),
                        ("errors", errors.to_string().into()),
                    ]),
                );
            }
        }
    }
}

pub fn json_fields<const N: usize>(
    pairs: [(&str, serde_json::Value); N],
) -> serde_json::Map<String, serde_json::Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Counts a request as in flight for its whole life (the drain waits for zero).
pub struct InFlight(Arc<State>);

impl InFlight {
    pub fn new(state: &Arc<State>) -> Self {
        state.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

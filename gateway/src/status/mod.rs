//! The live status page of the admin listener: `GET /status` (HTML, readable without
//! JavaScript, refreshed every 2 s by `/status.js`) and `GET /status.json` (the same figures
//! for scripts). Read-only: nothing here changes what the gateway does.
//!
//! Where the figures come from:
//!
//! | figure | kept by | cost on the request path |
//! |---|---|---|
//! | per route: rate, p50/p99, 4xx/5xx, the 15-minute chart | `portcullis_status::windows`, written by `outcome::record` | a clock read and relaxed atomic adds |
//! | per route: rate-limited; the top limited clients | `portcullis_status::windows` and `::sketch`, from the rate-limit refusal | a mutex, on refusals only |
//! | JWT results and cache hits, retries, suspicious requests per minute | [`sampler`]: the `/metrics` counters, sampled once a second | none |
//! | breakers, peers, retry budgets, JWT keys, bans, the store | read when the page is made | none |
//! | the last reload, breaker transitions, JWKS fetches | recorded when they happen | none (rare paths) |
//!
//! Everything is bounded: windows for at most [`slots::MAX_ROUTES`] routes, fixed rings, a
//! sketch of `portcullis_status::sketch::CAPACITY` counters, a 61-sample ring, and lists cut to a fixed length
//! when the page is made. The process-wide windows live here, in `State`; a snapshot only
//! holds each route's [`Slot`].

mod collect;
pub mod sampler;
pub mod slots;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use portcullis_ratelimit::Scope;
use portcullis_status::json::{LastReload, Report};
use portcullis_status::redact;
use portcullis_status::sketch::{BucketKey, LimitedClients};
use portcullis_status::windows::{Answer, RouteWindows};
use portcullis_status::Page;

pub use slots::Slot;

use crate::snapshot::Snapshot;
use crate::state::State;
use slots::MAX_ROUTES;

/// Upstreams whose last breaker transition is remembered.
const MAX_UPSTREAMS: usize = 256;

pub struct Status {
    epoch: Instant,
    started_at: SystemTime,
    /// Seconds past the wall-clock minute at start, so window minutes are clock minutes.
    offset: u64,
    /// Slot 0 is the unrouted requests'; a slot's windows are made when a route first takes it.
    routes: Box<[OnceLock<RouteWindows>]>,
    /// The route name each slot's figures belong to.
    owners: Mutex<Vec<Option<String>>>,
    limited: LimitedClients,
    sampler: sampler::Sampler,
    last_reload: Mutex<LastReload>,
    breaker_changes: Mutex<BTreeMap<String, SystemTime>>,
}

// === impl Status ===

impl Default for Status {
    fn default() -> Self {
        Self::new()
    }
}

impl Status {
    pub fn new() -> Self {
        let started_at = SystemTime::now();
        let wall = started_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let routes: Box<[OnceLock<RouteWindows>]> =
            (0..=MAX_ROUTES).map(|_| OnceLock::new()).collect();
        let _ = routes[0].set(RouteWindows::default());
        Status {
            epoch: Instant::now(),
            started_at,
            offset: wall % 60,
            routes,
            owners: Mutex::new(vec![None; MAX_ROUTES + 1]),
            limited: LimitedClients::default(),
            sampler: sampler::Sampler::default(),
            last_reload: Mutex::new(LastReload {
                at: None,
                result: "none",
                error: None,
            }),
            breaker_changes: Mutex::new(BTreeMap::new()),
        }
    }

    /// The window clock: seconds since start, shifted so that `sec / 60` turns with the
    /// wall-clock minute.
    fn now_sec(&self) -> u64 {
        self.epoch.elapsed().as_secs() + self.offset
    }

    /// The wall-clock time of window minute `minute` (negative: before start).
    fn minute_start(&self, minute: i64) -> SystemTime {
        let start = self
            .started_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            - self.offset;
        let secs = (start as i64)
            .saturating_add(minute.saturating_mul(60))
            .max(0);
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
    }

    fn windows(&self, slot: Slot) -> Option<&RouteWindows> {
        self.routes.get(slot.index()?)?.get()
    }

    /// Counts a finished request (`outcome::record`, every answer the process gives).
    pub fn record(&self, slot: Slot, status: u16, duration_ms: f64) {
        if let Some(windows) = self.windows(slot) {
            let micros = (duration_ms * 1000.0) as u64;
            windows.record(self.now_sec(), Answer { status, micros });
        }
    }

    /// Counts a rate-limit refusal of the client `ip`, keyed as its bucket is
    /// (`ipv6_prefix` for IPv6).
    pub fn rate_limited(&self, slot: Slot, ip: IpAddr, ipv6_prefix: u8, scope: Scope) {
        let sec = self.now_sec();
        if let Some(windows) = self.windows(slot) {
            windows.limited(sec);
        }
        let key = BucketKey {
            ip: portcullis_routing::client_ip::bucket(ip, ipv6_prefix),
            prefix: ipv6_prefix,
        };
        self.limited.refused(key, scope, sec);
    }

    /// Makes the windows of `snapshot`'s routes, emptying a slot that passed from another
    /// route name (called whenever a snapshot goes live).
    pub fn adopt(&self, snapshot: &Snapshot) {
        let mut owners = lock(&self.owners);
        for (route, handles) in snapshot.config.routes.iter().zip(&snapshot.routes) {
            let Some(i) = handles.status_slot.index() else {
                continue;
            };
            let windows = self.routes[i].get_or_init(RouteWindows::default);
            if owners[i].as_deref() != Some(route.name.as_str()) {
                windows.clear();
                owners[i] = Some(route.name.clone());
            }
        }
    }

    /// Remembers a reload's result; an error is kept with its quoted values cut out.
    pub fn reloaded(&self, result: Result<(), &str>) {
        let at = Some(crate::access_log::timestamp(SystemTime::now()));
        *lock(&self.last_reload) = match result {
            Ok(()) => LastReload {
                at,
                result: "success",
                error: None,
            },
            Err(errors) => LastReload {
                at,
                result: "error",
                error: Some(redact(errors)),
            },
        };
    }

    /// Remembers when `upstream`'s breaker last changed state.
    pub fn breaker_changed(&self, upstream: &str) {
        let mut changes = lock(&self.breaker_changes);
        if !changes.contains_key(upstream) && changes.len() >= MAX_UPSTREAMS {
            let oldest = changes
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(n, _)| n.clone());
            if let Some(oldest) = oldest {
                changes.remove(&oldest);
            }
        }
        changes.insert(upstream.to_string(), SystemTime::now());
    }
}

/// Samples the `/metrics` counters once a second, on the admin thread, for as long as the
/// process runs.
pub async fn sample_every_second(state: Arc<State>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        state
            .status
            .sampler
            .sample(&state.metrics, state.status.now_sec());
    }
}

/// The answer for `path` (one of [`portcullis_status::serves`]).
pub fn answer(path: &[u8], state: &State) -> Page {
    portcullis_status::answer(path, || collect::report(state), to_json)
}

/// `/status.json`'s bytes: through the gateway's one JSON writer (`json_line`, which escapes
/// U+2028 and U+2029), newline-terminated.
fn to_json(report: &Report) -> Vec<u8> {
    let mut out = crate::json_line::to_vec(report).unwrap_or_else(|e| {
        log::error!("encoding the status failed: {e}");
        b"{}".to_vec()
    });
    out.push(b'\n');
    out
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every value behind these locks is replaced whole: a poisoned one is still consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

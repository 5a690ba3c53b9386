//! Revocations and bans: this replica's in-memory copies, and the sync that keeps them in
//! step with the shared store.
//!
//! The request path only ever reads the copies (a lock-free load each, see
//! `portcullis_jwt::Revocations` and `portcullis_suspicious::SharedBans`). With a shared store, a
//! task on the admin runtime polls the store's versions every [`SYNC_INTERVAL`] and loads a
//! whole set again when its version changed, so a change made on any replica is enforced here
//! within about a quarter of a second, and a replica that (re)connects or starts catches up in
//! one poll. Each poll also reads the store's clock, so bans end at the same instant on every
//! replica whatever their own clocks say.
//!
//! When the store fails, the copies keep being enforced as they were; writes through the
//! admin API answer 503. When the store comes back empty (restarted without persistence),
//! the replica writes its copy back, so nothing revoked becomes valid again.
//!
//! With the memory store the copies are the only ones: they live in the process (across
//! reloads) and the sync just forgets expired entries.

use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use portcullis_jwt::{Revocation, Revocations};
use portcullis_ratelimit::shared::{Poll, Put, SharedStore};
use portcullis_suspicious::{BanRange, SharedBans};
use tokio::sync::mpsc;

use crate::clock::{unix_ms, unix_secs};
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

/// How often the store's versions are polled: the bound on how stale a replica's copy is.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(250);

/// The furthest end an admin write or an auto-ban may set: ten years ahead (`"for":
/// "3650d"`). Long enough to mean "for good" in operation; short enough that every end is an
/// exact integer in the store's sorted-set scores (doubles, exact to 2^53 ms) and in the
/// local tables, and that a typo (`"9999999d"`) is refused instead of held for ever. A
/// configured `ban_duration` or token lifetime beyond it is held for this long.
pub const MAX_HORIZON: Duration = Duration::from_secs(3650 * 86_400);

/// Auto-bans waiting to be written to the store; beyond this they stay local.
const BAN_QUEUE: usize = 1024;

/// Default `max_revocations` when no `[jwt]` is configured.
const DEFAULT_MAX_REVOCATIONS: usize = 10_000;

pub struct Replicated {
    pub revocations: Revocations,
    pub bans: SharedBans,
    /// The store's clock minus ours (ms), from the last poll.
    offset_ms: AtomicI64,
    auto_bans: mpsc::Sender<(BanRange, Duration)>,
    queued: Mutex<Option<mpsc::Receiver<(BanRange, Duration)>>>,
}

impl Replicated {
    pub fn new(config: &portcullis_config::Config) -> Self {
        let (tx, rx) = mpsc::channel(BAN_QUEUE);
        let replicated = Replicated {
            revocations: Revocations::new(DEFAULT_MAX_REVOCATIONS),
            bans: SharedBans::new(1, config.suspicious.ipv6_prefix),
            offset_ms: AtomicI64::new(0),
            auto_bans: tx,
            queued: Mutex::new(Some(rx)),
        };
        replicated.configure(config);
        replicated
    }

    /// Bounds and keying from a (re)loaded configuration.
    pub fn configure(&self, config: &portcullis_config::Config) {
        self.revocations.set_capacity(
            config
                .jwt
                .as_ref()
                .map_or(DEFAULT_MAX_REVOCATIONS, |j| j.max_revocations),
        );
        self.bans.configure(
            config.suspicious.ban_table_size,
            config.suspicious.ipv6_prefix,
        );
    }

    /// Now on the store's clock (unix ms): what ban ends are compared with.
    pub fn now_ms(&self) -> u64 {
        let local = i64::try_from(unix_ms()).unwrap_or(i64::MAX);
        u64::try_from(local.saturating_add(self.offset_ms.load(Ordering::Relaxed))).unwrap_or(0)
    }

    /// An auto-ban placed by this replica: enforced here at once, and queued for the store.
    pub fn auto_ban(&self, ip: IpAddr, duration: Duration, shared: bool) {
        let duration = duration.min(MAX_HORIZON);
        let key = self.bans.key(ip);
        let now = self.now_ms();
        let until = now.saturating_add(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
        if let Err(e) = self.bans.insert(key, until, now) {
            log::warn!("auto-ban of {key} kept in the ban list only: {e}");
        }
        if shared && self.auto_bans.try_send((key, duration)).is_err() {
            log::warn!("auto-ban of {key} not shared: the queue to the store is full");
        }
    }
}

/// What the sync knows about the store it last talked to.
#[derive(Default)]
struct Seen {
    store: Option<Arc<SharedStore>>,
    revocations: Option<u64>,
    bans: Option<u64>,
    failing: bool,
}

/// What the sync works with: this replica's copies, its counters, and the configuration in
/// force (whose shared store, if any, the copies follow).
struct Replica<'a> {
    replicated: &'a Replicated,
    metrics: &'a Metrics,
    current: &'a (dyn Fn() -> Arc<Snapshot> + Sync),
}

impl Replica<'_> {
    fn current(&self) -> Arc<Snapshot> {
        (self.current)()
    }
}

/// The sync loop; runs for the life of the process on the admin runtime. `current` gives the
/// configuration snapshot in force.
pub async fn run(
    replicated: &Replicated,
    metrics: &Metrics,
    current: impl Fn() -> Arc<Snapshot> + Sync,
) {
    let replica = &Replica {
        replicated,
        metrics,
        current: &current,
    };
    let mut queued = replica
        .replicated
        .queued
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    for op in ["poll", "load", "write"] {
        replica.metrics.shared_state_errors.with_label_values(&[op]);
    }
    let mut seen = Seen::default();
    let mut tick = tokio::time::interval(SYNC_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let snapshot = replica.current();
        let shared = &replica.replicated;
        match &snapshot.shared_limits {
            None => {
                seen = Seen::default();
                shared.offset_ms.store(0, Ordering::Relaxed);
                if let Some(rx) = queued.as_mut() {
                    while rx.try_recv().is_ok() {}
                }
                shared.revocations.prune(unix_secs());
                forget(replica, shared.bans.prune(unix_ms()));
            }
            Some(store) => {
                if !seen.store.as_ref().is_some_and(|s| Arc::ptr_eq(s, store)) {
                    seen = Seen {
                        store: Some(Arc::clone(store)),
                        ..Seen::default()
                    };
                }
                sync(replica, store, &mut seen, queued.as_mut()).await;
            }
        }
        replica
            .metrics
            .revocations
            .set(gauge(shared.revocations.len()));
        replica.metrics.bans.set(gauge(shared.bans.len()));
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Clients whose ban ended or was lifted: their auto-ban counts start again (a range an
/// operator named is no client's key, and has no count to forget).
fn forget(replica: &Replica<'_>, ranges: Vec<BanRange>) {
    if ranges.is_empty() {
        return;
    }
    let snapshot = replica.current();
    let bans = &replica.replicated.bans;
    for range in ranges.into_iter().filter(|r| bans.is_client_key(*r)) {
        snapshot.bans.forget(range.network());
    }
}

async fn sync(
    replica: &Replica<'_>,
    store: &SharedStore,
    seen: &mut Seen,
    queued: Option<&mut mpsc::Receiver<(BanRange, Duration)>>,
) {
    let shared = &replica.replicated;
    let errors = &replica.metrics.shared_state_errors;
    let poll = match store.poll().await {
        Ok(poll) => poll,
        Err(e) => {
            errors.with_label_values(&["poll"]).inc();
            if !seen.failing {
                log::warn!(
                    "shared store {} unreachable ({e}): revocations and bans stay as last loaded; admin writes answer 503",
                    store.name()
                );
            }
            // Whatever happens while disconnected, the next answer reloads everything.
            *seen = Seen {
                store: seen.store.take(),
                failing: true,
                ..Seen::default()
            };
            return;
        }
    };
    if seen.failing {
        log::info!(
            "shared store {} answers again: reloading revocations and bans",
            store.name()
        );
        seen.failing = false;
    }
    let local = i64::try_from(unix_ms()).unwrap_or(i64::MAX);
    let offset = i64::try_from(poll.now_ms)
        .unwrap_or(i64::MAX)
        .saturating_sub(local);
    shared.offset_ms.store(offset, Ordering::Relaxed);

    if let Some(rx) = queued {
        while let Ok((client, duration)) = rx.try_recv() {
            let text = client.to_string();
            match store.put_ban(&text, duration, shared.bans.capacity()).await {
                Ok(Put::Stored { .. }) => {}
                Ok(Put::Full) => {
                    log::warn!("auto-ban of {text} not shared: the store's ban table is full")
                }
                Err(e) => {
                    errors.with_label_values(&["write"]).inc();
                    log::warn!("auto-ban of {text} not shared: {e}");
                }
            }
        }
    }
    sync_revocations(replica, store, seen, &poll).await;
    sync_bans(replica, store, seen, &poll).await;
}

async fn sync_revocations(
    replica: &Replica<'_>,
    store: &SharedStore,
    seen: &mut Seen,
    poll: &Poll,
) {
    let shared = &replica.replicated;
    let errors = &replica.metrics.shared_state_errors;
    match poll.revocations {
        None if !shared.revocations.is_empty() => {
            // The store lost its revocations (restarted empty, flushed): write ours back.
            let entries: Vec<Revocation> = shared.revocations.snapshot().iter().cloned().collect();
            log::warn!(
                "shared store {} holds no revocations; writing back this replica's {}",
                store.name(),
                entries.len()
            );
            for r in entries {
                let Ok(body) = serde_json::to_string(&r) else {
                    continue;
                };
                if let Err(e) = store
                    .put_revocation(&r.id, &body, r.expires, shared.revocations.capacity())
                    .await
                {
                    errors.with_label_values(&["write"]).inc();
                    log::warn!("writing revocation {} back failed: {e}", r.id);
                    return;
                }
            }
        }
        None => seen.revocations = None,
        Some(version) if seen.revocations == Some(version) => {}
        Some(_) => match store.load_revocations().await {
            Ok((version, bodies)) => {
                let now = unix_secs();
                let entries = bodies.iter().filter_map(|b| {
                    serde_json::from_str::<Revocation>(b)
                        .map_err(|e| {
                            log::warn!("skipping a malformed revocation in the store: {e}")
                        })
                        .ok()
                        .filter(|r| r.expires >= now)
                });
                let dropped = shared.revocations.replace(entries);
                if dropped > 0 {
                    log::warn!(
                        "{dropped} revocations in the store are beyond this replica's max_revocations and are not enforced here"
                    );
                }
                seen.revocations = version;
            }
            Err(e) => {
                errors.with_label_values(&["load"]).inc();
                log::warn!("loading revocations failed: {e}");
            }
        },
    }
}

async fn sync_bans(replica: &Replica<'_>, store: &SharedStore, seen: &mut Seen, poll: &Poll) {
    let shared = &replica.replicated;
    let errors = &replica.metrics.shared_state_errors;
    match poll.bans {
        None if !shared.bans.is_empty() => {
            let bans = shared.bans.list();
            log::warn!(
                "shared store {} holds no bans; writing back this replica's {}",
                store.name(),
                bans.len()
            );
            for (client, until) in bans {
                if let Err(e) = store
                    .put_ban_until(&client.to_string(), until, shared.bans.capacity())
                    .await
                {
                    errors.with_label_values(&["write"]).inc();
                    log::warn!("writing the ban of {client} back failed: {e}");
                    return;
                }
            }
        }
        None => seen.bans = None,
        Some(version) if seen.bans == Some(version) => {
            forget(replica, shared.bans.prune(poll.now_ms));
        }
        Some(_) => match store.load_bans().await {
            Ok((version, bans)) => {
                // Members are ranges as `BanRange` writes them; a bare IPv6 address (written
                // by an older version) is its `ipv6_prefix` bucket, as it was then.
                let entries = bans.into_iter().filter_map(|(client, until)| {
                    shared.bans.parse_client(&client).ok().map(|r| (r, until))
                });
                forget(replica, shared.bans.replace(entries));
                seen.bans = version;
            }
            Err(e) => {
                errors.with_label_values(&["load"]).inc();
                log::warn!("loading bans failed: {e}");
            }
        },
    }
}

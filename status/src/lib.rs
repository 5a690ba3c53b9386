//! The live status page of the admin listener: `GET /status` (HTML, readable without
//! JavaScript, refreshed every 2 s by `/status.js`) and `GET /status.json` (the same figures
//! for scripts). Read-only: nothing here changes what the gateway does.
//!
//! This crate records and renders; the gateway collects. It keeps the figures that are written
//! as requests finish ([`Status`]: the rolling windows, the top rate-limited clients, the
//! sampled counters' ring, the last reload and breaker transitions) and renders a
//! [`json::Report`] as the page, with its script, style sheet and icon. It knows nothing of the
//! gateway's state, snapshots, metrics or pingora: the gateway hands it small typed inputs
//! (slots, route names, counter totals) and gathers the `Report` itself.
//!
//! Where the figures come from:
//!
//! | figure | kept by | cost on the request path |
//! |---|---|---|
//! | per route: rate, p50/p99, 4xx/5xx, the 15-minute chart | [`windows`], written by [`Status::record`] | a clock read and relaxed atomic adds |
//! | per route: rate-limited; the top limited clients | [`windows`] and [`sketch`], from [`Status::rate_limited`] | a mutex, on refusals only |
//! | JWT results and cache hits, retries, suspicious requests per minute | [`sampler`]: the `/metrics` counters, sampled once a second | none |
//! | breakers, peers, retry budgets, JWT keys, bans, the store | read by the gateway when the page is made | none |
//! | the last reload, breaker transitions, JWKS fetches | recorded when they happen | none (rare paths) |
//!
//! Everything is bounded: windows for at most [`slots::MAX_ROUTES`] routes, fixed rings, a
//! sketch of [`sketch::CAPACITY`] counters, a [`sampler::SAMPLES`]-sample ring, and lists cut
//! to a fixed length when the page is made. The process-wide windows live in [`Status`] (the
//! gateway's `State`); a snapshot only holds each route's [`Slot`].

pub mod json;
mod page;
pub mod sampler;
pub mod sketch;
pub mod slots;
pub mod windows;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use portcullis_ratelimit::Scope;

pub use slots::Slot;

use json::Report;
use sampler::Sampler;
use sketch::{BucketKey, LimitedClients};
use slots::MAX_ROUTES;
use windows::{Answer, RouteWindows};

/// Upstreams whose last breaker transition is remembered.
const MAX_UPSTREAMS: usize = 256;

/// The longest reload error kept, in bytes.
const MAX_ERROR_BYTES: usize = 2048;

/// The figures recorded as the process runs. Process-wide (the gateway keeps one in its
/// `State`), so a reload keeps every route's last 15 minutes.
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
    sampler: Sampler,
    last_reload: Mutex<Reload>,
    breaker_changes: Mutex<BTreeMap<String, SystemTime>>,
}

/// The last SIGHUP reload as recorded; the page shows it as [`json::LastReload`].
#[derive(Debug, Clone)]
pub struct Reload {
    pub at: Option<SystemTime>,
    /// `none` (no reload since start), `success` or `error`.
    pub result: &'static str,
    /// The errors, quoted values cut out ([`redact`]).
    pub error: Option<String>,
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
            sampler: Sampler::default(),
            last_reload: Mutex::new(Reload {
                at: None,
                result: "none",
                error: None,
            }),
            breaker_changes: Mutex::new(BTreeMap::new()),
        }
    }

    /// The window clock: seconds since start, shifted so that `sec / 60` turns with the
    /// wall-clock minute.
    pub fn now_sec(&self) -> u64 {
        self.epoch.elapsed().as_secs() + self.offset
    }

    /// The wall-clock time of window minute `minute` (negative: before start).
    pub fn minute_start(&self, minute: i64) -> SystemTime {
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

    /// When the process started (wall clock).
    pub fn started_at(&self) -> SystemTime {
        self.started_at
    }

    /// How long the process has run (monotonic).
    pub fn uptime(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// The windows of `slot`; `None` for an untracked slot or one no route took yet.
    pub fn windows(&self, slot: Slot) -> Option<&RouteWindows> {
        self.routes.get(slot.index()?)?.get()
    }

    /// The rate-limited clients of the last minute or so.
    pub fn limited(&self) -> &LimitedClients {
        &self.limited
    }

    /// The ring of sampled `/metrics` counters (the gateway samples it once a second).
    pub fn sampler(&self) -> &Sampler {
        &self.sampler
    }

    /// Counts a finished request (every answer the process gives).
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

    /// Makes the windows of the live configuration's routes, given as (route name, slot),
    /// emptying a slot that passed from another route name (called whenever a snapshot goes
    /// live).
    pub fn adopt<'a>(&self, routes: impl IntoIterator<Item = (&'a str, Slot)>) {
        let mut owners = lock(&self.owners);
        for (name, slot) in routes {
            let Some(i) = slot.index() else {
                continue;
            };
            let windows = self.routes[i].get_or_init(RouteWindows::default);
            if owners[i].as_deref() != Some(name) {
                windows.clear();
                owners[i] = Some(name.to_string());
            }
        }
    }

    /// Remembers a reload's result; an error is kept with its quoted values cut out.
    pub fn reloaded(&self, result: Result<(), &str>) {
        let at = Some(SystemTime::now());
        *lock(&self.last_reload) = match result {
            Ok(()) => Reload {
                at,
                result: "success",
                error: None,
            },
            Err(errors) => Reload {
                at,
                result: "error",
                error: Some(redact(errors)),
            },
        };
    }

    /// The last reload's result.
    pub fn last_reload(&self) -> Reload {
        lock(&self.last_reload).clone()
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

    /// When each upstream's breaker last changed state (at most 256 upstreams).
    pub fn breaker_changes(&self) -> BTreeMap<String, SystemTime> {
        lock(&self.breaker_changes).clone()
    }
}

// === the admin listener's answers ===

/// An admin-listener answer of the status page.
pub struct Page {
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// The paths the status page answers on the admin listener.
pub fn serves(path: &[u8]) -> bool {
    matches!(
        path,
        b"/status" | b"/status.json" | b"/status.js" | b"/status.css" | b"/favicon.ico"
    )
}

/// The answer for `path` (one of [`serves`]). `report` gathers the figures (asked only for the
/// page and the document); `encode` writes the document: the gateway's one JSON writer, so
/// `/status.json` is escaped like every other JSON the gateway writes.
pub fn answer(
    path: &[u8],
    report: impl FnOnce() -> Report,
    encode: impl FnOnce(&Report) -> Vec<u8>,
) -> Page {
    match path {
        b"/status.json" => Page {
            content_type: "application/json",
            body: encode(&report()),
        },
        b"/status.js" => Page {
            content_type: "text/javascript; charset=utf-8",
            body: page::SCRIPT.as_bytes().to_vec(),
        },
        b"/status.css" => Page {
            content_type: "text/css; charset=utf-8",
            body: page::STYLE.as_bytes().to_vec(),
        },
        b"/favicon.ico" => Page {
            content_type: "image/svg+xml",
            body: page::ICON.as_bytes().to_vec(),
        },
        _ => Page {
            content_type: "text/html; charset=utf-8",
            body: page::render(&report()).into_bytes(),
        },
    }
}

/// The admin listener's Content-Security-Policy: only its own scripts, styles and fetches;
/// no inline script or style, no frames, no forms, no plugins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A reload error as the page shows it: every `` `quoted` `` or `"quoted"` value replaced by
/// `…` (a value can come from the file or from `${ENV}` and be a secret), cut to 2 KiB. The
/// locations and keys stay, enough to find the line; the log has the whole text.
pub fn redact(errors: &str) -> String {
    let mut out = String::with_capacity(errors.len().min(MAX_ERROR_BYTES));
    let mut open: Option<char> = None;
    for c in errors.chars() {
        match open {
            Some(quote) if c == quote => {
                out.push('…');
                out.push(c);
                open = None;
            }
            Some(_) if c == '\n' => {
                out.push('…');
                out.push(c);
                open = None;
            }
            Some(_) => {}
            None if c == '`' || c == '"' => {
                out.push(c);
                open = Some(c);
            }
            None => out.push(c),
        }
        if out.len() >= MAX_ERROR_BYTES {
            out.push_str(" …");
            break;
        }
    }
    if open.is_some() {
        out.push('…');
    }
    out
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every value behind these locks is replaced whole: a poisoned one is still consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_errors_lose_their_quoted_values() {
        let e = "/etc/p.toml:3:10: jwt.secret: `hunter2-secret` is too short\n/etc/p.toml:9:1: routes[0].upstream: unknown upstream \"app\"";
        assert_eq!(
            redact(e),
            "/etc/p.toml:3:10: jwt.secret: `…` is too short\n/etc/p.toml:9:1: routes[0].upstream: unknown upstream \"…\""
        );
        assert_eq!(redact("a `never closed"), "a `…");
        assert!(redact(&"x".repeat(10_000)).len() < MAX_ERROR_BYTES + 8);
    }
}

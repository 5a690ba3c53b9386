//! Gathers one [`Report`] from the process: the windows, the sampled counters, and what the
//! current snapshot's pieces say now (breakers, peers, budgets, keys, bans, the store). Runs
//! on the admin thread, once per page or document; every list is cut to a fixed length.

use std::time::{Duration, Instant, SystemTime};

use portcullis_config::{StoreKind, SuspiciousMode};
use portcullis_status::json::*;
use portcullis_status::sampler::{self, value, Totals};
use portcullis_status::windows::{quantile_ms, Totals as Window, MINUTES, SECONDS};
use portcullis_status::{Slot, Status};
use portcullis_suspicious::Rule;

use super::counters;
use crate::access_log::timestamp;
use crate::snapshot::Snapshot;
use crate::state::State;

/// Rows of the top rate-limited clients.
const TOP_LIMITED: usize = 10;
/// Bans listed (all are counted).
const MAX_BANS: usize = 100;

pub fn report(state: &State) -> Report {
    let status = &state.status;
    let snapshot = state.current();
    let sec = status.now_sec();
    let (totals, minute) = status
        .sampler()
        .last_minute(counters::totals(&state.metrics), sec);
    let now = SystemTime::now();
    let uptime = status.uptime();
    let (bans, bans_total) = bans(state, &snapshot, now);
    Report {
        version: env!("CARGO_PKG_VERSION"),
        generated_at: timestamp(now),
        started_at: timestamp(status.started_at()),
        uptime_seconds: uptime.as_secs(),
        config: ConfigReport {
            path: std::path::absolute(&state.config_path)
                .unwrap_or_else(|_| state.config_path.clone())
                .display()
                .to_string(),
            last_reload: last_reload(status),
        },
        routes: routes(status, &snapshot, sec),
        unrouted: traffic(status, Slot::UNROUTED, sec),
        upstreams: upstreams(status, &snapshot, &minute),
        jwt: jwt(&snapshot, &minute),
        rate_limit_store: store(&snapshot, &minute),
        rate_limited_clients: status
            .limited()
            .top(TOP_LIMITED, sec)
            .into_iter()
            .map(|l| LimitedClient {
                client: l.client.to_string(),
                refusals: l.refusals,
                scope: l.scope.as_str(),
            })
            .collect(),
        suspicious: suspicious(&snapshot, &totals, &minute),
        bans,
        bans_total,
        bounds: bounds(state, &snapshot, &totals, &minute),
        tracing: tracing(state, &snapshot),
        certificate: certificate(state),
    }
}

fn last_reload(status: &Status) -> LastReload {
    let reload = status.last_reload();
    LastReload {
        at: reload.at.map(timestamp),
        result: reload.result,
        error: reload.error,
    }
}

fn bounds(state: &State, snapshot: &Snapshot, totals: &Totals, minute: &Totals) -> BoundsReport {
    let server = &snapshot.config.server.bounds;
    let count = |t: &Totals, limit: crate::bounds::Limit| {
        value(t, counters::REQUEST_LIMITS, &[("limit", limit.label())])
    };
    BoundsReport {
        connections: state.bounds.connections.open(),
        max_connections: state.bounds.connections.cap(server),
        requests_in_flight: state.in_flight.load(std::sync::atomic::Ordering::Relaxed),
        buffered_body_bytes: state.bounds.buffers.used(),
        body_buffer_memory: server.body_buffer_memory,
        refusals: crate::bounds::Limit::ALL
            .iter()
            .map(|&limit| LimitRefusals {
                limit: limit.label(),
                last_minute: count(minute, limit),
                total: count(totals, limit),
            })
            .collect(),
    }
}

fn tracing(state: &State, snapshot: &Snapshot) -> Option<TracingReport> {
    let config = &snapshot.tracer.as_ref()?.config;
    let slow = state
        .tracing
        .slow
        .list()
        .into_iter()
        .map(|t| {
            let id = t.trace_id.to_string();
            SlowTraceReport {
                at: timestamp(std::time::UNIX_EPOCH + std::time::Duration::from_millis(t.at_ms)),
                route: t.route,
                status: t.status,
                duration_ms: round3(t.duration_us as f64 / 1000.0),
                link: config
                    .trace_link
                    .as_ref()
                    .map(|l| l.replace("{trace_id}", &id)),
                trace_id: id,
            }
        })
        .collect();
    Some(TracingReport {
        sample_ratio: config.sample_ratio,
        trust_incoming: match config.trust_incoming {
            portcullis_config::TraceTrust::All => "all",
            portcullis_config::TraceTrust::TrustedProxies => "trusted_proxies",
            portcullis_config::TraceTrust::None => "none",
        },
        spans_exported: state.metrics.tracing_spans_exported.get(),
        spans_dropped: state.metrics.tracing_spans_dropped.get(),
        slow,
    })
}

fn certificate(state: &State) -> Option<CertificateReport> {
    let acme = state.acme.as_ref()?;
    let served = acme.served();
    let progress = acme.progress();
    let at = |t: Option<i64>| t.map(crate::acme::rfc3339);
    let info = served.as_ref().map(|s| &s.info);
    Some(CertificateReport {
        state: if served.is_some() { "valid" } else { "pending" },
        names: info.map_or_else(|| acme.settings.domains.clone(), |i| i.names.clone()),
        issuer: info.map(|i| i.issuer.clone()),
        serial: info.map(|i| i.serial.clone()),
        not_before: at(info.map(|i| i.not_before)),
        not_after: at(info.map(|i| i.not_after)),
        next_renewal: at(progress.next_renewal),
        last_issued_at: at(progress.last_issued_at),
        last_error: progress
            .last_error
            .as_deref()
            .map(portcullis_status::redact),
        last_error_at: at(progress.last_error_at),
    })
}

fn routes(status: &Status, snapshot: &Snapshot, sec: u64) -> Vec<RouteReport> {
    let config = &snapshot.config;
    config
        .routes
        .iter()
        .zip(&snapshot.routes)
        .map(|(route, handles)| RouteReport {
            name: route.name.clone(),
            upstream: route.upstream.clone(),
            auth: route.auth.as_str(),
            rate_limit: route.rate_limit.clone(),
            tracked: handles.status_slot.tracked(),
            traffic: traffic(status, handles.status_slot, sec),
        })
        .collect()
}

fn traffic(status: &Status, slot: Slot, sec: u64) -> Traffic {
    let (last, minutes) = match status.windows(slot) {
        Some(w) => (w.last_minute(sec), w.by_minute(sec)),
        None => (Window::default(), vec![Window::default(); MINUTES]),
    };
    // Rates over the last 60 s, or over the seconds since start when the process is younger.
    let span = (status.uptime().as_secs() + 1).min(SECONDS as u64) as f64;
    let per_second = |n: u64| round3(n as f64 / span);
    let minute_start = |i: usize| {
        let minute = (sec / 60) as i64 - (MINUTES - 1 - i) as i64;
        timestamp(status.minute_start(minute))
    };
    Traffic {
        requests_per_second: per_second(last.requests),
        requests_last_minute: last.requests,
        p50_ms: quantile_ms(&last.latency, 0.5),
        p99_ms: quantile_ms(&last.latency, 0.99),
        client_errors_per_second: per_second(last.client_errors),
        server_errors_per_second: per_second(last.server_errors),
        rate_limited_last_minute: last.limited,
        history: History {
            minute_starts: (0..MINUTES).map(minute_start).collect(),
            requests: minutes.iter().map(|m| m.requests).collect(),
            p99_ms: minutes
                .iter()
                .map(|m| quantile_ms(&m.latency, 0.99))
                .collect(),
        },
    }
}

fn upstreams(status: &Status, snapshot: &Snapshot, minute: &Totals) -> Vec<UpstreamReport> {
    let mut pools: Vec<_> = snapshot.upstreams.values().collect();
    pools.sort_by(|a, b| a.name().cmp(b.name()));
    let changes = status.breaker_changes();
    let now = Instant::now();
    pools
        .into_iter()
        .map(|pool| UpstreamReport {
            name: pool.name().to_string(),
            breaker: pool
                .breaker
                .as_ref()
                .map_or("closed", |b| b.state(now).as_str()),
            breaker_enabled: pool.breaker.is_some(),
            breaker_changed_at: changes.get(pool.name()).map(|t| timestamp(*t)),
            retries_last_minute: value(minute, counters::RETRIES, &[("upstream", pool.name())]),
            retry_budget_left: pool.retry.as_ref().map(|r| r.budget().available(now)),
            peers: pool
                .peers
                .iter()
                .map(|slot| PeerReport {
                    address: slot.label.clone(),
                    healthy: slot.healthy.load(std::sync::atomic::Ordering::Relaxed),
                    resolved: slot.addr.is_some(),
                })
                .collect(),
        })
        .collect()
}

fn jwt(snapshot: &Snapshot, minute: &Totals) -> Option<JwtReport> {
    let auth = snapshot.auth.as_ref()?;
    let hits = value(minute, counters::JWT_CACHE_HITS, &[]);
    let misses = value(minute, counters::JWT_CACHE_MISSES, &[]);
    let checks = hits + misses;
    let mut validations: Vec<Count> = sampler::series(minute, counters::JWT_VALIDATIONS)
        .filter(|(_, n)| *n > 0)
        .map(|(series, count)| Count {
            name: sampler::label(series, "result")
                .unwrap_or_default()
                .to_string(),
            count,
        })
        .collect();
    validations.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    let jwks = auth.has_jwks().then(|| {
        let f = auth.fetches.get();
        JwksReport {
            last_fetch_at: f.last_fetch.map(timestamp),
            last_success_at: f.last_success.map(timestamp),
            last_error: f.last_error,
        }
    });
    Some(JwtReport {
        cache_hit_ratio: (checks > 0).then(|| round3(hits as f64 / checks as f64)),
        cache_entries: auth.verifier.cached_tokens(),
        validations_last_minute: validations,
        keys: auth
            .verifier
            .key_ids()
            .into_iter()
            .map(|(kid, from_jwks)| KeyReport {
                kid,
                source: if from_jwks { "jwks" } else { "configured" },
            })
            .collect(),
        jwks,
    })
}

fn store(snapshot: &Snapshot, minute: &Totals) -> StoreReport {
    let (kind, healthy) = match (
        &snapshot.config.rate_limit_store.kind,
        &snapshot.shared_limits,
    ) {
        (StoreKind::Redis(_), Some(shared)) => ("redis", shared.healthy()),
        (StoreKind::Redis(_), None) => ("redis", false),
        (StoreKind::RedisCluster(_), Some(shared)) => ("redis-cluster", shared.healthy()),
        (StoreKind::RedisCluster(_), None) => ("redis-cluster", false),
        (StoreKind::Memory, _) => ("memory", true),
    };
    StoreReport {
        kind,
        healthy,
        fallback: !healthy,
        errors_last_minute: value(minute, counters::STORE_ERRORS, &[]),
    }
}

fn suspicious(snapshot: &Snapshot, totals: &Totals, minute: &Totals) -> SuspiciousReport {
    let mode = match snapshot.config.suspicious.mode {
        SuspiciousMode::Off => "off",
        SuspiciousMode::Log => "log",
        SuspiciousMode::Block => "block",
    };
    let rules = Rule::ALL
        .iter()
        .map(|r| r.name())
        .chain(["banned"])
        .map(|rule| {
            let count = |t: &Totals, action: &str| {
                value(
                    t,
                    counters::SUSPICIOUS,
                    &[("rule", rule), ("action", action)],
                )
            };
            RuleReport {
                rule,
                logged: count(totals, "logged"),
                blocked: count(totals, "blocked"),
                last_minute: count(minute, "logged") + count(minute, "blocked"),
            }
        })
        .collect();
    SuspiciousReport { mode, rules }
}

/// Every ban in force: the replicated set (the admin API's bans, CIDR ranges included, and
/// every replica's auto-bans), plus any of this replica's auto-bans that set could not hold.
/// Longest remaining first.
fn bans(state: &State, snapshot: &Snapshot, now: SystemTime) -> (Vec<Ban>, usize) {
    let shared = &state.replicated.bans;
    let now_ms = state.replicated.now_ms();
    let mut all: Vec<(String, Duration)> = shared
        .list()
        .into_iter()
        .filter(|(_, until)| *until > now_ms)
        .map(|(range, until)| (range.to_string(), Duration::from_millis(until - now_ms)))
        .collect();
    // Bounded by ban_table_size; only those the replicated set misses are added.
    let (local, _) = snapshot.bans.banned(Instant::now(), usize::MAX);
    all.extend(
        local
            .into_iter()
            .filter(|(ip, _)| shared.check(*ip, now_ms).is_none())
            .map(|(ip, left)| (shared.key(ip).to_string(), left)),
    );
    let total = all.len();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all.truncate(MAX_BANS);
    let bans = all
        .into_iter()
        .map(|(client, left)| Ban {
            client,
            expires_at: timestamp(now + left),
            expires_in_seconds: left.as_secs() + u64::from(left.subsec_nanos() > 0),
        })
        .collect();
    (bans, total)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

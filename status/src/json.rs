//! `GET /status.json`: the status page's figures for scripts. Field by field in
//! docs/reference.md ("Status page"); CONTRACT.md names the fields every version keeps.
//!
//! Every string here is a name from the configuration, an address, a key id, a time, a count
//! or an error text with its quoted values cut out (see [`crate::redact`]): the model has no
//! place for a header, a token, a secret or a URL, so none can leak into it.

use serde::Serialize;

/// The whole document.
#[derive(Debug, Serialize)]
pub struct Report {
    pub version: &'static str,
    /// RFC 3339, when this document was made.
    pub generated_at: String,
    pub started_at: String,
    pub uptime_seconds: u64,
    pub config: ConfigReport,
    /// The configured routes, in file order.
    pub routes: Vec<RouteReport>,
    /// Requests that matched no route (refused by the intake, `no_route`, unknown hosts).
    pub unrouted: Traffic,
    /// The configured upstreams, by name.
    pub upstreams: Vec<UpstreamReport>,
    /// `null` without `[jwt]`.
    pub jwt: Option<JwtReport>,
    pub rate_limit_store: StoreReport,
    /// The clients refused by a rate limit most in the last minute (at most 10).
    pub rate_limited_clients: Vec<LimitedClient>,
    pub suspicious: SuspiciousReport,
    /// Current bans, longest remaining first (at most 100; `bans_total` counts them all): the
    /// admin API's (CIDR ranges included) and every replica's auto-bans.
    pub bans: Vec<Ban>,
    pub bans_total: usize,
    /// Connections, requests in flight, buffered bodies, and what the bounds refused.
    pub bounds: BoundsReport,
    /// `null` without `[tracing]`.
    pub tracing: Option<TracingReport>,
    /// `[acme]`'s certificate; `null` without `[acme]`.
    pub certificate: Option<CertificateReport>,
}

/// What the bounded-request limits hold now and what they refused.
#[derive(Debug, Serialize)]
pub struct BoundsReport {
    /// Client connections held now, all listeners.
    pub connections: usize,
    /// `max_connections` in force (configured, or derived from the descriptor limit).
    pub max_connections: usize,
    pub requests_in_flight: usize,
    /// Bytes of request bodies held by buffered routes now, and the budget.
    pub buffered_body_bytes: usize,
    pub body_buffer_memory: usize,
    /// Every limit (all nine, in a fixed order), with its refusals and cuts.
    pub refusals: Vec<LimitRefusals>,
}

#[derive(Debug, Serialize)]
pub struct LimitRefusals {
    pub limit: &'static str,
    pub last_minute: u64,
    pub total: u64,
}

/// `[tracing]`: sampling, the exporter's counters, and the slowest sampled requests.
#[derive(Debug, Serialize)]
pub struct TracingReport {
    pub sample_ratio: f64,
    pub trust_incoming: &'static str,
    pub spans_exported: u64,
    pub spans_dropped: u64,
    /// The slowest sampled requests of the last 60 s, slowest first (at most 10).
    pub slow: Vec<SlowTraceReport>,
}

#[derive(Debug, Serialize)]
pub struct SlowTraceReport {
    /// RFC 3339, when it ended.
    pub at: String,
    pub route: String,
    pub status: u16,
    pub duration_ms: f64,
    pub trace_id: String,
    /// `[tracing] trace_link` with the id filled in; `null` without one.
    pub link: Option<String>,
}

/// The certificate `[acme]` serves and its renewal.
#[derive(Debug, Serialize)]
pub struct CertificateReport {
    /// `valid` (one is served) or `pending` (none yet: TLS handshakes fail).
    pub state: &'static str,
    /// The names on the served certificate (the configured ones while pending).
    pub names: Vec<String>,
    pub issuer: Option<String>,
    pub serial: Option<String>,
    /// RFC 3339.
    pub not_before: Option<String>,
    pub not_after: Option<String>,
    /// When the next order is due (RFC 3339): the renewal, or the retry after a failure.
    pub next_renewal: Option<String>,
    pub last_issued_at: Option<String>,
    /// The last failed order, quoted values cut out; `null` once an order succeeds.
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ConfigReport {
    pub path: String,
    pub last_reload: LastReload,
}

/// The last SIGHUP reload: `result` is `none` (no reload since start), `success` or `error`.
#[derive(Debug, Clone, Serialize)]
pub struct LastReload {
    pub at: Option<String>,
    pub result: &'static str,
    /// The errors, quoted values replaced by `…` (the log's `config_reload` event has them whole).
    pub error: Option<String>,
}

/// A span of traffic: the last 60 s, and the chart's last 15 minutes.
#[derive(Debug, Serialize)]
pub struct Traffic {
    /// Over the last 60 s (or since start when younger).
    pub requests_per_second: f64,
    /// Requests answered in the last 60 s.
    pub requests_last_minute: u64,
    /// `null` without requests in the last 60 s.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// 4xx and 5xx answers per second over the last 60 s.
    pub client_errors_per_second: f64,
    pub server_errors_per_second: f64,
    /// Refused by the route's rate limit in the last 60 s.
    pub rate_limited_last_minute: u64,
    /// 15 one-minute points, oldest first; the last is the current minute so far.
    pub history: History,
}

#[derive(Debug, Serialize)]
pub struct History {
    pub minute_starts: Vec<String>,
    pub requests: Vec<u64>,
    pub p99_ms: Vec<Option<f64>>,
}

#[derive(Debug, Serialize)]
pub struct RouteReport {
    pub name: String,
    pub upstream: String,
    /// `none`, `optional` or `required`.
    pub auth: &'static str,
    /// The `[rate_limits.NAME]` policy, `null` when not limited.
    pub rate_limit: Option<String>,
    /// `false` beyond the 64 routes that get windows: the figures are then zero.
    pub tracked: bool,
    #[serde(flatten)]
    pub traffic: Traffic,
}

#[derive(Debug, Serialize)]
pub struct UpstreamReport {
    pub name: String,
    /// `closed`, `open` or `half_open` (`closed` without a breaker).
    pub breaker: &'static str,
    pub breaker_enabled: bool,
    /// The last transition seen since start, `null` if none.
    pub breaker_changed_at: Option<String>,
    pub retries_last_minute: u64,
    /// Retries the budget still allows in its 10 s window; `null` without a retry policy.
    pub retry_budget_left: Option<u64>,
    pub peers: Vec<PeerReport>,
}

#[derive(Debug, Serialize)]
pub struct PeerReport {
    /// `host:port` as configured.
    pub address: String,
    pub healthy: bool,
    /// `false` when the name did not resolve (the peer is skipped).
    pub resolved: bool,
}

#[derive(Debug, Serialize)]
pub struct JwtReport {
    /// Token checks answered from the verified/failed-token cache in the last 60 s, over all
    /// checks; `null` without checks.
    pub cache_hit_ratio: Option<f64>,
    pub cache_entries: usize,
    /// Validations in the last 60 s by result (`valid`, `expired`, `invalid_signature`, ...).
    pub validations_last_minute: Vec<Count>,
    /// The keys in use: key ids only, never key material.
    pub keys: Vec<KeyReport>,
    /// `null` without `jwks_url`.
    pub jwks: Option<JwksReport>,
}

#[derive(Debug, Serialize)]
pub struct KeyReport {
    /// `null` for a key without a `kid` (a configured secret or PEM key).
    pub kid: Option<String>,
    /// `configured` or `jwks`.
    pub source: &'static str,
}

#[derive(Debug, Serialize)]
pub struct JwksReport {
    pub last_fetch_at: Option<String>,
    pub last_success_at: Option<String>,
    /// The last fetch's error, `null` when it succeeded.
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Count {
    pub name: String,
    pub count: u64,
}

#[derive(Debug, Serialize)]
pub struct StoreReport {
    /// `memory` or `redis`.
    pub kind: &'static str,
    /// `false` while Redis fails: this replica then limits alone, in memory (fallback).
    pub healthy: bool,
    pub fallback: bool,
    pub errors_last_minute: u64,
}

#[derive(Debug, Serialize)]
pub struct LimitedClient {
    /// The bucket key: an IPv4 address, or an IPv6 prefix (`2001:db8::/64`).
    pub client: String,
    /// Estimated refusals in the last 60 s.
    pub refusals: u64,
    /// The limit of the latest refusal: `ip` or `user`.
    pub scope: &'static str,
}

#[derive(Debug, Serialize)]
pub struct SuspiciousReport {
    /// `off`, `log` or `block`.
    pub mode: &'static str,
    /// Every rule, and `banned` (requests refused because their client is banned).
    pub rules: Vec<RuleReport>,
}

#[derive(Debug, Serialize)]
pub struct RuleReport {
    pub rule: &'static str,
    /// Since start.
    pub logged: u64,
    pub blocked: u64,
    /// Logged or blocked in the last 60 s.
    pub last_minute: u64,
}

#[derive(Debug, Serialize)]
pub struct Ban {
    /// The banned client or range as `GET /bans` lists it: an IPv4 address, an IPv6 client's
    /// prefix (`2001:db8::/64`), or a CIDR range placed through the admin API.
    pub client: String,
    pub expires_at: String,
    pub expires_in_seconds: u64,
}

//! The Prometheus metrics of the contract, registered in the one registry that the admin
//! endpoint's `/metrics` gathers. Label values are bounded: routes and upstreams come from
//! the configuration, methods outside the standard set are counted as `OTHER`, so a client
//! cannot mint new series.

use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Every family is registered from the start, so dashboards and alerts see them before the
/// first request that would count in them.
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_requests: IntCounterVec,
    pub upstream_retries: IntCounterVec,
    pub breaker_state: IntGaugeVec,
    pub jwt_cache_hits: IntCounter,
    pub jwt_cache_misses: IntCounter,
    pub jwt_validations: IntCounterVec,
    /// Credentials checked, by where they came from (`header`, `cookie`, `signed_url`) and
    /// result (the `jwt_validations` results, and for signed URLs `valid`, `expired`,
    /// `too_far`, `bad_signature`, `malformed`).
    pub auth_credentials: IntCounterVec,
    validation_series: CounterCache<&'static str>,
    credential_series: CounterCache<(&'static str, &'static str)>,
    pub jwks_refreshes: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub rate_limit_store_errors: IntCounter,
    pub suspicious: IntCounterVec,
    pub https_redirects: IntCounter,
    pub config_reloads: IntCounterVec,
    pub access_log_dropped: IntCounter,
    /// Revocations this replica holds, and requests refused for one.
    pub revocations: IntGauge,
    pub revoked_requests: IntCounter,
    /// Bans in force on this replica (placed by the admin API or an auto-ban).
    pub bans: IntGauge,
    /// Syncs of revocations and bans with the shared store that failed, by operation.
    pub shared_state_errors: IntCounterVec,
    /// Admin API write requests by endpoint and status.
    pub admin_writes: IntCounterVec,
    /// Requests on cached routes by route and result (`hit`, `miss`, `stale`, `bypass`,
    /// `expired`, `revalidated`).
    pub cache_requests: IntCounterVec,
    /// Bytes the edge cache holds in stored objects (accounted as the bound counts them).
    pub cache_bytes: IntGauge,
    /// Requests and connections refused or cut by a bound, by route (`none` before routing)
    /// and limit (`body_size`, `body_timeout`, ... : `bounds::Limit`).
    pub request_limits: IntCounterVec,
    /// Client connections held now, all listeners together.
    pub client_connections: IntGauge,
    /// Bytes of request bodies held in memory by `buffer_request_body` routes now.
    pub buffered_body_bytes: IntGauge,
    /// Spans the collector accepted, and spans dropped (queue full, or the export failed).
    pub tracing_spans_exported: IntCounter,
    pub tracing_spans_dropped: IntCounter,
    /// `[acme]`: the served certificate's notAfter (unix seconds); no sample until one is
    /// loaded, so an alert on it never fires on a gateway without `[acme]`.
    pub acme_expiry: IntGaugeVec,
    /// `[acme]` orders by result (`success`, `error`).
    pub acme_orders: IntCounterVec,
}

/// Latency buckets from 0.5 ms to 30 s: a gateway hop is sub-millisecond, an upstream can
/// take tens of seconds (music generation).
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter_vec =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "portcullis_request_duration_seconds",
                "Time from request start to the end of the response, by route.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["route"],
        )?;
        registry.register(Box::new(request_duration.clone()))?;
        let breaker_state = IntGaugeVec::new(
            Opts::new(
                "portcullis_circuit_breaker_state",
                "Circuit breaker state per upstream: 0 closed, 1 open, 2 half-open.",
            ),
            &["upstream"],
        )?;
        registry.register(Box::new(breaker_state.clone()))?;
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let cache_bytes = IntGauge::new(
            "portcullis_cache_bytes",
            "Bytes held by the edge cache's stored objects (bodies, headers, keys, index).",
        )?;
        registry.register(Box::new(cache_bytes.clone()))?;
        let acme_expiry = IntGaugeVec::new(
            Opts::new(
                "portcullis_acme_certificate_expiry_timestamp_seconds",
                "When the certificate ordered by [acme] expires (unix seconds).",
            ),
            &[],
        )?;
        registry.register(Box::new(acme_expiry.clone()))?;
        Ok(Metrics {
            acme_expiry,
            acme_orders: counter_vec(
                "portcullis_acme_orders_total",
                "[acme] certificate orders by result (success, error).",
                &["result"],
            )?,
            revocations: gauge(
                "portcullis_revocations",
                "Token revocations held by this replica.",
            )?,
            revoked_requests: counter(
                "portcullis_revoked_requests_total",
                "Requests refused because their token was revoked.",
            )?,
            bans: gauge(
                "portcullis_bans",
                "Client bans in force on this replica (admin and auto-bans).",
            )?,
            shared_state_errors: counter_vec(
                "portcullis_shared_state_errors_total",
                "Revocation and ban syncs with the shared store that failed, by operation (poll, load, write).",
                &["operation"],
            )?,
            admin_writes: counter_vec(
                "portcullis_admin_writes_total",
                "Admin API write requests by endpoint (revocations, bans) and status.",
                &["endpoint", "status"],
            )?,
            cache_requests: counter_vec(
                "portcullis_cache_requests_total",
                "Requests on cached routes by result: hit, miss, stale, bypass, expired, revalidated.",
                &["route", "result"],
            )?,
            cache_bytes,
            request_limits: counter_vec(
                "portcullis_request_limits_total",
                "Requests and connections refused or cut by a bound, by route and limit.",
                &["route", "limit"],
            )?,
            client_connections: gauge(
                "portcullis_client_connections",
                "Client connections held now, all listeners together.",
            )?,
            buffered_body_bytes: gauge(
                "portcullis_buffered_body_bytes",
                "Bytes of request bodies held in memory for buffer_request_body routes.",
            )?,
            requests: counter_vec(
                "portcullis_requests_total",
                "Requests answered, by route, method and status.",
                &["route", "method", "status"],
            )?,
            request_duration,
            upstream_requests: counter_vec(
                "portcullis_upstream_requests_total",
                "Upstream calls by outcome: success, error, timeout, connect_error, rejected_open.",
                &["upstream", "outcome"],
            )?,
            upstream_retries: counter_vec(
                "portcullis_upstream_retries_total",
                "Retries sent to an upstream.",
                &["upstream"],
            )?,
            breaker_state,
            jwt_cache_hits: counter(
                "portcullis_jwt_cache_hits_total",
                "Token checks answered from the verified-token cache.",
            )?,
            jwt_cache_misses: counter(
                "portcullis_jwt_cache_misses_total",
                "Token checks that needed a signature verification.",
            )?,
            jwt_validations: counter_vec(
                "portcullis_jwt_validations_total",
                "Token validations by result.",
                &["result"],
            )?,
            auth_credentials: counter_vec(
                "portcullis_auth_credentials_total",
                "Credentials checked on auth routes, by source (header, cookie, signed_url) and result.",
                &["source", "result"],
            )?,
            jwks_refreshes: counter_vec(
                "portcullis_jwks_refreshes_total",
                "JWKS fetches by result (success, error) and cause (schedule, unknown_kid).",
                &["result", "cause"],
            )?,
            rate_limited: counter_vec(
                "portcullis_rate_limited_total",
                "Requests refused by a rate limit, by route and scope.",
                &["route", "scope"],
            )?,
            rate_limit_store_errors: counter(
                "portcullis_rate_limit_store_errors_total",
                "Rate-limit checks the shared store could not answer (answered in memory instead).",
            )?,
            suspicious: counter_vec(
                "portcullis_suspicious_requests_total",
                "Suspicious requests by rule and action (logged, blocked).",
                &["rule", "action"],
            )?,
            https_redirects: counter(
                "portcullis_https_redirects_total",
                "Plain-HTTP requests redirected to HTTPS.",
            )?,
            config_reloads: counter_vec(
                "portcullis_config_reloads_total",
                "Configuration reloads by result.",
                &["result"],
            )?,
            access_log_dropped: counter(
                "portcullis_access_log_dropped_total",
                "Access-log lines dropped because the writer fell behind.",
            )?,
            tracing_spans_exported: counter(
                "portcullis_tracing_spans_exported_total",
                "Spans the OTLP collector accepted.",
            )?,
            tracing_spans_dropped: counter(
                "portcullis_tracing_spans_dropped_total",
                "Spans dropped: the export queue was full, or the collector failed or refused the batch.",
            )?,
            validation_series: CounterCache::default(),
            credential_series: CounterCache::default(),
            registry,
        })
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::error!("encoding metrics failed: {e}");
        }
        out
    }
}

/// Children of a counter family for the label values met so far, found by a short scan
/// instead of `with_label_values` (which hashes every label value and takes the family's lock
/// on each call: about a thousand instructions, several times per request). Bounded: past
/// [`MAX_CACHED`] combinations the family is asked directly and nothing more is kept.
pub struct CounterCache<K> {
    entries: std::sync::RwLock<Vec<(K, IntCounter)>>,
}

/// Most label combinations one cache keeps.
pub const MAX_CACHED: usize = 64;

impl<K: PartialEq + Copy> Default for CounterCache<K> {
    fn default() -> Self {
        CounterCache {
            entries: std::sync::RwLock::new(Vec::new()),
        }
    }
}

impl<K: PartialEq + Copy> CounterCache<K> {
    /// Increments the child for `key`, made by `child` the first time.
    pub fn inc(&self, key: K, child: impl FnOnce() -> IntCounter) {
        if let Ok(entries) = self.entries.read() {
            if let Some((_, counter)) = entries.iter().find(|(k, _)| *k == key) {
                counter.inc();
                return;
            }
        }
        let counter = child();
        counter.inc();
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() < MAX_CACHED && !entries.iter().any(|(k, _)| *k == key) {
                entries.push((key, counter));
            }
        }
    }
}

/// A route's metric children, resolved on first use and kept with the route's handles.
#[derive(Default)]
pub struct RouteSeries {
    duration: std::sync::OnceLock<prometheus::Histogram>,
    requests: CounterCache<(&'static str, u16)>,
}

impl RouteSeries {
    pub fn observe_duration(&self, metrics: &Metrics, route: &str, seconds: f64) {
        self.duration
            .get_or_init(|| metrics.request_duration.with_label_values(&[route]))
            .observe(seconds);
    }

    pub fn count_request(&self, metrics: &Metrics, route: &str, method: &'static str, status: u16) {
        self.requests.inc((method, status), || {
            metrics
                .requests
                .with_label_values(&[route, method, status.to_string().as_str()])
        });
    }
}

impl Metrics {
    /// A token check's result, in `jwt_validations_total` and `auth_credentials_total`.
    pub fn count_credential(&self, source: &'static str, result: &'static str) {
        self.validation_series
            .inc(result, || self.jwt_validations.with_label_values(&[result]));
        self.credential_series.inc((source, result), || {
            self.auth_credentials.with_label_values(&[source, result])
        });
    }
}

/// A bounded method label.
pub fn method_label(method: &http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "OTHER",
    }
}

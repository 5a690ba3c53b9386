//! The validated, typed configuration. Everything here has been checked: references resolve,
//! durations and rates are parsed, header names are valid, secrets are interpolated. Runtime
//! code never has to re-validate a field.
//!
//! Keys, defaults and examples: docs/configuration.md.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use ipnet::IpNet;

pub use crate::units::Rate;

mod acme;
mod bounds;
mod jwt;
pub use acme::*;
pub use bounds::*;
pub use jwt::*;
mod tracing;
pub use tracing::*;

/// One complete configuration snapshot. Reload swaps a whole new one in.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (for messages).
    pub source: PathBuf,
    pub server: Server,
    pub admin: Admin,
    /// Keyed by upstream name.
    pub upstreams: BTreeMap<String, Upstream>,
    /// In file order; the router picks the longest prefix, not the first.
    pub routes: Vec<Route>,
    pub jwt: Option<Jwt>,
    /// Keyed by policy name; `default` applies to routes that name none.
    pub rate_limits: BTreeMap<String, RatePolicy>,
    pub rate_limit_store: RateLimitStore,
    pub security_headers: SecurityHeaders,
    pub cors: Option<Cors>,
    pub suspicious: Suspicious,
    /// `[cache]`: the edge cache's memory bound and lock timeout (defaults when absent).
    pub cache: CacheSettings,
    /// `[tracing]`, when configured.
    pub tracing: Option<Tracing>,
    /// `[acme]`: automatic certificates for the TLS listeners (instead of `tls_cert`).
    pub acme: Option<Acme>,
    /// Where selected keys sit in the file (sections, retry and breaker tables, ...), by key
    /// path, for problems found after loading.
    pub locations: BTreeMap<String, crate::Location>,
}

// === [server] ===

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub listen: Vec<SocketAddr>,
    pub tls_listen: Vec<SocketAddr>,
    /// Set exactly when `tls_listen` is non-empty and there is no `[acme]` section.
    pub tls: Option<TlsFiles>,
    pub https_redirect: bool,
    pub https_port: u16,
    /// Lower-cased host names without port; empty accepts any Host. `hosts[0]` is canonical.
    pub hosts: Vec<String>,
    pub trusted_proxies: Vec<IpNet>,
    pub grace_period: Duration,
    pub threads: usize,
    /// Largest request header section (request line + headers) accepted; larger gets 431.
    pub max_request_header_bytes: usize,
    /// Most request header fields accepted; more gets 431.
    pub max_request_headers: usize,
    /// Deadline for receiving a request's whole header section (slowloris defence).
    pub request_header_timeout: Duration,
    /// Route matching ignores case unless this is true (Express ignores case by default).
    pub case_sensitive_routing: bool,
    /// What happens to client header names holding `_` (CGI-style backends read `_` as `-`).
    pub underscore_headers: UnderscoreHeaders,
    /// Body size, body pace, connections and requests in flight (docs/configuration.md).
    pub bounds: RequestBounds,
}

/// `server.underscore_headers`: client header names containing `_`. CGI, WSGI, Rack and PHP
/// map `X_User_Id` and `X-User-Id` to the same `HTTP_X_USER_ID`, so such a name can stand in
/// for a header the gateway vouches for. The twins of headers the gateway sets are removed
/// whatever this says; this decides for the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnderscoreHeaders {
    /// Removed before forwarding (nginx's `underscores_in_headers off`).
    #[default]
    Drop,
    /// The request is refused with 400.
    Reject,
    /// Forwarded as sent.
    Allow,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Where `tls_cert` sits in the file, for errors found when the files are parsed.
    pub cert_at: crate::Location,
    pub key_at: crate::Location,
}

// === [admin] ===

#[derive(Debug, Clone, PartialEq)]
pub struct Admin {
    pub listen: SocketAddr,
    /// The bearer credential of the admin API's write endpoints (revocations, bans). Without
    /// one they answer 403; read endpoints need none.
    pub token: Option<String>,
    /// Extra names the listener answers to in `Host` (lower-case, no port), besides its own
    /// address and `localhost`: any other `Host` gets 421, so a page that rebinds its DNS
    /// name to this address (DNS rebinding) cannot read the listener.
    pub hosts: Vec<String>,
}

// === [upstreams.NAME] ===

#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    pub name: String,
    pub peers: Vec<Peer>,
    pub tls: bool,
    /// Server name sent in TLS and checked against the certificate.
    pub sni: String,
    /// Verify the upstream certificate (default true; false only for test rigs).
    pub tls_verify: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// Set on every upstream request, replacing whatever the client sent.
    pub request_headers: Vec<(HeaderName, HeaderValue)>,
    pub health_check: Option<HealthCheck>,
    pub retry: Option<RetryPolicy>,
    pub circuit_breaker: Option<CircuitBreakerPolicy>,
}

/// `host:port` as written; resolved by the gateway, never by the config loader (so `--check`
/// needs no DNS).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Peer {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failures before a peer is taken out.
    pub unhealthy_after: u32,
    /// Consecutive successes before it is put back.
    pub healthy_after: u32,
}

/// The request body bytes pingora keeps for replaying a retried request (its fixed
/// `BODY_BUF_LIMIT`, 64 KiB): the ceiling, and the default, of `max_replay_body`.
pub const REPLAY_BUFFER: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first try.
    pub attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Response statuses that are retried (connect failures and timeouts always are).
    pub on_status: Vec<u16>,
    /// Request bodies up to this size can be replayed on a retry; a larger one is sent once.
    /// At most [`REPLAY_BUFFER`] takes effect (the size of pingora's retry buffer).
    pub max_replay_body: usize,
    /// Retries may be at most this share of recent requests (the retry budget).
    pub budget_ratio: f64,
    /// Overall deadline for all tries plus the waits between them.
    pub deadline: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CircuitBreakerPolicy {
    pub failure_rate: f64,
    pub min_requests: u32,
    pub window: Duration,
    pub open_for: Duration,
    pub half_open_requests: u32,
}

// === [[routes]] ===

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub name: String,
    /// Normalised: starts with `/`, no trailing `/` (except the root itself).
    pub path_prefix: String,
    /// Lower-cased host names; empty matches any Host.
    pub hosts: Vec<String>,
    /// `None` allows every method.
    pub methods: Option<Vec<Method>>,
    pub upstream: String,
    pub replace_prefix: Option<String>,
    pub auth: AuthMode,
    /// The resolved policy name, or `None` when the route is not rate limited.
    pub rate_limit: Option<String>,
    /// Retry POST/PATCH on any configured status, not just on answers that prove the request
    /// was not processed.
    pub retry_non_idempotent: bool,
    /// Where this route looks for a token, in order: the route's `auth_sources` (a subset of
    /// `[jwt].sources`) when set, otherwise `[jwt].sources`. Empty without `[jwt]`.
    pub auth_sources: Vec<TokenSource>,
    /// Signed media URLs accepted as credentials on this route (only on `auth = "required"`
    /// or `"optional"` routes).
    pub signed_urls: Option<SignedUrlPolicy>,
    /// `cache = { ... }`: GET and HEAD answers on this route go through the edge cache.
    pub cache: Option<RouteCache>,
    /// Body limit, request buffering and WebSocket timeouts on this route.
    pub bounds: RouteBounds,
}

/// A route's `cache = { ttl, max_object_size, stale_while_revalidate, stale_if_error, vary }`.
/// The upstream's own Cache-Control wins over every default here (RFC 9111).
#[derive(Debug, Clone, PartialEq)]
pub struct RouteCache {
    /// Freshness for answers that carry none of their own (no `max-age`, `s-maxage` or
    /// `Expires`), for heuristically cacheable statuses only (RFC 9110 section 15.1).
    pub ttl: Duration,
    /// Larger answers stream through uncached (at most [`MAX_OBJECT_SIZE`]).
    pub max_object_size: usize,
    /// How long past freshness a stale copy may be served while it is refreshed in the
    /// background, when the answer names no `stale-while-revalidate` of its own (RFC 5861).
    pub stale_while_revalidate: Duration,
    /// How long past freshness a stale copy may be served when the upstream fails, times out
    /// or its circuit is open, when the answer names no `stale-if-error` (RFC 5861).
    pub stale_if_error: Duration,
    /// Request headers whose values split the cache key (lower-cased, no duplicates), on top of
    /// the upstream's own `Vary`.
    pub vary: Vec<HeaderName>,
}

/// The largest `max_object_size`: the storage weighs objects in 16-bit units of 1 KiB.
pub const MAX_OBJECT_SIZE: usize = 64 * 1024 * 1024 - 64 * 1024;

// === [cache] ===

/// `[cache]`: process-wide settings of the edge cache. Read at start: a reload that changes
/// them is reported and takes effect at the next restart (the store is sized once).
#[derive(Debug, Clone, PartialEq)]
pub struct CacheSettings {
    /// Hard bound on the bytes of everything the cache holds: stored objects with their
    /// headers and keys, the purge index, and fills in progress.
    pub memory: usize,
    /// How long requests wait behind the one fetching a missing object (and how long that
    /// fetch may hold the lock) before going to the upstream themselves, uncached.
    pub lock_timeout: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            memory: 256 * 1024 * 1024,
            lock_timeout: Duration::from_secs(2),
        }
    }
}

/// `signed_urls = { keys = [...], max_ttl = "1h" }` of a route.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedUrlPolicy {
    /// HMAC-SHA256 keys (the bytes of each string), 1 to 8 of at least 32 bytes. `keys[0]`
    /// signs; every key verifies, so keys rotate without breaking live URLs.
    pub keys: Vec<Secret>,
    /// The longest lifetime a URL may have left when used (positive, at most 7 days;
    /// default 1 hour).
    pub max_ttl: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// A valid token is required; missing or bad -> 401.
    Required,
    /// A bad token is 401; no token passes anonymously.
    Optional,
    /// Tokens are ignored, never verified.
    None,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Required => "required",
            AuthMode::Optional => "optional",
            AuthMode::None => "none",
        }
    }
}

// === [rate_limits.NAME] and [rate_limit_store] ===

#[derive(Debug, Clone, PartialEq)]
pub struct RatePolicy {
    pub name: String,
    /// At least one of the two is set.
    pub per_ip: Option<Rate>,
    pub per_user: Option<Rate>,
    /// IPv6 clients share one per-IP bucket per prefix of this length (48..=128): a client
    /// that owns a /64 cannot multiply its budget by rotating addresses inside it.
    pub ipv6_prefix: u8,
}

/// The default `ipv6_prefix`: one end site's subnet (RFC 6177).
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitStore {
    pub kind: StoreKind,
    /// Most keys each in-memory keyed store holds; idle keys are forgotten first.
    pub max_keys: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StoreKind {
    Memory,
    Redis(RedisStore),
    /// Redis Cluster, reached through any of its seed nodes.
    RedisCluster(RedisCluster),
}

impl StoreKind {
    /// The `kind` value as written.
    pub fn name(&self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Redis(_) => "redis",
            StoreKind::RedisCluster(_) => "redis-cluster",
        }
    }

    /// The key prefix of a shared store (`None` for memory).
    pub fn key_prefix(&self) -> Option<&str> {
        match self {
            StoreKind::Memory => None,
            StoreKind::Redis(r) => Some(&r.key_prefix),
            StoreKind::RedisCluster(c) => Some(&c.key_prefix),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RedisStore {
    pub url: String,
    /// A check slower than this falls back to the in-memory limiter.
    pub timeout: Duration,
    /// Prefix of every key written to Redis.
    pub key_prefix: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RedisCluster {
    /// Seed nodes (`redis://host:port`); the rest of the cluster is discovered from them.
    pub nodes: Vec<String>,
    /// A check slower than this falls back to the in-memory limiter.
    pub timeout: Duration,
    /// Prefix of every key written to Redis.
    pub key_prefix: String,
}

// === [security_headers] ===

/// Overrides of the built-in defaults: `Some(value)` replaces or adds a header, `None` ("" in
/// the file) removes it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SecurityHeaders {
    pub overrides: Vec<(HeaderName, Option<HeaderValue>)>,
}

// === [cors] ===

#[derive(Debug, Clone, PartialEq)]
pub struct Cors {
    /// Exact origins (`https://music.example.com`), wildcard-subdomain patterns
    /// (`https://*.example.com`), `null`, or `*`. Lower-cased.
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<Method>,
    /// Lower-cased.
    pub allow_headers: Vec<HeaderName>,
    pub expose_headers: Vec<HeaderName>,
    pub allow_credentials: bool,
    pub max_age: Duration,
}

// === [suspicious] ===

#[derive(Debug, Clone, PartialEq)]
pub struct Suspicious {
    pub mode: SuspiciousMode,
    /// Longest request target (path + query) accepted, in bytes.
    pub max_uri_bytes: usize,
    /// Most header fields before a request counts as suspicious.
    pub max_headers: usize,
    /// Blocked requests within `ban_window` that get a client banned; 0 disables bans.
    pub ban_threshold: u32,
    pub ban_window: Duration,
    pub ban_duration: Duration,
    /// Most clients tracked for bans at once.
    pub ban_table_size: usize,
    /// Rule names switched off (see docs/configuration.md for the list).
    pub disabled_rules: Vec<String>,
    /// IPv6 clients are banned per prefix of this length (48..=128).
    pub ipv6_prefix: u8,
}

impl Suspicious {
    /// The rule names `disabled_rules` may list, in the order the detector checks them.
    pub const RULES: &'static [&'static str] = &[
        "path_traversal",
        "null_byte",
        "control_chars",
        "sql_injection",
        "script_injection",
        "scanner_user_agent",
        "forbidden_method",
        "oversized_uri",
        "too_many_headers",
    ];
}

/// The shipped defaults: what an absent `[suspicious]` section means.
impl Default for Suspicious {
    fn default() -> Self {
        Suspicious {
            mode: SuspiciousMode::Block,
            max_uri_bytes: 8 * 1024,
            max_headers: 100,
            ban_threshold: 10,
            ban_window: Duration::from_secs(60),
            ban_duration: Duration::from_secs(600),
            ban_table_size: 100_000,
            disabled_rules: vec![],
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuspiciousMode {
    Off,
    Log,
    Block,
}

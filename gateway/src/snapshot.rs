//! One immutable, validated runtime snapshot of the configuration: the router, upstream pools
//! and policies built from one `Config`. SIGHUP builds a new snapshot and swaps it in
//! atomically; requests in flight finish on the snapshot they started with.

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_config::{Config, RatePolicy};
use portcullis_config::{StoreKind, SuspiciousMode};
use portcullis_edge::{CorsPolicy, SecurityHeaders};
use portcullis_ratelimit::shared::SharedStore;
use portcullis_routing::{ClientHeaders, Router, TrustedProxies};
use portcullis_signed_url::SignedUrls;
use portcullis_suspicious::{BanList, Detector};

use crate::auth::Auth;
use crate::metrics::RouteSeries;
use crate::pool::UpstreamPool;
use crate::respond_ops::HeaderOp;
use crate::tls::TlsMaterial;

/// Problems found while building the runtime (a certificate that does not load, a policy
/// this build cannot enforce), reported like configuration errors: all at once, in file order.
#[derive(Debug)]
pub struct BuildError(pub Vec<(portcullis_config::Location, String)>);

impl BuildError {
    fn one(at: &portcullis_config::Location, message: String) -> Self {
        BuildError(vec![(at.clone(), message)])
    }
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut errors: Vec<_> = self.0.iter().collect();
        errors.sort_by_key(|(at, _)| (at.line, at.col));
        for (i, (at, message)) in errors.into_iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{at}: {message}")?;
        }
        Ok(())
    }
}

impl std::error::Error for BuildError {}

/// What a route refers to, resolved when the snapshot is built.
pub struct RouteHandles {
    pub pool: Arc<UpstreamPool>,
    pub rate_limit: Option<RatePolicy>,
    pub signed_urls: Option<SignedUrls>,
    /// The route's metric children, found once instead of by label per request.
    pub series: RouteSeries,
    /// The route's window slot on the status page (kept across reloads by name).
    pub status_slot: portcullis_status::Slot,
}

pub struct Snapshot {
    pub tls: Option<Arc<TlsMaterial>>,
    pub config: Arc<Config>,
    pub router: Router,
    pub trusted: TrustedProxies,
    pub upstreams: HashMap<String, Arc<UpstreamPool>>,
    /// Client headers removed before forwarding: twins of every header the gateway sets,
    /// spoofable address claims, path and method overrides, `_` names.
    pub client_headers: ClientHeaders,
    /// Security response headers (Helmet-grade defaults plus overrides), as ready
    /// name/value pairs for plain HTTP and for HTTPS, built once.
    security_headers: SecurityHeaders,
    /// `[cors]`, when configured.
    pub cors: Option<CorsPolicy>,
    /// Suspicious-request rules (None when `mode = "off"`) and the auto-ban table. The table
    /// is kept across a reload that changes none of its settings (its counts and bans stay);
    /// the bans every replica enforces live in `State::replicated`.
    pub detector: Option<Detector>,
    pub bans: Arc<BanList>,
    /// `[jwt]`: the token verifier and its JWKS source. Kept across a reload that changes
    /// neither `[jwt]` nor the key file, so the verified-token cache survives it.
    pub auth: Option<Arc<Auth>>,
    /// Per route, in `config.routes` order (the router's index): its upstream pool, rate-limit
    /// policy and signed-URL verifier, resolved here once rather than by name per request.
    pub routes: Vec<Arc<RouteHandles>>,
    /// `[rate_limit_store] kind = "redis"` or `"redis-cluster"`: the buckets, revocations and
    /// bans every replica shares. Kept across a reload that does not change the store, so its
    /// connections survive.
    pub shared_limits: Option<Arc<SharedStore>>,
    /// `[tracing]`: trust, sampling and where spans go.
    pub tracer: Option<crate::trace::Tracer>,
}

impl Snapshot {
    /// Builds every runtime piece; `previous` lends state that must survive a reload.
    pub fn build(config: Config, previous: Option<&Snapshot>) -> Result<Snapshot, BuildError> {
        let auth = match &config.jwt {
            Some(jwt) => {
                let at = located(&config, &["jwt.public_key_file", "jwt"]);
                let previous = previous.and_then(|p| p.auth.as_ref());
                Some(Auth::build(jwt, previous).map_err(|e| BuildError::one(&at, e))?)
            }
            None => None,
        };
        let tls = match &config.server.tls {
            Some(files) => {
                Some(Arc::new(TlsMaterial::load(files).map_err(|e| {
                    BuildError::one(&files.cert_at, e.to_string())
                })?))
            }
            None => None,
        };
        let router = Router::new(&config.routes, config.server.case_sensitive_routing);
        let trusted = TrustedProxies::new(&config.server.trusted_proxies);
        let upstreams: HashMap<String, Arc<UpstreamPool>> = config
            .upstreams
            .iter()
            .map(|(name, u)| {
                let old = previous
                    .and_then(|p| p.upstreams.get(name))
                    .map(|p| p.as_ref());
                (name.clone(), Arc::new(UpstreamPool::new(u, old)))
            })
            .collect();
        let identity_headers: Vec<http::HeaderName> = config
            .jwt
            .as_ref()
            .map(|j| j.forward_claims.iter().map(|(_, h)| h.clone()).collect())
            .unwrap_or_default();
        let client_headers = ClientHeaders::new(
            identity_headers.iter().map(|h| h.as_str()).chain(
                config
                    .upstreams
                    .values()
                    .flat_map(|u| u.request_headers.iter().map(|(n, _)| n.as_str())),
            ),
            portcullis_routing::forwarding::GATEWAY_HEADERS
                .iter()
                .copied(),
            config.server.underscore_headers,
        );
        let mut routes = Vec::with_capacity(config.routes.len());
        let slots = portcullis_status::slots::assign(
            config.routes.iter().map(|r| r.name.as_str()),
            &previous.map_or_else(Vec::new, Snapshot::status_slots),
        );
        for (i, route) in config.routes.iter().enumerate() {
            let at =
                |key: &str| located(&config, &[format!("routes[{i}].{key}").as_str(), "routes"]);
            let pool: Option<&Arc<UpstreamPool>> = upstreams.get(&route.upstream);
            let pool = pool.cloned().ok_or_else(|| {
                BuildError::one(
                    &at("upstream"),
                    format!("unknown upstream `{}`", route.upstream),
                )
            })?;
            let signed_urls = match &route.signed_urls {
                Some(policy) => Some(
                    SignedUrls::new(&policy.keys, policy.max_ttl)
                        .map_err(|e| BuildError::one(&at("signed_urls"), e.to_string()))?,
                ),
                None => None,
            };
            let rate_limit = route
                .rate_limit
                .as_ref()
                .and_then(|name| config.rate_limits.get(name))
                .cloned();
            routes.push(Arc::new(RouteHandles {
                pool,
                rate_limit,
                signed_urls,
                series: RouteSeries::default(),
                status_slot: slots[i],
            }));
        }
        let security_headers = SecurityHeaders::new(&config.security_headers);
        let cors = config.cors.as_ref().map(CorsPolicy::new);
        let detector = (config.suspicious.mode != SuspiciousMode::Off)
            .then(|| Detector::new(&config.suspicious));
        let bans = match previous.filter(|p| p.bans.same_settings(&config.suspicious)) {
            Some(p) => Arc::clone(&p.bans),
            None => Arc::new(BanList::new(&config.suspicious)),
        };
        let same_store = previous.and_then(|p| {
            p.shared_limits
                .as_ref()
                .filter(|_| p.config.rate_limit_store == config.rate_limit_store)
        });
        let shared_limits = match (&config.rate_limit_store.kind, same_store) {
            (StoreKind::Memory, _) => None,
            (_, Some(store)) => Some(Arc::clone(store)),
            (StoreKind::Redis(redis), None) => {
                Some(Arc::new(SharedStore::new(redis).map_err(|e| {
                    BuildError::one(&located(&config, &["rate_limit_store.url"]), e)
                })?))
            }
            (StoreKind::RedisCluster(cluster), None) => {
                Some(Arc::new(SharedStore::cluster(cluster).map_err(|e| {
                    BuildError::one(&located(&config, &["rate_limit_store.nodes"]), e)
                })?))
            }
        };
        let tracer = config
            .tracing
            .as_ref()
            .map(|t| crate::trace::Tracer::new(t, previous.and_then(|p| p.tracer.as_ref())));
        Ok(Snapshot {
            tracer,
            shared_limits,
            auth,
            detector,
            bans,
            cors,
            security_headers,
            tls,
            client_headers,
            routes,
            config: Arc::new(config),
            router,
            trusted,
            upstreams,
        })
    }

    /// Each route's name and status-page slot.
    pub fn status_slots(&self) -> Vec<(&str, portcullis_status::Slot)> {
        let names = self.config.routes.iter().map(|r| r.name.as_str());
        names
            .zip(self.routes.iter().map(|h| h.status_slot))
            .collect()
    }

    pub fn security_headers(&self, https: bool) -> &[HeaderOp] {
        self.security_headers.operations(https)
    }
}

/// Where the first of `keys` sits in the file, for a build error about it (the loader records
/// these keys; the bare key name is the fallback).
fn located(config: &Config, keys: &[&str]) -> portcullis_config::Location {
    keys.iter()
        .find_map(|k| config.locations.get(*k))
        .cloned()
        .unwrap_or_else(|| portcullis_config::Location {
            file: String::new(),
            line: 0,
            col: 0,
            key: keys.first().copied().unwrap_or_default().to_string(),
        })
}

//! One immutable, validated runtime snapshot of the configuration: the router, upstream pools
//! and policies built from one `Config`. SIGHUP builds a new snapshot and swaps it in
//! atomically; requests in flight finish on the snapshot they started with.

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_config::Config;
use portcullis_edge::SecurityHeaders;
use portcullis_routing::{Router, TrustedProxies};

use crate::respond_ops::HeaderOp;
use crate::tls::TlsMaterial;
use crate::upstream::UpstreamPool;

/// A problem found while building the runtime (a key or certificate that does not load),
/// reported like a configuration error.
#[derive(Debug, thiserror::Error)]
#[error("{at}: {message}")]
pub struct BuildError {
    pub at: portcullis_config::Location,
    pub message: String,
}

pub struct Snapshot {
    pub tls: Option<Arc<TlsMaterial>>,
    pub config: Arc<Config>,
    pub router: Router,
    pub trusted: TrustedProxies,
    pub upstreams: HashMap<String, Arc<UpstreamPool>>,
    /// Headers that carry verified claims upstream; client copies are always stripped.
    pub identity_headers: Vec<http::HeaderName>,
    /// Security response headers (Helmet-grade defaults plus overrides).
    security_headers: SecurityHeaders,
}

impl Snapshot {
    /// Builds every runtime piece; `previous` lends state that must survive a reload.
    pub fn build(config: Config, _previous: Option<&Snapshot>) -> Result<Snapshot, BuildError> {
        refuse_pending(&config)?;
        let tls = match &config.server.tls {
            Some(files) => Some(Arc::new(TlsMaterial::load(files).map_err(|e| {
                BuildError {
                    at: files.cert_at.clone(),
                    message: e.to_string(),
                }
            })?)),
            None => None,
        };
        let router = Router::new(&config.routes, config.server.case_sensitive_routing);
        let trusted = TrustedProxies::new(&config.server.trusted_proxies);
        let upstreams = config
            .upstreams
            .iter()
            .map(|(name, u)| (name.clone(), Arc::new(UpstreamPool::new(u))))
            .collect();
        let identity_headers = config
            .jwt
            .as_ref()
            .map(|j| j.forward_claims.iter().map(|(_, h)| h.clone()).collect())
            .unwrap_or_default();
        let security_headers = SecurityHeaders::new(&config.security_headers);
        Ok(Snapshot {
            security_headers,
            tls,
            identity_headers,
            config: Arc::new(config),
            router,
            trusted,
            upstreams,
        })
    }

    pub fn security_headers(&self, https: bool) -> &[HeaderOp] {
        self.security_headers.operations(https)
    }
}

/// Keys whose policies this build does not enforce yet. The contract names them and the
/// loader understands them, but accepting one and silently ignoring it could leave a route
/// the operator believes protected wide open, so such a file is refused instead.
fn refuse_pending(config: &Config) -> Result<(), BuildError> {
    let suspicious_on = config.suspicious.mode != portcullis_config::SuspiciousMode::Off;
    for (path, at) in &config.locations {
        let pending = match path.as_str() {
            "jwt" => Some("JWT authentication"),
            p if p.starts_with("rate_limits.") && p.ends_with(".per_user") => {
                Some("per-user rate limiting (it needs JWT)")
            }
            "rate_limit_store.url" => Some("the Redis rate-limit store"),
            "cors" => Some("CORS"),
            "suspicious" if suspicious_on => {
                Some("suspicious-request detection (only mode = \"off\" is accepted)")
            }
            "server.https_redirect" if config.server.https_redirect => Some("the HTTPS redirect"),
            "server.request_header_timeout" => Some("the request-header deadline"),
            p if p.ends_with(".retry") => Some("status-driven retries"),
            p if p.ends_with(".circuit_breaker") => Some("the circuit breaker"),
            _ => None,
        };
        if let Some(what) = pending {
            return Err(BuildError {
                at: at.clone(),
                message: format!("{what} is not available in this build yet; remove this key rather than have it silently ignored"),
            });
        }
    }
    Ok(())
}

//! One immutable, validated runtime snapshot of the configuration: the router, upstream pools
//! and policies built from one `Config`. SIGHUP builds a new snapshot and swaps it in
//! atomically; requests in flight finish on the snapshot they started with.

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_config::Config;
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
    /// Response headers for plain-HTTP and HTTPS requests.
    security_plain: Vec<HeaderOp>,
    security_https: Vec<HeaderOp>,
}

impl Snapshot {
    /// Builds every runtime piece; `previous` lends state that must survive a reload.
    pub fn build(config: Config, _previous: Option<&Snapshot>) -> Result<Snapshot, BuildError> {
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
        Ok(Snapshot {
            tls,
            identity_headers,
            config: Arc::new(config),
            router,
            trusted,
            upstreams,
            security_plain: Vec::new(),
            security_https: Vec::new(),
        })
    }

    pub fn security_headers(&self, https: bool) -> &[HeaderOp] {
        if https {
            &self.security_https
        } else {
            &self.security_plain
        }
    }
}

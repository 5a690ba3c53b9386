//! Route authentication: the bearer token checked by the `[jwt]` verifier, and the JWKS kept
//! fresh in the background.
//!
//! The verifier (filters/jwt) does no I/O; this module fetches the JWKS document over pingora's
//! own HTTP client, on a schedule (its own thread and runtime, so a slow JWKS endpoint never
//! occupies a proxy thread) and once, single-flight and with a cooldown, when a token names an
//! unknown `kid`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue, Uri};
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use portcullis_config::{AuthMode, Jwt, TokenSource};
use portcullis_jwt::{credential, AuthError, Identity, Revocations, SourceKind, Verifier};
use prometheus::IntCounterVec;

use crate::error::Rejection;
use crate::metrics::Metrics;
use crate::trace::SpanLog;

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Retry interval while no JWKS key was ever loaded (auth-required routes answer 503 until then).
const FIRST_LOAD_RETRY: Duration = Duration::from_secs(2);

/// `Retry-After` of the 503 answered while no key is loaded.
const AWAITING_KEYS_RETRY_AFTER: u64 = 5;

pub struct Auth {
    pub verifier: Verifier,
    jwks: Option<JwksSource>,
    /// The configuration and key material this was built from: a reload with the same reuses
    /// this verifier (and its cache); any change builds a new one with empty caches.
    fingerprint: String,
    refresher_started: AtomicBool,
    /// The JWKS fetches' last results, for the status page.
    pub fetches: portcullis_jwt::FetchLog,
}

struct JwksSource {
    url: JwksUrl,
    refresh: Duration,
    cooldown: Duration,
    timeout: Duration,
    /// When the last fetch started. Held across a fetch, so concurrent refreshes queue behind
    /// one (single flight) and then see its result.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    failing: AtomicBool,
}

#[derive(Debug, Clone)]
struct JwksUrl {
    tls: bool,
    host: String,
    port: u16,
    authority: String,
    path: String,
}

impl Auth {
    /// The authenticator of `jwt`, or `previous` when nothing it depends on changed.
    pub fn build(jwt: &Jwt, previous: Option<&Arc<Auth>>) -> Result<Arc<Auth>, String> {
        // The key file is read once, here; its content is part of the fingerprint.
        let verifier = Verifier::new(jwt).map_err(|e| e.to_string())?;
        let fingerprint = format!("{jwt:?}/{}", verifier.configured_fingerprint());
        if let Some(previous) = previous.filter(|p| p.fingerprint == fingerprint) {
            return Ok(Arc::clone(previous));
        }
        let jwks = match &jwt.jwks_url {
            Some(url) => Some(JwksSource {
                url: JwksUrl::parse(url)?,
                refresh: jwt.jwks_refresh,
                cooldown: jwt.jwks_cooldown,
                timeout: jwt.jwks_timeout,
                last_fetch: tokio::sync::Mutex::new(None),
                failing: AtomicBool::new(false),
            }),
            None => None,
        };
        Ok(Arc::new(Auth {
            verifier,
            jwks,
            fingerprint,
            refresher_started: AtomicBool::new(false),
            fetches: Default::default(),
        }))
    }

    /// Whether keys come from a `jwks_url`.
    pub fn has_jwks(&self) -> bool {
        self.jwks.is_some()
    }

    /// Starts the scheduled JWKS refresh (once per authenticator). The thread ends soon after
    /// the last snapshot using this authenticator is gone.
    pub fn start_refresher(self: &Arc<Self>, refreshes: IntCounterVec) {
        if self.jwks.is_none() || self.refresher_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("portcullis-jwks".into())
            .spawn(move || refresher(weak, refreshes));
        if let Err(e) = spawned {
            log::error!("cannot start the JWKS refresher: {e}");
        }
    }

    /// Checks the request's token for a route in `mode`, taken from the first of `sources`
    /// present. Returns the identity of a verified token and the source it came from, or
    /// `None` for an anonymous request an `optional` route lets through.
    pub async fn authenticate(
        &self,
        mode: AuthMode,
        sources: &[TokenSource],
        headers: &HeaderMap,
        metrics: &Metrics,
        revocations: &Revocations,
        mut spans: Option<&mut SpanLog>,
    ) -> Result<Option<(Arc<Identity>, SourceKind)>, Rejection> {
        let count = |source: &'static str, result: &'static str| {
            metrics.count_credential(source, result);
        };
        let found = match credential(headers, sources) {
            Ok(found) => found,
            Err(e) => {
                count(header_or_cookie(headers), e.result());
                return Err(invalid_token(&e));
            }
        };
        if self.verifier.awaiting_keys() && (mode == AuthMode::Required || found.is_some()) {
            return Err(awaiting_keys());
        }
        let Some(found) = found else {
            if mode == AuthMode::Required {
                count("none", "missing");
                return Err(Rejection::Unauthorized {
                    challenge: HeaderValue::from_static("Bearer realm=\"portcullis\""),
                    message: "this route needs a bearer token".into(),
                    reason: "missing",
                });
            }
            return Ok(None);
        };
        let kind = SourceKind::of(found.source);
        let label = kind.as_str();
        let token = found.token;
        let started = Instant::now();
        let mut outcome = self.verifier.verify(token, SystemTime::now());
        if matches!(outcome.result, Err(AuthError::UnknownKid)) {
            verify_span(spans.as_deref_mut(), started, &outcome.result);
            let fetch_started = Instant::now();
            let changed = self.refresh_for_unknown_kid(metrics).await;
            if let Some(spans) = spans.as_deref_mut() {
                let result = if changed { "keys_changed" } else { "unchanged" };
                let attributes = vec![("portcullis.jwks.result", result.into())];
                spans.record("jwks.fetch", fetch_started, attributes, false);
            }
            if changed {
                let started = Instant::now();
                outcome = self.verifier.verify(token, SystemTime::now());
                if !outcome.cached {
                    verify_span(spans.as_deref_mut(), started, &outcome.result);
                }
            }
        } else if !outcome.cached {
            verify_span(spans, started, &outcome.result);
        }
        if outcome.cached {
            metrics.jwt_cache_hits.inc();
        } else {
            metrics.jwt_cache_misses.inc();
        }
        match outcome.result {
            // After the cache: a token cached before its revocation is refused too.
            Ok(identity) if revocations.is_revoked(&identity) => {
                count(label, AuthError::Revoked.result());
                metrics.revoked_requests.inc();
                Err(invalid_token(&AuthError::Revoked))
            }
            Ok(identity) => {
                count(label, "valid");
                Ok(Some((identity, kind)))
            }
            Err(AuthError::NoKeys) => Err(awaiting_keys()),
            Err(e) => {
                count(label, e.result());
                Err(invalid_token(&e))
            }
        }
    }

    /// One refresh for a token whose `kid` no key has: single flight, and at most one per
    /// `jwks_cooldown`, so a flood of random kids costs the JWKS endpoint one request. Returns
    /// whether the keys changed (then the token is worth verifying again).
    async fn refresh_for_unknown_kid(&self, metrics: &Metrics) -> bool {
        let Some(source) = &self.jwks else {
            return false;
        };
        let before = self.verifier.key_generation();
        let mut last = source.last_fetch.lock().await;
        if self.verifier.key_generation() != before {
            return true;
        }
        if last.is_some_and(|t| t.elapsed() < source.cooldown) {
            return false;
        }
        *last = Some(Instant::now());
        self.fetch_and_install(source, &metrics.jwks_refreshes, "unknown_kid")
            .await
    }

    /// Fetches the JWKS and installs it; logs a failure once per failing streak. Returns
    /// whether the key set changed.
    async fn fetch_and_install(
        &self,
        source: &JwksSource,
        refreshes: &IntCounterVec,
        cause: &str,
    ) -> bool {
        let result = match source.url.fetch(source.timeout).await {
            Ok(body) => self.verifier.install_jwks(&body).map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        self.fetches.record(&result);
        match result {
            Ok(change) => {
                refreshes.with_label_values(&["success", cause]).inc();
                if source.failing.swap(false, Ordering::AcqRel) || change.changed {
                    log::info!(
                        "JWKS {}: {} signing keys{}",
                        source.url.display(),
                        change.keys,
                        if change.changed { " (changed)" } else { "" }
                    );
                }
                change.changed
            }
            Err(e) => {
                refreshes.with_label_values(&["error", cause]).inc();
                if !source.failing.swap(true, Ordering::AcqRel) {
                    log::warn!(
                        "JWKS {} could not be refreshed ({e}); the keys already loaded keep serving",
                        source.url.display()
                    );
                }
                false
            }
        }
    }
}

/// A token's signature and claims checked (a verified-token cache miss), as an INTERNAL span:
/// its result, never the token.
fn verify_span(
    spans: Option<&mut SpanLog>,
    started: Instant,
    result: &Result<Arc<Identity>, AuthError>,
) {
    if let Some(spans) = spans {
        let (label, error) = match result {
            Ok(_) => ("valid", false),
            Err(e) => (e.result(), true),
        };
        let attributes = vec![("portcullis.jwt.result", label.into())];
        spans.record("jwt.verify", started, attributes, error);
    }
}

/// Where a refused credential most likely came from, for the metric: a broken
/// `Authorization` header, else a cookie.
fn header_or_cookie(headers: &HeaderMap) -> &'static str {
    if headers.contains_key(AUTHORIZATION) {
        "header"
    } else {
        "cookie"
    }
}

fn invalid_token(e: &AuthError) -> Rejection {
    let challenge =
        format!("Bearer realm=\"portcullis\", error=\"invalid_token\", error_description=\"{e}\"");
    Rejection::Unauthorized {
        challenge: HeaderValue::from_str(&challenge)
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer realm=\"portcullis\"")),
        message: e.to_string(),
        reason: e.result(),
    }
}

fn awaiting_keys() -> Rejection {
    Rejection::UpstreamUnavailable {
        retry_after: Some(AWAITING_KEYS_RETRY_AFTER),
        message: "token verification keys are not loaded yet".into(),
    }
}

/// The scheduled refresh: first load at once (retried every few seconds until a key is
/// loaded), then every `jwks_refresh`. Exits once the authenticator is dropped.
fn refresher(weak: Weak<Auth>, refreshes: IntCounterVec) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("cannot start the JWKS refresher runtime: {e}");
            return;
        }
    };
    runtime.block_on(async move {
        loop {
            let wait = {
                let Some(auth) = weak.upgrade() else { return };
                let Some(source) = &auth.jwks else { return };
                {
                    let mut last = source.last_fetch.lock().await;
                    *last = Some(Instant::now());
                    auth.fetch_and_install(source, &refreshes, "schedule").await;
                }
                if auth.verifier.awaiting_keys() {
                    FIRST_LOAD_RETRY.min(source.refresh)
                } else {
                    source.refresh
                }
            };
            let until = Instant::now() + wait;
            while Instant::now() < until {
                if weak.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1).min(until - Instant::now())).await;
            }
        }
    });
}

impl JwksUrl {
    fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("jwks_url: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err("jwks_url must be an http:// or https:// URL".into()),
        };
        let authority = uri
            .authority()
            .ok_or("jwks_url has no host")?
            .as_str()
            .to_string();
        let host = uri.host().ok_or("jwks_url has no host")?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(JwksUrl {
            tls,
            port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            host,
            authority,
            path: uri
                .path_and_query()
                .map_or("/".to_string(), |p| p.as_str().to_string()),
        })
    }

    fn display(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority, self.path)
    }

    /// GET the document with pingora's client: certificate verified for https, one fresh
    /// connection, the whole exchange bounded by `timeout` and the body by `MAX_JWKS_BYTES`.
    async fn fetch(&self, timeout: Duration) -> Result<Vec<u8>, String> {
        tokio::time::timeout(timeout, self.exchange(timeout))
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))?
    }

    async fn exchange(&self, timeout: Duration) -> Result<Vec<u8>, String> {
        let addr = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", self.host))?;
        let mut peer = HttpPeer::new(addr, self.tls, self.host.clone());
        peer.options.connection_timeout = Some(timeout);
        peer.options.total_connection_timeout = Some(timeout);
        peer.options.read_timeout = Some(timeout);
        peer.options.write_timeout = Some(timeout);
        let connector = Connector::new(None);
        let (mut session, _) = connector
            .get_http_session(&peer)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let mut req =
            RequestHeader::build("GET", self.path.as_bytes(), None).map_err(|e| e.to_string())?;
        for (name, value) in [
            ("host", self.authority.as_str()),
            ("accept", "application/json, application/jwk-set+json"),
            ("user-agent", "portcullis-jwks"),
            ("connection", "close"),
        ] {
            req.insert_header(name, value).map_err(|e| e.to_string())?;
        }
        session
            .write_request_header(Box::new(req))
            .await
            .map_err(|e| format!("cannot send the request: {e}"))?;
        session
            .finish_request_body()
            .await
            .map_err(|e| format!("cannot send the request: {e}"))?;
        session
            .read_response_header()
            .await
            .map_err(|e| format!("no valid answer: {e}"))?;
        let status = session.response_header().map_or(0, |r| r.status.as_u16());
        if status != 200 {
            return Err(format!("answered {status}"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = session
            .read_response_body()
            .await
            .map_err(|e| format!("body read failed: {e}"))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err("the document is larger than 1 MiB".into());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

//! CORS, answered at the edge (Fetch standard, section 3.2 "CORS protocol",
//! <https://fetch.spec.whatwg.org/#http-cors-protocol>; MDN "Cross-Origin Resource Sharing").
//!
//! With `[cors]` configured the gateway is the single CORS authority for every route:
//!
//! - A CORS-preflight request (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is
//!   answered by the gateway and never reaches the upstream: [`Preflight::Allowed`] (204) when
//!   the origin, the method and every requested header are allowed, [`Preflight::Refused`]
//!   (403, no CORS headers, so the browser blocks the actual request) otherwise.
//! - Every other response gets `Vary: Origin`, so a shared cache never serves one origin's
//!   answer to another, and `Access-Control-Allow-Origin` only for an allowed origin. CORS
//!   headers the upstream sent are replaced or removed, so a permissive backend (a reflecting
//!   `cors()` middleware, say) cannot widen the policy.
//!
//! Credentials are never combined with a wildcard (Fetch, "CORS check": a `*` never matches a
//! credentialed request); the config loader refuses that combination, and [`CorsPolicy::new`]
//! drops a `*` entry if it is handed one anyway.

pub(crate) mod origin;
#[cfg(test)]
mod tests;

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::request::Parts;
use http::{HeaderName, HeaderValue, Method};
use portcullis_config::Cors;

use crate::HeaderOp;
use origin::{OriginPattern, RequestOrigin};

/// The gateway's answer to a CORS-preflight request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preflight {
    /// Answer `204 No Content` with these headers, without contacting the upstream.
    Allowed(Vec<HeaderOp>),
    /// Answer `403 Forbidden` without CORS headers: the origin, the method or a requested
    /// header is not allowed.
    Refused,
}

/// A validated `[cors]` section with its header values rendered once.
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    patterns: Vec<OriginPattern>,
    /// `*` is listed (and credentials are off): answer a literal `*`.
    wildcard: bool,
    methods: Vec<Method>,
    any_method: bool,
    headers: Vec<HeaderName>,
    any_header: bool,
    credentials: bool,
    allow_methods: Option<HeaderValue>,
    allow_headers: Option<HeaderValue>,
    expose_headers: Option<HeaderValue>,
    max_age: HeaderValue,
}

const PREFLIGHT_VARY: HeaderValue = HeaderValue::from_static(
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
);
const TRUE: HeaderValue = HeaderValue::from_static("true");
const STAR: HeaderValue = HeaderValue::from_static("*");

// === impl CorsPolicy ===

impl CorsPolicy {
    pub fn new(cfg: &Cors) -> Self {
        let mut patterns = Vec::with_capacity(cfg.allow_origins.len());
        for entry in &cfg.allow_origins {
            match OriginPattern::parse(entry) {
                Some(OriginPattern::Any) if cfg.allow_credentials => log::warn!(
                    "cors: ignoring allow_origins \"*\" because allow_credentials is true"
                ),
                Some(p) => patterns.push(p),
                None => log::warn!("cors: ignoring allow_origins entry `{entry}`: not an origin"),
            }
        }
        let wildcard = patterns.contains(&OriginPattern::Any);
        let any_method = cfg.allow_methods.iter().any(|m| m.as_str() == "*");
        let any_header = cfg.allow_headers.iter().any(|h| h.as_str() == "*");
        CorsPolicy {
            patterns,
            wildcard,
            methods: cfg.allow_methods.clone(),
            any_method,
            headers: cfg.allow_headers.clone(),
            any_header,
            credentials: cfg.allow_credentials,
            allow_methods: join(cfg.allow_methods.iter().map(Method::as_str)),
            allow_headers: join(cfg.allow_headers.iter().map(HeaderName::as_str)),
            expose_headers: join(cfg.expose_headers.iter().map(HeaderName::as_str)),
            max_age: HeaderValue::from(cfg.max_age.as_secs()),
        }
    }

    /// Whether an `Origin` header value is allowed. Malformed values never are.
    pub fn allows(&self, origin: &str) -> bool {
        RequestOrigin::parse(origin).is_some_and(|o| self.patterns.iter().any(|p| p.matches(&o)))
    }

    /// The request's single, allowed `Origin` value. Several `Origin` fields are not a
    /// browser's doing and are treated as not allowed.
    fn allowed_origin<'r>(&self, req: &'r Parts) -> Option<&'r HeaderValue> {
        let mut values = req.headers.get_all(ORIGIN).iter();
        let origin = values.next()?;
        if values.next().is_some() {
            return None;
        }
        origin
            .to_str()
            .is_ok_and(|o| self.allows(o))
            .then_some(origin)
    }

    /// `Access-Control-Allow-Origin`: `*` for a wildcard policy, otherwise the origin echoed
    /// byte for byte (Fetch "CORS check" compares it with the request's origin exactly).
    fn allow_origin_value(&self, origin: &HeaderValue) -> HeaderValue {
        if self.wildcard {
            STAR
        } else {
            origin.clone()
        }
    }

    /// `None` when `req` is not a CORS-preflight request (Fetch section 3.2.2: an `OPTIONS`
    /// request with `Origin` and `Access-Control-Request-Method`); such requests follow the
    /// normal path and get [`CorsPolicy::response_headers`].
    /// Whether `req` is a CORS preflight (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`), which [`CorsPolicy::preflight`] answers.
    pub fn is_preflight(req: &Parts) -> bool {
        req.method == Method::OPTIONS
            && req.headers.contains_key(ORIGIN)
            && req.headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
    }

    pub fn preflight(&self, req: &Parts) -> Option<Preflight> {
        if req.method != Method::OPTIONS || !req.headers.contains_key(ORIGIN) {
            return None;
        }
        let requested_method = req.headers.get(ACCESS_CONTROL_REQUEST_METHOD)?;
        let Some(origin) = self.allowed_origin(req) else {
            return Some(Preflight::Refused);
        };
        let Some(method) = self.method_allowed(requested_method) else {
            return Some(Preflight::Refused);
        };
        let Some(requested_headers) = self.headers_allowed(req) else {
            return Some(Preflight::Refused);
        };
        let mut ops = vec![HeaderOp::Set(
            ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin_value(origin),
        )];
        let methods = if self.any_method {
            Some(method)
        } else {
            self.allow_methods.clone()
        };
        if let Some(methods) = methods {
            ops.push(HeaderOp::Set(ACCESS_CONTROL_ALLOW_METHODS, methods));
        }
        let headers = if self.any_header {
            requested_headers
        } else {
            self.allow_headers.clone()
        };
        if let Some(headers) = headers {
            ops.push(HeaderOp::Set(ACCESS_CONTROL_ALLOW_HEADERS, headers));
        }
        ops.push(HeaderOp::Set(ACCESS_CONTROL_MAX_AGE, self.max_age.clone()));
        if self.credentials {
            ops.push(HeaderOp::Set(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE));
        }
        ops.push(HeaderOp::Append(VARY, PREFLIGHT_VARY));
        Some(Preflight::Allowed(ops))
    }

    /// The requested method, when allowed. Methods compare case-sensitively (RFC 9110
    /// section 9.1; Fetch normalises only the standard ones to upper case), as the browser's
    /// own check of `Access-Control-Allow-Methods` does.
    fn method_allowed(&self, requested: &HeaderValue) -> Option<HeaderValue> {
        let method = Method::from_bytes(requested.as_bytes()).ok()?;
        (self.any_method || self.methods.contains(&method)).then(|| requested.clone())
    }

    /// `Some(requested list)` when every header named in `Access-Control-Request-Headers` is
    /// allowed (names compare case-insensitively, RFC 9110 section 5.1); `Some(None)` when
    /// none were requested.
    fn headers_allowed(&self, req: &Parts) -> Option<Option<HeaderValue>> {
        let mut requested = Vec::new();
        for value in req.headers.get_all(ACCESS_CONTROL_REQUEST_HEADERS) {
            for name in value.to_str().ok()?.split(',').map(str::trim) {
                if name.is_empty() {
                    continue;
                }
                let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
                if !self.any_header && !self.headers.contains(&name) {
                    return None;
                }
                requested.push(name);
            }
        }
        Some(join(requested.iter().map(HeaderName::as_str)))
    }

    /// Header operations for the response to an actual (non-preflight) request: always
    /// `Vary: Origin`; for an allowed origin `Access-Control-Allow-Origin`, and
    /// `-Allow-Credentials` / `-Expose-Headers` when configured; upstream copies of these
    /// headers are removed otherwise.
    pub fn response_headers(&self, req: &Parts) -> Vec<HeaderOp> {
        let mut ops = vec![HeaderOp::Append(VARY, HeaderValue::from_static("Origin"))];
        let Some(origin) = self.allowed_origin(req) else {
            ops.extend([
                HeaderOp::Remove(ACCESS_CONTROL_ALLOW_ORIGIN),
                HeaderOp::Remove(ACCESS_CONTROL_ALLOW_CREDENTIALS),
                HeaderOp::Remove(ACCESS_CONTROL_EXPOSE_HEADERS),
            ]);
            return ops;
        };
        ops.push(HeaderOp::Set(
            ACCESS_CONTROL_ALLOW_ORIGIN,
            self.allow_origin_value(origin),
        ));
        ops.push(if self.credentials {
            HeaderOp::Set(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE)
        } else {
            HeaderOp::Remove(ACCESS_CONTROL_ALLOW_CREDENTIALS)
        });
        ops.push(match &self.expose_headers {
            Some(expose) => HeaderOp::Set(ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone()),
            None => HeaderOp::Remove(ACCESS_CONTROL_EXPOSE_HEADERS),
        });
        ops
    }
}

/// `a, b, c`, or `None` for an empty list. Tokens are always valid header-value bytes.
fn join<'a>(items: impl Iterator<Item = &'a str>) -> Option<HeaderValue> {
    let text = items.collect::<Vec<_>>().join(", ");
    if text.is_empty() {
        return None;
    }
    HeaderValue::from_str(&text).ok()
}

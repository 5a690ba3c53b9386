//! Security response headers, on by default with values at least as strong as Helmet 8
//! (<https://helmetjs.github.io/>), applied to every response, proxied or generated.
//!
//! Every header is written with [`HeaderOp::Set`], which replaces whatever the upstream sent:
//! a backend answering `X-Frame-Options: ALLOWALL` cannot weaken the gateway's policy.
//! `[security_headers]` overrides a value, adds a header, or (with `""`) removes one.
//!
//! `Strict-Transport-Security` (RFC 6797) is only sent on responses to requests that arrived
//! over HTTPS, and removed from the others: RFC 6797 section 7.2 forbids it over plain HTTP,
//! where a browser must ignore it anyway.

mod defaults;
#[cfg(test)]
mod tests;

use http::header::STRICT_TRANSPORT_SECURITY;
use http::{HeaderName, HeaderValue};

use crate::HeaderOp;
pub use defaults::{DEFAULTS, DEFAULT_CSP, DEFAULT_HSTS};

/// The header operations for every response, precomputed once per configuration snapshot so
/// the per-response cost is a slice borrow.
#[derive(Debug, Clone)]
pub struct SecurityHeaders {
    plain: Vec<HeaderOp>,
    https: Vec<HeaderOp>,
}

// === impl SecurityHeaders ===

impl SecurityHeaders {
    /// The defaults with the configured overrides applied: `Some(value)` replaces a default or
    /// adds a header, `None` removes it. A name overridden twice keeps the last value.
    pub fn new(cfg: &portcullis_config::SecurityHeaders) -> Self {
        let mut headers: Vec<(HeaderName, Option<HeaderValue>)> = DEFAULTS.to_vec();
        for (name, value) in &cfg.overrides {
            match headers.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = value.clone(),
                None => headers.push((name.clone(), value.clone())),
            }
        }
        SecurityHeaders {
            plain: operations(&headers, false),
            https: operations(&headers, true),
        }
    }

    /// The operations for a response to a request that arrived over HTTPS (`https`: directly
    /// or per a trusted proxy's `X-Forwarded-Proto`) or over plain HTTP.
    pub fn operations(&self, https: bool) -> &[HeaderOp] {
        if https {
            &self.https
        } else {
            &self.plain
        }
    }
}

fn operations(headers: &[(HeaderName, Option<HeaderValue>)], https: bool) -> Vec<HeaderOp> {
    headers
        .iter()
        .map(|(name, value)| match value {
            Some(v) if https || *name != STRICT_TRANSPORT_SECURITY => {
                HeaderOp::Set(name.clone(), v.clone())
            }
            _ => HeaderOp::Remove(name.clone()),
        })
        .collect()
}

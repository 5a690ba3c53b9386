//! What the upstream sees and what comes back: the rewritten target, forwarding headers,
//! injected headers, and hop-by-hop headers dropped both ways (RFC 9110 section 7.6.1).

use http::header::{HeaderValue, AUTHORIZATION, COOKIE, HOST};
use http::Uri;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::Session;
use portcullis_routing::forwarding::hop_by_hop;

use crate::ctx::{CredentialKind, RequestCtx};
use crate::respond::X_REQUEST_ID;
use crate::trace::{TRACEPARENT, TRACESTATE};
use portcullis_config::TokenSource;
use portcullis_jwt::strip_cookie;

// Names as static strings: pingora keeps a copy of each inserted name for its case map, and a
// `&'static str` is the one form it can keep without allocating.
const X_FORWARDED_FOR: &str = "x-forwarded-for";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
const X_FORWARDED_HOST: &str = "x-forwarded-host";
const X_REAL_IP: &str = "x-real-ip";

/// Every header this module sets on each upstream request; client copies in any spelling are
/// removed (`ClientHeaders`).
pub const GATEWAY_HEADERS: &[&str] = &[
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    X_REAL_IP,
    X_REQUEST_ID,
];

pub fn upstream_request(
    session: &Session,
    req: &mut RequestHeader,
    ctx: &RequestCtx,
) -> Result<()> {
    if let Some(target) = &ctx.target.upstream_target {
        let uri: Uri = target.parse().map_err(|_| {
            Error::explain(
                ErrorType::InvalidHTTPHeader,
                "upstream target is not a valid URI",
            )
        })?;
        req.set_uri(uri);
    }
    for name in hop_by_hop(&req.headers, session.is_upgrade_req()) {
        req.remove_header(&name);
    }
    for name in ctx
        .snapshot
        .client_headers
        .to_remove(&req.headers, ctx.client.peer_trusted)
    {
        req.remove_header(&name);
    }
    strip_credentials(req, ctx);

    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| portcullis_routing::client_ip::canonical(a.ip()));
    let peer_text = peer.map_or_else(|| ctx.client.ip.to_string(), |ip| ip.to_string());
    // A trusted proxy's chain is extended; anyone else's is replaced, so a client cannot
    // plant addresses for the backend to believe.
    let forwarded_for = match (ctx.client.peer_trusted, joined(req, X_FORWARDED_FOR)) {
        (true, Some(chain)) => format!("{chain}, {peer_text}"),
        _ => peer_text,
    };
    set(req, X_FORWARDED_FOR, &forwarded_for)?;
    let proto = if ctx.client.https { "https" } else { "http" };
    set(req, X_FORWARDED_PROTO, proto)?;
    let client_host = req
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let forwarded_host = match (ctx.client.peer_trusted, joined(req, X_FORWARDED_HOST)) {
        (true, Some(h)) => Some(h),
        _ => client_host,
    };
    match forwarded_host {
        Some(h) => set(req, X_FORWARDED_HOST, &h)?,
        None => {
            req.remove_header(X_FORWARDED_HOST);
        }
    }
    set(req, X_REAL_IP, &ctx.client.ip.to_string())?;
    set(req, X_REQUEST_ID, &ctx.client.request_id)?;
    trace_context(req, ctx)?;

    // Verified claims; the client's copies of these names went with `client_headers` above,
    // whatever the route's auth mode.
    for (name, value) in &ctx.identity.forward_headers {
        req.append_header(name.clone(), value.clone())?;
    }
    if let Some(pool) = ctx.upstream.pool() {
        for (name, value) in &pool.config.request_headers {
            req.insert_header(name.clone(), value.clone())?;
        }
        // A TLS upstream is a different site (TopMediai): it expects its own name as Host.
        if pool.config.tls {
            req.insert_header(HOST, pool.config.sni.as_str())?;
        }
    }
    Ok(())
}

/// With `[tracing]`, the upstream gets the request's `traceparent`, naming the try's CLIENT
/// span as parent (the request's own span when unsampled), and a trusted sender's
/// `tracestate`; the client's own values never pass (W3C Trace Context: a client must not
/// force sampling or smuggle state).
fn trace_context(req: &mut RequestHeader, ctx: &RequestCtx) -> Result<()> {
    let Some(trace) = &ctx.trace else {
        return Ok(());
    };
    if req.headers.contains_key(TRACESTATE) {
        req.remove_header(TRACESTATE);
    }
    let parent = ctx.upstream.try_span().unwrap_or(trace.span_id);
    let mut buf = [0u8; 55];
    set(req, TRACEPARENT, trace.traceparent(parent).write(&mut buf))?;
    if let Some(state) = &trace.tracestate {
        set(req, TRACESTATE, state)?;
    }
    Ok(())
}

/// Drops hop-by-hop headers from the upstream's answer (a 101 keeps its upgrade headers).
pub fn upstream_response(resp: &mut ResponseHeader) {
    let upgrade = resp.status == http::StatusCode::SWITCHING_PROTOCOLS;
    for name in hop_by_hop(&resp.headers, upgrade) {
        resp.remove_header(&name);
    }
}

/// Only the credential the gateway verified may reach the upstream, and not even that with
/// `[jwt] forward_credentials = false`: a token in another source went unchecked (the first
/// present source is the credential), and a signed URL's request checks no token at all.
fn strip_credentials(req: &mut RequestHeader, ctx: &RequestCtx) {
    let Some(kind) = ctx.identity.credential else {
        return;
    };
    let forward = ctx
        .snapshot
        .config
        .jwt
        .as_ref()
        .is_none_or(|jwt| jwt.forward_credentials);
    let keep_header = kind == CredentialKind::Header && forward;
    let keep_cookies = kind == CredentialKind::Cookie && forward;
    if !keep_header {
        req.remove_header(&AUTHORIZATION);
    }
    let Some(route) = &ctx.target.route else {
        return;
    };
    if keep_cookies {
        return;
    }
    for source in &route.auth_sources {
        let TokenSource::Cookie(name) = source else {
            continue;
        };
        if let Some(kept) = strip_cookie(&req.headers, name) {
            req.remove_header(&COOKIE);
            for value in kept {
                // Appending a valid value to a fresh name cannot fail.
                let _ = req.append_header(COOKIE, value);
            }
        }
    }
}

fn joined(req: &RequestHeader, name: &str) -> Option<String> {
    let values: Vec<&str> = req
        .headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

fn set(req: &mut RequestHeader, name: &'static str, value: &str) -> Result<()> {
    let value = HeaderValue::from_str(value)
        .map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "invalid forwarding header"))?;
    req.insert_header(name, value)
}

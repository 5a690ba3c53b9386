//! What the upstream sees and what comes back: the rewritten target, forwarding headers,
//! injected headers, and hop-by-hop headers dropped both ways (RFC 9110 section 7.6.1).

use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, COOKIE, HOST};
use http::Uri;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::Session;
use portcullis_routing::forwarding::hop_by_hop;

use portcullis_routing::client_ip;
use portcullis_routing::forwarding::{
    X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REAL_IP, X_REQUEST_ID,
};

use crate::ctx::{CredentialKind, RequestCtx};
use crate::trace::{TRACEPARENT, TRACESTATE};
use portcullis_config::TokenSource;
use portcullis_jwt::strip_cookie;

// The names the gateway sets (`portcullis_routing::forwarding::GATEWAY_HEADERS`), parsed at
// compile time and inserted without parsing them again.
const X_FORWARDED_FOR_NAME: HeaderName = HeaderName::from_static(X_FORWARDED_FOR);
const X_FORWARDED_PROTO_NAME: HeaderName = HeaderName::from_static(X_FORWARDED_PROTO);
pub const X_FORWARDED_HOST_NAME: HeaderName = HeaderName::from_static(X_FORWARDED_HOST);
const X_REAL_IP_NAME: HeaderName = HeaderName::from_static(X_REAL_IP);
pub const X_REQUEST_ID_NAME: HeaderName = HeaderName::from_static(X_REQUEST_ID);

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
    let upgrade = session.is_upgrade_req();
    // Names go upstream in lower case: the case map is dropped and every change below is
    // made on the header map itself (`lowercase`).
    crate::lowercase::request(req, |headers| upstream_headers(headers, upgrade, ctx))?
}

/// The upstream request's header section: hop-by-hop headers, spoofed copies of the
/// gateway's own and unverified credentials out; the forwarding headers, the request id,
/// verified claims, `Host` and the upstream's injected headers in.
fn upstream_headers(headers: &mut HeaderMap, upgrade: bool, ctx: &RequestCtx) -> Result<()> {
    for name in hop_by_hop(headers, upgrade) {
        headers.remove(&name);
    }
    for name in ctx
        .snapshot
        .client_headers
        .to_remove(headers, ctx.client.peer_trusted)
    {
        headers.remove(&name);
    }
    strip_credentials(headers, ctx);

    let forwarded_for = value(forwarded_for(headers, ctx))?;
    let forwarded_host = forwarded_host(headers, ctx).map(value).transpose()?;
    // An untrusted peer is the client: X-Forwarded-For is its address alone, formatted once.
    let real_ip = if !ctx.client.peer_trusted && ctx.client.ip == ctx.client.peer {
        forwarded_for.clone()
    } else {
        value(client_ip::text(ctx.client.ip))?
    };
    headers.reserve(5 + ctx.identity.forward_headers.len());
    headers.insert(X_FORWARDED_FOR_NAME, forwarded_for);
    headers.insert(X_REAL_IP_NAME, real_ip);
    headers.insert(
        X_FORWARDED_PROTO_NAME,
        HeaderValue::from_static(forwarded_proto(ctx)),
    );
    match forwarded_host {
        Some(h) => headers.insert(X_FORWARDED_HOST_NAME, h),
        None => headers.remove(X_FORWARDED_HOST_NAME),
    };
    headers.insert(X_REQUEST_ID_NAME, value(ctx.client.request_id.clone())?);
    trace_context(headers, ctx)?;

    // Verified claims; the client's copies of these names went with `client_headers` above,
    // whatever the route's auth mode.
    for (name, value) in &ctx.identity.forward_headers {
        headers.append(name.clone(), value.clone());
    }
    if let Some(host) = upstream_host(ctx) {
        if headers
            .get(HOST)
            .is_none_or(|h| h.as_bytes() != host.as_bytes())
        {
            let value = HeaderValue::from_str(host)
                .map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "invalid host"))?;
            headers.insert(HOST, value);
        }
    }
    if let Some(pool) = ctx.upstream.pool() {
        for (name, value) in &pool.config.request_headers {
            headers.insert(name.clone(), value.clone());
        }
    }
    Ok(())
}

/// The value of `name` in the request as [`upstream_request`] forwards it (every value
/// joined by `, `; empty when it sends none), read from the client's request without
/// building the upstream one. The edge cache keys variants on it: a backend's answer varies
/// on what the backend saw, which for the headers the gateway writes (claims, forwarding
/// headers, injected keys, `Host`) or removes (hop-by-hop, spoofed copies, unverified
/// credentials) is not what the client sent.
pub fn forwarded_value(req: &RequestHeader, ctx: &RequestCtx, name: &HeaderName) -> Vec<u8> {
    if let Some(pool) = ctx.upstream.pool() {
        if let Some((_, value)) = pool.config.request_headers.iter().find(|(n, _)| n == name) {
            return value.as_bytes().to_vec();
        }
    }
    if name == HOST {
        return upstream_host(ctx).unwrap_or_default().as_bytes().to_vec();
    }
    match name.as_str() {
        X_FORWARDED_FOR => return forwarded_for(&req.headers, ctx).into_bytes(),
        X_FORWARDED_PROTO => return forwarded_proto(ctx).as_bytes().to_vec(),
        X_FORWARDED_HOST => {
            return forwarded_host(&req.headers, ctx)
                .unwrap_or_default()
                .into_bytes()
        }
        X_REAL_IP => return client_ip::text(ctx.client.ip).into_bytes(),
        X_REQUEST_ID => return ctx.client.request_id.clone().into_bytes(),
        // With `[tracing]` the gateway writes both; a traceparent names this request's own
        // span, so no two requests share one.
        TRACEPARENT | TRACESTATE => {
            if let Some(trace) = &ctx.trace {
                if name == TRACESTATE {
                    return trace.tracestate.clone().unwrap_or_default().into_bytes();
                }
                let mut buf = [0u8; 55];
                return trace
                    .traceparent(trace.span_id)
                    .write(&mut buf)
                    .as_bytes()
                    .to_vec();
            }
        }
        _ => {}
    }
    let claims = ctx
        .identity
        .forward_headers
        .iter()
        .filter(|(n, _)| n == name);
    let mut out = joined_values(claims.map(|(_, v)| v));
    if !out.is_empty() {
        return out;
    }
    // The edge cache never serves upgrades, so hop-by-hop is read as for a plain request.
    let removed = hop_by_hop(&req.headers, false).contains(name)
        || ctx
            .snapshot
            .client_headers
            .to_remove(&req.headers, ctx.client.peer_trusted)
            .contains(name);
    if removed || (name == AUTHORIZATION && !keeps_authorization(ctx)) {
        return out;
    }
    if name == COOKIE {
        if let Some(kept) = forwarded_cookies(&req.headers, ctx) {
            return joined_values(kept.iter());
        }
    }
    out = joined_values(req.headers.get_all(name).iter());
    out
}

/// The `Host` the upstream receives: a TLS upstream's own name (TopMediai expects it), else
/// the request's one authority reading.
fn upstream_host(ctx: &RequestCtx) -> Option<&str> {
    match ctx.upstream.pool() {
        Some(pool) if pool.config.tls => Some(pool.config.sni.as_str()),
        _ => ctx.client.authority.as_deref(),
    }
}

/// A trusted proxy's chain is extended; anyone else's is replaced, so a client cannot plant
/// addresses for the backend to believe.
fn forwarded_for(headers: &HeaderMap, ctx: &RequestCtx) -> String {
    let peer = client_ip::text(ctx.client.peer);
    match (ctx.client.peer_trusted, joined(headers, X_FORWARDED_FOR)) {
        (true, Some(chain)) => format!("{chain}, {peer}"),
        _ => peer,
    }
}

fn forwarded_proto(ctx: &RequestCtx) -> &'static str {
    if ctx.client.https {
        "https"
    } else {
        "http"
    }
}

/// A trusted proxy's `X-Forwarded-Host`, else the request's authority.
fn forwarded_host(headers: &HeaderMap, ctx: &RequestCtx) -> Option<String> {
    match (ctx.client.peer_trusted, joined(headers, X_FORWARDED_HOST)) {
        (true, Some(h)) => Some(h),
        _ => ctx.client.authority.clone(),
    }
}

/// With `[tracing]`, the upstream gets the request's `traceparent`, naming the try's CLIENT
/// span as parent (the request's own span when unsampled), and a trusted sender's
/// `tracestate`; the client's own values never pass (W3C Trace Context: a client must not
/// force sampling or smuggle state).
fn trace_context(headers: &mut HeaderMap, ctx: &RequestCtx) -> Result<()> {
    let Some(trace) = &ctx.trace else {
        return Ok(());
    };
    headers.remove(TRACESTATE);
    let parent = ctx.upstream.try_span().unwrap_or(trace.span_id);
    let mut buf = [0u8; 55];
    let traceparent = HeaderValue::from_str(trace.traceparent(parent).write(&mut buf))
        .map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "invalid traceparent"))?;
    headers.insert(TRACEPARENT, traceparent);
    if let Some(state) = &trace.tracestate {
        headers.insert(TRACESTATE, value(state.clone())?);
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
fn strip_credentials(headers: &mut HeaderMap, ctx: &RequestCtx) {
    if !keeps_authorization(ctx) {
        headers.remove(AUTHORIZATION);
    }
    if let Some(kept) = forwarded_cookies(headers, ctx) {
        headers.remove(COOKIE);
        for value in kept {
            headers.append(COOKIE, value);
        }
    }
}

fn forwards_credentials(ctx: &RequestCtx) -> bool {
    ctx.snapshot
        .config
        .jwt
        .as_ref()
        .is_none_or(|jwt| jwt.forward_credentials)
}

/// Whether the client's `Authorization` goes upstream: yes unless something else (or it,
/// with `forward_credentials = false`) authenticated the request.
fn keeps_authorization(ctx: &RequestCtx) -> bool {
    match ctx.identity.credential {
        None => true,
        Some(kind) => kind == CredentialKind::Header && forwards_credentials(ctx),
    }
}

/// The `Cookie` fields to send in place of the client's, when the route's token cookies must
/// not reach the upstream; `None` leaves them as they are.
fn forwarded_cookies(headers: &HeaderMap, ctx: &RequestCtx) -> Option<Vec<HeaderValue>> {
    let kind = ctx.identity.credential?;
    if kind == CredentialKind::Cookie && forwards_credentials(ctx) {
        return None;
    }
    let route = ctx.target.route.as_ref()?;
    let mut kept: Option<Vec<HeaderValue>> = None;
    for source in &route.auth_sources {
        let TokenSource::Cookie(name) = source else {
            continue;
        };
        let stripped = match &kept {
            None => strip_cookie(headers, name),
            Some(values) => {
                let mut fields = HeaderMap::new();
                for value in values {
                    fields.append(COOKIE, value.clone());
                }
                strip_cookie(&fields, name)
            }
        };
        if stripped.is_some() {
            kept = stripped;
        }
    }
    kept
}

fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

fn joined_values<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, value) in values.enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// A forwarding header's value, taking the string's bytes as they are (no copy).
fn value(text: String) -> Result<HeaderValue> {
    HeaderValue::try_from(text)
        .map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "invalid forwarding header"))
}

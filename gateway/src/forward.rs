//! What the upstream sees and what comes back: the rewritten target, forwarding headers,
//! injected headers, and hop-by-hop headers dropped both ways (RFC 9110 section 7.6.1).

use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, COOKIE, HOST};
use http::Uri;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::Session;
use portcullis_routing::forwarding::hop_by_hop;

use crate::ctx::{CredentialKind, RequestCtx};
use crate::respond::X_REQUEST_ID;
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

    let forwarded_for = forwarded_for(&req.headers, ctx);
    set(req, X_FORWARDED_FOR, &forwarded_for)?;
    set(req, X_FORWARDED_PROTO, forwarded_proto(ctx))?;
    match forwarded_host(&req.headers, ctx) {
        Some(h) => set(req, X_FORWARDED_HOST, &h)?,
        None => {
            req.remove_header(X_FORWARDED_HOST);
        }
    }
    set(req, X_REAL_IP, &ctx.client.ip.to_string())?;
    set(req, X_REQUEST_ID, &ctx.client.request_id)?;

    // Verified claims; the client's copies of these names went with `client_headers` above,
    // whatever the route's auth mode.
    for (name, value) in &ctx.identity.forward_headers {
        req.append_header(name.clone(), value.clone())?;
    }
    if let Some(host) = upstream_host(ctx) {
        if req
            .headers
            .get(HOST)
            .is_none_or(|h| h.as_bytes() != host.as_bytes())
        {
            let value = HeaderValue::from_str(host)
                .map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "invalid host"))?;
            req.insert_header(HOST, value)?;
        }
    }
    if let Some(pool) = ctx.upstream.pool() {
        for (name, value) in &pool.config.request_headers {
            req.insert_header(name.clone(), value.clone())?;
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
        X_REAL_IP => return ctx.client.ip.to_string().into_bytes(),
        X_REQUEST_ID => return ctx.client.request_id.clone().into_bytes(),
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
    let peer = ctx.client.peer.to_string();
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
    if !keeps_authorization(ctx) {
        req.remove_header(&AUTHORIZATION);
    }
    if let Some(kept) = forwarded_cookies(&req.headers, ctx) {
        req.remove_header(&COOKIE);
        for value in kept {
            // Appending a valid value to a fresh name cannot fail.
            let _ = req.append_header(COOKIE, value);
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

fn set(req: &mut RequestHeader, name: &'static str, value: &str) -> Result<()> {
    let value = HeaderValue::from_str(value)
        .map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "invalid forwarding header"))?;
    req.insert_header(name, value)
}

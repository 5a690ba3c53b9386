//! The request phase: who is asking (`identify`), where the request
//! goes (normalised path, route, upstream), and whether the policies let it through. Each
//! step either continues or stops with an answer.

use std::sync::Arc;

use pingora::proxy::Session;
use portcullis_routing::{normalize, replace_prefix, RouteMatch};

use crate::ctx::{CredentialKind, RequestCtx};
use crate::error::{Limit, Rejection};
use crate::respond::Generated;
use crate::respond_ops::HeaderOp;
use crate::state::{json_fields, State};
use crate::upstream::Attempt;
use portcullis_config::AuthMode;
use portcullis_edge::{cross_site_refused, https, CorsPolicy, Preflight};
use portcullis_jwt::SourceKind;

/// Why the request phase stopped: a rejection or another generated answer.
pub enum Stop {
    Reject(Rejection),
    Answer(Generated),
}

impl From<Rejection> for Stop {
    fn from(r: Rejection) -> Self {
        Stop::Reject(r)
    }
}

pub async fn admit(
    state: &Arc<State>,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), Stop> {
    crate::identify::identify(session, ctx);
    trace(session, ctx);
    acme_challenge(state, session).await?;
    cors_headers(session, ctx);
    request_shape(session, ctx)?;
    header_limits(session, ctx)?;
    suspicious(state, session, ctx)?;
    https_redirect(state, session, ctx)?;
    accepted_host(ctx)?;
    cors_preflight(session, ctx)?;
    route(session, ctx)?;
    authenticate(state, session, ctx).await?;
    rate_limit(state, ctx).await?;
    bounds(state, session, ctx).await?;
    Ok(())
}

/// `[acme] challenge = "http-01"`: `/.well-known/acme-challenge/{token}` on a plain listener
/// is answered here, before any ban, redirect, routing, auth or rate limit (RFC 8555 section
/// 8.3: the CA fetches it over plain HTTP, from addresses nobody can list in advance): the key
/// authorization of a pending token, 404 for anything else. Never forwarded upstream.
async fn acme_challenge(state: &State, session: &Session) -> Result<(), Stop> {
    let Some(acme) = state
        .acme
        .as_ref()
        .filter(|a| a.settings.challenge == portcullis_config::AcmeChallenge::Http01)
    else {
        return Ok(());
    };
    let req = session.req_header();
    let Some(token) = req.uri.path().strip_prefix("/.well-known/acme-challenge/") else {
        return Ok(());
    };
    // Answered on a TLS listener too: a CA follows a redirect to HTTPS (RFC 8555 section 8.3).
    let store = acme.store();
    let answer = match acme.challenges.http(token, store.as_deref()).await {
        Some(key_authorization) => Generated {
            status: 200,
            headers: vec![(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain"),
            )],
            body: bytes::Bytes::from(key_authorization),
            reason: "acme_challenge",
        },
        None => Generated {
            status: 404,
            headers: vec![(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            )],
            body: bytes::Bytes::from_static(
                br#"{"error":"not_found","message":"no pending ACME challenge has this token"}"#,
            ),
            reason: "acme_challenge",
        },
    };
    Err(Stop::Answer(answer))
}

/// What the HTTP/1 intake refuses before pingora parses, refused here for h2 too (its
/// streams reach pingora directly): `CONNECT` (the gateway is no forward proxy; pingora's own
/// answer would be a bare 405), a request naming no host (RFC 9112 section 3.2 for HTTP/1.1,
/// RFC 9113 section 8.3.1 for h2), and with `underscore_headers = "reject"` a header name
/// holding `_`.
fn request_shape(session: &Session, ctx: &RequestCtx) -> Result<(), Stop> {
    let req = session.req_header();
    if req.method == http::Method::CONNECT {
        return Err(Rejection::MethodNotAllowed {
            method: req.method.clone(),
            allow: crate::error::PROXIED_METHODS.to_vec(),
        }
        .into());
    }
    if ctx.client.host.is_none() && req.version != http::Version::HTTP_10 {
        return Err(Rejection::BadRequest("the request names no host".into()).into());
    }
    if let Some(name) = ctx.snapshot.client_headers.refused(&req.headers) {
        return Err(Rejection::BadRequest(format!(
            "header names with `_` are not accepted here ({name})"
        ))
        .into());
    }
    Ok(())
}

/// Pingora accepts header sections up to 1 MiB and 256 fields; the gateway's own, much
/// tighter limits (16 KiB and 100 fields by default, like nginx's large_client_header_buffers)
/// keep one client from pinning large buffers. Answered 431 (RFC 6585 section 5).
fn header_limits(session: &Session, ctx: &RequestCtx) -> Result<(), Stop> {
    let server = &ctx.snapshot.config.server;
    let req = session.req_header();
    if req.headers.len() > server.max_request_headers {
        return Err(Rejection::HeadersTooLarge.into());
    }
    let target = req.uri.path_and_query().map_or(0, |p| p.as_str().len());
    let size = req.method.as_str().len()
        + target
        + 12
        + req
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>();
    if size > server.max_request_header_bytes {
        return Err(Rejection::HeadersTooLarge.into());
    }
    Ok(())
}

/// Suspicious requests: a banned client is refused at once (a ban placed through the admin
/// API or by any replica's auto-ban, whatever `mode` says, or this replica's auto-ban table);
/// a rule match is counted and logged as an event, and in `block` mode refused with 403 and
/// counted toward a ban.
fn suspicious(state: &State, session: &Session, ctx: &RequestCtx) -> Result<(), Stop> {
    let snapshot = &ctx.snapshot;
    let replicated = &state.replicated;
    let now = std::time::Instant::now();
    let banned = replicated
        .bans
        .check_at(ctx.client.ip, || replicated.now_ms())
        .is_some()
        || (snapshot.detector.is_some() && snapshot.bans.check(ctx.client.ip, now).is_some());
    if banned {
        state
            .metrics
            .suspicious
            .with_label_values(&["banned", "blocked"])
            .inc();
        return Err(Rejection::Forbidden {
            message: "this client is temporarily banned".into(),
            reason: "banned",
        }
        .into());
    }
    let Some(detector) = &snapshot.detector else {
        return Ok(());
    };
    let Some(finding) = detector.inspect(session.req_header()) else {
        return Ok(());
    };
    let block = snapshot.config.suspicious.mode == portcullis_config::SuspiciousMode::Block;
    let action = if block { "blocked" } else { "logged" };
    state
        .metrics
        .suspicious
        .with_label_values(&[finding.rule, action])
        .inc();
    let banned = block && snapshot.bans.record_block(ctx.client.ip, now);
    if banned {
        replicated.auto_ban(
            ctx.client.ip,
            snapshot.config.suspicious.ban_duration,
            snapshot.shared_limits.is_some(),
        );
    }
    state.event(
        "suspicious_request",
        json_fields([
            ("rule", finding.rule.into()),
            ("action", action.into()),
            ("client_ip", ctx.client.ip.to_string().into()),
            ("request", ctx.client.request_id.clone().into()),
            ("detail", finding.detail.into()),
            ("banned", banned.into()),
        ]),
    );
    if block {
        return Err(Rejection::Forbidden {
            message: "this request looks like an attack".into(),
            reason: finding.rule,
        }
        .into());
    }
    Ok(())
}

/// `https_redirect`: requests that arrived over plain HTTP (and not via a trusted proxy's
/// `X-Forwarded-Proto: https`) are sent to the HTTPS origin; ACME HTTP-01 challenges pass.
fn https_redirect(state: &State, session: &Session, ctx: &RequestCtx) -> Result<(), Stop> {
    let server = &ctx.snapshot.config.server;
    let req = session.req_header();
    // Before routing: the challenge path as sent (a challenge token has no dot segments).
    if !server.https_redirect || ctx.client.https || https::is_acme_challenge(req.uri.path()) {
        return Ok(());
    }
    let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
    match https::redirect(
        &req.method,
        ctx.client.host.as_deref(),
        target,
        &server.hosts,
        server.https_port,
    ) {
        Ok(r) => {
            state.metrics.https_redirects.inc();
            Err(Stop::Answer(Generated::redirect(r.status, r.location)))
        }
        Err(e) => Err(Rejection::BadRequest(e.to_string()).into()),
    }
}

/// With `server.hosts` set, other Host names are refused (no virtual host is served for
/// them). The HTTPS redirect, when it lands, runs first and sends them to `hosts[0]`.
fn accepted_host(ctx: &RequestCtx) -> Result<(), Stop> {
    let hosts = &ctx.snapshot.config.server.hosts;
    if hosts.is_empty() || ctx.client.host.as_ref().is_some_and(|h| hosts.contains(h)) {
        return Ok(());
    }
    Err(Rejection::BadRequest("this host is not served here".into()).into())
}

/// CORS headers for the origin, first of all, so every answer a browser reads carries them:
/// a proxied one, and a refusal by any step below (a 403 from the suspicious-request rules,
/// a 401, a 429). Preflights get theirs from `cors_preflight`.
fn cors_headers(session: &Session, ctx: &mut RequestCtx) {
    let Some(policy) = &ctx.snapshot.cors else {
        return;
    };
    let req = session.req_header();
    if !CorsPolicy::is_preflight(req) {
        let ops = policy.response_headers(req);
        ctx.answer.policy_headers.extend(ops);
    }
}

/// CORS preflights are answered here and never reach the upstream.
fn cors_preflight(session: &Session, ctx: &mut RequestCtx) -> Result<(), Stop> {
    let snapshot = ctx.snapshot.clone();
    let Some(policy) = &snapshot.cors else {
        return Ok(());
    };
    let req = session.req_header();
    match policy.preflight(req) {
        Some(Preflight::Allowed(ops)) => {
            let headers = ops
                .into_iter()
                .filter_map(|op| match op {
                    HeaderOp::Set(n, v) | HeaderOp::Append(n, v) => Some((n, v)),
                    HeaderOp::Remove(_) => None,
                })
                .collect();
            Err(Stop::Answer(Generated::empty(
                204,
                headers,
                "cors_preflight",
            )))
        }
        Some(Preflight::Refused) => Err(Rejection::Forbidden {
            message: "this cross-origin request is not allowed".into(),
            reason: "cors_preflight_refused",
        }
        .into()),
        None => Ok(()),
    }
}

/// The route's auth mode: a valid signed URL, or else the token from the route's first
/// present source, gives the identity that rate limiting, the access log and (as
/// `forward_claims` headers) the upstream see. A cookie-authenticated unsafe request must
/// also pass the cross-site rule.
async fn authenticate(state: &State, session: &Session, ctx: &mut RequestCtx) -> Result<(), Stop> {
    let (Some(route), Some(auth)) = (ctx.target.route.clone(), ctx.snapshot.auth.clone()) else {
        return Ok(());
    };
    if route.auth == AuthMode::None {
        return Ok(());
    }
    if signed_url(state, session, ctx)? {
        return Ok(());
    }
    let req = session.req_header();
    let verified = auth
        .authenticate(
            route.auth,
            &route.auth_sources,
            &req.headers,
            &state.metrics,
            &state.replicated.revocations,
            ctx.spans.as_deref_mut(),
        )
        .await?;
    let Some((identity, kind)) = verified else {
        return Ok(());
    };
    let kind = match kind {
        SourceKind::Header => CredentialKind::Header,
        SourceKind::Cookie => CredentialKind::Cookie,
    };
    if kind == CredentialKind::Cookie {
        let own_host = ctx.client.host.clone().unwrap_or_default();
        let server_hosts = &ctx.snapshot.config.server.hosts;
        let hosts = if server_hosts.is_empty() {
            std::slice::from_ref(&own_host)
        } else {
            server_hosts.as_slice()
        };
        if cross_site_refused(
            &req.method,
            session.is_upgrade_req(),
            &req.headers,
            hosts,
            ctx.snapshot.cors.as_ref(),
        ) {
            return Err(Rejection::Forbidden {
                message: "a request authenticated by a cookie must come from this site's own pages"
                    .into(),
                reason: "cross_site",
            }
            .into());
        }
    }
    ctx.identity.credential = Some(kind);
    ctx.identity.user = identity.user.as_deref().map(str::to_owned);
    ctx.identity.forward_headers = identity.forward.clone();
    Ok(())
}

/// A route with `signed_urls`: a request carrying `exp` and `sig` is authenticated by them
/// alone (true), as the signed user if any, and forwarded without them; a bad or expired
/// signature is 403. Without either parameter, the route's token sources decide (false).
fn signed_url(state: &State, session: &Session, ctx: &mut RequestCtx) -> Result<bool, Stop> {
    let snapshot = ctx.snapshot.clone();
    let Some(handles) = ctx.target.handles.clone() else {
        return Ok(false);
    };
    let Some(verifier) = &handles.signed_urls else {
        return Ok(false);
    };
    let req = session.req_header();
    let query = req.uri.query();
    // The method is not signed: a signed link is for fetching media, never for writing.
    let fetch = matches!(req.method, http::Method::GET | http::Method::HEAD);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let count = |result: &'static str| {
        state
            .metrics
            .auth_credentials
            .with_label_values(&["signed_url", result])
            .inc();
    };
    let signed = match verifier.verify(&ctx.target.path, query, now) {
        Ok(Some(_)) if !fetch => {
            count("malformed");
            return Err(Rejection::Forbidden {
                message: "signed URLs are for GET and HEAD only".into(),
                reason: "malformed",
            }
            .into());
        }
        Ok(Some(signed)) => signed,
        Ok(None) => return Ok(false),
        Err(e) => {
            count(e.reason());
            return Err(Rejection::Forbidden {
                message: format!("this signed URL is not valid here ({e})"),
                reason: e.reason(),
            }
            .into());
        }
    };
    count("valid");
    if let Some(target) = ctx.target.upstream_target.as_mut() {
        let path_end = target.find('?').unwrap_or(target.len());
        let rest = query.and_then(portcullis_signed_url::strip_params);
        target.truncate(path_end);
        if let Some(rest) = rest {
            target.push('?');
            target.push_str(&rest);
        }
    }
    ctx.identity.credential = Some(CredentialKind::SignedUrl);
    if let (Some(user), Some(jwt)) = (&signed.user, &snapshot.config.jwt) {
        ctx.identity.forward_headers = jwt
            .forward_claims
            .iter()
            .filter(|(claim, _)| *claim == jwt.user_claim)
            .filter_map(|(_, header)| {
                http::HeaderValue::from_str(user)
                    .ok()
                    .map(|v| (header.clone(), v))
            })
            .collect();
    }
    ctx.identity.user = signed.user;
    // Signed media is meant to load where the cookie does not go: another origin's page.
    ctx.answer.policy_headers.push(HeaderOp::Set(
        http::header::HeaderName::from_static("cross-origin-resource-policy"),
        http::HeaderValue::from_static("cross-origin"),
    ));
    Ok(true)
}

/// The route's rate-limit policy: every response of a limited route carries the limit
/// headers; a refusal is 429 and consumes nothing.
async fn rate_limit(state: &State, ctx: &mut RequestCtx) -> Result<(), Stop> {
    let (Some(route), Some(handles)) = (ctx.target.route.clone(), ctx.target.handles.clone())
    else {
        return Ok(());
    };
    let Some(policy) = &handles.rate_limit else {
        return Ok(());
    };
    let snapshot = ctx.snapshot.clone();
    let shared = match &snapshot.shared_limits {
        Some(store) => {
            let started = std::time::Instant::now();
            let checked = store
                .check(policy, ctx.client.ip, ctx.identity.user.as_deref())
                .await;
            if let Some(spans) = ctx.spans.as_mut() {
                let mut attributes = vec![("db.system.name", "redis".into())];
                if checked.is_err() {
                    attributes.push(("error.type", "store_error".into()));
                }
                spans.record("rate_limit.redis", started, attributes, checked.is_err());
            }
            match checked {
                Ok(decision) => Some(decision),
                // Redis is down or slow: this replica enforces the limits alone, in memory.
                Err(_) => {
                    state.metrics.rate_limit_store_errors.inc();
                    None
                }
            }
        }
        None => None,
    };
    let decision = shared.unwrap_or_else(|| {
        state
            .limiter
            .check(policy, ctx.client.ip, ctx.identity.user.as_deref())
    });
    ctx.answer.policy_headers.extend(
        decision
            .headers
            .into_iter()
            .map(|(n, v)| HeaderOp::Set(n, v)),
    );
    match decision.refused {
        None => Ok(()),
        Some(scope) => {
            let (ip, prefix) = (ctx.client.ip, policy.ipv6_prefix);
            state
                .status
                .rate_limited(handles.status_slot, ip, prefix, scope);
            state
                .metrics
                .rate_limited
                .with_label_values(&[route.name.as_str(), scope.as_str()])
                .inc();
            Err(Rejection::RateLimited.into())
        }
    }
}

/// With `[tracing]`: the request's trace context (the incoming one when its sender is
/// trusted) and, when sampled, the record of its spans.
fn trace(session: &Session, ctx: &mut RequestCtx) {
    let Some(tracer) = &ctx.snapshot.tracer else {
        return;
    };
    let trace = tracer.start(session.req_header(), ctx.client.peer_trusted);
    if trace.sampled {
        ctx.spans = Some(Box::default());
    }
    ctx.trace = Some(trace);
}

/// Normalise the path, pick the route and its upstream, and compute the upstream target.
fn route(session: &Session, ctx: &mut RequestCtx) -> Result<(), Stop> {
    let req = session.req_header();
    let path = normalize(req.uri.path()).map_err(|e| Rejection::BadRequest(e.to_string()))?;
    ctx.target.path = path.as_str().to_string();
    let snapshot = ctx.snapshot.clone();
    let (route, index) =
        match snapshot
            .router
            .find(ctx.client.host.as_deref(), &req.method, path.as_str())
        {
            RouteMatch::Found(route, index) => (route.clone(), index),
            RouteMatch::MethodNotAllowed { allow } => {
                return Err(Rejection::MethodNotAllowed {
                    method: req.method.clone(),
                    allow,
                }
                .into())
            }
            RouteMatch::NotFound => return Err(Rejection::NoRoute.into()),
        };
    let mut target = match &route.replace_prefix {
        Some(replacement) => replace_prefix(path.as_str(), &route.path_prefix, replacement),
        None => path.as_str().to_string(),
    };
    if let Some(query) = req.uri.query() {
        target.push('?');
        target.push_str(query);
    }
    ctx.target.upstream_target = Some(target);
    let Some(handles) = snapshot.routes.get(index).cloned() else {
        return Err(Rejection::BadGateway.into());
    };
    ctx.upstream = Attempt::new(handles.pool.clone());
    if ctx.spans.is_some() {
        ctx.upstream.trace_tries();
    }
    ctx.target.handles = Some(handles);
    ctx.target.route = Some(route);
    Ok(())
}

/// The bounds, once the request is routed and admitted by every policy: the identified
/// client's requests in flight (h2 streams included; a trusted proxy's clients each count as
/// themselves), then the body (`bounds::body::admit`).
async fn bounds(
    state: &State,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), Rejection> {
    let snapshot = ctx.snapshot.clone();
    let server = &snapshot.config.server.bounds;
    let bucket = portcullis_routing::client_ip::bucket(ctx.client.ip, server.ipv6_prefix);
    match state
        .bounds
        .in_flight
        .try_acquire(bucket, server.max_requests_in_flight_per_client)
    {
        Some(permit) => ctx.bounds.in_flight = Some(permit),
        None => return Err(Rejection::ClientLimit(Limit::InFlightPerClient)),
    }
    let Some(route) = ctx.target.route.clone() else {
        return Ok(());
    };
    crate::bounds::body::admit(
        &state.bounds.buffers,
        &state.metrics.buffered_body_bytes,
        session,
        &route.bounds,
        ctx.started,
        server,
        &mut ctx.bounds,
    )
    .await
}

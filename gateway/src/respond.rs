//! The one place that builds gateway-generated responses and finishes every response's
//! headers. Pingora skips `response_filter` for responses written in `request_filter`, so both
//! paths call `finish_headers`: a 401 or 429 carries the same security headers, request id,
//! rate-limit and CORS headers as a proxied 200.

use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::ctx::RequestCtx;
use crate::error::Rejection;
use crate::forward::X_REQUEST_ID_NAME;
use crate::respond_ops::{ApplyHeaderOp, HeaderOp};
use crate::snapshot::Snapshot;

/// A response the gateway writes itself.
pub struct Generated {
    pub status: u16,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    /// The access log's `reason`.
    pub reason: &'static str,
}

impl From<&Rejection> for Generated {
    fn from(r: &Rejection) -> Self {
        let body = crate::json_line::to_vec(
            &serde_json::json!({ "error": r.code(), "message": r.to_string() }),
        )
        .unwrap_or_default();
        let mut headers = vec![(CONTENT_TYPE, HeaderValue::from_static("application/json"))];
        match r {
            Rejection::Unauthorized { challenge, .. } => {
                headers.push((WWW_AUTHENTICATE, challenge.clone()))
            }
            Rejection::MethodNotAllowed { allow, .. } => {
                let list = allow
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                if let Ok(v) = HeaderValue::from_str(&list) {
                    headers.push((ALLOW, v));
                }
            }
            Rejection::UpstreamUnavailable {
                retry_after: Some(secs),
                ..
            } => {
                headers.push((RETRY_AFTER, HeaderValue::from(*secs)));
            }
            _ => {}
        }
        if let Some(secs) = r.retry_after() {
            headers.push((RETRY_AFTER, HeaderValue::from(secs)));
        }
        Generated {
            status: r.status(),
            headers,
            body: Bytes::from(body),
            reason: r.reason(),
        }
    }
}

impl Generated {
    /// A redirect with a small JSON body naming where to go.
    pub fn redirect(status: u16, location: HeaderValue) -> Self {
        let body = crate::json_line::to_vec(&serde_json::json!({
            "error": "https_required",
            "message": format!("use {}", location.to_str().unwrap_or("https")),
        }))
        .unwrap_or_default();
        Generated {
            status,
            headers: vec![
                (LOCATION, location),
                (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            ],
            body: Bytes::from(body),
            reason: "https_redirect",
        }
    }

    /// An empty answer (CORS preflight).
    pub fn empty(
        status: u16,
        headers: Vec<(HeaderName, HeaderValue)>,
        reason: &'static str,
    ) -> Self {
        Generated {
            status,
            headers,
            body: Bytes::new(),
            reason,
        }
    }

    /// The status line, the response's own headers and its Content-Length; the caller adds the
    /// headers every response gets (`finish_headers` or `stamp`).
    pub fn header(&self) -> pingora::Result<ResponseHeader> {
        let mut resp = ResponseHeader::build_no_case(self.status, Some(self.headers.len() + 1))?;
        crate::lowercase::response(&mut resp, |headers| {
            for (name, value) in &self.headers {
                headers.insert(name.clone(), value.clone());
            }
            headers.insert(CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        })?;
        Ok(resp)
    }
}

/// Writes a generated response and records it in the context for metrics and the log.
pub async fn send(
    session: &mut Session,
    ctx: &mut RequestCtx,
    g: Generated,
) -> pingora::Result<()> {
    let mut resp = g.header()?;
    finish_headers(&mut resp, ctx)?;
    crate::cache::stamp(session, &mut resp, ctx)?;
    ctx.answer.status = g.status;
    ctx.answer.reason = Some(g.reason);
    ctx.answer.bytes_sent = g.body.len();
    let head_only = session.req_header().method == http::Method::HEAD || g.body.is_empty();
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(g.body), true).await?;
    }
    Ok(())
}

/// Sends the response for a rejection.
pub async fn reject(
    session: &mut Session,
    ctx: &mut RequestCtx,
    r: &Rejection,
) -> pingora::Result<()> {
    if r.closes_connection() {
        // A body left unread is not drained to keep the connection: it closes.
        session.set_keepalive(None);
    }
    ctx.bounds.limit_hit = r.limit();
    send(session, ctx, Generated::from(r)).await
}

/// Headers every response gets, proxied or generated: the request id, the policies'
/// response headers (security headers, CORS, rate limits) in that order, and no
/// `Server`/`X-Powered-By` from anyone.
pub fn finish_headers(resp: &mut ResponseHeader, ctx: &RequestCtx) -> pingora::Result<()> {
    stamp(
        resp,
        &ctx.client.request_id,
        &ctx.snapshot,
        ctx.client.https,
        &ctx.answer.policy_headers,
    )
}

/// `finish_headers` for answers given before a request context exists (the intake's refusals
/// of requests whose header section never arrived whole).
///
/// Names go out in lower case: the head's case map is dropped (`lowercase`) and the ready
/// pairs are written straight into its header map, sized once for all of them.
pub fn stamp(
    resp: &mut ResponseHeader,
    request_id: &str,
    snapshot: &Snapshot,
    https: bool,
    ops: &[HeaderOp],
) -> pingora::Result<()> {
    let security = snapshot.security_headers(https);
    let id = HeaderValue::from_str(request_id).ok();
    crate::lowercase::response(resp, |headers| {
        headers.reserve(1 + security.len() + ops.len());
        if let Some(id) = id {
            headers.insert(X_REQUEST_ID_NAME, id);
        }
        for op in security.iter().chain(ops) {
            op.apply(headers);
        }
    })
}

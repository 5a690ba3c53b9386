//! The `ProxyHttp` pipeline. Each phase is a short list of steps; the steps themselves live
//! in `admission` (request phase), `cache` (the edge cache's phases, after admission),
//! `upstream` (peer choice, breaker, retries: every try of pingora's proxy loop), `forward`
//! (upstream request/response headers) and `outcome` (errors, metrics, access log).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::cache::key::HashBinary;
use pingora::cache::{CacheKey, CacheMeta, ForcedFreshness, HitHandler, RespCacheable};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;

use crate::admission::{self, Stop};
use crate::cache;
use crate::ctx::RequestCtx;
use crate::state::{InFlight, State};
use crate::{bounds, forward, handoff, outcome, respond};

pub struct Proxy {
    pub state: Arc<State>,
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        let snapshot = handoff::request_snapshot().unwrap_or_else(|| self.state.current());
        let mut ctx = RequestCtx::new(snapshot, InFlight::new(&self.state));
        ctx.bounds.tunnel = handoff::request_tunnel();
        ctx
    }

    /// Identify, route and apply the policies; any of them may answer on its own.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        match admission::admit(&self.state, session, ctx).await {
            Ok(()) => Ok(false),
            Err(Stop::Reject(r)) => respond::reject(session, ctx, &r).await.map(|_| true),
            Err(Stop::Answer(g)) => respond::send(session, ctx, g).await.map(|_| true),
        }
    }

    /// The edge cache, for GET and HEAD on routes that opted in: only now, after identity,
    /// auth and rate limits admitted the request.
    fn request_cache_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<()> {
        cache::request(self.state.cache, session, ctx);
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, ctx: &mut RequestCtx) -> Result<CacheKey> {
        Ok(cache::key(session, ctx))
    }

    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        ctx: &mut RequestCtx,
        req: &RequestHeader,
    ) -> Option<HashBinary> {
        cache::vary(meta, ctx, req)
    }

    async fn cache_hit_filter(
        &self,
        _session: &mut Session,
        meta: &CacheMeta,
        _hit_handler: &mut HitHandler,
        is_fresh: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<ForcedFreshness>> {
        Ok(cache::hit(meta, is_fresh, ctx))
    }

    fn cache_miss(&self, session: &mut Session, ctx: &mut RequestCtx) {
        cache::miss(session, ctx);
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<RespCacheable> {
        Ok(cache::response(session, resp, ctx))
    }

    fn should_serve_stale(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        error: Option<&Error>,
    ) -> bool {
        cache::serve_stale(&self.state, session, ctx, error)
    }

    /// Judges each chunk against the body bounds before it is forwarded (a buffered body is
    /// put in place whole), and counts it: a body beyond what can be replayed is never
    /// retried. A tunnel's chunks only tell its watch it is alive.
    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if session.was_upgraded() {
            ctx.bounds.tunnel_alive();
            return Ok(());
        }
        bounds::body::chunk(&mut ctx.bounds, body).map_err(bounds::body::cut)?;
        if let (Some(chunk), None) = (body, &ctx.bounds.buffered) {
            ctx.upstream.body_read(chunk.len());
        }
        Ok(())
    }

    /// A tunnel's chunks from the upstream tell its watch it is alive.
    fn response_body_filter(
        &self,
        session: &mut Session,
        _body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        if session.was_upgraded() {
            ctx.bounds.tunnel_alive();
        }
        Ok(None)
    }

    /// Every try: the backoff, the deadline, the breaker's leave, then round-robin over the
    /// route's healthy peers, skipping those already tried.
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        ctx.upstream.next_peer(&self.state).await
    }

    /// A peer that cannot be reached: the request was never sent, so it may go to the next.
    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        e: Box<Error>,
    ) -> Box<Error> {
        let non_idempotent = retries_non_idempotent(ctx);
        ctx.upstream
            .connect_failed(&self.state, session, non_idempotent, e)
    }

    /// A try that broke after connecting, or an answer dropped to be retried.
    fn error_while_proxy(
        &self,
        _peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let non_idempotent = retries_non_idempotent(ctx);
        ctx.upstream
            .failed(&self.state, session, non_idempotent, client_reused, e)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        forward::upstream_request(session, upstream_request, ctx)?;
        bounds::body::upstream_request(&ctx.bounds, upstream_request)
    }

    /// The answer's hop-by-hop headers go; a status the retry policy retries is dropped
    /// here, before anything reaches the client, to try again.
    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let non_idempotent = retries_non_idempotent(ctx);
        ctx.upstream
            .answered(&self.state, session, non_idempotent, upstream_response)?;
        forward::upstream_response(upstream_response);
        Ok(())
    }

    /// Every response, proxied or served from the cache.
    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        respond::finish_headers(resp, ctx)?;
        if let Some(route) = &ctx.target.route {
            ctx.bounds
                .tunnel_opened(resp.status, route, &ctx.client.request_id);
        }
        cache::stamp(session, resp, ctx)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        outcome::fail(session, e, ctx).await
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        outcome::log(&self.state, session, e, ctx);
    }
}

/// The route's `retry_non_idempotent`.
fn retries_non_idempotent(ctx: &RequestCtx) -> bool {
    ctx.target
        .route
        .as_ref()
        .is_some_and(|r| r.retry_non_idempotent)
}

//! The `ProxyHttp` pipeline. Each phase is a short list of steps; the steps themselves live
//! in `admission` (request phase), `forward` (upstream request/response headers) and
//! `outcome` (errors, metrics, access log).

use std::sync::Arc;

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;

use crate::admission::{self, Stop};
use crate::ctx::RequestCtx;
use crate::state::{InFlight, State};
use crate::{exchange, forward, outcome, respond};

pub struct Proxy {
    pub state: Arc<State>,
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.state.current(), InFlight::new(&self.state))
    }

    /// Identify, route and apply the policies; any of them may answer on its own.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let admitted = match admission::admit(&self.state, session, ctx).await {
            Ok(()) => match ctx.pool.clone() {
                Some(pool) if exchange::applies(&pool, session) => {
                    exchange::run(&self.state, session, ctx, &pool)
                        .await
                        .map(|()| true)
                }
                _ => Ok(false),
            },
            Err(stop) => Err(stop),
        };
        match admitted {
            Ok(answered) => Ok(answered),
            Err(Stop::Reject(r)) => respond::reject(session, ctx, &r).await.map(|_| true),
            Err(Stop::Answer(g)) => respond::send(session, ctx, g).await.map(|_| true),
        }
    }

    /// Round-robin over the route's healthy peers, skipping those already tried.
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let pool = ctx
            .pool
            .clone()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no upstream chosen"))?;
        let peer = pool
            .select(&ctx.tried)
            .and_then(|i| pool.http_peer(i).map(|p| (i, p)))
            .ok_or_else(|| Error::explain(ErrorType::ConnectNoRoute, "no usable peer"))?;
        ctx.tried.push(peer.0);
        Ok(Box::new(peer.1))
    }

    /// A peer that cannot be reached is retried on the next one (the request was never sent,
    /// so this is safe for any method).
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        outcome::count_upstream(&self.state, ctx, "connect_error");
        let peers = ctx.pool.as_ref().map_or(0, |p| p.peers.len());
        e.set_retry(ctx.tried.len() < peers);
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        forward::upstream_request(session, upstream_request, ctx)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        forward::upstream_response(upstream_response);
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.status = resp.status.as_u16();
        respond::finish_headers(resp, ctx)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        outcome::fail(&self.state, session, e, ctx).await
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        outcome::log(&self.state, session, e, ctx);
    }
}

//! One connection to the shared store, single node or cluster, opened on first use.
//!
//! A single node is reached through redis-rs's `ConnectionManager` (one multiplexed,
//! pipelined connection that reconnects on its own); a cluster through its
//! `ClusterConnection`, which discovers the slots from the seed nodes, follows `MOVED` and
//! `ASK` redirections and refreshes the slot map after a failover. Both are cheap to clone and
//! are driven by a task on the runtime that opened them.

use std::time::Duration;

use portcullis_config::{RedisCluster, RedisStore};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use tokio::sync::OnceCell;

/// Where the store is.
#[derive(Clone)]
pub(crate) enum Target {
    Single(redis::Client),
    Cluster(Box<ClusterClient>),
}

impl Target {
    pub(crate) fn single(cfg: &RedisStore) -> Result<Self, String> {
        refuse_tls(&cfg.url)?;
        redis::Client::open(cfg.url.as_str())
            .map(Target::Single)
            .map_err(|e| e.to_string())
    }

    pub(crate) fn cluster(cfg: &RedisCluster, timeout: Duration) -> Result<Self, String> {
        for node in &cfg.nodes {
            refuse_tls(node)?;
        }
        ClusterClient::builder(cfg.nodes.iter().map(String::as_str))
            .connection_timeout(timeout)
            .response_timeout(timeout)
            // A request to a primary that just died is retried after the slot map refresh
            // (a replica promoted) only while the caller's deadline allows; then the caller
            // falls back. Few, short retries keep a failover from stalling requests.
            .retries(2)
            .min_retry_wait(10)
            .max_retry_wait(100)
            .build()
            .map(|c| Target::Cluster(Box::new(c)))
            .map_err(|e| e.to_string())
    }
}

fn refuse_tls(url: &str) -> Result<(), String> {
    if url.starts_with("rediss") {
        return Err("TLS to Redis (rediss://) is not built into this gateway; use redis:// on a private network or through a local TLS tunnel".into());
    }
    Ok(())
}

/// A connection opened on first use; a failed open is tried again on the next call.
pub(crate) struct Link {
    target: Target,
    timeout: Duration,
    connection: OnceCell<Connection>,
}

impl Link {
    pub(crate) fn new(target: Target, timeout: Duration) -> Self {
        Link {
            target,
            timeout,
            connection: OnceCell::new(),
        }
    }

    pub(crate) async fn get(&self) -> Result<Connection, redis::RedisError> {
        self.connection
            .get_or_try_init(|| async {
                match &self.target {
                    Target::Single(client) => {
                        let config = ConnectionManagerConfig::new()
                            .set_connection_timeout(Some(self.timeout))
                            .set_response_timeout(Some(self.timeout))
                            .set_number_of_retries(1);
                        ConnectionManager::new_with_config(client.clone(), config)
                            .await
                            .map(Connection::Single)
                    }
                    Target::Cluster(client) => client
                        .get_async_connection()
                        .await
                        .map(|c| Connection::Cluster(Box::new(c))),
                }
            })
            .await
            .cloned()
    }
}

#[derive(Clone)]
pub(crate) enum Connection {
    Single(ConnectionManager),
    Cluster(Box<ClusterConnection>),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

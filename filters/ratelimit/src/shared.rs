//! The Redis store (`[rate_limit_store] kind = "redis"`): every replica checks the same
//! buckets, so a client's budget is shared exactly whichever replica it reaches.
//!
//! One Lua script per request checks every bucket that applies (per-IP and per-user) and
//! updates them only when all admit, atomically on the server, with the server's `TIME` as the
//! clock (replicas with skewed clocks still agree). The arithmetic is the in-memory limiter's
//! GCRA, in microseconds. Buckets expire once they are full again, so Redis holds only active
//! clients.
//!
//! The connection is redis-rs's `ConnectionManager` (one multiplexed, pipelined connection,
//! reconnecting on its own). Every check is bounded by the store's `timeout`. When Redis is
//! down or slow, [`SharedStore::check`] fails fast: after a failure it is not asked again until
//! a backoff (250 ms doubling to 5 s) has passed, so an outage costs the request path nothing
//! while the caller answers from its in-memory limiter.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use portcullis_config::{Rate, RatePolicy, RedisStore};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use crate::gcra::Check;
use crate::{Decision, Scope};

const SCRIPT: &str = r#"
-- KEYS: the buckets. ARGV: per bucket, its emission interval and capacity in microseconds.
-- Returns {admitted, then per bucket: fits, remaining, reset_us, retry_after_us}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local debts = {}
local all = 1
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local capacity = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
  local debt = math.min(math.max(tat - now, 0), capacity)
  debts[i] = debt
  if debt + interval > capacity then all = 0 end
end
local out = {all}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local capacity = tonumber(ARGV[2 * i])
  local debt = debts[i]
  local fits = 0
  local retry = debt + interval - capacity
  if retry <= 0 then fits = 1; retry = 0 end
  if all == 1 then
    debt = debt + interval
    redis.call('SET', KEYS[i], now + debt, 'PX', math.floor(debt / 1000) + 1000)
  end
  out[#out + 1] = fits
  out[#out + 1] = math.floor((capacity - debt) / interval)
  out[#out + 1] = debt
  out[#out + 1] = retry
end
return out
"#;

const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Why the shared store did not answer (the caller falls back to memory).
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error("the Redis store is backing off after a failure")]
    BackingOff,
    #[error("the Redis store did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("the Redis script answered {0} values")]
    BadReply(usize),
}

pub struct SharedStore {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    script: redis::Script,
    timeout: Duration,
    prefix: String,
    health: Mutex<Health>,
    url: String,
}

struct Health {
    failing: bool,
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl SharedStore {
    pub fn new(cfg: &RedisStore) -> Result<Self, String> {
        if cfg.url.starts_with("rediss") {
            return Err("TLS to Redis (rediss://) is not built into this gateway; use redis:// on a private network or through a local TLS tunnel".into());
        }
        let client = redis::Client::open(cfg.url.as_str()).map_err(|e| e.to_string())?;
        Ok(SharedStore {
            client,
            connection: OnceCell::new(),
            script: redis::Script::new(SCRIPT),
            timeout: cfg.timeout,
            prefix: cfg.key_prefix.clone(),
            health: Mutex::new(Health {
                failing: false,
                retry_at: None,
                backoff: FIRST_BACKOFF,
            }),
            url: redacted(&cfg.url),
        })
    }

    /// Whether the last check reached Redis (`false` while this replica falls back to its
    /// own memory).
    pub fn healthy(&self) -> bool {
        !self.lock().failing
    }

    /// Checks `policy` for this client in Redis. On `Err` nothing was decided: answer from
    /// memory (and count a store error).
    pub async fn check(
        &self,
        policy: &RatePolicy,
        ip: IpAddr,
        user: Option<&str>,
    ) -> Result<Decision, SharedError> {
        if self.lock().retry_at.is_some_and(|at| Instant::now() < at) {
            return Err(SharedError::BackingOff);
        }
        let result = tokio::time::timeout(self.timeout, self.run(policy, ip, user))
            .await
            .unwrap_or(Err(SharedError::Timeout(self.timeout)));
        let mut health = self.lock();
        match &result {
            Ok(_) => {
                if health.failing {
                    log::info!("rate-limit store {} answers again", self.url);
                }
                *health = Health {
                    failing: false,
                    retry_at: None,
                    backoff: FIRST_BACKOFF,
                };
            }
            Err(e) => {
                if !health.failing {
                    log::warn!(
                        "rate-limit store {} failed ({e}); limits are enforced per replica, in memory, until it recovers",
                        self.url
                    );
                }
                health.failing = true;
                health.retry_at = Some(Instant::now() + health.backoff);
                health.backoff = (health.backoff * 2).min(MAX_BACKOFF);
            }
        }
        result
    }

    async fn run(
        &self,
        policy: &RatePolicy,
        ip: IpAddr,
        user: Option<&str>,
    ) -> Result<Decision, SharedError> {
        let mut rates: Vec<(Scope, &Rate)> = Vec::with_capacity(2);
        let mut invocation = self.script.prepare_invoke();
        if let Some(rate) = &policy.per_ip {
            rates.push((Scope::Ip, rate));
            let ip = portcullis_routing::client_ip::bucket(ip, policy.ipv6_prefix);
            invocation.key(self.key(policy, rate, "ip", &ip.to_string()));
        }
        if let (Some(rate), Some(user)) = (&policy.per_user, user) {
            rates.push((Scope::User, rate));
            invocation.key(self.key(policy, rate, "user", user));
        }
        if rates.is_empty() {
            return Ok(Decision::new(&policy.name, &[], &[]));
        }
        for (_, rate) in &rates {
            let interval = micros(rate.emission_interval()).max(1);
            invocation
                .arg(interval)
                .arg(interval.saturating_mul(u64::from(rate.count)));
        }
        let mut connection = self
            .connection
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(1);
                ConnectionManager::new_with_config(self.client.clone(), config).await
            })
            .await?
            .clone();
        let reply: Vec<i64> = invocation.invoke_async(&mut connection).await?;
        if reply.len() != 1 + 4 * rates.len() {
            return Err(SharedError::BadReply(reply.len()));
        }
        let admitted = reply[0] == 1;
        let checks: Vec<Check> = reply[1..]
            .chunks_exact(4)
            .map(|c| Check {
                allowed: admitted || c[0] == 1,
                remaining: u32::try_from(c[1].max(0)).unwrap_or(u32::MAX),
                reset: Duration::from_micros(c[2].max(0) as u64),
                retry_after: Duration::from_micros(c[3].max(0) as u64),
                next_tat: 0,
            })
            .collect();
        Ok(Decision::new(&policy.name, &rates, &checks))
    }

    /// `{prefix}:{policy}:{scope}:{count}/{period_ms}:{who}`: a policy whose rate changes gets
    /// fresh buckets instead of inheriting debts measured in another unit.
    fn key(&self, policy: &RatePolicy, rate: &Rate, scope: &str, who: &str) -> String {
        format!(
            "{}:{}:{scope}:{}/{}:{who}",
            self.prefix,
            policy.name,
            rate.count,
            rate.period.as_millis()
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The URL without its password, for logs.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_log() {
        assert_eq!(
            redacted("redis://:s3cret@10.0.0.1:6379/0"),
            "redis://***@10.0.0.1:6379/0"
        );
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}

//! The Redis store (`[rate_limit_store] kind = "redis"`): every replica checks the same
//! buckets, so a client's budget is shared exactly whichever replica it reaches.
//!
//! One Lua script per request checks every bucket that applies (per-IP and per-user) and
//! updates them only when all admit, atomically on the server, with the server's `TIME` as the
//! clock (replicas with skewed clocks still agree). The arithmetic is the in-memory limiter's
//! GCRA, in microseconds. Buckets expire once they are full again, so Redis holds only active
//! clients.
//!
//! `kind = "redis-cluster"` runs the same script on a Redis Cluster: the keys of one check
//! share a hash tag (`{...}`), so the check stays one atomic script on one slot (see
//! [`SharedStore::key`]). During a failover the slot's requests fail until a replica is
//! promoted and the slot map refreshed; they fall back like any other failure.
//!
//! The connection ([`connection`]) is redis-rs's `ConnectionManager` for a single node or its
//! `ClusterConnection` for a cluster. Every check is bounded by the store's `timeout`. When Redis is
//! down or slow, [`SharedStore::check`] fails fast: after a failure it is not asked again until
//! a backoff (250 ms doubling to 5 s) has passed, so an outage costs the request path nothing
//! while the caller answers from its in-memory limiter.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use portcullis_config::{Rate, RatePolicy, RedisCluster, RedisStore};

use connection::{Link, Target};

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
    #[error("the Redis script answered {0}")]
    Unexpected(i64),
    #[error("the value is out of the range the store holds exactly; nothing was written")]
    OutOfRange,
}

mod certificates;
mod connection;
pub mod records;

pub use records::{Poll, Put};

pub struct SharedStore {
    /// The rate-limit checks' connection, opened by the first request.
    limits: Link,
    /// The revocation and ban records' own connection, opened by the replica's sync (off the
    /// request path, so admin traffic never queues behind checks or the reverse).
    records: Link,
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
    /// A single Redis node (`kind = "redis"`).
    pub fn new(cfg: &RedisStore) -> Result<Self, String> {
        let target = Target::single(cfg)?;
        Ok(Self::build(
            target,
            cfg.timeout,
            &cfg.key_prefix,
            redacted(&cfg.url),
        ))
    }

    /// A Redis Cluster reached through its seed nodes (`kind = "redis-cluster"`).
    pub fn cluster(cfg: &RedisCluster) -> Result<Self, String> {
        let target = Target::cluster(cfg, cfg.timeout)?;
        let seeds: Vec<String> = cfg.nodes.iter().map(|n| redacted(n)).collect();
        Ok(Self::build(
            target,
            cfg.timeout,
            &cfg.key_prefix,
            format!("cluster {}", seeds.join(",")),
        ))
    }

    fn build(target: Target, timeout: Duration, prefix: &str, url: String) -> Self {
        SharedStore {
            records: Link::new(target.clone(), records::TIMEOUT),
            limits: Link::new(target, timeout),
            script: redis::Script::new(SCRIPT),
            timeout,
            prefix: prefix.to_string(),
            health: Mutex::new(Health {
                failing: false,
                retry_at: None,
                backoff: FIRST_BACKOFF,
            }),
            url,
        }
    }

    /// The store as logs name it (without a password).
    pub fn name(&self) -> &str {
        &self.url
    }

    /// Whether the last rate-limit check reached the store.
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
            invocation.key(self.key(policy, rate, Scope::Ip, &ip.to_string()));
        }
        if let (Some(rate), Some(user)) = (&policy.per_user, user) {
            rates.push((Scope::User, rate));
            invocation.key(self.key(policy, rate, Scope::User, user));
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
        let mut connection = self.limits.get().await?;
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

    /// A bucket's key: prefix, policy, scope, rate (`{count}/{period_ms}`, so a policy whose
    /// rate changes gets fresh buckets instead of inheriting debts measured in another unit)
    /// and client, with a Redis Cluster hash tag (`{...}`) chosen so that the keys one check
    /// touches share a slot:
    ///
    /// - a policy with both `per_ip` and `per_user` checks two keys at once, and a user's
    ///   bucket must be the same key whatever address it comes from, so all of the policy's
    ///   buckets share one tag, `{prefix:policy}` (one slot per such policy);
    /// - a policy with one scope checks one key, tagged whole, so its buckets spread over the
    ///   cluster.
    fn key(&self, policy: &RatePolicy, rate: &Rate, scope: Scope, who: &str) -> String {
        let (prefix, name, scope) = (&self.prefix, &policy.name, scope.as_str());
        let (count, period) = (rate.count, rate.period.as_millis());
        if policy.per_ip.is_some() && policy.per_user.is_some() {
            format!("{{{prefix}:{name}}}:{scope}:{count}/{period}:{who}")
        } else {
            // `who` is last and may hold `}`: the tag then ends early, still one fixed key.
            format!("{{{prefix}:{name}:{scope}:{count}/{period}:{who}}}")
        }
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

    fn policy(per_ip: bool, per_user: bool) -> RatePolicy {
        let rate = portcullis_config::parse_rate("10/min").unwrap();
        RatePolicy {
            name: "default".into(),
            per_ip: per_ip.then_some(rate),
            per_user: per_user.then_some(rate),
            ipv6_prefix: 64,
        }
    }

    /// The slot-relevant part of a key (Redis Cluster specification, "hash tags").
    fn tag(key: &str) -> &str {
        let open = key.find('{').unwrap();
        let close = open + 1 + key[open + 1..].find('}').unwrap();
        &key[open + 1..close]
    }

    #[test]
    fn the_keys_of_one_check_share_a_hash_tag() {
        let store = SharedStore::new(&RedisStore {
            url: "redis://127.0.0.1:1".into(),
            timeout: Duration::from_millis(50),
            key_prefix: "p".into(),
        })
        .unwrap();
        let both = policy(true, true);
        let rate = both.per_ip.unwrap();
        let ip = store.key(&both, &rate, Scope::Ip, "10.0.0.1");
        let user = store.key(&both, &rate, Scope::User, "alice");
        assert_eq!(tag(&ip), tag(&user));
        assert_eq!(ip, "{p:default}:ip:10/60000:10.0.0.1");
        let one = policy(true, false);
        let a = store.key(&one, &rate, Scope::Ip, "10.0.0.1");
        let b = store.key(&one, &rate, Scope::Ip, "10.0.0.2");
        assert_ne!(tag(&a), tag(&b), "single-scope buckets spread over slots");
    }

    #[test]
    fn passwords_never_reach_the_log() {
        assert_eq!(
            redacted("redis://:s3cret@10.0.0.1:6379/0"),
            "redis://***@10.0.0.1:6379/0"
        );
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}

//! Revocations and bans in the shared store, so every replica enforces the same ones.
//!
//! Layout (all under one hash tag, `{prefix}`, so each script below touches one cluster slot
//! and runs atomically):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{prefix}:revocations` | hash | id -> the revocation as JSON (opaque here) |
//! | `{prefix}:revocations:expiry` | sorted set | id scored by its `expires` (unix s) |
//! | `{prefix}:revocations:version` | string | bumped by every change |
//! | `{prefix}:bans` | sorted set | client scored by the end of its ban (unix ms, Redis clock) |
//! | `{prefix}:bans:version` | string | bumped by every change |
//!
//! Replicas hold both sets in memory and [`SharedStore::poll`] the two versions (one script,
//! which also returns the server's clock) a few times a second; a changed or missing version
//! makes them load the whole set again. So the request path never waits on Redis for these,
//! a replica that reconnects or restarts catches up in one poll, and a ban ends at the same
//! instant (the Redis clock's) on every replica.
//!
//! Bounds: each write names the capacity; a write that would add an entry beyond it is
//! refused ([`Put::Full`]) after expired entries are dropped. Nothing here parses the
//! revocations: the gateway owns their format.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Value;

use super::{SharedError, SharedStore};

/// Every records call is bounded by this (admin writes and the sync, never the request path).
pub(crate) const TIMEOUT: Duration = Duration::from_secs(1);

/// The versions and the server clock, as one poll saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Poll {
    /// The server's clock (unix ms).
    pub now_ms: u64,
    /// `None`: the version key is missing (an empty store: new, flushed, or restarted
    /// without persistence).
    pub revocations: Option<u64>,
    pub bans: Option<u64>,
}

/// The answer to a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// Stored; for a ban, when it ends (unix ms, Redis clock).
    Stored { until_ms: u64 },
    /// Refused: the set holds `capacity` live entries.
    Full,
}

static POLL: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local r = redis.call('GET', KEYS[1])
local b = redis.call('GET', KEYS[2])
return {now, r and tonumber(r) or -1, b and tonumber(b) or -1}
"#,
    )
});

/// KEYS: hash, expiry, version. ARGV: id, body, expires (s), capacity. Returns 1 (stored),
/// -1 (full) or -2 (`expires` is not an integer Redis holds exactly); only 1 wrote anything.
static PUT_REVOCATION: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local expires = tonumber(ARGV[3])
if not expires or expires < 0 or expires > 9007199254740991 or expires ~= math.floor(expires) then
  return -2
end
local t = redis.call('TIME')
local now = tonumber(t[1])
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. now)
for _, id in ipairs(gone) do redis.call('HDEL', KEYS[1], id) end
if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. now) end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then
  return -1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('INCR', KEYS[3])
return 1
"#,
    )
});

/// KEYS: hash, expiry, version. ARGV: id.
static DELETE_REVOCATION: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local n = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if n > 0 then redis.call('INCR', KEYS[3]) end
return n
"#,
    )
});

/// KEYS: hash, version. The version first, so a reader can tell what it loaded.
static LOAD_REVOCATIONS: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local v = redis.call('GET', KEYS[2])
return {v and tonumber(v) or -1, redis.call('HVALS', KEYS[1])}
"#,
    )
});

/// KEYS: bans, version. ARGV: client, duration (ms) or -1, until (unix ms) or -1, capacity.
/// A ban already in place is only ever extended. Returns the ban's end (unix ms), 0 (already
/// over), -1 (full) or -2 (an end Redis cannot hold exactly); only a positive end wrote.
static PUT_BAN: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = tonumber(ARGV[3])
if not until_ms then return -2 end
if until_ms < 0 then until_ms = now + (tonumber(ARGV[2]) or 0) end
if until_ms > 9007199254740991 or until_ms ~= math.floor(until_ms) then return -2 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if until_ms <= now then return 0 end
local old = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not old and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return -1 end
if old and tonumber(old) >= until_ms then return tonumber(old) end
redis.call('ZADD', KEYS[1], until_ms, ARGV[1])
redis.call('INCR', KEYS[2])
return until_ms
"#,
    )
});

/// KEYS: bans, version. ARGV: the spellings of one client (removed together, atomically).
static DELETE_BAN: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local n = 0
for i = 1, #ARGV do n = n + redis.call('ZREM', KEYS[1], ARGV[i]) end
if n > 0 then redis.call('INCR', KEYS[2]) end
return n
"#,
    )
});

/// KEYS: bans. ARGV: client. Its ban's end (unix ms), or -1.
static BAN_END: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s then return -1 end
return tonumber(s)
"#,
    )
});

/// KEYS: hash. ARGV: id. The revocation's body, or nil.
static REVOCATION_BODY: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
return redis.call('HGET', KEYS[1], ARGV[1])
"#,
    )
});

/// KEYS: bans, version. Live bans only, with their ends as strings (exact integers).
static LOAD_BANS: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('GET', KEYS[2])
return {v and tonumber(v) or -1, redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES')}
"#,
    )
});

// === impl SharedStore ===

impl SharedStore {
    fn record_key(&self, name: &str) -> String {
        format!("{{{}}}:{name}", self.prefix)
    }

    async fn run_record<T: redis::FromRedisValue>(
        &self,
        script: &LazyLock<redis::Script>,
        keys: &[String],
        args: &[String],
    ) -> Result<T, SharedError> {
        let call = async {
            let mut connection = self.records.get().await?;
            let mut invocation = script.prepare_invoke();
            for k in keys {
                invocation.key(k);
            }
            for a in args {
                invocation.arg(a);
            }
            Ok::<T, SharedError>(invocation.invoke_async(&mut connection).await?)
        };
        tokio::time::timeout(TIMEOUT, call)
            .await
            .unwrap_or(Err(SharedError::Timeout(TIMEOUT)))
    }

    /// The two versions and the server clock, in one round trip.
    pub async fn poll(&self) -> Result<Poll, SharedError> {
        let keys = [
            self.record_key("revocations:version"),
            self.record_key("bans:version"),
        ];
        let reply: Vec<i64> = self.run_record(&POLL, &keys, &[]).await?;
        let [now, revocations, bans] = reply[..] else {
            return Err(SharedError::BadReply(reply.len()));
        };
        let version = |v: i64| u64::try_from(v).ok();
        Ok(Poll {
            now_ms: u64::try_from(now).unwrap_or_default(),
            revocations: version(revocations),
            bans: version(bans),
        })
    }

    /// Every stored revocation body, with the version they were read at.
    pub async fn load_revocations(&self) -> Result<(Option<u64>, Vec<String>), SharedError> {
        let keys = [
            self.record_key("revocations"),
            self.record_key("revocations:version"),
        ];
        let reply: (i64, Vec<String>) = self.run_record(&LOAD_REVOCATIONS, &keys, &[]).await?;
        Ok((u64::try_from(reply.0).ok(), reply.1))
    }

    /// Stores (or replaces) revocation `id` with `body`, forgettable after `expires` (unix s).
    pub async fn put_revocation(
        &self,
        id: &str,
        body: &str,
        expires: u64,
        capacity: usize,
    ) -> Result<Put, SharedError> {
        let keys = self.revocation_keys();
        let args = [
            id.to_string(),
            body.to_string(),
            expires.to_string(),
            capacity.to_string(),
        ];
        let reply: i64 = self.run_record(&PUT_REVOCATION, &keys, &args).await?;
        match reply {
            1 => Ok(Put::Stored {
                until_ms: expires.saturating_mul(1000),
            }),
            -1 => Ok(Put::Full),
            -2 => Err(SharedError::OutOfRange),
            other => Err(SharedError::Unexpected(other)),
        }
    }

    /// Removes revocation `id`; whether it was there.
    pub async fn delete_revocation(&self, id: &str) -> Result<bool, SharedError> {
        let reply: i64 = self
            .run_record(
                &DELETE_REVOCATION,
                &self.revocation_keys(),
                &[id.to_string()],
            )
            .await?;
        Ok(reply > 0)
    }

    fn revocation_keys(&self) -> [String; 3] {
        [
            self.record_key("revocations"),
            self.record_key("revocations:expiry"),
            self.record_key("revocations:version"),
        ]
    }

    fn ban_keys(&self) -> [String; 2] {
        [self.record_key("bans"), self.record_key("bans:version")]
    }

    /// Bans `client` for `duration` from now on the server's clock (or extends its ban).
    pub async fn put_ban(
        &self,
        client: &str,
        duration: Duration,
        capacity: usize,
    ) -> Result<Put, SharedError> {
        // Past 2^53 the script refuses it (and writes nothing).
        let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        self.put_ban_args(client, ms.to_string(), "-1".into(), capacity)
            .await
    }

    /// Bans `client` until `until_ms` (unix ms, Redis clock): re-seeding a store that lost
    /// its bans from a replica's copy.
    pub async fn put_ban_until(
        &self,
        client: &str,
        until_ms: u64,
        capacity: usize,
    ) -> Result<Put, SharedError> {
        self.put_ban_args(client, "0".into(), until_ms.to_string(), capacity)
            .await
    }

    async fn put_ban_args(
        &self,
        client: &str,
        duration: String,
        until: String,
        capacity: usize,
    ) -> Result<Put, SharedError> {
        let args = [client.to_string(), duration, until, capacity.to_string()];
        let reply: i64 = self.run_record(&PUT_BAN, &self.ban_keys(), &args).await?;
        match reply {
            -1 => Ok(Put::Full),
            -2 => Err(SharedError::OutOfRange),
            _ => Ok(Put::Stored {
                until_ms: u64::try_from(reply).unwrap_or_default(),
            }),
        }
    }

    /// The end of `client`'s ban as the store holds it (unix ms): reading back a write
    /// whose answer was lost, to tell whether it took effect.
    pub async fn ban_end(&self, client: &str) -> Result<Option<u64>, SharedError> {
        let reply: i64 = self
            .run_record(&BAN_END, &self.ban_keys()[..1], &[client.to_string()])
            .await?;
        Ok(u64::try_from(reply).ok())
    }

    /// Revocation `id`'s body as the store holds it: reading back a write whose answer was
    /// lost, to tell whether it took effect.
    pub async fn revocation_body(&self, id: &str) -> Result<Option<String>, SharedError> {
        self.run_record(
            &REVOCATION_BODY,
            &self.revocation_keys()[..1],
            &[id.to_string()],
        )
        .await
    }

    /// Lifts the ban of a client stored under any of `spellings` (one atomic script, so
    /// all go or none); whether there was one.
    pub async fn delete_ban(&self, spellings: &[String]) -> Result<bool, SharedError> {
        let reply: i64 = self
            .run_record(&DELETE_BAN, &self.ban_keys(), spellings)
            .await?;
        Ok(reply > 0)
    }

    /// Every live ban (client, end in unix ms), with the version they were read at.
    pub async fn load_bans(&self) -> Result<(Option<u64>, Vec<(String, u64)>), SharedError> {
        let reply: (i64, Vec<Value>) = self.run_record(&LOAD_BANS, &self.ban_keys(), &[]).await?;
        let mut bans = Vec::with_capacity(reply.1.len() / 2);
        for pair in reply.1.chunks_exact(2) {
            let client: String =
                redis::from_redis_value_ref(&pair[0]).map_err(redis::RedisError::from)?;
            let until: String =
                redis::from_redis_value_ref(&pair[1]).map_err(redis::RedisError::from)?;
            // Scores come back as decimal text; unix ms are exact in a double.
            let until = until.parse::<f64>().map_or(0, |f| f as u64);
            bans.push((client, until));
        }
        Ok((u64::try_from(reply.0).ok(), bans))
    }
}

//! What replicas share for automatic certificates (the gateway's `[acme]`): the ACME account,
//! the issued certificate with its key, the lease that lets one replica order at a time, and
//! the pending challenges, so whichever replica the CA's validation reaches can answer it.
//!
//! Layout, under the records' hash tag (`{prefix}`, one cluster slot):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{prefix}:acme:NAME` | string | an opaque value the gateway names (account, certificate, challenge), with an expiry when written with one |
//! | `{prefix}:acme:lease:NAME` | string | the holder of a lease, expiring after its term |
//!
//! Bounds: each value is one document the gateway writes (an account, a PEM bundle of a few
//! KiB, a key authorization); challenges and leases expire on their own. Every call is bounded
//! by the records' timeout and never runs on the request path except the challenge lookups,
//! which only challenge requests make.

use std::sync::LazyLock;
use std::time::Duration;

use super::records::TIMEOUT;
use super::{SharedError, SharedStore};

/// KEYS: lease. ARGV: holder, term (ms). Takes the lease when it is free or already ours
/// (then extends it); 1 when held by `holder` afterwards.
static LEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return 1
"#,
    )
});

/// KEYS: lease. ARGV: holder. Frees the lease only when `holder` has it.
static RELEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#,
    )
});

// === impl SharedStore ===

impl SharedStore {
    fn acme_key(&self, name: &str) -> String {
        format!("{{{}}}:acme:{name}", self.prefix)
    }

    async fn acme_call<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, SharedError> {
        let call = async {
            let mut connection = self.records.get().await?;
            Ok::<T, SharedError>(cmd.query_async(&mut connection).await?)
        };
        tokio::time::timeout(TIMEOUT, call)
            .await
            .unwrap_or(Err(SharedError::Timeout(TIMEOUT)))
    }

    async fn acme_script(
        &self,
        script: &LazyLock<redis::Script>,
        key: String,
        args: &[String],
    ) -> Result<i64, SharedError> {
        let call = async {
            let mut connection = self.records.get().await?;
            let mut invocation = script.prepare_invoke();
            invocation.key(key);
            for a in args {
                invocation.arg(a);
            }
            Ok::<i64, SharedError>(invocation.invoke_async(&mut connection).await?)
        };
        tokio::time::timeout(TIMEOUT, call)
            .await
            .unwrap_or(Err(SharedError::Timeout(TIMEOUT)))
    }

    /// The value stored under `name`, if any.
    pub async fn acme_get(&self, name: &str) -> Result<Option<String>, SharedError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.acme_key(name));
        self.acme_call(cmd).await
    }

    /// Stores `value` under `name`, forgotten after `ttl` when one is given.
    pub async fn acme_put(
        &self,
        name: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<(), SharedError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.acme_key(name)).arg(value);
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
        }
        self.acme_call::<()>(cmd).await
    }

    pub async fn acme_delete(&self, name: &str) -> Result<(), SharedError> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.acme_key(name));
        self.acme_call::<i64>(cmd).await.map(drop)
    }

    /// Takes (or extends) lease `name` for `holder` for `term`; whether `holder` has it now.
    pub async fn acme_lease(
        &self,
        name: &str,
        holder: &str,
        term: Duration,
    ) -> Result<bool, SharedError> {
        let key = self.acme_key(&format!("lease:{name}"));
        let args = [
            holder.to_string(),
            (term.as_millis().max(1) as u64).to_string(),
        ];
        Ok(self.acme_script(&LEASE, key, &args).await? == 1)
    }

    /// The holder of lease `name`, if it is held.
    pub async fn acme_lease_holder(&self, name: &str) -> Result<Option<String>, SharedError> {
        self.acme_get(&format!("lease:{name}")).await
    }

    /// Gives lease `name` back when `holder` has it.
    pub async fn acme_release(&self, name: &str, holder: &str) -> Result<(), SharedError> {
        let key = self.acme_key(&format!("lease:{name}"));
        self.acme_script(&RELEASE, key, &[holder.to_string()])
            .await
            .map(drop)
    }
}

//! The admin API: revocations and bans (CONTRACT.md, "Shared state and the admin API").
//!
//! | endpoint | answer |
//! |---|---|
//! | `POST /revocations` `{"jti"}` or `{"sub", "issued_before"}`, optional `"expires"` | 201 `{"id", ...}` |
//! | `GET /revocations` | 200 `{"revocations": [...]}` |
//! | `DELETE /revocations/{id}` | 204 |
//! | `POST /bans` `{"client", "for"}` | 201 `{"client", "expires"}` |
//! | `GET /bans` | 200 `{"bans": [{"client", "expires"}]}` |
//! | `DELETE /bans/{client}` (URL-encoded) | 204 |
//!
//! Writes need `Authorization: Bearer <[admin] token>` (401 without or with another, 403 when
//! no token is configured); the token is compared in constant time. With a shared store a
//! write goes to the store first and answers 503 when it cannot be made there (the replicas'
//! copies stay as they were); a full table answers 507. Reads answer from this replica's copy.
//!
//! All or nothing: every failure answer (4xx, 503, 507) means nothing was written, in memory
//! or in the store. Everything a write could trip on is checked before the first write: the
//! body, the client, and the expiry, which may lie at most [`MAX_HORIZON`] ahead (a ban's
//! `for`, a revocation's `expires`), so every end stays an exact integer in the store's
//! sorted-set scores (doubles, exact to 2^53) and in the local tables' u64s. The store's
//! scripts check the same range again before writing, and answer failure only when they
//! wrote nothing.

use std::time::Duration;

use percent_encoding::percent_decode_str;
use portcullis_jwt::{Revocation, RevocationError, Revoked};
use portcullis_ratelimit::shared::{Put, SharedError};
use portcullis_suspicious::BanRange;
use serde::Deserialize;
use serde_json::json;

use super::wire::{Answer, Request};
use crate::clock::unix_secs;
use crate::replication::MAX_HORIZON;
use crate::state::State;

/// How long a revocation is kept by default when `[jwt] max_token_lifetime` is not set.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(30 * 86_400);

/// How far in the future `issued_before` may lie (clock skew between the operator and us).
const ISSUED_BEFORE_SLACK: u64 = 60;

pub fn handles(path: &str) -> bool {
    path == "/cache/purge"
        || ["/revocations", "/bans"]
            .iter()
            .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
}

pub async fn answer(request: &Request, state: &State) -> Answer {
    let (collection, item) = split(&request.path);
    let method = request.method.as_str();
    let write = !matches!(method, "GET" | "HEAD");
    if write {
        if let Some(refusal) = refuse_credential(request, state) {
            count(state, collection, refusal.status);
            return refusal;
        }
    }
    let answer = match (method, collection, item) {
        ("GET" | "HEAD", "revocations", None) => list_revocations(state),
        ("POST", "revocations", None) => add_revocation(request, state).await,
        ("DELETE", "revocations", Some(id)) => delete_revocation(&id, state).await,
        ("GET" | "HEAD", "bans", None) => list_bans(state),
        ("POST", "bans", None) => add_ban(request, state).await,
        ("DELETE", "bans", Some(client)) => delete_ban(&client, state).await,
        ("POST", "cache", Some(what)) if what == "purge" => purge_cache(request, state),
        (_, _, Some(_)) if !write => Answer::error(404, "not_found", "no such resource"),
        _ => Answer::error(405, "method_not_allowed", "method not allowed here"),
    };
    if write {
        count(state, collection, answer.status);
    }
    answer
}

/// `POST /cache/purge` with `{"path": ...}` or `{"prefix": ...}`: 200 `{"purged": N}`.
fn purge_cache(request: &Request, state: &State) -> Answer {
    if request.body.len() > portcullis_cache::purge::MAX_BODY {
        return Answer::error(413, "bad_request", "the body is too large");
    }
    let (status, body) = portcullis_cache::purge::run(&state.cache.store, &request.body);
    Answer::json(status, &body)
}

fn count(state: &State, collection: &str, status: u16) {
    let endpoint = match collection {
        "bans" => "bans",
        "cache" => "cache",
        _ => "revocations",
    };
    state
        .metrics
        .admin_writes
        .with_label_values(&[endpoint, &status.to_string()])
        .inc();
}

/// `/revocations/x%2Fy` -> (`revocations`, Some("x/y")).
fn split(path: &str) -> (&str, Option<String>) {
    let rest = path.trim_start_matches('/');
    match rest.split_once('/') {
        Some((collection, item)) => (
            collection,
            Some(percent_decode_str(item).decode_utf8_lossy().into_owned()),
        ),
        None => (rest, None),
    }
}

/// 403 without a configured token, 401 without the right bearer credential.
fn refuse_credential(request: &Request, state: &State) -> Option<Answer> {
    let snapshot = state.current();
    let Some(token) = &snapshot.config.admin.token else {
        return Some(Answer::error(
            403,
            "forbidden",
            "admin writes are disabled: no [admin] token is configured",
        ));
    };
    let presented = request
        .authorization
        .as_deref()
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| {
            let (scheme, credential) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| credential.trim())
        });
    if presented.is_some_and(|p| same_secret(p.as_bytes(), token.as_bytes())) {
        return None;
    }
    Some(Answer {
        challenge: Some("Bearer realm=\"portcullis-admin\""),
        ..Answer::error(
            401,
            "unauthorized",
            "admin writes need Authorization: Bearer <admin token>",
        )
    })
}

/// Constant-time comparison of two secrets: both are hashed first, so neither the position
/// of the first difference nor the token's length shows in the timing.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    openssl::memcmp::eq(&openssl::sha::sha256(a), &openssl::sha::sha256(b))
}

fn bad_request(message: impl Into<String>) -> Answer {
    Answer::error(400, "bad_request", message)
}

fn store_unavailable(e: impl std::fmt::Display) -> Answer {
    Answer::error(
        503,
        "store_unavailable",
        format!("the shared store cannot be written now ({e}); nothing was changed"),
    )
}

/// A write the store may have taken without saying so (its answer and the read-back both
/// failed): the one failure answer after which something may yet be written.
fn unconfirmed(e: impl std::fmt::Display) -> Answer {
    Answer::error(
        503,
        "store_unavailable",
        format!("the shared store did not confirm the write ({e}) and cannot be read back: it may still take effect; read the list to see, or repeat the write (writes are idempotent)"),
    )
}

/// How far the store's clock may have moved between a ban's write and our reading of it.
const CLOCK_SLACK_MS: u64 = 2 * 1000;

fn full(message: String) -> Answer {
    Answer::error(507, "insufficient_storage", message)
}

// === revocations ===

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevocationRequest {
    jti: Option<String>,
    sub: Option<String>,
    issued_before: Option<u64>,
    expires: Option<u64>,
}

fn revocation_json(r: &Revocation) -> serde_json::Value {
    serde_json::to_value(r).unwrap_or_default()
}

fn list_revocations(state: &State) -> Answer {
    let set = state.replicated.revocations.snapshot();
    let list: Vec<serde_json::Value> = set.iter().map(revocation_json).collect();
    Answer::json(200, &json!({ "revocations": list }))
}

/// The revocation a request asks for, with its expiry, or the 400 that refuses it.
fn requested_revocation(body: &[u8], state: &State) -> Result<Revocation, Answer> {
    let req: RevocationRequest = serde_json::from_slice(body).map_err(|e| {
        bad_request(format!(
            "expected {{\"jti\": ...}} or {{\"sub\": ..., \"issued_before\": <unix seconds>}}: {e}"
        ))
    })?;
    let now = unix_secs();
    let snapshot = state.current();
    let lifetime = snapshot.config.jwt.as_ref().map_or(DEFAULT_LIFETIME, |j| {
        j.max_token_lifetime.unwrap_or(DEFAULT_LIFETIME) + j.leeway
    });
    let (target, start) = match (req.jti, req.sub, req.issued_before) {
        (Some(jti), None, None) => (Revoked::Token { jti }, now),
        (None, Some(sub), Some(issued_before)) => {
            if issued_before > now + ISSUED_BEFORE_SLACK {
                return Err(bad_request(
                    "issued_before is in the future: it would refuse tokens not yet issued",
                ));
            }
            (
                Revoked::Subject { sub, issued_before },
                now.max(issued_before),
            )
        }
        (None, Some(_), None) => {
            return Err(bad_request("`sub` needs `issued_before` (unix seconds)"))
        }
        _ => {
            return Err(bad_request(
                "give either `jti`, or `sub` with `issued_before`",
            ))
        }
    };
    let latest = now + MAX_HORIZON.as_secs();
    let expires = match req.expires {
        Some(at) if at <= now => return Err(bad_request("expires is in the past")),
        Some(at) if at > latest => {
            return Err(bad_request(format!(
                "expires lies more than 3650 days ahead (at most {latest}, unix seconds)"
            )))
        }
        Some(at) => at,
        // A configured lifetime of centuries is held for the horizon: still "for good".
        None => start.saturating_add(lifetime.as_secs()).min(latest),
    };
    Revocation::new(target, expires).map_err(|e| bad_request(e.to_string()))
}

async fn add_revocation(request: &Request, state: &State) -> Answer {
    let revocation = match requested_revocation(&request.body, state) {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    let local = &state.replicated.revocations;
    // Re-revoking the same thing never shortens it (merged like the local set merges).
    let revocation = match local.snapshot().get(&revocation.id) {
        Some(old) => merged(revocation, old),
        None => revocation,
    };
    let snapshot = state.current();
    if let Some(store) = &snapshot.shared_limits {
        let Ok(body) = serde_json::to_string(&revocation) else {
            return Answer::error(500, "internal", "cannot encode the revocation");
        };
        match store
            .put_revocation(&revocation.id, &body, revocation.expires, local.capacity())
            .await
        {
            Ok(Put::Stored { .. }) => {}
            Ok(Put::Full) => {
                return full(RevocationError::Full(local.capacity()).to_string());
            }
            Err(e @ SharedError::OutOfRange) => return store_unavailable(e),
            // The answer was lost, not necessarily the write: read it back.
            Err(e) => match store.revocation_body(&revocation.id).await {
                Ok(Some(held)) if held == body => {}
                Ok(_) => return store_unavailable(e),
                Err(_) => return unconfirmed(e),
            },
        }
    }
    match local.insert(revocation.clone()) {
        Ok(stored) => {
            log::info!("revocation {} added through the admin API", stored.id);
            state.metrics.revocations.set(gauge(local.len()));
            Answer::json(201, &revocation_json(&stored))
        }
        // With a shared store, the store took it: this replica's copy gets it on the next
        // load even when its own bound is lower.
        Err(e) if snapshot.shared_limits.is_some() => {
            log::warn!("revocation stored in the shared store but not held here: {e}");
            Answer::json(201, &revocation_json(&revocation))
        }
        Err(e) => full(e.to_string()),
    }
}

fn merged(new: Revocation, old: &Revocation) -> Revocation {
    let target = match (&new.target, &old.target) {
        (
            Revoked::Subject { sub, issued_before },
            Revoked::Subject {
                issued_before: before,
                ..
            },
        ) => Revoked::Subject {
            sub: sub.clone(),
            issued_before: (*issued_before).max(*before),
        },
        (target, _) => target.clone(),
    };
    Revocation {
        id: new.id,
        target,
        expires: new.expires.max(old.expires),
    }
}

async fn delete_revocation(id: &str, state: &State) -> Answer {
    let local = &state.replicated.revocations;
    let snapshot = state.current();
    let mut found = false;
    if let Some(store) = &snapshot.shared_limits {
        match store.delete_revocation(id).await {
            Ok(removed) => found = removed,
            Err(e) => return store_unavailable(e),
        }
    }
    found |= local.remove(id);
    state.metrics.revocations.set(gauge(local.len()));
    if found {
        log::info!("revocation {id} deleted through the admin API");
        Answer::empty(204)
    } else {
        Answer::error(404, "not_found", "no revocation has this id")
    }
}

// === bans ===

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BanRequest {
    client: String,
    #[serde(rename = "for")]
    duration: Option<String>,
}

fn ban_json(range: BanRange, until_ms: u64) -> serde_json::Value {
    json!({"client": range.to_string(), "expires": until_ms.div_ceil(1000)})
}

fn list_bans(state: &State) -> Answer {
    let shared = &state.replicated;
    let now = shared.now_ms();
    let list: Vec<serde_json::Value> = shared
        .bans
        .list()
        .into_iter()
        .filter(|(_, until)| *until > now)
        .map(|(range, until)| ban_json(range, until))
        .collect();
    Answer::json(200, &json!({ "bans": list }))
}

async fn add_ban(request: &Request, state: &State) -> Answer {
    let req: BanRequest = match serde_json::from_slice(&request.body) {
        Ok(r) => r,
        Err(e) => {
            return bad_request(format!(
                "expected {{\"client\": \"<ip or CIDR prefix>\", \"for\": \"10m\"}}: {e}"
            ))
        }
    };
    let shared = &state.replicated;
    let client = match shared.bans.parse_client(&req.client) {
        Ok(c) => c,
        Err(e) => return bad_request(e.to_string()),
    };
    let snapshot = state.current();
    let duration = match req.duration.as_deref() {
        None => snapshot.config.suspicious.ban_duration,
        Some(text) => match portcullis_config::parse_duration(text) {
            Ok(d) if d > MAX_HORIZON => {
                return bad_request("`for` is at most 3650 days (\"3650d\")")
            }
            Ok(d) if !d.is_zero() => d,
            _ => return bad_request("`for` is a duration such as \"10m\" or \"1h\""),
        },
    };
    // A configured ban_duration of centuries is held for the horizon: still "for good".
    let duration = duration.min(MAX_HORIZON);
    let now = shared.now_ms();
    let mut until = now.saturating_add(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
    if let Some(store) = &snapshot.shared_limits {
        match store
            .put_ban(&client.to_string(), duration, shared.bans.capacity())
            .await
        {
            Ok(Put::Stored { until_ms }) => until = until_ms,
            Ok(Put::Full) => {
                return full(
                    portcullis_suspicious::BanError::Full(shared.bans.capacity()).to_string(),
                )
            }
            Err(e @ SharedError::OutOfRange) => return store_unavailable(e),
            // The answer was lost, not necessarily the write: read it back. An end at least
            // as late as this write's (less the time the answer may have taken) is this
            // write's or one it could not have shortened: either way, the ban is placed.
            Err(e) => match store.ban_end(&client.to_string()).await {
                Ok(Some(end)) if end.saturating_add(CLOCK_SLACK_MS) >= until => until = end,
                Ok(_) => return store_unavailable(e),
                Err(_) => return unconfirmed(e),
            },
        }
    }
    match shared.bans.insert(client, until, now) {
        Ok(until) => {
            log::info!("{client} banned through the admin API for {duration:?}");
            state.metrics.bans.set(gauge(shared.bans.len()));
            Answer::json(201, &ban_json(client, until))
        }
        // With a shared store, the store took it: this replica's copy gets it on the next
        // load even when its own bound is lower.
        Err(e) if snapshot.shared_limits.is_some() => {
            log::warn!("the ban of {client} is in the shared store but not held here: {e}");
            Answer::json(201, &ban_json(client, until))
        }
        Err(e) => full(e.to_string()),
    }
}

async fn delete_ban(client: &str, state: &State) -> Answer {
    let shared = &state.replicated;
    let client = match shared.bans.parse_client(client) {
        Ok(c) => c,
        Err(e) => return bad_request(e.to_string()),
    };
    let snapshot = state.current();
    let mut found = false;
    if let Some(store) = &snapshot.shared_limits {
        // An IPv6 client's network was stored bare (`2001:db8::`) before ranges were: both
        // spellings go, so a ban placed by an older replica can be lifted too.
        let mut spellings = vec![client.to_string()];
        if client.network().is_ipv6() && shared.bans.is_client_key(client) {
            spellings.push(client.network().to_string());
        }
        match store.delete_ban(&spellings).await {
            Ok(removed) => found = removed,
            Err(e) => return store_unavailable(e),
        }
    }
    found |= shared.bans.remove(client);
    // The auto-ban table's own ban and count go too, so the client starts afresh.
    if shared.bans.is_client_key(client) {
        snapshot.bans.forget(client.network());
    }
    state.metrics.bans.set(gauge(shared.bans.len()));
    if found {
        log::info!("the ban of {client} lifted through the admin API");
        Answer::empty(204)
    } else {
        Answer::error(404, "not_found", "this client is not banned")
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_collection_and_decoded_item() {
        assert_eq!(split("/revocations"), ("revocations", None));
        assert_eq!(
            split("/bans/2001%3Adb8%3A%3A%2F64"),
            ("bans", Some("2001:db8::/64".into()))
        );
        assert!(handles("/bans"));
        assert!(handles("/bans/1.2.3.4"));
        assert!(!handles("/bansx"));
    }

    #[test]
    fn secrets_compare_by_content_only() {
        assert!(same_secret(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!same_secret(b"0123456789abcdef", b"0123456789abcdeg"));
        assert!(!same_secret(b"short", b"0123456789abcdef"));
    }
}

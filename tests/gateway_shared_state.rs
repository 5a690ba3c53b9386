//! Revocations and bans shared by every replica, through the real binary and real
//! redis-server processes: a revocation made on one replica is refused by the other within
//! 1 s (a token both had cached included); a subject revoked with `issued_before` loses its
//! older tokens but not a new one; a ban on one replica is enforced by the other and ends at
//! the same instant on both; Redis killed and restarted loses nothing and fails no request;
//! a three-primary, three-replica Redis Cluster counts exactly across two gateways and survives
//! a primary's failover with no 5xx (gateway_redis_cluster.rs). Plus the admin API's
//! credential and bounds, with the memory store.

#[path = "harness/mod.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::*;
use serde_json::json;

// === revocations ===

#[test]
fn a_revocation_reaches_every_replica_within_a_second_cached_tokens_included() {
    let redis = Redis::start(free_port(), &[]);
    let app = Backend::start("app");
    let store = redis_store(redis.port, "revoke");
    let a = replica("revoke-a", &app, &store, WITH_TOKEN);
    let b = replica("revoke-b", &app, &store, WITH_TOKEN);
    let t = now();
    let stolen = token(json!({"sub": "alice", "jti": "stolen-1", "iat": t - 5, "exp": t + 600}));
    let other = token(json!({"sub": "alice", "jti": "other-1", "iat": t - 5, "exp": t + 600}));
    // Both replicas verify the token and then answer it from their caches.
    for gw in [&a, &b] {
        assert_eq!(api(gw, &stolen), 200);
        assert_eq!(api(gw, &stolen), 200);
        assert!(gw.metric("portcullis_jwt_cache_hits_total", &[]) >= 1.0);
    }

    let created = admin(&a, "POST", "/revocations", Some(json!({"jti": "stolen-1"})));
    assert_eq!(
        created.status,
        201,
        "{:?}",
        String::from_utf8_lossy(&created.body)
    );
    let revoked_at = Instant::now();
    let id = created.json()["id"].as_str().unwrap().to_string();
    assert_eq!(created.json()["jti"], "stolen-1");
    let expires = created.json()["expires"].as_u64().unwrap();
    assert!(
        expires >= t + 3600 && expires <= now() + 3600 + 31,
        "max_token_lifetime + leeway"
    );

    assert_eq!(
        api(&a, &stolen),
        401,
        "refused at once where it was revoked"
    );
    assert!(
        wait_until(Duration::from_secs(1), || api(&b, &stolen) == 401),
        "the other replica refuses it within 1 s"
    );
    let reached = revoked_at.elapsed();
    eprintln!("revocation reached the second replica in {reached:?}");
    let refused = b.request("GET", "/api/me", &[("Authorization", &stolen)], b"");
    assert_eq!(refused.error_code(), "unauthorized");
    assert!(refused
        .header("www-authenticate")
        .is_some_and(|v| v.contains("invalid_token") && v.contains("revoked")));
    assert_eq!(api(&a, &other), 200, "other tokens of the user still pass");
    assert_eq!(api(&b, &other), 200);
    assert!(b.metric("portcullis_revoked_requests_total", &[]) >= 1.0);
    assert!(b.exported_metric("portcullis_revocations", &[]) >= 1.0);

    let listed = request(b.admin, "GET", "/revocations", &[], b"");
    assert_eq!(listed.status, 200, "reading needs no credential");
    let list = listed.json()["revocations"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["expires"], expires);

    // A replica started afterwards loads the whole set before its first poll ends.
    let c = replica("revoke-c", &app, &store, WITH_TOKEN);
    assert!(wait_until(Duration::from_secs(1), || api(&c, &stolen) == 401));

    assert_eq!(
        admin(&b, "DELETE", &format!("/revocations/{id}"), None).status,
        204
    );
    assert_eq!(
        admin(&b, "DELETE", &format!("/revocations/{id}"), None).status,
        404
    );
    assert!(
        wait_until(Duration::from_secs(1), || api(&a, &stolen) == 200),
        "deleting it lets the token through again everywhere"
    );
}

#[test]
fn a_revoked_subject_loses_its_older_tokens_but_not_a_new_one() {
    let redis = Redis::start(free_port(), &[]);
    let app = Backend::start("app");
    let store = redis_store(redis.port, "subject");
    let a = replica("subject-a", &app, &store, WITH_TOKEN);
    let b = replica("subject-b", &app, &store, WITH_TOKEN);
    let t = now();
    let old = token(json!({"sub": "bob", "iat": t - 100, "exp": t + 600}));
    let older = token(json!({"sub": "bob", "iat": t - 300, "exp": t + 600}));
    let carol = token(json!({"sub": "carol", "iat": t - 300, "exp": t + 600}));
    for gw in [&a, &b] {
        assert_eq!(api(gw, &old), 200);
    }
    let created = admin(
        &a,
        "POST",
        "/revocations",
        Some(json!({"sub": "bob", "issued_before": t - 50})),
    );
    assert_eq!(created.status, 201);
    assert_eq!(created.json()["sub"], "bob");
    assert_eq!(created.json()["issued_before"], t - 50);
    assert!(wait_until(Duration::from_secs(1), || api(&b, &old) == 401));
    for gw in [&a, &b] {
        assert_eq!(api(gw, &old), 401);
        assert_eq!(api(gw, &older), 401);
        assert_eq!(api(gw, &carol), 200, "another subject is untouched");
    }
    // The user logs in again: a token issued after the revocation passes everywhere.
    let fresh = token(json!({"sub": "bob", "iat": now(), "exp": now() + 600}));
    assert_eq!(api(&a, &fresh), 200);
    assert_eq!(api(&b, &fresh), 200);
}

#[test]
fn admin_writes_need_the_token_and_the_tables_are_bounded() {
    let app = Backend::start("app");
    let gw = replica("admin-memory", &app, "", WITH_TOKEN);
    let body = json!({"jti": "x-1"}).to_string();
    let bare = request(gw.admin, "POST", "/revocations", &[], body.as_bytes());
    assert_eq!(bare.status, 401);
    assert_eq!(bare.error_code(), "unauthorized");
    assert!(bare
        .header("www-authenticate")
        .is_some_and(|v| v.starts_with("Bearer")));
    let wrong = request(
        gw.admin,
        "POST",
        "/revocations",
        &[("Authorization", "Bearer admin-token-e2e-0123456789abcdeX")],
        body.as_bytes(),
    );
    assert_eq!(wrong.status, 401);
    assert_eq!(
        request(gw.admin, "GET", "/revocations", &[], b"").status,
        200
    );

    // Bad documents are 400 with the JSON error.
    for bad in [
        json!({}),
        json!({"sub": "a"}),
        json!({"jti": "a", "sub": "b", "issued_before": 1}),
        json!({"jti": "a", "expires": 1}),
        json!({"jti": "a", "surprise": 1}),
        json!({"sub": "a", "issued_before": now() + 3600}),
    ] {
        let r = admin(&gw, "POST", "/revocations", Some(bad.clone()));
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (400, "bad_request"),
            "{bad}"
        );
    }

    // The memory store: revocations live in this process, bounded by max_revocations (3).
    let t = now();
    let first = token(json!({"sub": "dave", "jti": "x-1", "iat": t, "exp": t + 600}));
    assert_eq!(api(&gw, &first), 200);
    for jti in ["x-1", "x-2", "x-3"] {
        assert_eq!(
            admin(&gw, "POST", "/revocations", Some(json!({"jti": jti}))).status,
            201
        );
    }
    assert_eq!(api(&gw, &first), 401);
    let full = admin(&gw, "POST", "/revocations", Some(json!({"jti": "x-4"})));
    assert_eq!(full.status, 507);
    assert_eq!(full.error_code(), "insufficient_storage");
    // Re-revoking a held one is an update, not a new entry.
    assert_eq!(
        admin(&gw, "POST", "/revocations", Some(json!({"jti": "x-2"}))).status,
        201
    );
    assert!(
        gw.metric(
            "portcullis_admin_writes_total",
            &[("endpoint", "revocations"), ("status", "507")]
        ) >= 1.0
    );

    // A reload keeps revocations and bans held in memory.
    let banned = admin(
        &gw,
        "POST",
        "/bans",
        Some(json!({"client": "203.0.113.9", "for": "10m"})),
    );
    assert_eq!(banned.status, 201);
    assert_eq!(banned.json()["client"], "203.0.113.9");
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    gw.reload(&text.replace("grace_period = \"3s\"", "grace_period = \"4s\""));
    assert!(wait_until(Duration::from_secs(5), || {
        gw.metric("portcullis_config_reloads_total", &[("result", "success")]) >= 1.0
    }));
    assert_eq!(api(&gw, &first), 401, "revocations survive a reload");
    assert_eq!(
        from(&gw, "203.0.113.9", "/").status,
        403,
        "bans survive a reload"
    );
    assert_eq!(from(&gw, "203.0.113.10", "/").status, 200);

    // Without a configured token, writes are refused outright.
    let locked = replica("admin-locked", &app, "", "");
    let r = admin(
        &locked,
        "POST",
        "/bans",
        Some(json!({"client": "203.0.113.9"})),
    );
    assert_eq!((r.status, r.error_code().as_str()), (403, "forbidden"));
    assert_eq!(request(locked.admin, "GET", "/bans", &[], b"").status, 200);
}

// === bans ===

#[test]
fn a_ban_on_one_replica_is_enforced_by_the_other_and_ends_at_the_same_time() {
    let redis = Redis::start(free_port(), &[]);
    let app = Backend::start("app");
    let store = redis_store(redis.port, "bans");
    let a = replica("bans-a", &app, &store, WITH_TOKEN);
    let b = replica("bans-b", &app, &store, WITH_TOKEN);
    let client = "198.51.100.7";
    assert_eq!(from(&b, client, "/").status, 200);
    let placed = admin(
        &a,
        "POST",
        "/bans",
        Some(json!({"client": client, "for": "10m"})),
    );
    assert_eq!(placed.status, 201);
    assert_eq!(from(&a, client, "/").status, 403);
    let reached = time_until(Duration::from_secs(1), || {
        from(&b, client, "/").status == 403
    });
    eprintln!("ban reached the second replica in {reached:?}");
    assert!(
        reached.is_some(),
        "the other replica enforces it within 1 s"
    );
    let refused = from(&b, client, "/");
    assert_eq!(refused.error_code(), "forbidden");
    assert_eq!(
        from(&b, "198.51.100.8", "/").status,
        200,
        "only that client"
    );

    // Listed alike, with the same end, by both.
    let list = |gw: &Gateway| request(gw.admin, "GET", "/bans", &[], b"").json()["bans"].clone();
    assert_eq!(list(&a), list(&b));
    assert_eq!(list(&b)[0]["client"], client);
    assert!(b.exported_metric("portcullis_bans", &[]) >= 1.0);

    // IPv6 clients are banned per /64, written as the prefix.
    let v6 = admin(
        &b,
        "POST",
        "/bans",
        Some(json!({"client": "2001:db8:7:7::/64", "for": "10m"})),
    );
    assert_eq!(v6.status, 201);
    assert!(wait_until(Duration::from_secs(1), || from(
        &a,
        "2001:db8:7:7::abcd",
        "/"
    )
    .status
        == 403));

    // Lifted on one, free on both.
    assert_eq!(
        admin(&b, "DELETE", &format!("/bans/{client}"), None).status,
        204
    );
    assert_eq!(
        admin(&a, "DELETE", "/bans/2001%3Adb8%3A7%3A7%3A%3A%2F64", None).status,
        204
    );
    assert!(wait_until(Duration::from_secs(1), || from(&a, client, "/")
        .status
        == 200));
    assert_eq!(from(&b, client, "/").status, 200);

    // A short ban ends on both replicas together (the store's clock decides).
    let short = admin(
        &a,
        "POST",
        "/bans",
        Some(json!({"client": "198.51.100.9", "for": "2s"})),
    );
    assert_eq!(short.status, 201);
    assert!(wait_until(Duration::from_secs(1), || from(
        &b,
        "198.51.100.9",
        "/"
    )
    .status
        == 403));
    assert!(wait_until(Duration::from_secs(4), || from(
        &a,
        "198.51.100.9",
        "/"
    )
    .status
        == 200));
    assert!(
        wait_until(Duration::from_millis(100), || from(&b, "198.51.100.9", "/")
            .status
            == 200),
        "ends on the other replica at the same instant"
    );
}

#[test]
fn an_auto_ban_on_one_replica_is_enforced_by_the_other() {
    let redis = Redis::start(free_port(), &[]);
    let app = Backend::start("app");
    let store = redis_store(redis.port, "autoban");
    let a = replica("autoban-a", &app, &store, WITH_TOKEN);
    let b = replica("autoban-b", &app, &store, WITH_TOKEN);
    let attacker = "192.0.2.66";
    for _ in 0..2 {
        assert_eq!(
            from(&a, attacker, "/x?q=%3Cscript%3Ealert(1)%3C/script%3E").status,
            403
        );
    }
    assert!(
        wait_until(Duration::from_secs(1), || from(&b, attacker, "/").status
            == 403),
        "the attacker cannot move to the next replica"
    );
    let bans = request(b.admin, "GET", "/bans", &[], b"").json()["bans"].clone();
    assert_eq!(bans[0]["client"], attacker);
    // Lifting it on b frees the client on a too, the ban list's own ban included.
    assert_eq!(
        admin(&b, "DELETE", &format!("/bans/{attacker}"), None).status,
        204
    );
    assert!(wait_until(Duration::from_secs(1), || from(
        &a, attacker, "/"
    )
    .status
        == 200));
}

// === Redis going away ===

#[test]
fn redis_killed_and_restarted_loses_no_revocation_and_fails_no_request() {
    let port = free_port();
    let mut redis = Redis::start(port, &[]);
    let app = Backend::start("app");
    let store = redis_store(port, "restart");
    let a = replica("restart-a", &app, &store, WITH_TOKEN);
    let b = replica("restart-b", &app, &store, WITH_TOKEN);
    let t = now();
    let stolen = token(json!({"sub": "erin", "jti": "stolen-2", "iat": t, "exp": t + 600}));
    let good = token(json!({"sub": "erin", "jti": "good-2", "iat": t, "exp": t + 600}));
    assert_eq!(
        admin(&a, "POST", "/revocations", Some(json!({"jti": "stolen-2"}))).status,
        201
    );
    assert!(wait_until(Duration::from_secs(1), || api(&b, &stolen) == 401));

    // Redis dies: the copies keep being enforced, limits fall back to memory, nothing 5xx.
    redis.kill();
    assert!(wait_until(Duration::from_secs(5), || {
        b.metric(
            "portcullis_shared_state_errors_total",
            &[("operation", "poll")],
        ) >= 1.0
    }));
    let mut statuses = Vec::new();
    for gw in [&a, &b] {
        statuses.push(api(gw, &stolen));
        statuses.push(api(gw, &good));
        statuses.push(from(gw, "192.0.2.1", "/open").status);
    }
    assert_eq!(statuses, [401, 200, 200, 401, 200, 200]);
    assert!(
        a.metric("portcullis_rate_limit_store_errors_total", &[]) >= 1.0,
        "fallback counted"
    );
    let down = admin(&a, "POST", "/revocations", Some(json!({"jti": "later"})));
    assert_eq!(
        (down.status, down.error_code().as_str()),
        (503, "store_unavailable")
    );
    let down = admin(&a, "POST", "/bans", Some(json!({"client": "192.0.2.9"})));
    assert_eq!(down.status, 503);

    // Redis comes back empty (no persistence): the replicas write their copies back, so a
    // replica started now still refuses the token.
    let _redis = Redis::start(port, &[]);
    assert!(
        wait_until(Duration::from_secs(5), || redis_cli(
            port,
            &["HLEN", "{restart}:revocations"]
        )
        .is_some_and(|n| n.trim() == "1")),
        "the revocation is written back"
    );
    let c = replica("restart-c", &app, &store, WITH_TOKEN);
    assert!(wait_until(Duration::from_secs(1), || api(&c, &stolen) == 401));
    assert_eq!(api(&c, &good), 200);
    assert_eq!(
        admin(&c, "POST", "/revocations", Some(json!({"jti": "later"}))).status,
        201
    );
    assert!(wait_until(Duration::from_secs(1), || {
        request(a.admin, "GET", "/revocations", &[], b"").json()["revocations"]
            .as_array()
            .is_some_and(|l| l.len() == 2)
    }));
}

// === Redis Cluster ===

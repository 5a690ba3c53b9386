//! The Redis rate-limit store through the real binary and a real redis-server: two replicas
//! share one budget exactly; with Redis down each replica falls back to memory, counts store
//! errors and never answers 5xx; when Redis comes back the budget is shared again.

#[path = "harness/mod.rs"]
mod harness;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use harness::*;

struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    fn start(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/install-deps installs it)");
        assert!(
            wait_until(Duration::from_secs(10), || std::net::TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "redis-server on {port} did not start"
        );
        Redis { port, child }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn replica(name: &str, app: &Backend, redis_port: u16) -> Gateway {
    replica_with(name, app, redis_port, "4/min")
}

fn replica_with(name: &str, app: &Backend, redis_port: u16, rate: &str) -> Gateway {
    let (port, admin) = (free_port(), free_port());
    let config = server_section(port, admin, "")
        + &format!("[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n", app.port)
        + &format!("[rate_limits.default]\nper_ip = \"{rate}\"\n\n")
        + &format!("[rate_limit_store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{redis_port}\"\ntimeout = \"100ms\"\nkey_prefix = \"{name}:\"\n\n")
        + "[[routes]]\nname = \"api\"\npath_prefix = \"/\"\nupstream = \"app\"\n";
    Gateway::start(name, port, admin, &config, &[])
}

fn replicas(name: &str, app: &Backend, redis_port: u16) -> (Gateway, Gateway) {
    // Both replicas use the same key prefix: they share the buckets.
    let a = replica(name, app, redis_port);
    let b = replica(name, app, redis_port);
    (a, b)
}

/// Redis unusable: each replica spends its own budget of 4, in memory, and never fails.
fn each_limits_alone(a: &Gateway, b: &Gateway) {
    for gw in [a, b] {
        let statuses: Vec<u16> = (0..5).map(|_| gw.get("/x").status).collect();
        assert_eq!(
            statuses,
            [200, 200, 200, 200, 429],
            "per replica, in memory"
        );
    }
}

#[test]
fn two_replicas_share_one_budget_exactly() {
    let redis = Redis::start(free_port());
    let app = Backend::start("app");
    let (a, b) = replicas("shared", &app, redis.port);
    let statuses: Vec<u16> = (0..6)
        .map(|i| {
            if i % 2 == 0 {
                a.get("/x").status
            } else {
                b.get("/x").status
            }
        })
        .collect();
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429]);
    let refused = b.get("/x");
    assert_eq!(refused.header("x-ratelimit-remaining"), Some("0"));
    assert!(refused
        .header("retry-after")
        .is_some_and(|v| v.parse::<u64>().is_ok_and(|s| s >= 1)));
    assert_eq!(
        a.exported_metric("portcullis_rate_limit_store_errors_total", &[]),
        0.0
    );
}

#[test]
fn redis_killed_mid_run_falls_back_without_5xx_and_shared_counting_resumes() {
    let redis_port = free_port();
    let redis = Redis::start(redis_port);
    let app = Backend::start("app");
    let (a, b) = replicas("failover", &app, redis_port);
    assert_eq!(a.get("/x").status, 200);
    assert_eq!(b.get("/x").status, 200);
    assert_eq!(
        a.exported_metric("portcullis_rate_limit_store_errors_total", &[]),
        0.0
    );

    // Redis dies mid-run: each replica answers from its own memory, never 5xx.
    drop(redis);
    each_limits_alone(&a, &b);
    assert!(a.metric("portcullis_rate_limit_store_errors_total", &[]) >= 1.0);
    assert!(b.metric("portcullis_rate_limit_store_errors_total", &[]) >= 1.0);

    // Redis is back (empty): once the replicas' backoff ends, they count in Redis again.
    let _redis = Redis::start(redis_port);
    assert!(
        wait_until(Duration::from_secs(15), || {
            let before = a.metric("portcullis_rate_limit_store_errors_total", &[]);
            let status = a.get("/probe").status;
            status == 200 && a.metric("portcullis_rate_limit_store_errors_total", &[]) == before
        }),
        "replica a uses Redis again"
    );
    assert!(wait_until(Duration::from_secs(15), || {
        let before = b.metric("portcullis_rate_limit_store_errors_total", &[]);
        let _ = b.get("/probe");
        b.metric("portcullis_rate_limit_store_errors_total", &[]) == before
    }));
    // Each replica's first request answered by Redis took one token of the fresh shared
    // bucket of 4: together the replicas now allow exactly the 2 left.
    let allowed = (0..8)
        .map(|i| {
            if i % 2 == 0 {
                a.get("/x").status
            } else {
                b.get("/x").status
            }
        })
        .filter(|s| *s == 200)
        .count();
    assert_eq!(allowed, 2, "shared counting resumed across both replicas");
    let refused = a.get("/x");
    assert_eq!(refused.status, 429);
}

#[test]
fn a_replica_started_without_redis_limits_in_memory_and_never_fails() {
    let redis_port = free_port();
    let app = Backend::start("app");
    let (a, b) = replicas("down", &app, redis_port);
    // No redis-server: every check falls back to the replica's own memory.
    each_limits_alone(&a, &b);
    assert!(a.metric("portcullis_rate_limit_store_errors_total", &[]) >= 5.0);
}

/// The number of keys in the Redis at `port` (RESP over a plain socket), if it answers.
fn dbsize(port: u16) -> Option<u64> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    conn.write_all(b"DBSIZE\r\n").ok()?;
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line).ok()?;
    line.trim().strip_prefix(':')?.parse().ok()
}

#[test]
fn redis_restarting_under_continuous_load_fails_no_request() {
    let redis_port = free_port();
    let redis = Redis::start(redis_port);
    let app = Backend::start("app");
    let gw = replica_with("restart-load", &app, redis_port, "1000000/min");
    let port = gw.port;
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    statuses.push(request(port, "GET", "/x", &[], b"").status);
                }
                statuses
            })
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(10), || dbsize(redis_port)
            .is_some_and(|n| n > 0)),
        "the load counts in Redis"
    );
    // Redis goes away while requests keep coming: the replica notices and falls back.
    drop(redis);
    assert!(
        wait_until(Duration::from_secs(10), || {
            gw.metric("portcullis_rate_limit_store_errors_total", &[]) >= 1.0
        }),
        "store errors counted during the outage"
    );
    // Redis comes back, empty: the replica counts there again while the load goes on.
    let _redis = Redis::start(redis_port);
    assert!(
        wait_until(Duration::from_secs(20), || dbsize(redis_port)
            .is_some_and(|n| n > 0)),
        "the replica counts in Redis again"
    );
    stop.store(true, Ordering::Relaxed);
    let statuses: Vec<u16> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert!(statuses.len() >= 20, "the load ran: {}", statuses.len());
    let failed: Vec<&u16> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed across the Redis restart: {failed:?}",
        failed.len(),
        statuses.len()
    );
}

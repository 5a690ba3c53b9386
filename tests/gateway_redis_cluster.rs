//! A local three-primary, three-replica Redis Cluster started by the test: two gateways count
//! exactly across it, and a primary killed mid-run (its replica promoted) costs no 5xx and
//! exact counting resumes.

#[path = "harness/mod.rs"]
mod harness;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use harness::*;
use serde_json::json;

/// A loopback port whose cluster-bus twin (port + 10000) is free too.
fn cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

struct Cluster {
    nodes: Vec<Redis>,
}

/// One line of `CLUSTER NODES`.
struct Node {
    port: u16,
    flags: String,
    slots: Vec<(u16, u16)>,
}

impl Cluster {
    /// Three primaries and three replicas on loopback, `cluster_state:ok` on every node.
    fn start() -> Cluster {
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < 6 {
            let p = cluster_port();
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        let nodes: Vec<Redis> = ports
            .iter()
            .map(|&p| {
                let conf = format!("nodes-{p}.conf");
                Redis::start(
                    p,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        &conf,
                        "--cluster-node-timeout",
                        "1000",
                        // Fail over however long the replica last heard from its primary
                        // (a quiet test cluster's replicas may look stale otherwise).
                        "--cluster-replica-validity-factor",
                        "0",
                    ],
                )
            })
            .collect();
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Cluster { nodes };
        assert!(
            wait_until(Duration::from_secs(20), || cluster.nodes.iter().all(|n| {
                redis_cli(n.port, &["CLUSTER", "INFO"])
                    .is_some_and(|i| i.contains("cluster_state:ok"))
            })),
            "the cluster did not reach cluster_state:ok"
        );
        cluster
    }

    fn seeds(&self) -> String {
        self.nodes[..3]
            .iter()
            .map(|n| format!("\"redis://127.0.0.1:{}\"", n.port))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn alive(&self) -> impl Iterator<Item = &Redis> {
        self.nodes
            .iter()
            .filter(|n| redis_cli(n.port, &["PING"]).is_some_and(|o| o.trim() == "PONG"))
    }

    /// `CLUSTER NODES` as a live node sees it.
    fn topology(&self) -> Vec<Node> {
        let Some(text) = self
            .alive()
            .find_map(|n| redis_cli(n.port, &["CLUSTER", "NODES"]))
        else {
            return Vec::new();
        };
        text.lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let port = f
                    .get(1)?
                    .split('@')
                    .next()?
                    .rsplit(':')
                    .next()?
                    .parse()
                    .ok()?;
                let slots = f[8..]
                    .iter()
                    .filter(|s| !s.starts_with('['))
                    .filter_map(|s| match s.split_once('-') {
                        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                        None => s.parse().ok().map(|x| (x, x)),
                    })
                    .collect();
                Some(Node {
                    port,
                    flags: f[2].to_string(),
                    slots,
                })
            })
            .collect()
    }

    /// The port of the live primary serving `slot`.
    fn primary_of(&self, slot: u16) -> Option<u16> {
        self.topology()
            .into_iter()
            .find(|n| {
                n.flags.contains("master")
                    && !n.flags.contains("fail")
                    && n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
            })
            .map(|n| n.port)
    }

    fn slot(&self, key: &str) -> u16 {
        redis_cli(self.nodes[0].port, &["CLUSTER", "KEYSLOT", key])
            .and_then(|s| s.trim().parse().ok())
            .expect("CLUSTER KEYSLOT")
    }

    fn kill(&mut self, port: u16) {
        if let Some(n) = self.nodes.iter_mut().find(|n| n.port == port) {
            n.kill();
        }
    }
}

/// The per-IP bucket key of `ip` under the `open` policy (one scope: the whole key is the
/// hash tag), as the gateway writes it.
fn bucket_key(prefix: &str, ip: &str) -> String {
    format!("{{{prefix}:open:ip:5/60000:{ip}}}")
}

/// Alternating between the replicas, how many of `n` requests from `ip` were admitted, and
/// every status seen.
fn spend(a: &Gateway, b: &Gateway, ip: &str, n: usize) -> (usize, Vec<u16>) {
    let statuses: Vec<u16> = (0..n)
        .map(|i| from(if i % 2 == 0 { a } else { b }, ip, "/open").status)
        .collect();
    (statuses.iter().filter(|s| **s == 200).count(), statuses)
}

#[test]
fn a_redis_cluster_counts_exactly_and_survives_a_primary_failover() {
    let mut cluster = Cluster::start();
    let app = Backend::start("app");
    let prefix = "cl";
    let store = format!(
        "[rate_limit_store]\nkind = \"redis-cluster\"\nnodes = [{}]\ntimeout = \"200ms\"\nkey_prefix = \"{prefix}\"",
        cluster.seeds()
    );
    let a = replica("cluster-a", &app, &store, WITH_TOKEN);
    let b = replica("cluster-b", &app, &store, WITH_TOKEN);

    // The primary holding the shared-state slot: clients whose buckets live there too.
    let records_slot = cluster.slot(&format!("{{{prefix}}}:revocations"));
    let victim = cluster
        .primary_of(records_slot)
        .expect("a primary for the records");
    let clients: Vec<String> = (1..=250)
        .map(|i| format!("10.9.{}.{}", i / 100, i % 100 + 1))
        .filter(|ip| cluster.primary_of(cluster.slot(&bucket_key(prefix, ip))) == Some(victim))
        .take(3)
        .collect();
    assert_eq!(clients.len(), 3, "clients on the victim's slots");

    // Exact shared counting across both gateways, on the cluster.
    let (admitted, statuses) = spend(&a, &b, &clients[0], 8);
    assert_eq!(admitted, 5, "5/min shared exactly: {statuses:?}");
    assert_eq!(
        a.exported_metric("portcullis_rate_limit_store_errors_total", &[]),
        0.0
    );
    // Revocations and bans work on the cluster as well.
    let t = now();
    let stolen = token(json!({"sub": "frank", "jti": "cluster-1", "iat": t, "exp": t + 600}));
    assert_eq!(api(&b, &stolen), 200);
    assert_eq!(
        admin(
            &a,
            "POST",
            "/revocations",
            Some(json!({"jti": "cluster-1"}))
        )
        .status,
        201
    );
    assert!(wait_until(Duration::from_secs(1), || api(&b, &stolen) == 401));
    assert_eq!(
        admin(&b, "POST", "/bans", Some(json!({"client": "10.8.0.1"}))).status,
        201
    );
    assert!(wait_until(Duration::from_secs(1), || from(
        &a, "10.8.0.1", "/"
    )
    .status
        == 403));

    // Continuous load on both gateways while the victim dies and its replica takes over.
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = [a.port, b.port]
        .into_iter()
        .map(|port| {
            let stop = stop.clone();
            let auth = token(json!({"sub": "load", "iat": now(), "exp": now() + 600}));
            let client = clients[1].clone();
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    statuses.push(
                        request(port, "GET", "/open", &[("X-Forwarded-For", &client)], b"").status,
                    );
                    statuses.push(
                        request(port, "GET", "/api/x", &[("Authorization", &auth)], b"").status,
                    );
                }
                statuses
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    cluster.kill(victim);
    let promoted = time_until(Duration::from_secs(30), || {
        cluster
            .primary_of(records_slot)
            .is_some_and(|p| p != victim)
    });
    eprintln!("replica promoted {promoted:?} after the primary was killed");
    assert!(promoted.is_some(), "a replica took over the victim's slots");
    // Both gateways use the cluster again: a check on the victim's former slots is answered
    // by Redis (no store error), once the slot map is refreshed and the backoff is over.
    for gw in [&a, &b] {
        let reached = time_until(Duration::from_secs(20), || {
            let before = gw.metric("portcullis_rate_limit_store_errors_total", &[]);
            let status = from(gw, &clients[1], "/open").status;
            status < 500 && gw.metric("portcullis_rate_limit_store_errors_total", &[]) == before
        });
        eprintln!(
            "gateway {} counts on the cluster again after {reached:?}",
            gw.port
        );
        assert!(reached.is_some(), "the gateway counts on the cluster again");
    }
    stop.store(true, Ordering::Relaxed);
    let statuses: Vec<u16> = load.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let failed: Vec<&u16> = statuses.iter().filter(|s| **s >= 500).collect();
    assert!(statuses.len() >= 20, "the load ran: {}", statuses.len());
    assert!(
        failed.is_empty(),
        "{} of {} requests answered 5xx: {failed:?}",
        failed.len(),
        statuses.len()
    );
    assert!(
        a.metric("portcullis_rate_limit_store_errors_total", &[])
            + b.metric("portcullis_rate_limit_store_errors_total", &[])
            >= 1.0,
        "the fallback was used and counted during the failover"
    );

    // Exact counting resumed, on the promoted primary's slots.
    let (admitted, statuses) = spend(&a, &b, &clients[2], 8);
    assert_eq!(admitted, 5, "exact again after the failover: {statuses:?}");
    // The revocation survived the failover (it was replicated), on a new replica too.
    let c = replica("cluster-c", &app, &store, WITH_TOKEN);
    assert!(wait_until(Duration::from_secs(2), || api(&c, &stolen) == 401));
}

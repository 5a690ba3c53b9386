//! Upstream failures and load balancing: 502 when down, 504 when slow, round-robin with
//! failover, and active health checks taking a peer out and back.

#[path = "harness/mod.rs"]
mod harness;

use std::sync::atomic::Ordering;
use std::time::Duration;

use harness::*;

#[test]
fn a_dead_upstream_is_502_and_a_slow_one_504() {
    let slow = Backend::start_with("slow", Duration::from_secs(3), &[]);
    let dead = free_port();
    let (port, admin) = (free_port(), free_port());
    let config = server_section(port, admin, "")
        + &format!(
            "[upstreams.dead]\npeers = [\"127.0.0.1:{dead}\"]\nconnect_timeout = \"1s\"\n\n"
        )
        + &format!(
            "[upstreams.slow]\npeers = [\"127.0.0.1:{}\"]\nread_timeout = \"500ms\"\n\n",
            slow.port
        )
        + "[[routes]]\nname = \"dead\"\npath_prefix = \"/dead\"\nupstream = \"dead\"\n\n"
        + "[[routes]]\nname = \"slow\"\npath_prefix = \"/slow\"\nupstream = \"slow\"\n";
    let gw = Gateway::start("upstream-errors", port, admin, &config, &[]);
    let resp = gw.get("/dead");
    assert_eq!(
        (resp.status, resp.error_code()),
        (502, "bad_gateway".to_string())
    );
    let resp = gw.get("/slow/x");
    assert_eq!(
        (resp.status, resp.error_code()),
        (504, "upstream_timeout".to_string())
    );
    assert!(
        resp.elapsed < Duration::from_millis(1900),
        "answered after {:?}",
        resp.elapsed
    );
    assert!(
        gw.metric(
            "portcullis_upstream_requests_total",
            &[("upstream", "dead"), ("outcome", "connect_error")]
        ) >= 1.0
    );
    assert!(
        gw.metric(
            "portcullis_upstream_requests_total",
            &[("upstream", "slow"), ("outcome", "timeout")]
        ) >= 1.0
    );
}

#[test]
fn round_robin_spreads_and_fails_over_to_the_live_peer() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let dead = free_port();
    let (port, admin) = (free_port(), free_port());
    let config = server_section(port, admin, "")
        + &format!("[upstreams.pool]\npeers = [\"127.0.0.1:{}\", \"127.0.0.1:{}\", \"127.0.0.1:{dead}\"]\nconnect_timeout = \"1s\"\n\n", a.port, b.port)
        + "[[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"pool\"\n";
    let gw = Gateway::start("round-robin", port, admin, &config, &[]);
    let statuses: Vec<u16> = (0..12).map(|i| gw.get(&format!("/x/{i}")).status).collect();
    assert_eq!(
        statuses,
        vec![200; 12],
        "the dead peer is skipped by failover"
    );
    assert!(
        a.count() >= 4 && b.count() >= 4,
        "a={} b={}",
        a.count(),
        b.count()
    );
}

#[test]
fn health_checks_take_a_peer_out_and_bring_it_back() {
    let a = Backend::start("a");
    let b = Backend::start("b");
    let (port, admin) = (free_port(), free_port());
    let config = server_section(port, admin, "")
        + &format!(
            "[upstreams.pool]\npeers = [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\nhealth_check = {{ path = \"/health\", interval = \"200ms\", unhealthy_after = 1, healthy_after = 1 }}\n\n",
            a.port, b.port
        )
        + "[[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"pool\"\n";
    let gw = Gateway::start("health", port, admin, &config, &[]);
    b.health_status.store(500, Ordering::Relaxed);
    let only_a = wait_until(Duration::from_secs(5), || {
        let before = b.count();
        let all_a = (0..6).all(|_| gw.get("/x").json()["backend"] == "a");
        all_a
            && b.seen.lock().unwrap()[before..]
                .iter()
                .all(|t| t == "/health")
    });
    assert!(
        only_a,
        "peer b should leave the rotation once its health check fails"
    );
    b.health_status.store(200, Ordering::Relaxed);
    let back = wait_until(Duration::from_secs(5), || {
        (0..6).any(|_| gw.get("/x").json()["backend"] == "b")
    });
    assert!(back, "peer b should come back once healthy");
}

#[test]
fn a_backend_restart_under_load_fails_only_the_gap_with_502_and_recovers_at_once() {
    let app = Backend::start("app");
    let backend_port = app.port;
    let (port, admin) = (free_port(), free_port());
    let config = server_section(port, admin, "")
        + &format!("[upstreams.app]\npeers = [\"127.0.0.1:{backend_port}\"]\nconnect_timeout = \"500ms\"\n\n")
        + "[[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"app\"\n";
    let gw = Gateway::start("restart", port, admin, &config, &[]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = request(port, "GET", "/x", &[], b"");
                seen.push((r.status, r.error_code()));
            }
            seen
        })
    };
    assert!(wait_until(Duration::from_secs(5), || app.count() >= 10));
    drop(app);
    // The gap: requests fail while nothing listens.
    assert!(wait_until(Duration::from_secs(5), || gw
        .get("/probe")
        .status
        == 502));
    let back = Backend::start_on("app-again", backend_port);
    assert!(
        wait_until(Duration::from_secs(3), || gw.get("/probe").status == 200),
        "traffic recovers as soon as the backend is back"
    );
    assert!(wait_until(Duration::from_secs(5), || back.count() >= 10));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = load.join().unwrap();
    let failures: Vec<_> = seen.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failures
            .iter()
            .all(|(s, code)| *s == 502 && code == "bad_gateway"),
        "only 502 bad_gateway during the gap: {failures:?}"
    );
    let last = &seen[seen.len().saturating_sub(5)..];
    assert!(last.iter().all(|(s, _)| *s == 200), "recovered: {last:?}");
}

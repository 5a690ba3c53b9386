//! Admin endpoint, metrics, access log, SIGHUP reload and SIGTERM drain.

#[path = "harness/mod.rs"]
mod harness;

use std::io::BufReader;
use std::net::TcpStream;
use std::time::Duration;

use harness::*;

fn config(port: u16, admin: u16, backend: u16, extra_route: bool) -> String {
    let mut c = server_section(port, admin, "")
        + &format!(
            "[upstreams.app]\npeers = [\"127.0.0.1:{backend}\"]\nread_timeout = \"10s\"\n\n"
        )
        + "[[routes]]\nname = \"music\"\npath_prefix = \"/api/music\"\nupstream = \"app\"\n\n"
        + "[[routes]]\nname = \"slow\"\npath_prefix = \"/slow\"\nupstream = \"app\"\n\n";
    if extra_route {
        c += "[[routes]]\nname = \"fresh\"\npath_prefix = \"/fresh\"\nupstream = \"app\"\n";
    }
    c
}

#[test]
fn admin_metrics_and_access_log() {
    let app = Backend::start("app");
    let (port, admin) = (free_port(), free_port());
    let gw = Gateway::start(
        "admin",
        port,
        admin,
        &config(port, admin, app.port, false),
        &[],
    );
    assert_eq!(gw.admin_get("/healthz").map(|r| r.status), Some(200));
    assert_eq!(gw.admin_get("/readyz").map(|r| r.status), Some(200));
    gw.request("GET", "/api/music/1", &[("x-request-id", "log-me-1")], b"");
    gw.get("/nope");
    assert!(wait_until(Duration::from_secs(3), || {
        gw.metric(
            "portcullis_requests_total",
            &[("route", "music"), ("method", "GET"), ("status", "200")],
        ) >= 1.0
    }));
    assert!(
        gw.metric(
            "portcullis_request_duration_seconds_count",
            &[("route", "music")]
        ) >= 1.0
    );
    assert!(wait_until(Duration::from_secs(3), || gw.access_log().len() >= 2));
    let log = gw.access_log();
    let proxied = log
        .iter()
        .find(|e| e["request_id"] == "log-me-1")
        .expect("a line for the request");
    for field in [
        "ts",
        "request_id",
        "client_ip",
        "method",
        "path",
        "route",
        "status",
        "duration_ms",
        "upstream",
    ] {
        assert!(proxied.get(field).is_some(), "missing {field} in {proxied}");
    }
    assert_eq!(proxied["status"], 200);
    let generated = log
        .iter()
        .find(|e| e["status"] == 404)
        .expect("a line for the 404");
    assert_eq!(generated["reason"], "no_route");
}

#[test]
fn sighup_reloads_and_a_broken_file_keeps_the_old_config() {
    let app = Backend::start("app");
    let (port, admin) = (free_port(), free_port());
    let gw = Gateway::start(
        "reload",
        port,
        admin,
        &config(port, admin, app.port, false),
        &[],
    );
    assert_eq!(gw.get("/fresh").status, 404);
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    send(&mut writer, port, "GET", "/api/music/k1", &[], b"", false);
    assert_eq!(
        read_response(&mut reader, "GET").map(|r| r.status),
        Some(200)
    );

    gw.reload(&config(port, admin, app.port, true));
    assert!(wait_until(Duration::from_secs(5), || gw
        .get("/fresh")
        .status
        == 200));
    assert!(gw.metric("portcullis_config_reloads_total", &[("result", "success")]) >= 1.0);
    send(&mut writer, port, "GET", "/api/music/k2", &[], b"", false);
    assert_eq!(
        read_response(&mut reader, "GET").map(|r| r.status),
        Some(200),
        "keep-alive survives reload"
    );

    gw.reload(&format!(
        "bogus_key = 1\n{}",
        config(port, admin, app.port, true)
    ));
    assert!(wait_until(Duration::from_secs(5), || gw.metric(
        "portcullis_config_reloads_total",
        &[("result", "error")]
    ) >= 1.0));
    assert_eq!(
        gw.get("/fresh").status,
        200,
        "the last good config keeps serving"
    );
}

#[test]
fn sigterm_drains_in_flight_requests_then_exits_0() {
    let app = Backend::start_with("app", Duration::from_secs(2), &[]);
    let (port, admin) = (free_port(), free_port());
    let mut gw = Gateway::start(
        "drain",
        port,
        admin,
        &config(port, admin, app.port, false),
        &[],
    );
    let in_flight = std::thread::spawn(move || request(port, "GET", "/slow/x", &[], b""));
    assert!(
        wait_until(Duration::from_secs(5), || app.count() >= 1),
        "the slow request reached the backend"
    );
    gw.signal(libc::SIGTERM);
    // The admin listener keeps answering while the proxy drains: readiness must be seen to
    // turn 503, not merely to stop being 200 (an unreachable endpoint is no answer at all).
    let mut last = None;
    assert!(
        wait_until(Duration::from_secs(2), || {
            last = gw.admin_get("/readyz").map(|r| r.status);
            last == Some(503)
        }),
        "/readyz answers 503 while draining; last answer: {last:?}"
    );
    let resp = in_flight.join().unwrap();
    assert_eq!(resp.status, 200, "the in-flight request completes");
    assert_eq!(gw.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn a_binary_upgrade_hands_the_listeners_over_without_failing_a_request() {
    let app = Backend::start("app");
    let (port, admin) = (free_port(), free_port());
    let config = server_section(port, admin, "")
        + &format!("[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n", app.port)
        + "[[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"app\"\n";
    let sock = scratch("upgrade-sock").join("upgrade.sock");
    let sock_arg = sock.to_str().unwrap().to_string();
    let mut old = Gateway::start_with_args(
        "upgrade-old",
        port,
        admin,
        &config,
        &["--upgrade-sock", &sock_arg],
    );
    let new = Gateway::start_upgrade("upgrade-new", &old, &config, &sock);
    // The new process waits for the sockets; the old one keeps serving meanwhile.
    assert_eq!(old.get("/before").status, 200);
    old.signal(libc::SIGQUIT);
    // Requests keep succeeding through the handover, and the old process exits 0 by itself.
    let mut statuses = Vec::new();
    let mut code = None;
    wait_until(Duration::from_secs(20), || {
        statuses.push(old.get("/during").status);
        code = old.wait_exit(Duration::from_millis(50));
        code.is_some()
    });
    assert_eq!(code, Some(0), "the old process exits 0 after handing over");
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    for _ in 0..5 {
        assert_eq!(new.get("/after").status, 200);
    }
    assert!(
        wait_until(Duration::from_secs(5), || new
            .access_log()
            .iter()
            .any(|e| e["path"] == "/after")),
        "the new process serves the listeners"
    );
    assert_eq!(new.admin_get("/readyz").map(|r| r.status), Some(200));
}

#[test]
fn twenty_reloads_under_load_fail_no_request() {
    let app = Backend::start("app");
    let (port, admin) = (free_port(), free_port());
    let config = server_section(port, admin, "")
        + &format!("[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n", app.port)
        + "[rate_limits.default]\nper_ip = \"1000000/min\"\n\n"
        + "[[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"app\"\n";
    let gw = Gateway::start("reload-load", port, admin, &config, &[]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    statuses.push(request(port, "GET", "/x", &[], b"").status);
                }
                statuses
            })
        })
        .collect();
    for i in 1..=20 {
        // Alternate between two valid files so every reload really swaps the snapshot.
        let next = if i % 2 == 0 {
            config.clone()
        } else {
            config.replace("1000000/min", "2000000/min")
        };
        gw.reload(&next);
        assert!(
            wait_until(Duration::from_secs(10), || {
                gw.metric("portcullis_config_reloads_total", &[("result", "success")]) >= i as f64
            }),
            "reload {i} applied"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let statuses: Vec<u16> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert!(
        statuses.len() >= 20,
        "the load ran: {} requests",
        statuses.len()
    );
    let failed: Vec<&u16> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        statuses.len()
    );
}

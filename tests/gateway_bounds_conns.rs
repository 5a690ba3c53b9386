//! Connections, requests in flight and WebSocket tunnels against the real binary: requests
//! in flight and connections per client (429, a trusted proxy's clients counted as
//! themselves), the connection cap (503) and silent connections making room near it, and
//! WebSocket idle and duration limits.

#[path = "harness/mod.rs"]
mod harness;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use harness::*;

// === requests in flight, connections ===

#[test]
fn a_client_past_its_requests_in_flight_gets_429_counted_by_identified_client() {
    let app = Backend::start_with("app", Duration::from_secs(3), &[]);
    let (port, admin) = (free_port(), free_port());
    let text = format!(
        "{}[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n[[routes]]\nname = \"api\"\npath_prefix = \"/\"\nupstream = \"app\"\n",
        server_section(
            port,
            admin,
            "max_requests_in_flight_per_client = 2\ntrusted_proxies = [\"127.0.0.3\"]"
        ),
        app.port
    );
    let gw = Gateway::start("bounds-inflight", port, admin, &text, &[]);
    // Two slow requests for one user behind the trusted proxy.
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let mut s = connect_from("127.0.0.3", port);
            s.write_all(
                head(
                    port,
                    "GET",
                    "/slow",
                    &["X-Forwarded-For: 198.51.100.7", "Connection: close"],
                )
                .as_bytes(),
            )
            .unwrap();
            s
        })
        .collect();
    assert!(wait_until(Duration::from_secs(10), || app.count() == 2));
    let third = connect_from("127.0.0.3", port);
    let mut t = third;
    t.write_all(
        head(
            port,
            "GET",
            "/fast",
            &["X-Forwarded-For: 198.51.100.7", "Connection: close"],
        )
        .as_bytes(),
    )
    .unwrap();
    let r = read_response(&mut BufReader::new(t), "GET").unwrap();
    assert_eq!(r.status, 429);
    assert_eq!(r.error_code(), "rate_limited");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(
        log_reason(&gw, 429).as_deref(),
        Some("in_flight_per_client")
    );
    // Another user behind the same proxy is another client.
    let mut other = connect_from("127.0.0.3", port);
    other
        .write_all(
            head(
                port,
                "GET",
                "/fast",
                &["X-Forwarded-For: 198.51.100.8", "Connection: close"],
            )
            .as_bytes(),
        )
        .unwrap();
    assert_eq!(
        read_response(&mut BufReader::new(other), "GET")
            .unwrap()
            .status,
        200
    );
    for s in slow {
        assert_eq!(
            read_response(&mut BufReader::new(s), "GET").unwrap().status,
            200
        );
    }
    assert_eq!(limit_count(&gw, "api", "in_flight_per_client", 1.0), 1.0);
}

#[test]
fn a_client_past_its_connections_gets_429_and_close_but_a_trusted_proxy_does_not() {
    let app = Recorder::start();
    let gw = gateway(
        "bounds-conns",
        app.port,
        "max_connections_per_client = 2\ntrusted_proxies = [\"127.0.0.3\"]",
        "",
    );
    // The start-up probe's connection has gone: every place is the test's.
    assert!(wait_until(Duration::from_secs(10), || gw
        .metric("portcullis_client_connections", &[])
        == 0.0));
    let held: Vec<_> = (0..2).map(|_| connect_from("127.0.0.2", gw.port)).collect();
    assert!(wait_until(Duration::from_secs(10), || gw
        .metric("portcullis_client_connections", &[])
        == 2.0));
    let r = get_on(connect_from("127.0.0.2", gw.port), gw.port, "/up/x");
    assert_eq!(r.status, 429);
    assert_eq!(r.error_code(), "rate_limited");
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(limit_count(&gw, "none", "connections_per_client", 1.0), 1.0);
    // Another client is not affected; neither is a trusted proxy holding more.
    assert_eq!(
        get_on(connect_from("127.0.0.4", gw.port), gw.port, "/up/x").status,
        200
    );
    let proxy: Vec<_> = (0..3).map(|_| connect_from("127.0.0.3", gw.port)).collect();
    for s in proxy {
        assert_eq!(get_on(s, gw.port, "/up/x").status, 200);
    }
    drop(held);
}

#[test]
fn past_max_connections_every_new_connection_gets_503_and_open_ones_are_served() {
    let app = Recorder::start();
    let gw = gateway(
        "bounds-max",
        app.port,
        "max_connections = 3\nmax_connections_per_client = 3",
        "",
    );
    // The start-up probe's connection has gone: every place is the test's.
    assert!(wait_until(Duration::from_secs(10), || gw
        .metric("portcullis_client_connections", &[])
        == 0.0));
    // Connections with part of a request in (not idle: nothing to reclaim near the cap).
    let mut held: Vec<_> = (0..3)
        .map(|_| {
            let mut s = connect(gw.port, Duration::from_secs(15));
            s.write_all(b"GET /up/x HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    assert!(wait_until(Duration::from_secs(10), || gw
        .metric("portcullis_client_connections", &[])
        == 3.0));
    let r = get_on(connect_from("127.0.0.5", gw.port), gw.port, "/up/x");
    assert_eq!(r.status, 503);
    assert_eq!(r.error_code(), "overloaded");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(limit_count(&gw, "none", "connections", 1.0), 1.0);
    // The status page shows what is held and what was refused.
    let status = gw.admin_get("/status.json").expect("status.json").json();
    let bounds = &status["bounds"];
    assert_eq!(bounds["connections"], 3);
    assert_eq!(bounds["max_connections"], 3);
    let refused = bounds["refusals"].as_array().unwrap();
    assert_eq!(refused.len(), 9, "every limit is listed");
    let connections = refused
        .iter()
        .find(|r| r["limit"] == "connections")
        .unwrap();
    assert_eq!(connections["total"], 1);
    // Connections already open are served.
    let mut open = held.pop().unwrap();
    let rest = format!("Host: 127.0.0.1:{}\r\nConnection: close\r\n\r\n", gw.port);
    open.write_all(rest.as_bytes()).unwrap();
    let r = read_response(&mut BufReader::new(open), "GET").expect("an answer");
    assert_eq!(r.status, 200);
    assert!(wait_until(Duration::from_secs(10), || gw
        .metric("portcullis_client_connections", &[])
        == 2.0));
    assert_eq!(
        get_on(connect_from("127.0.0.5", gw.port), gw.port, "/up/x").status,
        200
    );
}

#[test]
fn near_max_connections_a_silent_connection_makes_room_for_a_new_one() {
    let app = Recorder::start();
    let gw = gateway(
        "bounds-reclaim",
        app.port,
        "max_connections = 4\nmax_connections_per_client = 4",
        "",
    );
    // The start-up probe's connection has gone: every place is the test's.
    assert!(wait_until(Duration::from_secs(10), || gw
        .metric("portcullis_client_connections", &[])
        == 0.0));
    let silent: Vec<_> = (0..3)
        .map(|_| connect(gw.port, Duration::from_secs(15)))
        .collect();
    assert!(wait_until(Duration::from_secs(10), || gw
        .metric("portcullis_client_connections", &[])
        == 3.0));
    // The fourth reaches 90% of the cap: a connection silent for a second is closed for it,
    // and a fifth is served rather than refused.
    let fourth = connect(gw.port, Duration::from_secs(15));
    assert!(wait_until(Duration::from_secs(10), || gw
        .metric("portcullis_client_connections", &[])
        == 4.0));
    assert!(wait_until(Duration::from_secs(10), || gw
        .metric("portcullis_client_connections", &[])
        == 3.0));
    assert_eq!(
        get_on(connect(gw.port, Duration::from_secs(15)), gw.port, "/up/x").status,
        200
    );
    let closed = silent
        .iter()
        .filter(|s| {
            let mut s = s.try_clone().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            matches!(s.read(&mut [0u8; 64]), Ok(0))
        })
        .count();
    assert!(closed >= 1, "a silent connection made room");
    assert_eq!(limit_count(&gw, "none", "connections", 0.0), 0.0);
    drop(fourth);
}

// === WebSockets ===

fn open_tunnel(port: u16, path: &str) -> TcpStream {
    let mut s = connect(port, Duration::from_secs(15));
    s.write_all(
        head(
            port,
            "GET",
            path,
            &[
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Version: 13",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            ],
        )
        .as_bytes(),
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "the tunnel's head");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s.write_all(b"ping").unwrap();
    let mut echo = [0u8; 4];
    s.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"ping");
    s
}

/// Reads until the gateway closes the tunnel; how long that took.
fn until_closed(mut s: TcpStream) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return started.elapsed(),
            Ok(_) => {}
        }
    }
}

#[test]
fn an_idle_tunnel_is_closed_and_a_busy_one_at_its_maximum() {
    let app = Recorder::start();
    let gw = gateway("bounds-ws", app.port, "", "");
    let idle = open_tunnel(gw.port, "/ws");
    let lasted = until_closed(idle);
    assert!(
        lasted >= Duration::from_millis(800) && lasted < Duration::from_secs(10),
        "{lasted:?}"
    );
    assert_eq!(limit_count(&gw, "ws", "websocket_idle", 1.0), 1.0);

    let busy = open_tunnel(gw.port, "/wsmax");
    let mut writer = busy.try_clone().unwrap();
    let chatter = std::thread::spawn(move || {
        while writer.write_all(b"x").is_ok() {
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let lasted = until_closed(busy);
    assert!(lasted < Duration::from_secs(10), "{lasted:?}");
    chatter.join().unwrap();
    assert_eq!(limit_count(&gw, "wsmax", "websocket_duration", 1.0), 1.0);
    let events: Vec<_> = gw
        .stdout()
        .lines()
        .filter(|l| l.contains("\"websocket_closed\""))
        .map(str::to_string)
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events[0].contains("websocket_idle") && events[1].contains("websocket_duration"));
}

//! The bounded-request keys: `[server]`'s body, connection and in-flight bounds and a route's
//! body limit, buffering and WebSocket timeouts. Defaults, the contract's example, and every
//! refusal with its line and key path.

use std::path::Path;
use std::time::Duration;

use portcullis_config::{parse, Config, RequestBounds, RouteBounds};

/// A small valid file: `server` is appended to `[server]`, `route` to the first route.
fn file(server: &str, route: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:8080\"]\n{server}\n\n\
         [upstreams.legacy]\npeers = [\"127.0.0.1:3000\"]\n\n\
         [[routes]]\nname = \"uploads\"\npath_prefix = \"/api/uploads\"\n\
         upstream = \"legacy\"\n{route}\n"
    )
}

fn load(text: &str) -> Result<Config, Vec<(usize, String, String)>> {
    parse(Path::new("bounds.toml"), text, &|_| None).map_err(|e| {
        e.0.into_iter()
            .map(|e| (e.at.line, e.at.key, e.message))
            .collect()
    })
}

/// Refused with exactly one error, on the line holding `needle`, naming `key`, saying `message`.
#[track_caller]
fn refused(text: &str, needle: &str, key: &str, message: &str) {
    let errors = load(text).expect_err("the file should be refused");
    assert_eq!(errors.len(), 1, "{errors:?}");
    let (line, got_key, got_message) = &errors[0];
    let want_line = text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    assert_eq!(*line, want_line, "{errors:?}");
    assert_eq!(got_key, key, "{errors:?}");
    assert!(got_message.contains(message), "{errors:?}");
}

#[test]
fn the_contract_example_reads_as_written() {
    let text = file(
        "max_request_body = \"1MiB\"\nrequest_body_timeout = \"30s\"\n\
         min_request_body_rate = \"1KiB/s\"\nmax_connections = 10000\n\
         max_connections_per_client = 64\nmax_requests_in_flight_per_client = 32\n\
         body_buffer_memory = \"256MiB\"",
        "max_request_body = \"50MiB\"\nbuffer_request_body = true\n\
         websocket_idle_timeout = \"5m\"\nwebsocket_max_duration = \"1h\"",
    );
    let config = load(&text).unwrap();
    let server = &config.server.bounds;
    assert_eq!(server.max_request_body, 1 << 20);
    assert_eq!(server.request_body_timeout, Duration::from_secs(30));
    assert_eq!(server.min_request_body_rate.bytes_per_sec, 1024);
    assert_eq!(server.max_connections, Some(10_000));
    assert_eq!(server.max_connections_per_client, 64);
    assert_eq!(server.max_requests_in_flight_per_client, 32);
    assert_eq!(server.body_buffer_memory, 256 << 20);
    let route = &config.routes[0].bounds;
    assert_eq!(route.max_request_body, Some(50 << 20));
    assert_eq!(route.body_limit(server), 50 << 20);
    assert!(route.buffer_request_body);
    assert_eq!(route.websocket_idle_timeout, Duration::from_secs(300));
    assert_eq!(route.websocket_max_duration, Duration::from_secs(3600));
}

#[test]
fn defaults_protect_yet_admit_an_office_and_a_benchmark() {
    let config = load(&file("", "")).unwrap();
    let server = &config.server.bounds;
    assert_eq!(*server, RequestBounds::default());
    assert_eq!(server.max_request_body, 1 << 20);
    assert_eq!(server.max_connections, None, "derived from RLIMIT_NOFILE");
    // 50 browsers behind one NAT, six HTTP/1.1 connections each; a 64-connection benchmark.
    assert!(server.max_connections_per_client >= 50 * 6);
    assert!(server.max_requests_in_flight_per_client >= 50 * 6);
    let route = &config.routes[0].bounds;
    assert_eq!(*route, RouteBounds::default());
    assert_eq!(route.body_limit(server), 1 << 20);
    assert!(!route.buffer_request_body);
}

#[test]
fn a_route_may_take_no_body_at_all() {
    let config = load(&file("", "max_request_body = \"0B\"")).unwrap();
    assert_eq!(config.routes[0].bounds.max_request_body, Some(0));
}

#[test]
fn bad_values_are_refused_with_their_key() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "max_request_body = \"1MB\"",
            "",
            "server.max_request_body",
            "binary units",
        ),
        (
            "request_body_timeout = \"0s\"",
            "",
            "server.request_body_timeout",
            "greater than zero",
        ),
        (
            "min_request_body_rate = \"1KiB/min\"",
            "",
            "server.min_request_body_rate",
            "per second",
        ),
        (
            "min_request_body_rate = \"100/s\"",
            "",
            "server.min_request_body_rate",
            "no unit",
        ),
        (
            "max_connections = 0",
            "",
            "server.max_connections",
            "out of range",
        ),
        (
            "max_connections_per_client = \"many\"",
            "",
            "server.max_connections_per_client",
            "integer",
        ),
        (
            "max_requests_in_flight_per_client = 0",
            "",
            "server.max_requests_in_flight_per_client",
            "out of range",
        ),
        (
            "body_buffer_memory = \"1KiB\"",
            "",
            "server.body_buffer_memory",
            "at least 64KiB",
        ),
        ("ipv6_prefix = 32", "", "server.ipv6_prefix", "out of range"),
        (
            "",
            "max_request_body = 5",
            "routes[0].max_request_body",
            "expected a string",
        ),
        (
            "",
            "buffer_request_body = \"yes\"",
            "routes[0].buffer_request_body",
            "true or false",
        ),
        (
            "",
            "websocket_idle_timeout = \"0s\"",
            "routes[0].websocket_idle_timeout",
            "greater than zero",
        ),
        (
            "",
            "websocket_max_duration = \"forever\"",
            "routes[0].websocket_max_duration",
            "duration",
        ),
    ];
    for (server, route, key, message) in cases {
        let needle = if server.is_empty() { route } else { server };
        refused(&file(server, route), needle, key, message);
    }
}

#[test]
fn one_client_cannot_be_allowed_every_connection() {
    refused(
        &file(
            "max_connections = 100\nmax_connections_per_client = 200",
            "",
        ),
        "max_connections_per_client",
        "server.max_connections_per_client",
        "more than max_connections",
    );
}

#[test]
fn a_buffered_route_must_fit_in_the_buffer_memory() {
    refused(
        &file(
            "body_buffer_memory = \"16MiB\"",
            "buffer_request_body = true\nmax_request_body = \"32MiB\"",
        ),
        "max_request_body = \"32MiB\"",
        "routes[0].max_request_body",
        "body_buffer_memory",
    );
    // Streamed, the same limit is fine: nothing is held in memory.
    assert!(load(&file(
        "body_buffer_memory = \"16MiB\"",
        "max_request_body = \"32MiB\""
    ))
    .is_ok());
}

//! Retries, backoff, body replay, method safety and the circuit breaker through the real
//! binary, against a scripted upstream that answers a given sequence of statuses.

#[path = "harness/mod.rs"]
mod harness;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use harness::*;

/// An upstream that answers each request with the next scripted status (then `fallback`),
/// recording each request's method and body.
struct Scripted {
    port: u16,
    seen: Arc<Mutex<Vec<(String, Vec<u8>)>>>,
}

impl Scripted {
    fn start(script: &[u16], fallback: u16, retry_after: Option<&str>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.to_vec()));
        let retry_after = retry_after.map(str::to_string);
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(&stream);
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                    continue;
                }
                let mut length = 0usize;
                let mut chunked = false;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                        chunked = true;
                    }
                    line.clear();
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                // A streamed (chunked) body: read every chunk, so the answer never races it.
                if chunked {
                    loop {
                        let mut size_line = String::new();
                        if reader.read_line(&mut size_line).unwrap_or(0) == 0 {
                            break;
                        }
                        let size = usize::from_str_radix(size_line.trim(), 16).unwrap_or(0);
                        let mut chunk = vec![0; size + 2];
                        if reader.read_exact(&mut chunk).is_err() || size == 0 {
                            break;
                        }
                        body.extend_from_slice(&chunk[..size]);
                    }
                }
                let method = request_line.split(' ').next().unwrap_or("").to_string();
                log.lock().unwrap().push((method, body));
                let status = {
                    let mut s = script.lock().unwrap();
                    if s.is_empty() {
                        fallback
                    } else {
                        s.remove(0)
                    }
                };
                let extra = match (&retry_after, status) {
                    (Some(v), 429 | 503) => format!("retry-after: {v}\r\n"),
                    _ => String::new(),
                };
                let body = format!("answer {status}");
                let mut out = &stream;
                let _ = write!(out, "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n{body}", body.len());
            }
        });
        Scripted { port, seen }
    }

    fn requests(&self) -> Vec<(String, Vec<u8>)> {
        self.seen.lock().unwrap().clone()
    }
}

fn gateway(name: &str, upstream: &str, route_extra: &str) -> Gateway {
    let (port, admin) = (free_port(), free_port());
    let config = server_section(port, admin, "")
        + upstream
        + "[[routes]]\nname = \"music\"\npath_prefix = \"/\"\nupstream = \"topmediai\"\n"
        + route_extra;
    Gateway::start(name, port, admin, &config, &[])
}

fn retrying(port: u16, extra: &str) -> String {
    format!("[upstreams.topmediai]\npeers = [\"127.0.0.1:{port}\"]\n\n[upstreams.topmediai.retry]\nattempts = 3\nbackoff_base = \"5ms\"\nbackoff_max = \"50ms\"\non_status = [502, 503, 504]\n{extra}\n")
}

#[test]
fn a_503_is_retried_with_the_body_replayed_and_the_success_streamed() {
    let up = Scripted::start(&[503, 503], 200, None);
    let gw = gateway("retry", &retrying(up.port, ""), "");
    let resp = gw.request(
        "POST",
        "/v1/music",
        &[("Content-Type", "application/json")],
        b"{\"prompt\":\"jazz\"}",
    );
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"answer 200");
    assert_eq!(
        resp.header("x-content-type-options"),
        Some("nosniff"),
        "security headers on the streamed answer"
    );
    let seen = up.requests();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter()
            .all(|(m, b)| m == "POST" && b == b"{\"prompt\":\"jazz\"}"),
        "{seen:?}"
    );
    assert_eq!(
        gw.metric(
            "portcullis_upstream_retries_total",
            &[("upstream", "topmediai")]
        ),
        2.0
    );
    assert!(
        wait_until(std::time::Duration::from_secs(5), || gw
            .access_log()
            .iter()
            .any(|e| e["status"] == 200 && e["tries"] == 3)),
        "{:?}",
        gw.access_log()
    );
}

#[test]
fn retries_stop_after_attempts_and_the_last_answer_goes_to_the_client() {
    let up = Scripted::start(&[], 503, None);
    let gw = gateway("exhausted", &retrying(up.port, ""), "");
    let resp = gw.get("/v1/status");
    assert_eq!(
        (resp.status, resp.body.as_slice()),
        (503, b"answer 503".as_slice())
    );
    assert_eq!(up.requests().len(), 4, "the first try and 3 retries");
}

#[test]
fn a_post_is_not_retried_on_an_answer_that_may_mean_it_was_processed() {
    let up = Scripted::start(&[502, 502], 200, None);
    let gw = gateway("unsafe", &retrying(up.port, ""), "");
    let post = gw.request("POST", "/v1/music", &[], b"x");
    assert_eq!(post.status, 502);
    assert_eq!(up.requests().len(), 1, "a 502 to a POST is final");
    let get = gw.get("/v1/music");
    assert_eq!(get.status, 200, "a GET is retried on 502");
}

#[test]
fn a_route_may_allow_retrying_non_idempotent_requests() {
    let up = Scripted::start(&[502], 200, None);
    let gw = gateway(
        "unsafe-ok",
        &retrying(up.port, ""),
        "retry_non_idempotent = true\n",
    );
    assert_eq!(gw.request("POST", "/v1/music", &[], b"x").status, 200);
    assert_eq!(up.requests().len(), 2);
}

#[test]
fn a_body_beyond_max_replay_body_is_sent_once_and_not_retried() {
    let up = Scripted::start(&[503], 200, None);
    let gw = gateway("big-body", &retrying(up.port, "max_replay_body = 16\n"), "");
    let body = vec![b'a'; 4096];
    let resp = gw.request("PUT", "/v1/upload", &[], &body);
    assert_eq!(resp.status, 503);
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].1, body, "the whole body streamed through once");
}

#[test]
fn a_retry_after_longer_than_backoff_max_ends_the_retries() {
    let up = Scripted::start(&[503], 200, Some("120"));
    let gw = gateway("retry-after", &retrying(up.port, ""), "");
    let resp = gw.get("/v1/x");
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("retry-after"), Some("120"));
    assert_eq!(up.requests().len(), 1);
}

#[test]
fn a_dead_peer_is_retried_on_the_next_one() {
    let up = Scripted::start(&[], 200, None);
    let dead = free_port();
    let upstream = format!("[upstreams.topmediai]\npeers = [\"127.0.0.1:{dead}\", \"127.0.0.1:{}\"]\n\n[upstreams.topmediai.retry]\nattempts = 2\nbackoff_base = \"5ms\"\nbackoff_max = \"20ms\"\n\n", up.port);
    let gw = gateway("dead-peer", &upstream, "");
    for _ in 0..4 {
        assert_eq!(gw.get("/v1/x").status, 200);
    }
    assert!(
        gw.metric(
            "portcullis_upstream_requests_total",
            &[("upstream", "topmediai"), ("outcome", "connect_error")]
        ) >= 1.0
    );
}

#[test]
fn the_breaker_opens_and_then_answers_503_without_touching_the_upstream() {
    let up = Scripted::start(&[], 500, None);
    let upstream = format!("[upstreams.topmediai]\npeers = [\"127.0.0.1:{}\"]\n\n[upstreams.topmediai.circuit_breaker]\nfailure_rate = 0.5\nmin_requests = 2\nwindow = \"10s\"\nopen_for = \"30s\"\nhalf_open_requests = 1\n\n", up.port);
    let gw = gateway("breaker", &upstream, "");
    assert_eq!(
        gw.exported_metric(
            "portcullis_circuit_breaker_state",
            &[("upstream", "topmediai")]
        ),
        0.0
    );
    assert_eq!(gw.get("/v1/a").status, 500);
    assert_eq!(gw.get("/v1/b").status, 500);
    let open = gw.get("/v1/c");
    assert_eq!(
        (open.status, open.error_code().as_str()),
        (503, "upstream_unavailable")
    );
    let wait: u64 = open
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((1..=30).contains(&wait), "Retry-After {wait}");
    assert_eq!(open.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        up.requests().len(),
        2,
        "an open breaker never touches the upstream"
    );
    assert_eq!(
        gw.exported_metric(
            "portcullis_circuit_breaker_state",
            &[("upstream", "topmediai")]
        ),
        1.0
    );
    assert_eq!(
        gw.metric(
            "portcullis_upstream_requests_total",
            &[("upstream", "topmediai"), ("outcome", "rejected_open")]
        ),
        1.0
    );
}

#[test]
fn after_open_for_probes_pass_and_successful_probes_close_the_breaker() {
    let up = Scripted::start(&[500, 500], 200, None);
    let upstream = format!("[upstreams.topmediai]\npeers = [\"127.0.0.1:{}\"]\n\n[upstreams.topmediai.circuit_breaker]\nfailure_rate = 0.5\nmin_requests = 2\nwindow = \"10s\"\nopen_for = \"1s\"\nhalf_open_requests = 2\n\n", up.port);
    let gw = gateway("half-open", &upstream, "");
    assert_eq!(gw.get("/v1/a").status, 500);
    assert_eq!(gw.get("/v1/b").status, 500);
    assert_eq!(gw.get("/v1/c").status, 503, "open");
    assert_eq!(up.requests().len(), 2);
    // After open_for the next request is a probe and reaches the (recovered) upstream.
    assert!(wait_until(std::time::Duration::from_secs(5), || gw
        .get("/v1/probe")
        .status
        == 200));
    assert_eq!(
        gw.exported_metric(
            "portcullis_circuit_breaker_state",
            &[("upstream", "topmediai")]
        ),
        2.0,
        "one probe of two succeeded: still half-open"
    );
    assert_eq!(gw.get("/v1/probe2").status, 200);
    assert_eq!(
        gw.exported_metric(
            "portcullis_circuit_breaker_state",
            &[("upstream", "topmediai")]
        ),
        0.0,
        "both probes succeeded: closed"
    );
    assert_eq!(
        up.requests().len(),
        4,
        "only the probes reached the upstream while half-open"
    );
}

#[test]
fn a_timed_out_try_is_retried_on_another_peer_and_the_deadline_bounds_the_whole() {
    // Paths under /slow make the first peer hang for 3 s; the second answers at once.
    let hung = Backend::start_with("hung", std::time::Duration::from_secs(3), &[]);
    let quick = Backend::start("quick");
    let upstream = format!(
        "[upstreams.topmediai]\npeers = [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\nread_timeout = \"300ms\"\n\n[upstreams.topmediai.retry]\nattempts = 2\nbackoff_base = \"5ms\"\nbackoff_max = \"20ms\"\n\n",
        hung.port, quick.port
    );
    let gw = gateway("timeouts", &upstream, "");
    for _ in 0..4 {
        let resp = gw.get("/slow/track");
        assert_eq!(
            resp.status, 200,
            "a hung peer's try times out and the next peer answers"
        );
        assert!(
            resp.echoed_header("x-request-id").is_some(),
            "the answer is the upstream's echo"
        );
    }
    assert!(
        gw.metric(
            "portcullis_upstream_requests_total",
            &[("upstream", "topmediai"), ("outcome", "timeout")]
        ) >= 1.0
    );

    // One hung peer and a deadline shorter than its read timeout: 504 once the deadline
    // passes, not after read_timeout times every try.
    let only_hung = format!(
        "[upstreams.topmediai]\npeers = [\"127.0.0.1:{}\"]\nread_timeout = \"2s\"\n\n[upstreams.topmediai.retry]\nattempts = 3\nbackoff_base = \"5ms\"\nbackoff_max = \"20ms\"\ndeadline = \"400ms\"\n\n",
        hung.port
    );
    let gw = gateway("deadline", &only_hung, "");
    let resp = gw.get("/slow/track");
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (504, "upstream_timeout")
    );
    assert!(
        resp.elapsed < std::time::Duration::from_millis(1_900),
        "the deadline (400 ms) ended the exchange before one read_timeout (2 s): {:?}",
        resp.elapsed
    );
}

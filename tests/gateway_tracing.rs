//! Tracing end to end: W3C trace context propagated to the upstream in each trust mode, the
//! spans a collector receives (decoded with the official OTLP definitions), sampling, the
//! access log's `trace_id`, no secret in any exported byte, and a reload that keeps spans
//! in flight.

mod harness;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use harness::*;

const PARENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

fn traceparent(flags: &str) -> String {
    format!("00-{PARENT_TRACE}-{PARENT_SPAN}-{flags}")
}

/// A gateway on one echo backend with `[tracing]` pointing at `collector`.
fn config(
    port: u16,
    admin: u16,
    upstream: u16,
    upstream_extra: &str,
    server_extra: &str,
    tracing: &str,
) -> String {
    format!(
        "{}[upstreams.app]\npeers = [\"127.0.0.1:{upstream}\"]\n{upstream_extra}\n\n\
         [[routes]]\nname = \"app\"\npath_prefix = \"/\"\nupstream = \"app\"\n\n\
         [tracing]\nbatch_delay = \"50ms\"\n{tracing}\n",
        server_section(port, admin, server_extra),
    )
}

fn endpoint(collector: &Collector) -> String {
    format!("otlp_endpoint = \"http://127.0.0.1:{}\"\n", collector.port)
}

/// The upstream `traceparent` as (trace id, parent id, flags).
fn sent(resp: &Response) -> (String, String, String) {
    let tp = resp
        .echoed_header("traceparent")
        .expect("the upstream request carries a traceparent");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(
        (parts[0], parts[1].len(), parts[2].len()),
        ("00", 32, 16),
        "{tp}"
    );
    (parts[1].into(), parts[2].into(), parts[3].into())
}

/// Waits for the spans of `trace_id` until `count` arrived.
fn await_trace(collector: &Collector, trace_id: &str, count: usize) -> Vec<ReceivedSpan> {
    assert!(
        wait_until(Duration::from_secs(10), || collector.trace(trace_id).len()
            >= count),
        "{count} spans of {trace_id} never arrived; got {:?}",
        collector.trace(trace_id)
    );
    collector.trace(trace_id)
}

#[test]
fn trace_context_is_continued_only_from_trusted_senders() {
    let backend = Backend::start("app");
    let collector = Collector::start();
    let (port, admin) = (free_port(), free_port());
    let with = |trust: &str, trusted_proxies: &str| {
        config(
            port,
            admin,
            backend.port,
            "",
            &format!("trusted_proxies = [{trusted_proxies}]"),
            &format!(
                "{}sample_ratio = 0\ntrust_incoming = \"{trust}\"",
                endpoint(&collector)
            ),
        )
    };
    let gw = Gateway::start(
        "trace-trust",
        port,
        admin,
        &with("trusted_proxies", ""),
        &[],
    );
    let incoming = traceparent("01");
    let ask = || {
        request(
            port,
            "GET",
            "/x",
            &[
                ("traceparent", &incoming),
                ("tracestate", "congo=t61rcWkgMzE"),
            ],
            b"",
        )
    };

    // trusted_proxies, from a peer that is not one: a new trace, the client's state gone.
    let r = ask();
    let (trace, parent, flags) = sent(&r);
    assert_ne!(trace, PARENT_TRACE);
    assert_ne!(parent, PARENT_SPAN);
    assert_eq!(
        flags, "00",
        "sample_ratio 0: the client cannot force sampling"
    );
    assert_eq!(r.echoed_header("tracestate"), None);

    // trusted_proxies, from a trusted peer: continued, sampled as the parent said.
    gw.reload(&with("trusted_proxies", "\"127.0.0.1/32\""));
    assert!(wait_until(Duration::from_secs(5), || sent(&ask()).0 == PARENT_TRACE));
    let r = ask();
    let (trace, parent, flags) = sent(&r);
    assert_eq!((trace.as_str(), flags.as_str()), (PARENT_TRACE, "01"));
    assert_ne!(
        parent, PARENT_SPAN,
        "the upstream's parent is the gateway's own span"
    );
    assert_eq!(
        r.echoed_header("tracestate").as_deref(),
        Some("congo=t61rcWkgMzE")
    );
    let spans = await_trace(&collector, PARENT_TRACE, 2);
    let server = spans.iter().find(|s| s.kind() == 2).expect("a SERVER span");
    assert_eq!(
        server.parent_id(),
        PARENT_SPAN,
        "the SERVER span continues the caller's"
    );
    let client = spans.iter().find(|s| s.kind() == 3).expect("a CLIENT span");
    assert_eq!(client.parent_id(), server.span_id());
    assert!(
        spans.iter().any(|s| s.kind() == 3 && s.span_id() == parent),
        "the upstream's traceparent names a CLIENT span as parent"
    );

    // A malformed traceparent from a trusted peer is replaced, and its tracestate dropped.
    let r = request(
        port,
        "GET",
        "/x",
        &[
            ("traceparent", "00-zzzz-01"),
            ("tracestate", "congo=t61rcWkgMzE"),
        ],
        b"",
    );
    let (trace, _, _) = sent(&r);
    assert_ne!(trace, PARENT_TRACE);
    assert_eq!(r.echoed_header("tracestate"), None);

    // none: never continued, even from a trusted peer.
    gw.reload(&with("none", "\"127.0.0.1/32\""));
    assert!(wait_until(Duration::from_secs(5), || sent(&ask()).0 != PARENT_TRACE));
    assert_eq!(ask().echoed_header("tracestate"), None);

    // all: continued from anyone.
    gw.reload(&with("all", ""));
    assert!(wait_until(Duration::from_secs(5), || sent(&ask()).0 == PARENT_TRACE));
    assert_eq!(
        ask().echoed_header("tracestate").as_deref(),
        Some("congo=t61rcWkgMzE")
    );
}

#[test]
fn a_retried_request_exports_its_span_tree_and_logs_its_trace_id() {
    // The first try answers 503, the retry 200.
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let origin = Origin::start(move |_| {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            OriginResponse::ok("busy", &[]).status(503)
        } else {
            OriginResponse::ok("fine", &[])
        }
    });
    let collector = Collector::start();
    let (port, admin) = (free_port(), free_port());
    let cfg = config(
        port,
        admin,
        origin.port,
        "[upstreams.app.retry]\nattempts = 2\nbackoff_base = \"50ms\"\nbackoff_max = \"50ms\"\non_status = [503]",
        "",
        &format!(
            "{}trace_link = \"http://jaeger.example:16686/trace/{{trace_id}}\"",
            endpoint(&collector)
        ),
    );
    let gw = Gateway::start("trace-retry", port, admin, &cfg, &[]);
    let r = request(port, "GET", "/songs/7?token=abc", &[], b"");
    assert_eq!(r.status, 200);
    let upstream = origin.requests();
    assert_eq!(upstream.len(), 2);
    let tp = |i: usize| {
        upstream[i]
            .header("traceparent")
            .expect("traceparent")
            .to_string()
    };
    let trace_id = tp(0).split('-').nth(1).unwrap().to_string();
    assert_eq!(
        tp(1).split('-').nth(1),
        Some(trace_id.as_str()),
        "one trace for both tries"
    );

    let spans = await_trace(&collector, &trace_id, 3);
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let server = spans.iter().find(|s| s.kind() == 2).expect("a SERVER span");
    assert_eq!(server.span.name, "GET /");
    assert_eq!(server.attr("http.request.method").as_deref(), Some("GET"));
    assert_eq!(
        server.attr("url.path").as_deref(),
        Some("/songs/7"),
        "never the query"
    );
    assert_eq!(server.attr("http.route").as_deref(), Some("/"));
    assert_eq!(server.attr("portcullis.route").as_deref(), Some("app"));
    assert_eq!(
        server.attr("http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(server.attr("client.address").as_deref(), Some("127.0.0.1"));
    assert_eq!(server.status(), 0, "a 200 is no error");
    assert_eq!(
        server.parent_id(),
        "",
        "a new trace: the SERVER span is its root"
    );
    assert!(server
        .resource
        .contains(&("service.name".to_string(), "portcullis".to_string())));

    let mut clients: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.kind() == 3).collect();
    clients.sort_by_key(|s| s.span.start_time_unix_nano);
    assert_eq!(clients.len(), 2);
    for (i, c) in clients.iter().enumerate() {
        assert_eq!(c.parent_id(), server.span_id());
        assert_eq!(c.attr("server.address").as_deref(), Some("127.0.0.1"));
        assert_eq!(c.attr("server.port"), Some(origin.port.to_string()));
        assert_eq!(
            tp(i).split('-').nth(2),
            Some(c.span_id().as_str()),
            "try {i}'s traceparent"
        );
    }
    assert_eq!(
        clients[0].attr("http.response.status_code").as_deref(),
        Some("503")
    );
    assert_eq!(clients[0].status(), 2, "the 503 try is an error");
    assert_eq!(clients[0].attr("http.request.resend_count"), None);
    assert_eq!(
        clients[1].attr("http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        clients[1].attr("http.request.resend_count").as_deref(),
        Some("1")
    );
    assert_eq!(clients[1].status(), 0);
    assert!(
        clients[1].span.start_time_unix_nano >= clients[0].span.end_time_unix_nano,
        "the retry starts after the first try ended (the backoff, full jitter, is the gap)"
    );
    let (s, e) = (
        server.span.start_time_unix_nano,
        server.span.end_time_unix_nano,
    );
    assert!(clients
        .iter()
        .all(|c| c.span.start_time_unix_nano >= s && c.span.end_time_unix_nano <= e));

    assert!(wait_until(Duration::from_secs(5), || gw
        .access_log()
        .iter()
        .any(
            |l| l["trace_id"] == trace_id.as_str() && l["status"] == 200
        )));
    // Counted once the collector's answer is read (just after it stored the spans).
    assert!(wait_until(Duration::from_secs(5), || gw.exported_metric(
        "portcullis_tracing_spans_exported_total",
        &[]
    ) == 3.0));

    // The status page lists it among the slowest traced requests, linked to its trace.
    let status = gw.admin_get("/status.json").expect("status.json").json();
    let slow = &status["tracing"]["slow"][0];
    assert_eq!(slow["trace_id"], trace_id.as_str(), "{status}");
    assert_eq!(slow["route"], "app");
    let link = format!("http://jaeger.example:16686/trace/{trace_id}");
    assert_eq!(slow["link"], link.as_str());
    assert_eq!(status["tracing"]["spans_exported"], 3);
    let page = String::from_utf8(gw.admin_get("/status").expect("status").body).unwrap();
    assert!(
        page.contains(&format!("<a href=\"{link}\">{trace_id}</a>")),
        "{page}"
    );
}

#[test]
fn errors_and_refusals_are_marked_and_sampling_follows_the_ratio() {
    let backend = Backend::start("app");
    let collector = Collector::start();
    let (port, admin) = (free_port(), free_port());
    let dead = free_port();
    let cfg = format!(
        "{}[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n[upstreams.dead]\npeers = [\"127.0.0.1:{dead}\"]\n\n\
         [[routes]]\nname = \"app\"\npath_prefix = \"/app\"\nupstream = \"app\"\n\n\
         [[routes]]\nname = \"dead\"\npath_prefix = \"/dead\"\nupstream = \"dead\"\n\n\
         [tracing]\nbatch_delay = \"50ms\"\n{}trust_incoming = \"all\"\nsample_ratio = 0\n",
        server_section(port, admin, ""),
        backend.port,
        endpoint(&collector)
    );
    let gw = Gateway::start("trace-errors", port, admin, &cfg, &[]);
    // Unsampled: propagated with flags 00, nothing exported, no trace_id logged.
    for _ in 0..20 {
        let r = request(port, "GET", "/app/a", &[], b"");
        assert_eq!(sent(&r).2, "00");
    }
    // A sampled parent decides for its request (parent-based sampling).
    let sampled = |path: &str| {
        let trace = format!("{:032x}", rand_id());
        let tp = format!("00-{trace}-{PARENT_SPAN}-01");
        let r = request(port, "GET", path, &[("traceparent", &tp)], b"");
        (trace, r)
    };
    let (bad_gateway, r) = sampled("/dead/x");
    assert_eq!(r.status, 502);
    let (no_route, r) = sampled("/nowhere");
    assert_eq!(r.status, 404);
    let spans = await_trace(&collector, &bad_gateway, 2);
    let server = spans.iter().find(|s| s.kind() == 2).unwrap();
    assert_eq!(server.status(), 2, "a 502 is an error");
    assert_eq!(
        server.attr("http.response.status_code").as_deref(),
        Some("502")
    );
    assert_eq!(
        server.attr("portcullis.reason").as_deref(),
        Some("bad_gateway")
    );
    let client = spans.iter().find(|s| s.kind() == 3).unwrap();
    assert_eq!(client.status(), 2);
    assert_eq!(client.attr("error.type").as_deref(), Some("connect_error"));
    let spans = await_trace(&collector, &no_route, 1);
    assert_eq!(spans.len(), 1, "no upstream, no CLIENT span");
    assert_eq!(
        spans[0].attr("portcullis.reason").as_deref(),
        Some("no_route")
    );
    assert_eq!(
        spans[0].status(),
        0,
        "a 404 is the client's error, not the server's"
    );
    // The export queue is ordered: once these arrived, any unsampled span would have too.
    let traces: std::collections::HashSet<String> =
        collector.spans().iter().map(|s| s.trace_id()).collect();
    assert_eq!(traces.len(), 2, "only the sampled requests were exported");
    assert!(wait_until(Duration::from_secs(5), || gw.access_log().len() >= 22));
    let logged: Vec<_> = gw
        .access_log()
        .iter()
        .filter_map(|l| l["trace_id"].as_str().map(str::to_string))
        .collect();
    logged
        .iter()
        .for_each(|t| assert!(t == &bad_gateway || t == &no_route, "{t}"));
    assert_eq!(logged.len(), 2);
}

fn rand_id() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(free_port() as u64);
    (u128::from(h.finish()) << 64) | u128::from(h.finish() | 1)
}

#[test]
fn no_secret_reaches_the_collector() {
    const JWT_SECRET: &str = "jwt-secret-that-is-long-enough-0123456789";
    const API_KEY: &str = "upstream-api-key-do-not-export-7f3a";
    const COLLECTOR_TOKEN: &str = "collector-token-1c9e";
    let backend = Backend::start("app");
    let collector = Collector::start();
    let (port, admin) = (free_port(), free_port());
    let cfg = format!(
        "{}{ADMIN_TOKEN_LINE}[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\nrequest_headers = {{ \"x-api-key\" = \"{API_KEY}\" }}\n\n\
         [jwt]\nalgorithms = [\"HS256\"]\nsecret = \"{JWT_SECRET}\"\nsources = [\"header\", \"cookie:session\"]\n\n\
         [[routes]]\nname = \"app\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"required\"\n\n\
         [tracing]\nbatch_delay = \"50ms\"\n{}headers = {{ authorization = \"Bearer {COLLECTOR_TOKEN}\" }}\n",
        server_section(port, admin, ""),
        backend.port,
        endpoint(&collector)
    );
    let _gw = Gateway::start("trace-secrets", port, admin, &cfg, &[]);
    let token = hs256_token("alice", JWT_SECRET);
    let bearer = format!("Bearer {token}");
    let cookie = format!("session={token}; theme=dark");
    let queries = "/songs?sig=query-signature-55aa&api_key=query-key-66bb";
    assert_eq!(
        request(port, "GET", queries, &[("authorization", &bearer)], b"").status,
        200
    );
    assert_eq!(
        request(port, "GET", "/songs", &[("cookie", &cookie)], b"").status,
        200
    );
    let forged = format!("Bearer {token}x");
    assert_eq!(
        request(
            port,
            "GET",
            "/songs?sig=query-signature-55aa",
            &[("authorization", &forged)],
            b""
        )
        .status,
        401
    );
    assert!(wait_until(Duration::from_secs(10), || collector
        .spans()
        .iter()
        .filter(|s| s.kind() == 2)
        .count()
        >= 3));
    let bytes: Vec<u8> = collector.raw_bodies().concat();
    let text = String::from_utf8_lossy(&bytes);
    let signature = token.rsplit('.').next().unwrap();
    for secret in [
        token.as_str(),
        signature,
        JWT_SECRET,
        API_KEY,
        ADMIN_TEST_TOKEN,
        COLLECTOR_TOKEN,
        "query-signature-55aa",
        "query-key-66bb",
        "theme=dark",
        "sig=",
    ] {
        assert!(!text.contains(secret), "`{secret}` was exported");
    }
    // The collector's own credential went where it belongs: the export's header.
    assert!(collector.request_headers().iter().all(|h| h
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("authorization")
            && v == &format!("Bearer {COLLECTOR_TOKEN}"))));
    // The verification on a cache miss is an INTERNAL span.
    assert!(collector
        .spans()
        .iter()
        .any(|s| s.kind() == 1 && s.span.name == "jwt.verify"));
}

#[test]
fn a_reload_keeps_the_spans_in_flight_where_they_were_going() {
    let backend = Backend::start_with("app", Duration::from_millis(800), &[]);
    let first = Collector::start();
    let second = Collector::start();
    let (port, admin) = (free_port(), free_port());
    let with = |c: &Collector| config(port, admin, backend.port, "", "", &endpoint(c));
    let gw = Gateway::start("trace-reload", port, admin, &with(&first), &[]);
    let slow = std::thread::spawn(move || request(port, "GET", "/slow", &[], b""));
    assert!(wait_until(Duration::from_secs(5), || backend.count() >= 1));
    gw.reload(&with(&second));
    assert!(wait_until(Duration::from_secs(5), || {
        gw.metric("portcullis_config_reloads_total", &[("result", "success")]) >= 1.0
    }));
    let r = slow.join().unwrap();
    assert_eq!(r.status, 200);
    let in_flight = sent(&r).0;
    let after = sent(&request(port, "GET", "/fast", &[], b"")).0;
    await_trace(&first, &in_flight, 2);
    await_trace(&second, &after, 2);
    assert!(second.trace(&in_flight).is_empty());
    assert!(first.trace(&after).is_empty());
}

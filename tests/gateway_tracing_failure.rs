//! A collector that is down, never answers, or answers 503: every proxied request is still
//! answered at once, the spans are dropped and counted, memory stays bounded, and export
//! resumes when the collector is back.

mod harness;

use std::time::{Duration, Instant};

use harness::*;

/// A gateway tracing every request to `collector_port`, with a small queue and short timeouts.
fn start(name: &str, backend: &Backend, collector_port: u16) -> Gateway {
    let (port, admin) = (free_port(), free_port());
    let cfg = format!(
        "{}[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\n\n\
         [[routes]]\nname = \"app\"\npath_prefix = \"/\"\nupstream = \"app\"\n\n\
         [tracing]\notlp_endpoint = \"http://127.0.0.1:{collector_port}\"\nsample_ratio = 1\n\
         queue_size = 64\nbatch_delay = \"20ms\"\nexport_timeout = \"300ms\"\n",
        server_section(port, admin, ""),
        backend.port
    );
    Gateway::start(name, port, admin, &cfg, &[])
}

/// Sends `n` requests from 4 threads; every one must be answered 200 within a second.
fn load(gw: &Gateway, n: usize) {
    let port = gw.port;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..n / 4 {
                    let began = Instant::now();
                    let r = request(port, "GET", "/x", &[], b"");
                    assert_eq!(r.status, 200);
                    assert!(
                        began.elapsed() < Duration::from_secs(1),
                        "a request waited for the collector"
                    );
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
}

fn dropped(gw: &Gateway) -> f64 {
    gw.exported_metric("portcullis_tracing_spans_dropped_total", &[])
}

fn exported(gw: &Gateway) -> f64 {
    gw.exported_metric("portcullis_tracing_spans_exported_total", &[])
}

#[test]
fn a_collector_that_is_down_costs_only_the_spans_and_export_resumes() {
    let backend = Backend::start("app");
    let collector_port = free_port();
    let gw = start("trace-down", &backend, collector_port);
    load(&gw, 400);
    // 400 requests, 2 spans each: whatever was not queued, and every failed batch, is counted.
    assert!(
        wait_until(Duration::from_secs(10), || dropped(&gw) >= 800.0),
        "dropped {}",
        dropped(&gw)
    );
    assert_eq!(exported(&gw), 0.0);
    let collector = Collector::start_on(collector_port);
    assert!(wait_until(Duration::from_secs(10), || {
        request(gw.port, "GET", "/x", &[], b"");
        exported(&gw) > 0.0 && !collector.spans().is_empty()
    }));
}

#[test]
fn a_collector_that_never_answers_leaves_requests_and_memory_alone() {
    let backend = Backend::start("app");
    let collector = Collector::start();
    collector.set_mode(CollectorMode::Hang);
    let gw = start("trace-hang", &backend, collector.port);
    load(&gw, 400);
    let before = gw.rss_kib().expect("rss");
    load(&gw, 2000);
    let after = gw.rss_kib().expect("rss");
    assert!(
        after < before + 32 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    assert!(
        wait_until(Duration::from_secs(10), || dropped(&gw) >= 4000.0),
        "dropped {}",
        dropped(&gw)
    );
    assert_eq!(exported(&gw), 0.0);
    assert!(collector.requests() >= 1, "the exporter did try");
}

#[test]
fn a_collector_answering_503_is_retried_then_the_batch_is_dropped() {
    let backend = Backend::start("app");
    let collector = Collector::start();
    collector.set_mode(CollectorMode::Refuse);
    let gw = start("trace-503", &backend, collector.port);
    load(&gw, 40);
    assert!(
        wait_until(Duration::from_secs(10), || dropped(&gw) >= 80.0),
        "dropped {}",
        dropped(&gw)
    );
    assert!(
        collector.requests() >= 3,
        "each batch is tried 3 times: {}",
        collector.requests()
    );
    assert_eq!(exported(&gw), 0.0);
    collector.set_mode(CollectorMode::Accept);
    load(&gw, 8);
    assert!(
        wait_until(Duration::from_secs(10), || exported(&gw) >= 16.0),
        "exported {}",
        exported(&gw)
    );
    assert!(collector.spans().len() >= 16);
}

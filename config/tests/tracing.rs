//! The `[tracing]` keys: defaults, the contract's example, valid values, and refusals with
//! their line and key path.

mod common;

use std::time::Duration;

use portcullis_config::{Config, TraceTrust};

fn file(tracing: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:8080\"]\n\n{tracing}\n\n\
         [upstreams.legacy]\npeers = [\"127.0.0.1:3000\"]\n\n\
         [[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"legacy\"\n"
    )
}

fn env(name: &str) -> Option<String> {
    (name == "OTLP_TOKEN").then(|| "collector-secret".to_string())
}

fn load(text: &str) -> Result<Config, Vec<(usize, String, String)>> {
    common::load_with("tracing.toml", text, &env)
}

#[track_caller]
fn refused(tracing: &str, needle: &str, key: &str, message: &str) {
    let text = file(tracing);
    common::assert_refused(load(&text), &text, needle, key, message);
}

#[test]
fn absent_means_no_tracing() {
    assert!(load(&file("")).unwrap().tracing.is_none());
}

#[test]
fn the_contract_example_reads_as_written() {
    let config = load(&file(
        "[tracing]\notlp_endpoint = \"http://127.0.0.1:4318\"\nservice_name = \"portcullis\"\n\
         sample_ratio = 0.1\ntrust_incoming = \"trusted_proxies\"",
    ))
    .unwrap();
    let t = config.tracing.unwrap();
    assert_eq!(t.otlp_endpoint.url(), "http://127.0.0.1:4318/v1/traces");
    assert_eq!(
        (t.otlp_endpoint.host.as_str(), t.otlp_endpoint.port),
        ("127.0.0.1", 4318)
    );
    assert!(!t.otlp_endpoint.tls);
    assert_eq!(t.service_name, "portcullis");
    assert_eq!(t.sample_ratio, 0.1);
    assert_eq!(t.trust_incoming, TraceTrust::TrustedProxies);
}

#[test]
fn defaults() {
    let t = load(&file(
        "[tracing]\notlp_endpoint = \"https://otel.example.com\"",
    ))
    .unwrap()
    .tracing
    .unwrap();
    assert_eq!(t.otlp_endpoint.url(), "https://otel.example.com/v1/traces");
    assert_eq!(t.otlp_endpoint.port, 443);
    assert_eq!(t.service_name, "portcullis");
    assert_eq!(t.sample_ratio, 1.0);
    assert_eq!(t.trust_incoming, TraceTrust::TrustedProxies);
    assert_eq!(t.queue_size, 4096);
    assert_eq!(t.batch_delay, Duration::from_secs(1));
    assert_eq!(t.export_timeout, Duration::from_secs(10));
    assert!(t.headers.is_empty());
    assert_eq!(t.trace_link, None);
}

#[test]
fn every_key_set() {
    let t = load(&file(
        "[tracing]\notlp_endpoint = \"http://[::1]:4318/otlp/\"\nservice_name = \"edge-eu\"\n\
         sample_ratio = 1\ntrust_incoming = \"all\"\nqueue_size = 100\nbatch_delay = \"50ms\"\n\
         export_timeout = \"2s\"\nheaders = { authorization = \"Bearer ${OTLP_TOKEN}\" }\n\
         trace_link = \"http://jaeger:16686/trace/{trace_id}\"",
    ))
    .unwrap()
    .tracing
    .unwrap();
    assert_eq!(t.otlp_endpoint.url(), "http://[::1]:4318/otlp/v1/traces");
    assert_eq!(t.otlp_endpoint.host, "::1");
    assert_eq!(t.trust_incoming, TraceTrust::All);
    assert_eq!(
        (t.queue_size, t.batch_delay),
        (100, Duration::from_millis(50))
    );
    assert_eq!(t.headers[0].1, "Bearer collector-secret");
    let none = load(&file(
        "[tracing]\notlp_endpoint = \"http://c:4318\"\ntrust_incoming = \"none\"",
    ));
    assert_eq!(
        none.unwrap().tracing.unwrap().trust_incoming,
        TraceTrust::None
    );
}

#[test]
fn refusals_name_their_line_and_key() {
    refused(
        "[tracing]\nservice_name = \"x\"",
        "[tracing]",
        "tracing.otlp_endpoint",
        "missing",
    );
    refused(
        "[tracing]\notlp_endpoint = \"grpc://c:4317\"",
        "otlp_endpoint",
        "tracing.otlp_endpoint",
        "http:// or https://",
    );
    refused(
        "[tracing]\notlp_endpoint = \"http://c:4318/?x=1\"",
        "otlp_endpoint",
        "tracing.otlp_endpoint",
        "query",
    );
    refused(
        "[tracing]\notlp_endpoint = \"http://user:pw@c:4318\"",
        "otlp_endpoint",
        "tracing.otlp_endpoint",
        "credentials",
    );
    refused(
        "[tracing]\notlp_endpoint = \"http://c:4318\"\nsample_ratio = 1.5",
        "sample_ratio",
        "tracing.sample_ratio",
        "out of range",
    );
    refused(
        "[tracing]\notlp_endpoint = \"http://c:4318\"\ntrust_incoming = \"everyone\"",
        "trust_incoming",
        "tracing.trust_incoming",
        "not one of",
    );
    refused(
        "[tracing]\notlp_endpoint = \"http://c:4318\"\nqueue_size = 0",
        "queue_size",
        "tracing.queue_size",
        "out of range",
    );
    refused(
        "[tracing]\notlp_endpoint = \"http://c:4318\"\nheaders = { \"content-encoding\" = \"br\" }",
        "headers",
        "tracing.headers.content-encoding",
        "exporter itself",
    );
    refused(
        "[tracing]\notlp_endpoint = \"http://c:4318\"\ntrace_link = \"http://jaeger/trace/\"",
        "trace_link",
        "tracing.trace_link",
        "{trace_id}",
    );
    refused(
        "[tracing]\notlp_endpoint = \"http://c:4318\"\nsample_rate = 0.5",
        "sample_rate",
        "tracing.sample_rate",
        "unknown",
    );
}

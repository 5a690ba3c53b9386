//! The edge-cache keys: `[cache]` and a route's `cache = { ... }`. Defaults, valid values,
//! and every refusal with its line and key path.

use std::path::Path;
use std::time::Duration;

use portcullis_config::{parse, CacheSettings, Config};

/// A small valid file: `cache` is the `[cache]` section's body (no section when `None`),
/// `route` is appended to the first route.
fn file(cache: Option<&str>, route: &str) -> String {
    let cache = cache.map_or(String::new(), |body| format!("[cache]\n{body}\n\n"));
    format!(
        "[server]\nlisten = [\"127.0.0.1:8080\"]\n\n{cache}\
         [upstreams.legacy]\npeers = [\"127.0.0.1:3000\"]\n\n\
         [[routes]]\nname = \"music\"\npath_prefix = \"/api/music\"\n\
         upstream = \"legacy\"\n{route}\n"
    )
}

fn load(text: &str) -> Result<Config, Vec<(usize, String, String)>> {
    parse(Path::new("cache.toml"), text, &|_| None).map_err(|e| {
        e.0.into_iter()
            .map(|e| (e.at.line, e.at.key, e.message))
            .collect()
    })
}

#[track_caller]
fn refused(text: &str, key: &str, message: &str) {
    let errors = load(text).expect_err("the file should be refused");
    assert_eq!(errors.len(), 1, "{errors:?}");
    let (_, got_key, got_message) = &errors[0];
    assert_eq!(got_key, key, "{errors:?}");
    assert!(got_message.contains(message), "{errors:?}");
}

#[test]
fn the_contract_example_reads_as_written() {
    let text = file(
        Some("memory = \"256MiB\"\nlock_timeout = \"2s\""),
        "cache = { ttl = \"60s\", max_object_size = \"8MiB\", stale_while_revalidate = \"30s\", \
         stale_if_error = \"5m\", vary = [\"accept-encoding\"] }",
    );
    let config = load(&text).unwrap();
    assert_eq!(config.cache.memory, 256 << 20);
    assert_eq!(config.cache.lock_timeout, Duration::from_secs(2));
    let cache = config.routes[0].cache.as_ref().unwrap();
    assert_eq!(cache.ttl, Duration::from_secs(60));
    assert_eq!(cache.max_object_size, 8 << 20);
    assert_eq!(cache.stale_while_revalidate, Duration::from_secs(30));
    assert_eq!(cache.stale_if_error, Duration::from_secs(300));
    assert_eq!(cache.vary, vec![http::header::ACCEPT_ENCODING]);
}

#[test]
fn defaults_without_the_keys() {
    let config = load(&file(None, "")).unwrap();
    assert_eq!(config.cache, CacheSettings::default());
    assert!(config.routes[0].cache.is_none());
    let config = load(&file(None, "cache = {}")).unwrap();
    let cache = config.routes[0].cache.as_ref().unwrap();
    assert_eq!(cache.ttl, Duration::from_secs(60));
    assert_eq!(cache.max_object_size, 8 << 20);
    assert_eq!(cache.stale_while_revalidate, Duration::ZERO);
    assert_eq!(cache.stale_if_error, Duration::ZERO);
    assert!(cache.vary.is_empty());
}

#[test]
fn bad_values_are_refused_with_their_key() {
    refused(
        &file(Some("memory = \"256MB\""), ""),
        "cache.memory",
        "binary units",
    );
    refused(
        &file(Some("memory = \"512KiB\""), ""),
        "cache.memory",
        "at least",
    );
    refused(
        &file(Some("memory = 256"), ""),
        "cache.memory",
        "expected a string",
    );
    refused(
        &file(Some("lock_timeout = \"0s\""), ""),
        "cache.lock_timeout",
        "greater than zero",
    );
    refused(
        &file(Some("size = \"1GiB\""), ""),
        "cache.size",
        "unknown key",
    );
    refused(
        &file(None, "cache = { max_object_size = \"1GiB\" }"),
        "routes[0].cache.max_object_size",
        "63MiB",
    );
    refused(
        &file(None, "cache = { ttl = \"2d\" }"),
        "routes[0].cache.ttl",
        "at most",
    );
    refused(
        &file(None, "cache = { vary = [\"cookie\"] }"),
        "routes[0].cache.vary[0]",
        "credentials",
    );
    refused(
        &file(None, "cache = { vary = [\"accept\", \"Accept\"] }"),
        "routes[0].cache.vary",
        "twice",
    );
    refused(
        &file(None, "cache = { tll = \"60s\" }"),
        "routes[0].cache.tll",
        "unknown key",
    );
    refused(
        &file(None, "cache = { stale_if_error = \"soon\" }"),
        "routes[0].cache.stale_if_error",
        "not a duration",
    );
}

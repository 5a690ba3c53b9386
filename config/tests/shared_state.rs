//! The shared-state keys: `[admin] token`, `[rate_limit_store] kind = "redis-cluster"` with
//! `nodes`, and `[jwt] max_token_lifetime` / `max_revocations`. Defaults, valid values, and
//! refusals with their line and key path.

mod common;

use std::time::Duration;

use portcullis_config::{Config, StoreKind};

const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";

fn file(admin: &str, extra: &str) -> String {
    format!(
        "[server]\nlisten = [\"127.0.0.1:8080\"]\n\n[admin]\nlisten = \"127.0.0.1:9901\"\n{admin}\n\n\
         [upstreams.legacy]\npeers = [\"127.0.0.1:3000\"]\n\n{extra}\n\
         [[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"legacy\"\n"
    )
}

fn env(name: &str) -> Option<String> {
    (name == "ADMIN_TOKEN").then(|| ADMIN_TOKEN.to_string())
}

fn load(text: &str) -> Result<Config, Vec<(usize, String, String)>> {
    common::load_with("shared.toml", text, &env)
}

/// `text` is refused with exactly one error, on the line holding `needle`, naming `key`
/// and saying `message`.
#[track_caller]
fn refused(text: &str, needle: &str, key: &str, message: &str) {
    common::assert_refused(load(text), text, needle, key, message);
}

#[test]
fn the_admin_token_is_optional_and_read_from_the_environment() {
    let none = load(&file("", "")).unwrap();
    assert_eq!(none.admin.token, None);
    let set = load(&file("token = \"${ADMIN_TOKEN}\"", "")).unwrap();
    assert_eq!(set.admin.token.as_deref(), Some(ADMIN_TOKEN));
}

#[test]
fn short_or_spaced_admin_tokens_are_refused() {
    let short = file("token = \"secret\"", "");
    refused(&short, "token =", "admin.token", "at least 16 characters");
    let spaced = file("token = \"a token with spaces in it\"", "");
    refused(&spaced, "token =", "admin.token", "printable ASCII");
    let unset = file("token = \"${NOT_SET}\"", "");
    let errors = load(&unset).expect_err("an unset variable is an error");
    assert!(errors[0].2.contains("NOT_SET"), "{errors:?}");
}

#[test]
fn a_cluster_store_takes_seed_nodes() {
    let text = file(
        "",
        "[rate_limit_store]\nkind = \"redis-cluster\"\nnodes = [\"redis://127.0.0.1:7000\", \"redis://127.0.0.1:7001\"]\n",
    );
    let config = load(&text).unwrap();
    let StoreKind::RedisCluster(cluster) = &config.rate_limit_store.kind else {
        panic!("{:?}", config.rate_limit_store.kind);
    };
    assert_eq!(cluster.nodes.len(), 2);
    assert_eq!(cluster.key_prefix, "portcullis");
    assert_eq!(cluster.timeout, Duration::from_millis(50));
    assert_eq!(config.rate_limit_store.kind.name(), "redis-cluster");
}

#[test]
fn cluster_and_single_node_keys_do_not_mix() {
    let no_nodes = file("", "[rate_limit_store]\nkind = \"redis-cluster\"\n");
    refused(
        &no_nodes,
        "[rate_limit_store]",
        "rate_limit_store.nodes",
        "needs `nodes`",
    );
    let url = file(
        "",
        "[rate_limit_store]\nkind = \"redis-cluster\"\nurl = \"redis://127.0.0.1:7000\"\nnodes = [\"redis://127.0.0.1:7000\"]\n",
    );
    refused(
        &url,
        "[rate_limit_store]",
        "rate_limit_store.url",
        "takes `nodes`",
    );
    let stray = file(
        "",
        "[rate_limit_store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\nnodes = [\"redis://127.0.0.1:7000\"]\n",
    );
    refused(
        &stray,
        "[rate_limit_store]",
        "rate_limit_store.nodes",
        "only used with kind = \"redis-cluster\"",
    );
    let empty = file(
        "",
        "[rate_limit_store]\nkind = \"redis-cluster\"\nnodes = []\n",
    );
    refused(
        &empty,
        "nodes = []",
        "rate_limit_store.nodes",
        "at least one",
    );
    let scheme = file(
        "",
        "[rate_limit_store]\nkind = \"redis-cluster\"\nnodes = [\"http://127.0.0.1:7000\"]\n",
    );
    refused(&scheme, "nodes =", "rate_limit_store.nodes[0]", "redis://");
}

#[test]
fn key_prefixes_cannot_carry_hash_tags() {
    let text = file(
        "",
        "[rate_limit_store]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\nkey_prefix = \"{x}\"\n",
    );
    refused(&text, "key_prefix", "rate_limit_store.key_prefix", "`{`");
}

#[test]
fn revocation_bounds_have_defaults_and_limits() {
    let jwt =
        "[jwt]\nalgorithms = [\"HS256\"]\nsecret = \"jwt-secret-jwt-secret-jwt-secret-0123\"\n";
    let config = load(&file("", jwt)).unwrap();
    let j = config.jwt.unwrap();
    assert_eq!(j.max_token_lifetime, None);
    assert_eq!(j.max_revocations, 10_000);
    let set = format!("{jwt}max_token_lifetime = \"12h\"\nmax_revocations = 500\n");
    let j = load(&file("", &set)).unwrap().jwt.unwrap();
    assert_eq!(j.max_token_lifetime, Some(Duration::from_secs(12 * 3600)));
    assert_eq!(j.max_revocations, 500);
    let zero = file("", &format!("{jwt}max_revocations = 0\n"));
    refused(
        &zero,
        "max_revocations",
        "jwt.max_revocations",
        "out of range",
    );
}

#[test]
fn admin_hosts_default_to_none_and_take_names_or_addresses() {
    assert!(load(&file("", "")).unwrap().admin.hosts.is_empty());
    let set = load(&file(
        "hosts = [\"Admin.Internal\", \"portcullis\", \"10.0.0.5\", \"::1\"]",
        "",
    ))
    .unwrap();
    assert_eq!(
        set.admin.hosts,
        ["admin.internal", "portcullis", "10.0.0.5", "::1"],
        "lower-cased, as given"
    );
}

#[test]
fn admin_hosts_with_a_port_scheme_or_path_are_refused() {
    let port = file("hosts = [\"admin.internal:9901\"]", "");
    refused(&port, "hosts =", "admin.hosts[0]", "is not a host name");
    let scheme = file("hosts = [\"ok.internal\", \"http://admin.internal\"]", "");
    refused(&scheme, "hosts =", "admin.hosts[1]", "is not a host name");
    let not_a_list = file("hosts = \"admin.internal\"", "");
    refused(&not_a_list, "hosts =", "admin.hosts", "array");
}

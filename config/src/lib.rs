//! Portcullis configuration: one TOML file -> one validated, typed [`Config`].
//!
//! Loading never touches the network (so `--check` works anywhere) and reports every error at
//! once, each as `FILE:LINE:COL: key.path: message`. Unknown keys are errors: a typo must not
//! silently switch a security setting off.

mod error;
mod model;
mod reader;
mod sections;
mod units;

use std::collections::HashSet;
use std::path::Path;

pub use error::{ConfigError, ConfigErrors, Location};
pub use model::*;
pub use units::{parse_byte_rate, parse_duration, parse_rate, parse_size};

use reader::{Diag, OptionalKey, Section};

/// Reads and validates the file at `path`, resolving `${ENV}` from the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            at: Location {
                file: path.display().to_string(),
                line: 1,
                col: 1,
                key: "(file)".into(),
            },
            message: format!("cannot read the file: {e}"),
        }])
    })?;
    parse(path, &text, &|name| std::env::var(name).ok())
}

/// Validates `text` as if read from `path` (relative file paths in it resolve against the
/// path's directory). `env` looks up `${NAME}` references.
pub fn parse(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let base = path.parent().unwrap_or(Path::new("."));
    let mut d = Diag::new(&file, text, env);
    let doc = match toml_edit::Document::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            d.error(&e.span(), "(syntax)", e.message().trim().to_string());
            return Err(ConfigErrors(d.errors));
        }
    };
    let mut root = Section::new(doc.as_table(), String::new(), Some(0..0));
    let config = read(&mut root, path, base, &mut d);
    root.finish(&mut d);
    match config {
        Some(config) if d.errors.is_empty() => Ok(config),
        _ => {
            d.errors.sort_by_key(|e| (e.at.line, e.at.col));
            Err(ConfigErrors(d.errors))
        }
    }
}

fn read(root: &mut Section, path: &Path, base: &Path, d: &mut Diag) -> Option<Config> {
    let acme_field = root.get_located("acme", d);
    let acme_at = acme_field.as_ref().map(|f| f.key_span.clone());
    let acme = acme_field.map(|f| f.section(d).and_then(|s| sections::acme::acme(s, base, d)));
    let server = root.get("server").and_then(|f| f.section(d));
    let server = sections::server::server(server, base, acme.is_some(), d);
    if let (Some(span), Some(Some(acme)), Some(server)) = (&acme_at, &acme, &server) {
        acme_listeners(span, acme, server, d);
    }
    let admin = root.get("admin").and_then(|f| f.section(d));
    let admin = sections::server::admin(admin, d);

    let upstream_field = root.get("upstreams");
    let upstream_names: HashSet<String> = upstream_field
        .as_ref()
        .and_then(|f| f.node_table_keys())
        .unwrap_or_default();
    let upstreams = sections::upstreams::upstreams(upstream_field.and_then(|f| f.section(d)), d);

    let jwt = root
        .get_located("jwt", d)
        .map(|f| f.section(d).and_then(|s| sections::jwt::jwt(s, base, d)));
    let policy_field = root.get_located("rate_limits", d);
    let policy_names: HashSet<String> = policy_field
        .as_ref()
        .and_then(|f| f.node_table_keys())
        .unwrap_or_default();
    let rate_limits = sections::limits::policies(policy_field.and_then(|f| f.section(d)), d);
    let store = root
        .get_located("rate_limit_store", d)
        .and_then(|f| f.section(d));
    let store = sections::limits::store(store, d);
    let headers = root
        .get_located("security_headers", d)
        .and_then(|f| f.section(d));
    let security_headers = sections::edge::security_headers(headers, d);
    let cors = root
        .get_located("cors", d)
        .map(|f| f.section(d).and_then(|s| sections::edge::cors(s, d)));
    let suspicious = root.get_located("suspicious", d).and_then(|f| f.section(d));
    let suspicious = sections::edge::suspicious(suspicious, d);
    let cache = root.get_located("cache", d).and_then(|f| f.section(d));
    let cache = sections::cache::settings(cache, d);
    let tracing = root
        .get_located("tracing", d)
        .map(|f| f.section(d).and_then(|s| sections::tracing::tracing(s, d)));

    let cx = sections::routes::Context {
        upstreams: &upstreams,
        upstream_names: &upstream_names,
        rate_limits: &rate_limits,
        policy_names: &policy_names,
        jwt_configured: jwt.is_some(),
        jwt_sources: jwt
            .as_ref()
            .and_then(Option::as_ref)
            .map(|j| j.sources.as_slice()),
        body_buffer_memory: server.as_ref().map(|s| s.bounds.body_buffer_memory),
    };
    let routes = sections::routes::routes(root.get("routes"), &cx, d);

    Some(Config {
        locations: std::mem::take(&mut d.locations),
        source: path.to_path_buf(),
        server: server?,
        admin: admin?,
        upstreams,
        routes,
        jwt: jwt.optional()?,
        rate_limits,
        rate_limit_store: store?,
        security_headers: security_headers?,
        cors: cors.optional()?,
        suspicious: suspicious?,
        cache: cache?,
        tracing: tracing.optional()?,
        acme: acme.optional()?,
    })
}

/// `[acme]` needs TLS listeners to serve its certificate on, and the challenge its listener:
/// HTTP-01 is answered on the plain listeners, TLS-ALPN-01 on the TLS ones.
fn acme_listeners(
    span: &Option<std::ops::Range<usize>>,
    acme: &Acme,
    server: &Server,
    d: &mut Diag,
) {
    if server.tls_listen.is_empty() {
        d.error(
            span,
            "acme",
            "[acme] needs `server.tls_listen`: the certificate is served there",
        );
    }
    if acme.challenge == AcmeChallenge::Http01 && server.listen.is_empty() {
        d.error(
            span,
            "acme.challenge",
            "\"http-01\" is answered on the plain listeners, and `server.listen` has none (the CA connects to port 80); use \"tls-alpn-01\" or add a listener",
        );
    }
}

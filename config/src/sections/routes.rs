//! `[[routes]]`: references to upstreams and rate-limit policies are resolved here, so the
//! gateway never meets a dangling name.

use std::collections::{BTreeMap, HashSet};

use http::Method;

use crate::model::{AuthMode, RatePolicy, Route, TokenSource, Upstream};
use crate::reader::OptionalKey;
use crate::reader::{Diag, Field, Section};
use crate::sections::server::host_name;
use crate::sections::signed_urls::signed_urls;
use crate::sections::sources::sources;

pub(crate) struct Context<'c> {
    pub upstreams: &'c BTreeMap<String, Upstream>,
    /// Names of every upstream the file declares, valid or not (so a broken upstream does
    /// not also produce "unknown upstream" errors on the routes that use it).
    pub upstream_names: &'c HashSet<String>,
    pub rate_limits: &'c BTreeMap<String, RatePolicy>,
    pub policy_names: &'c HashSet<String>,
    pub jwt_configured: bool,
    /// `[jwt].sources`; `None` without `[jwt]` or when it is invalid (already reported).
    pub jwt_sources: Option<&'c [TokenSource]>,
    /// `server.body_buffer_memory`, when `[server]` was valid.
    pub body_buffer_memory: Option<usize>,
}

pub(crate) fn routes(field: Option<Field>, cx: &Context, d: &mut Diag) -> Vec<Route> {
    let Some(field) = field else {
        d.error(&None, "routes", "at least one [[routes]] entry is required");
        return vec![];
    };
    let Some(sections) = field.tables(d) else {
        return vec![];
    };
    let mut out: Vec<Route> = Vec::new();
    let mut names = HashSet::new();
    for section in sections {
        let span = section.span.clone();
        let path = section.path.clone();
        if let Some(r) = route(section, cx, d) {
            if !names.insert(r.name.clone()) {
                d.error(
                    &span,
                    &format!("{path}.name"),
                    format!("route name `{}` is used twice", r.name),
                );
                continue;
            }
            if let Some(other) = out.iter().find(|o| shadows(o, &r)) {
                d.error(
                    &span,
                    &format!("{path}.path_prefix"),
                    format!("route `{}` can never match: route `{}` has the same prefix, hosts and methods", r.name, other.name),
                );
                continue;
            }
            out.push(r);
        }
    }
    out
}

/// Two routes with the same prefix and hosts whose method sets overlap: the second is dead.
fn shadows(a: &Route, b: &Route) -> bool {
    let same_prefix = a.path_prefix.eq_ignore_ascii_case(&b.path_prefix);
    let mut ha = a.hosts.clone();
    let mut hb = b.hosts.clone();
    ha.sort();
    hb.sort();
    let methods_overlap = match (&a.methods, &b.methods) {
        (Some(ma), Some(mb)) => ma.iter().any(|m| mb.contains(m)),
        _ => true,
    };
    same_prefix && ha == hb && methods_overlap
}

fn route(mut s: Section, cx: &Context, d: &mut Diag) -> Option<Route> {
    let name = s.require("name", d).and_then(|f| {
        let n = f.non_empty_string(d)?;
        if !crate::sections::upstreams::valid_name(&n) {
            f.error(
                d,
                "route names use letters, digits, `-` and `_` (they become metric labels)",
            );
            return None;
        }
        Some(n)
    });
    let prefix = s.require("path_prefix", d).and_then(|f| path_prefix(&f, d));
    let hosts = s
        .get("hosts")
        .map_or(Some(vec![]), |f| f.list(d, host_name));
    let methods = s.get("methods").map(|f| methods(&f, d));
    let upstream = s.require("upstream", d).and_then(|f| {
        let n = f.non_empty_string(d)?;
        if !cx.upstream_names.contains(&n) {
            f.error(
                d,
                format!("unknown upstream `{n}` (declare it as [upstreams.{n}])"),
            );
            return None;
        }
        cx.upstreams.contains_key(&n).then_some(n)
    });
    let replace_prefix = s.get("replace_prefix").map(|f| {
        let p = f.string(d)?;
        if !p.starts_with('/') {
            f.error(d, "must start with `/`");
            return None;
        }
        if p.contains(';') {
            f.error(
                d,
                "must not hold `;` (path parameters are removed from request paths)",
            );
            return None;
        }
        Some(p)
    });
    let auth = match s.get("auth") {
        None => Some(if cx.jwt_configured {
            AuthMode::Required
        } else {
            AuthMode::None
        }),
        Some(f) => auth_mode(&f, cx.jwt_configured, d),
    };
    let rate_limit = match s.get("rate_limit") {
        None => Some(
            cx.rate_limits
                .contains_key("default")
                .then(|| "default".to_string()),
        ),
        Some(f) => rate_limit(&f, cx, d),
    };
    let retry_non_idempotent = s
        .get("retry_non_idempotent")
        .map_or(Some(false), |f| f.bool(d));
    let sources_field = s.get("auth_sources");
    let auth_sources = match &sources_field {
        None => Some(
            cx.jwt_sources
                .map(<[TokenSource]>::to_vec)
                .unwrap_or_default(),
        ),
        Some(f) => auth_sources(f, cx, d),
    };
    let signed_field = s.get("signed_urls");
    let signed = signed_field.as_ref().map(|f| signed_urls(f, d));
    let cache = s
        .get("cache")
        .map(|f| crate::sections::cache::route_cache(&f, d));
    let bounds = crate::sections::bounds::route_bounds(&mut s, cx.body_buffer_memory, d);
    if auth == Some(AuthMode::None) {
        let pointless = "has no effect on a route with auth = \"none\"";
        if let (Some(f), Some(_)) = (&sources_field, &auth_sources) {
            f.error(d, pointless);
        }
        if let (Some(f), Some(Some(_))) = (&signed_field, &signed) {
            f.error(d, pointless);
        }
    }
    s.finish(d);
    Some(Route {
        name: name?,
        path_prefix: prefix?,
        hosts: hosts?,
        methods: methods.optional()?,
        upstream: upstream?,
        replace_prefix: replace_prefix.optional()?,
        auth: auth?,
        rate_limit: rate_limit?,
        retry_non_idempotent: retry_non_idempotent?,
        auth_sources: auth_sources?,
        signed_urls: signed.optional()?,
        cache: cache.optional()?,
        bounds: bounds?,
    })
}

/// A route's `auth_sources`: a non-empty selection from `[jwt].sources`, in the route's own
/// order.
fn auth_sources(field: &Field, cx: &Context, d: &mut Diag) -> Option<Vec<TokenSource>> {
    if !cx.jwt_configured {
        field.error(d, "auth_sources needs a [jwt] section");
        return None;
    }
    sources(field, d, |f, source, d| match cx.jwt_sources {
        None => true,
        Some(configured) if configured.contains(source) => true,
        Some(configured) => {
            let names: Vec<String> = configured.iter().map(|s| format!("\"{s}\"")).collect();
            f.error(
                d,
                format!(
                    "`{source}` is not one of [jwt].sources ({})",
                    names.join(", ")
                ),
            );
            false
        }
    })
}

/// A clean absolute path: no `.`/`..` segments, no empty segments, no percent-escapes (the
/// router compares against the decoded, normalised request path). A trailing `/` is dropped
/// so `/api/` and `/api` mean the same route.
fn path_prefix(field: &Field, d: &mut Diag) -> Option<String> {
    let p = field.non_empty_string(d)?;
    if !p.starts_with('/') {
        field.error(d, "must start with `/`");
        return None;
    }
    let trimmed = if p.len() > 1 {
        p.trim_end_matches('/')
    } else {
        p.as_str()
    };
    let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
    let bad_segment = trimmed
        .split('/')
        .skip(1)
        .any(|seg| matches!(seg, "." | "..") || (seg.is_empty() && trimmed != "/"));
    if bad_segment
        || trimmed.contains(['%', '?', '#', '\\', ';'])
        || trimmed.chars().any(|c| c.is_control() || c == ' ')
    {
        field.error(
            d,
            "must be a plain path: no `.`/`..` or empty segments, `%`, `?`, `#`, `;`, `\\` or spaces",
        );
        return None;
    }
    Some(trimmed.to_string())
}

fn methods(field: &Field, d: &mut Diag) -> Option<Vec<Method>> {
    let list = field.list(d, |f, d| {
        let text = f.non_empty_string(d)?.to_ascii_uppercase();
        Method::from_bytes(text.as_bytes())
            .map_err(|_| f.error(d, format!("`{text}` is not an HTTP method")))
            .ok()
    })?;
    if list.is_empty() {
        field.error(
            d,
            "must list at least one method (leave the key out to allow all)",
        );
        return None;
    }
    Some(list)
}

fn auth_mode(field: &Field, jwt: bool, d: &mut Diag) -> Option<AuthMode> {
    let mode = match field.string(d)?.as_str() {
        "required" => AuthMode::Required,
        "optional" => AuthMode::Optional,
        "none" => AuthMode::None,
        other => {
            field.error(
                d,
                format!("`{other}` is not one of \"required\", \"optional\", \"none\""),
            );
            return None;
        }
    };
    if mode != AuthMode::None && !jwt {
        field.error(
            d,
            format!("auth = \"{}\" needs a [jwt] section", mode.as_str()),
        );
        return None;
    }
    Some(mode)
}

fn rate_limit(field: &Field, cx: &Context, d: &mut Diag) -> Option<Option<String>> {
    let name = field.non_empty_string(d)?;
    if name == "off" {
        return Some(None);
    }
    if !cx.policy_names.contains(&name) {
        field.error(d, format!("unknown rate-limit policy `{name}` (declare it as [rate_limits.{name}] or use \"off\")"));
        return None;
    }
    cx.rate_limits.contains_key(&name).then_some(Some(name))
}

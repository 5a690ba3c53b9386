//! `[security_headers]`, `[cors]` and `[suspicious]`.

use std::time::Duration;

use http::{HeaderValue, Method};

use crate::model::{Cors, SecurityHeaders, Suspicious, SuspiciousMode};
use crate::reader::{Diag, Field, Section};
use crate::sections::upstreams::header_name;

pub(crate) fn security_headers(section: Option<Section>, d: &mut Diag) -> Option<SecurityHeaders> {
    let Some(mut s) = section else {
        return Some(SecurityHeaders::default());
    };
    let mut overrides = Vec::new();
    let mut ok = true;
    for (name, field) in s.entries() {
        let header = header_name(&field, name, d);
        let value = field.string(d).and_then(|v| {
            if v.is_empty() {
                return Some(None);
            }
            HeaderValue::from_str(&v)
                .map(Some)
                .map_err(|_| field.error(d, "not a valid header value"))
                .ok()
        });
        match (header, value) {
            (Some(h), Some(v)) => overrides.push((h, v)),
            _ => ok = false,
        }
    }
    s.finish(d);
    ok.then_some(SecurityHeaders { overrides })
}

pub(crate) fn cors(mut s: Section, d: &mut Diag) -> Option<Cors> {
    let origins = s
        .require("allow_origins", d)
        .and_then(|f| f.list(d, origin));
    let methods =
        s.get("allow_methods")
            .map_or(Some(vec![Method::GET, Method::HEAD, Method::POST]), |f| {
                f.list(d, |f, d| {
                    let m = f.non_empty_string(d)?.to_ascii_uppercase();
                    Method::from_bytes(m.as_bytes())
                        .map_err(|_| f.error(d, format!("`{m}` is not an HTTP method")))
                        .ok()
                })
            });
    let headers = s
        .get("allow_headers")
        .map_or(Some(vec![]), |f| header_list(&f, d));
    let expose = s
        .get("expose_headers")
        .map_or(Some(vec![]), |f| header_list(&f, d));
    let credentials_field = s.get("allow_credentials");
    let credentials = credentials_field
        .as_ref()
        .map_or(Some(false), |f| f.bool(d));
    let max_age = s
        .get("max_age")
        .map_or(Some(Duration::from_secs(600)), |f| f.duration(d));
    let span = s.span.clone();
    s.finish(d);
    let (origins, credentials) = (origins?, credentials?);
    if origins.is_empty() {
        d.error(
            &span,
            "cors.allow_origins",
            "must list at least one origin (remove [cors] to disable CORS)",
        );
        return None;
    }
    if credentials && origins.iter().any(|o| o == "*") {
        let at = credentials_field.map_or(span, |f| f.span);
        // Fetch standard, CORS protocol: credentials are never allowed with a wildcard origin.
        d.error(
            &at,
            "cors.allow_credentials",
            "cannot be true when allow_origins contains \"*\"",
        );
        return None;
    }
    Some(Cors {
        allow_origins: origins,
        allow_methods: methods?,
        allow_headers: headers?,
        expose_headers: expose?,
        allow_credentials: credentials,
        max_age: max_age?,
    })
}

/// `*`, `null`, `scheme://host[:port]` or `scheme://*.domain[:port]`, lower-cased.
fn origin(field: &Field, d: &mut Diag) -> Option<String> {
    let text = field.non_empty_string(d)?.trim().to_ascii_lowercase();
    if text == "*" || text == "null" {
        return Some(text);
    }
    let valid = text.split_once("://").is_some_and(|(scheme, rest)| {
        let host = match rest.rsplit_once(':') {
            Some((h, port)) if port.parse::<u16>().is_ok() => h,
            _ => rest,
        };
        let host = host.strip_prefix("*.").unwrap_or(host);
        matches!(scheme, "http" | "https")
            && !host.is_empty()
            && host
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    });
    if !valid {
        field.error(d, format!(
            "`{text}` is not an origin: use \"https://host[:port]\", \"https://*.example.com\", \"null\" or \"*\" (no path)"
        ));
        return None;
    }
    Some(text)
}

fn header_list(field: &Field, d: &mut Diag) -> Option<Vec<http::HeaderName>> {
    field.list(d, |f, d| {
        let name = f.non_empty_string(d)?;
        header_name(f, &name, d)
    })
}

pub(crate) fn suspicious(section: Option<Section>, d: &mut Diag) -> Option<Suspicious> {
    let mut out = Suspicious::default();
    let Some(mut s) = section else {
        return Some(out);
    };
    let mode = s.get("mode").map(|f| match f.string(d)?.as_str() {
        "off" => Some(SuspiciousMode::Off),
        "log" => Some(SuspiciousMode::Log),
        "block" => Some(SuspiciousMode::Block),
        other => {
            f.error(
                d,
                format!("`{other}` is not one of \"off\", \"log\", \"block\""),
            );
            None
        }
    });
    let max_uri = s.get("max_uri_bytes").map(|f| f.int(d, 256, 1024 * 1024));
    let max_headers = s.get("max_headers").map(|f| f.int(d, 8, 256));
    let threshold = s.get("ban_threshold").map(|f| f.int(d, 0, 1_000_000));
    let window = s.get("ban_window").map(|f| f.positive_duration(d));
    let duration = s.get("ban_duration").map(|f| f.positive_duration(d));
    let table = s.get("ban_table_size").map(|f| f.int(d, 1, 10_000_000));
    let ipv6_prefix = s.get("ipv6_prefix").map(|f| f.int(d, 48, 128));
    let disabled = s.get("disabled_rules").map(|f| {
        f.list(d, |f, d| {
            let rule = f.non_empty_string(d)?;
            if !Suspicious::RULES.contains(&rule.as_str()) {
                f.error(
                    d,
                    format!(
                        "unknown rule `{rule}` (one of {})",
                        Suspicious::RULES.join(", ")
                    ),
                );
                return None;
            }
            Some(rule)
        })
    });
    s.finish(d);
    let mut ok = true;
    macro_rules! set {
        ($opt:expr, $target:expr, $conv:expr) => {
            match $opt {
                Some(Some(v)) => $target = $conv(v),
                Some(None) => ok = false,
                None => {}
            }
        };
    }
    set!(mode, out.mode, |v| v);
    set!(max_uri, out.max_uri_bytes, |v: i64| v as usize);
    set!(max_headers, out.max_headers, |v: i64| v as usize);
    set!(threshold, out.ban_threshold, |v: i64| v as u32);
    set!(window, out.ban_window, |v| v);
    set!(duration, out.ban_duration, |v| v);
    set!(table, out.ban_table_size, |v: i64| v as usize);
    set!(disabled, out.disabled_rules, |v| v);
    set!(ipv6_prefix, out.ipv6_prefix, |v: i64| v as u8);
    ok.then_some(out)
}

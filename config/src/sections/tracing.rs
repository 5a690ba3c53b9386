//! `[tracing]`: the OTLP endpoint, the resource's service name, sampling and whose trace
//! context is believed.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};

use crate::model::{OtlpEndpoint, TraceTrust, Tracing};
use crate::reader::{Diag, Field, Section};
use crate::sections::upstreams::header_name;

const DEFAULT_QUEUE_SPANS: usize = 4096;
const MAX_QUEUE_SPANS: i64 = 1_000_000;
const DEFAULT_BATCH_DELAY: Duration = Duration::from_secs(1);
/// OpenTelemetry's own default export timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`).
const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Headers an export sets itself.
const EXPORT_HEADERS: &[&str] = &[
    "host",
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "connection",
];

pub(crate) fn tracing(mut s: Section, d: &mut Diag) -> Option<Tracing> {
    let endpoint = s
        .require("otlp_endpoint", d)
        .and_then(|f| otlp_endpoint(&f, d));
    let service_name = s
        .get("service_name")
        .map_or(Some("portcullis".to_string()), |f| f.non_empty_string(d));
    let sample_ratio = s
        .get("sample_ratio")
        .map_or(Some(1.0), |f| f.number(d, 0.0, 1.0));
    let trust_incoming = s
        .get("trust_incoming")
        .map_or(Some(TraceTrust::TrustedProxies), |f| {
            match f.string(d)?.as_str() {
                "all" => Some(TraceTrust::All),
                "trusted_proxies" => Some(TraceTrust::TrustedProxies),
                "none" => Some(TraceTrust::None),
                other => {
                    f.error(
                        d,
                        format!("`{other}` is not one of \"all\", \"trusted_proxies\", \"none\""),
                    );
                    None
                }
            }
        });
    let queue_size = s.get("queue_size").map_or(Some(DEFAULT_QUEUE_SPANS), |f| {
        f.int(d, 1, MAX_QUEUE_SPANS).map(|n| n as usize)
    });
    let batch_delay = s
        .get("batch_delay")
        .map_or(Some(DEFAULT_BATCH_DELAY), |f| f.positive_duration(d));
    let export_timeout = s
        .get("export_timeout")
        .map_or(Some(DEFAULT_EXPORT_TIMEOUT), |f| f.positive_duration(d));
    let headers = s.get("headers").map_or(Some(vec![]), |f| headers(&f, d));
    let trace_link = s.get("trace_link").map(|f| {
        let link = f.non_empty_string(d)?;
        if !(link.starts_with("https://") || link.starts_with("http://")) {
            f.error(d, "must be an http:// or https:// URL");
            return None;
        }
        if !link.contains("{trace_id}") {
            f.error(d, "must contain `{trace_id}` where the trace id goes");
            return None;
        }
        Some(link)
    });
    s.finish(d);
    Some(Tracing {
        otlp_endpoint: endpoint?,
        service_name: service_name?,
        sample_ratio: sample_ratio?,
        trust_incoming: trust_incoming?,
        queue_size: queue_size?,
        batch_delay: batch_delay?,
        export_timeout: export_timeout?,
        headers: headers?,
        trace_link: trace_link.map_or(Some(None), |l| l.map(Some))?,
    })
}

/// `http://host:port[/path]` or `https://...`; no query, no fragment, no credentials in it
/// (they would end up in logs; `headers` carries them).
fn otlp_endpoint(f: &Field, d: &mut Diag) -> Option<OtlpEndpoint> {
    let text = f.non_empty_string(d)?;
    let uri: Uri = match text.parse() {
        Ok(uri) => uri,
        Err(e) => {
            f.error(d, format!("not a URL: {e}"));
            return None;
        }
    };
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            f.error(d, "must be an http:// or https:// URL");
            return None;
        }
    };
    let Some(authority) = uri.authority() else {
        f.error(d, "names no host");
        return None;
    };
    if authority.as_str().contains('@') {
        f.error(d, "must not hold credentials (use `headers`)");
        return None;
    }
    if uri.query().is_some() || text.contains('#') {
        f.error(d, "must not have a query or fragment");
        return None;
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let base = uri.path().trim_end_matches('/');
    Some(OtlpEndpoint {
        tls,
        port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
        host,
        authority: authority.as_str().to_string(),
        path: format!("{base}/v1/traces"),
    })
}

fn headers(field: &Field, d: &mut Diag) -> Option<Vec<(HeaderName, HeaderValue)>> {
    let mut s = field.section(d)?;
    let mut out = Vec::new();
    let mut ok = true;
    for (name, value) in s.entries() {
        let Some(header) = header_name(&value, name, d) else {
            ok = false;
            continue;
        };
        if EXPORT_HEADERS.contains(&header.as_str()) {
            value.error(d, format!("`{name}` is set by the exporter itself"));
            ok = false;
            continue;
        }
        let parsed = value.string(d).and_then(|t| {
            HeaderValue::from_str(&t)
                .map_err(|_| value.error(d, "not a valid header value (control characters?)"))
                .ok()
        });
        match parsed {
            Some(mut v) => {
                v.set_sensitive(true);
                out.push((header, v));
            }
            None => ok = false,
        }
    }
    s.finish(d);
    ok.then_some(out)
}

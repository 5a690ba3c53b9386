//! `[upstreams.NAME]` with its optional `health_check`, `retry` and `circuit_breaker`.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use crate::model::REPLAY_BUFFER;
use crate::model::{CircuitBreakerPolicy, HealthCheck, Peer, RetryPolicy, Upstream};
use crate::reader::OptionalKey;
use crate::reader::{Diag, Field, Section};

/// Headers a gateway must own: letting configuration inject them would break framing or
/// forwarding (RFC 9110 section 7.6.1, RFC 9112 section 6).
const RESERVED_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "keep-alive",
    "proxy-connection",
];

pub(crate) fn upstreams(section: Option<Section>, d: &mut Diag) -> BTreeMap<String, Upstream> {
    let mut out = BTreeMap::new();
    let Some(mut s) = section else { return out };
    for (name, field) in s.entries() {
        if !valid_name(name) {
            d.error(
                &field.key_span,
                &field.path,
                "upstream names use letters, digits, `-` and `_`",
            );
        }
        if let Some(upstream) = field.section(d).and_then(|s| upstream(name, s, d)) {
            out.insert(name.to_string(), upstream);
        }
    }
    s.finish(d);
    out
}

pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn upstream(name: &str, mut s: Section, d: &mut Diag) -> Option<Upstream> {
    let peers = s.require("peers", d).and_then(|f| {
        let peers = f.list(d, peer)?;
        if peers.is_empty() {
            f.error(d, "at least one peer is required");
            return None;
        }
        Some(peers)
    });
    let tls = s.get("tls").map_or(Some(false), |f| f.bool(d));
    let sni = s.get("sni").map(|f| f.non_empty_string(d));
    let tls_verify = s.get("tls_verify").map_or(Some(true), |f| f.bool(d));
    let connect_timeout = s
        .get("connect_timeout")
        .map_or(Some(Duration::from_secs(2)), |f| f.positive_duration(d));
    let read_timeout = s
        .get("read_timeout")
        .map_or(Some(Duration::from_secs(30)), |f| f.positive_duration(d));
    let write_timeout = s
        .get("write_timeout")
        .map_or(Some(Duration::from_secs(30)), |f| f.positive_duration(d));
    let request_headers = s
        .get("request_headers")
        .map_or(Some(vec![]), |f| request_headers(&f, d));
    let health_check = s
        .get("health_check")
        .map(|f| f.section(d).and_then(|s| health_check(s, d)));
    let retry_field = s.get_located("retry", d).map(|f| f.section(d));
    let breaker = s
        .get("circuit_breaker")
        .map(|f| f.section(d).and_then(|s| circuit_breaker(s, d)));
    s.finish(d);

    let peers = peers?;
    let (connect_timeout, read_timeout) = (connect_timeout?, read_timeout?);
    let retry = match retry_field {
        None => None,
        Some(section) => Some(retry(section?, connect_timeout + read_timeout, d)?),
    };
    let sni = match sni {
        Some(sni) => sni?,
        None => peers[0].host.clone(),
    };
    Some(Upstream {
        name: name.to_string(),
        peers,
        tls: tls?,
        sni,
        tls_verify: tls_verify?,
        connect_timeout,
        read_timeout,
        write_timeout: write_timeout?,
        request_headers: request_headers?,
        health_check: health_check.optional()?,
        retry,
        circuit_breaker: breaker.optional()?,
    })
}

/// `host:port` or `[v6]:port`.
fn peer(field: &Field, d: &mut Diag) -> Option<Peer> {
    let text = field.non_empty_string(d)?;
    let parsed = parse_peer(text.trim());
    if parsed.is_none() {
        field.error(
            d,
            format!("`{text}` is not host:port (e.g. \"127.0.0.1:3000\")"),
        );
    }
    parsed
}

fn parse_peer(text: &str) -> Option<Peer> {
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => rest.split_once("]:")?,
        None => text.rsplit_once(':').filter(|(h, _)| !h.contains(':'))?,
    };
    let port = port.parse::<u16>().ok().filter(|&p| p != 0)?;
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
    host_ok.then(|| Peer {
        host: host.to_ascii_lowercase(),
        port,
    })
}

pub(crate) fn header_name(field: &Field, name: &str, d: &mut Diag) -> Option<HeaderName> {
    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
        .map_err(|_| field.error(d, format!("`{name}` is not a valid header name")))
        .ok()
}

fn request_headers(field: &Field, d: &mut Diag) -> Option<Vec<(HeaderName, HeaderValue)>> {
    let mut s = field.section(d)?;
    let mut out = Vec::new();
    let mut ok = true;
    for (name, value) in s.entries() {
        let header = header_name(&value, name, d);
        if let Some(h) = &header {
            if RESERVED_HEADERS.contains(&h.as_str()) {
                value.error(
                    d,
                    format!("`{name}` is managed by the gateway and cannot be set"),
                );
                ok = false;
                continue;
            }
        }
        let text = value.string(d);
        let parsed = text.as_deref().and_then(|t| {
            HeaderValue::from_str(t)
                .map_err(|_| value.error(d, "not a valid header value (control characters?)"))
                .ok()
        });
        match (header, parsed) {
            (Some(h), Some(mut v)) => {
                v.set_sensitive(true);
                out.push((h, v));
            }
            _ => ok = false,
        }
    }
    s.finish(d);
    ok.then_some(out)
}

fn health_check(mut s: Section, d: &mut Diag) -> Option<HealthCheck> {
    let path = s.require("path", d).and_then(|f| {
        let p = f.non_empty_string(d)?;
        if !p.starts_with('/') {
            f.error(d, "must start with `/`");
            return None;
        }
        Some(p)
    });
    let interval = s
        .get("interval")
        .map_or(Some(Duration::from_secs(5)), |f| f.positive_duration(d));
    let timeout = s.get("timeout").map(|f| f.positive_duration(d));
    let unhealthy = s
        .get("unhealthy_after")
        .map_or(Some(2), |f| f.int(d, 1, 100));
    let healthy = s.get("healthy_after").map_or(Some(1), |f| f.int(d, 1, 100));
    s.finish(d);
    let interval = interval?;
    let timeout = match timeout {
        Some(t) => t?,
        None => interval.min(Duration::from_secs(2)),
    };
    Some(HealthCheck {
        path: path?,
        interval,
        timeout,
        unhealthy_after: unhealthy? as u32,
        healthy_after: healthy? as u32,
    })
}

fn retry(mut s: Section, try_time: Duration, d: &mut Diag) -> Option<RetryPolicy> {
    let attempts = s
        .get("attempts")
        .map_or(Some(3), |f| f.int(d, 0, 10))
        .map(|n| n as u32);
    let base = s
        .get("backoff_base")
        .map_or(Some(Duration::from_millis(100)), |f| f.positive_duration(d));
    let max = s
        .get("backoff_max")
        .map_or(Some(Duration::from_secs(2)), |f| f.positive_duration(d));
    let on_status = s.get("on_status").map_or(Some(vec![502, 503, 504]), |f| {
        f.list(d, |f, d| f.int(d, 400, 599).map(|n| n as u16))
    });
    let body = s
        .get("max_replay_body")
        .map_or(Some(REPLAY_BUFFER as i64), |f| {
            f.int(d, 0, 64 * 1024 * 1024)
        })
        .map(|n| n as usize);
    let budget = s
        .get("budget_ratio")
        .map_or(Some(0.2), |f| f.number(d, 0.0, 1.0));
    let deadline_field = s.get("deadline");
    let deadline = deadline_field.as_ref().map(|f| f.positive_duration(d));
    let span = s.span.clone();
    let path = s.path.clone();
    s.finish(d);
    let (attempts, base, max) = (attempts?, base?, max?);
    if base > max {
        d.error(
            &span,
            &format!("{path}.backoff_base"),
            "must not be greater than backoff_max",
        );
        return None;
    }
    // By default the deadline never cuts a configured try short: every try may use its full
    // connect and read timeouts and every wait its full backoff.
    let deadline = match deadline {
        Some(value) => value?,
        None => try_time * (attempts + 1) + max * attempts,
    };
    Some(RetryPolicy {
        attempts,
        backoff_base: base,
        backoff_max: max,
        on_status: on_status?,
        max_replay_body: body?,
        budget_ratio: budget?,
        deadline,
    })
}

fn circuit_breaker(mut s: Section, d: &mut Diag) -> Option<CircuitBreakerPolicy> {
    let failure_rate = s.get("failure_rate").map_or(Some(0.5), |f| {
        let v = f.number(d, 0.0, 1.0)?;
        if v <= 0.0 {
            f.error(d, "must be greater than 0");
            return None;
        }
        Some(v)
    });
    let min_requests = s
        .get("min_requests")
        .map_or(Some(10), |f| f.int(d, 1, 1_000_000))
        .map(|n| n as u32);
    let window = s
        .get("window")
        .map_or(Some(Duration::from_secs(30)), |f| f.positive_duration(d));
    let open_for = s
        .get("open_for")
        .map_or(Some(Duration::from_secs(30)), |f| f.positive_duration(d));
    let half_open = s
        .get("half_open_requests")
        .map_or(Some(3), |f| f.int(d, 1, 1000))
        .map(|n| n as u32);
    s.finish(d);
    Some(CircuitBreakerPolicy {
        failure_rate: failure_rate?,
        min_requests: min_requests?,
        window: window?,
        open_for: open_for?,
        half_open_requests: half_open?,
    })
}

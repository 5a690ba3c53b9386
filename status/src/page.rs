//! `GET /status`: the report as one self-contained HTML page. Tables rendered here, so the page
//! reads without JavaScript; `/status.js` (same origin, so the CSP `script-src 'self'` lets it
//! run) fetches `/status.json` every 2 s and redraws the same cells and the charts. No inline
//! script or style anywhere (the CSP forbids both): presentation is `/status.css` and SVG
//! presentation attributes.
//!
//! Every text that is not a literal goes through [`esc`]. Number formats match the script's
//! (`fmt_rate`, `fmt_ms` there too), so a redraw changes only what changed.

use std::fmt::Write as _;

use crate::json::*;

pub const SCRIPT: &str = include_str!("assets/status.js");
pub const STYLE: &str = include_str!("assets/status.css");
pub const ICON: &str = include_str!("assets/icon.svg");

/// The row of an empty three-column list (the script writes the same).
const EMPTY_3: &str = "<tr class=\"empty\"><td colspan=\"3\">none</td></tr>\n";
const EMPTY_5: &str = "<tr class=\"empty\"><td colspan=\"5\">none</td></tr>\n";

/// The chart's drawing box (viewBox units).
const CHART_W: f64 = 150.0;
const CHART_H: f64 = 32.0;

pub fn render(r: &Report) -> String {
    let mut h = String::with_capacity(16 * 1024);
    h.push_str(concat!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
        "<title>Portcullis status</title>\n",
        "<link rel=\"stylesheet\" href=\"/status.css\">\n",
        "<link rel=\"icon\" href=\"/favicon.ico\" type=\"image/svg+xml\">\n",
        "<script src=\"/status.js\" defer></script>\n</head>\n<body>\n"
    ));
    let _ = write!(
        h,
        "<header><h1>Portcullis</h1><p>version <b data-f=\"version\">{}</b> · up <b data-f=\"uptime_seconds\" data-fmt=\"uptime\">{}</b> · as of <b data-f=\"generated_at\">{}</b> <span id=\"live\" class=\"live off\">static page</span></p></header>\n<main>\n",
        esc(r.version),
        uptime(r.uptime_seconds),
        esc(&r.generated_at)
    );
    config(&mut h, &r.config);
    routes(&mut h, r);
    upstreams(&mut h, &r.upstreams);
    jwt(&mut h, r.jwt.as_ref());
    rate_limits(&mut h, r);
    suspicious(&mut h, r);
    bounds(&mut h, &r.bounds);
    tracing(&mut h, r.tracing.as_ref());
    if let Some(c) = &r.certificate {
        certificate(&mut h, c);
    }
    h.push_str("</main>\n<footer>Read-only. The same figures as JSON: <a href=\"/status.json\">/status.json</a>; every counter: <a href=\"/metrics\">/metrics</a>.</footer>\n</body>\n</html>\n");
    h
}

fn config(h: &mut String, c: &ConfigReport) {
    let reload = &c.last_reload;
    let _ = writeln!(
        h,
        "<section id=\"config\"><h2>Configuration</h2><dl>\
         <dt>file</dt><dd data-f=\"config.path\">{}</dd>\
         <dt>last reload</dt><dd><span data-f=\"config.last_reload.result\" data-fmt=\"result\" class=\"{}\">{}</span> <span data-f=\"config.last_reload.at\">{}</span></dd>\
         <dt>reload error</dt><dd><pre data-f=\"config.last_reload.error\">{}</pre></dd>\
         </dl></section>",
        esc(&c.path),
        result_class(reload.result),
        esc(reload.result),
        opt(reload.at.as_deref()),
        opt(reload.error.as_deref()),
    );
}

fn routes(h: &mut String, r: &Report) {
    h.push_str("<section id=\"routes\"><h2>Routes <small>last minute; chart: requests per minute, last 15 minutes</small></h2>\n<table><thead><tr><th>route</th><th>upstream</th><th>auth</th><th>rate limit</th><th>req/s</th><th>p50 ms</th><th>p99 ms</th><th>4xx/s</th><th>5xx/s</th><th>limited</th><th>last 15 min</th></tr></thead><tbody data-list=\"routes\">\n");
    for route in &r.routes {
        route_row(
            h,
            &route.name,
            &route.upstream,
            route.auth,
            route.rate_limit.as_deref(),
            &route.traffic,
            "",
        );
    }
    route_row(h, "(no route)", "—", "—", None, &r.unrouted, "unrouted");
    h.push_str("</tbody></table></section>\n");
}

fn route_row(
    h: &mut String,
    name: &str,
    upstream: &str,
    auth: &str,
    limit: Option<&str>,
    t: &Traffic,
    class: &str,
) {
    let _ = write!(
        h,
        "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n {}\">{}</td><td class=\"n\">{}</td><td>",
        esc(name),
        esc(upstream),
        esc(auth),
        opt(limit),
        fmt_rate(t.requests_per_second),
        fmt_ms(t.p50_ms),
        fmt_ms(t.p99_ms),
        fmt_rate(t.client_errors_per_second),
        if t.server_errors_per_second > 0.0 { "bad" } else { "" },
        fmt_rate(t.server_errors_per_second),
        t.rate_limited_last_minute,
    );
    chart(h, &t.history.requests);
    h.push_str("</td></tr>\n");
}

/// A polyline of `values` scaled to the chart box (the script draws the same).
fn chart(h: &mut String, values: &[u64]) {
    let max = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    let step = CHART_W / (values.len().max(2) - 1) as f64;
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let y = CHART_H - 1.0 - (v as f64 / max) * (CHART_H - 2.0);
            format!("{:.1},{:.1}", i as f64 * step, y)
        })
        .collect();
    let peak = values.iter().copied().max().unwrap_or(0);
    let _ = write!(
        h,
        "<svg class=\"chart\" viewBox=\"0 0 {CHART_W} {CHART_H}\" width=\"{CHART_W}\" height=\"{CHART_H}\" role=\"img\"><title>requests per minute, peak {peak}</title><polyline fill=\"none\" stroke=\"currentColor\" stroke-width=\"1.5\" points=\"{}\"/></svg>",
        points.join(" ")
    );
}

fn upstreams(h: &mut String, upstreams: &[UpstreamReport]) {
    h.push_str("<section id=\"upstreams\"><h2>Upstreams</h2>\n<table><thead><tr><th>upstream</th><th>breaker</th><th>changed</th><th>retries/min</th><th>retry budget left</th><th>peers</th></tr></thead><tbody data-list=\"upstreams\">\n");
    for u in upstreams {
        let breaker = if u.breaker_enabled { u.breaker } else { "none" };
        let _ = write!(
            h,
            "<tr data-key=\"{}\"><td>{}</td><td class=\"breaker {}\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>",
            esc(&u.name),
            esc(&u.name),
            breaker_class(u.breaker, u.breaker_enabled),
            esc(breaker),
            opt(u.breaker_changed_at.as_deref()),
            u.retries_last_minute,
            u.retry_budget_left.map_or("—".to_string(), |n| n.to_string()),
        );
        for p in &u.peers {
            let (class, word) = peer_state(p);
            let _ = write!(
                h,
                "<span class=\"peer {class}\">{} {word}</span> ",
                esc(&p.address)
            );
        }
        h.push_str("</td></tr>\n");
    }
    h.push_str("</tbody></table></section>\n");
}

fn jwt(h: &mut String, jwt: Option<&JwtReport>) {
    h.push_str("<section id=\"jwt\"><h2>JWT</h2>");
    let Some(j) = jwt else {
        h.push_str("<p data-f=\"jwt\" data-fmt=\"absent\">no [jwt] section</p></section>\n");
        return;
    };
    let validations: Vec<String> = j
        .validations_last_minute
        .iter()
        .map(|c| format!("{} {}", esc(&c.name), c.count))
        .collect();
    let keys: Vec<String> = j
        .keys
        .iter()
        .map(|k| {
            format!(
                "{} ({})",
                k.kid.as_deref().map_or("no kid".into(), esc),
                k.source
            )
        })
        .collect();
    let _ = write!(
        h,
        "<dl><dt>cache hit rate</dt><dd data-f=\"jwt.cache_hit_ratio\" data-fmt=\"pct\">{}</dd>\
         <dt>cache entries</dt><dd data-f=\"jwt.cache_entries\">{}</dd>\
         <dt>validations, last minute</dt><dd data-f=\"jwt.validations_last_minute\" data-fmt=\"counts\">{}</dd>\
         <dt>keys</dt><dd data-f=\"jwt.keys\" data-fmt=\"keys\">{}</dd>",
        pct(j.cache_hit_ratio),
        j.cache_entries,
        if validations.is_empty() { "—".into() } else { validations.join(", ") },
        if keys.is_empty() { "none loaded".into() } else { keys.join(", ") },
    );
    if let Some(f) = &j.jwks {
        let _ = write!(
            h,
            "<dt>JWKS last fetch</dt><dd data-f=\"jwt.jwks.last_fetch_at\">{}</dd>\
             <dt>JWKS last success</dt><dd data-f=\"jwt.jwks.last_success_at\">{}</dd>\
             <dt>JWKS last error</dt><dd data-f=\"jwt.jwks.last_error\" class=\"bad\">{}</dd>",
            opt(f.last_fetch_at.as_deref()),
            opt(f.last_success_at.as_deref()),
            opt(f.last_error.as_deref()),
        );
    }
    h.push_str("</dl></section>\n");
}

fn certificate(h: &mut String, c: &CertificateReport) {
    let _ = writeln!(
        h,
        "<section id=\"certificate\"><h2>Certificate <small>[acme]</small></h2><dl>\
         <dt>state</dt><dd data-f=\"certificate.state\" class=\"{}\">{}</dd>\
         <dt>names</dt><dd data-f=\"certificate.names\" data-fmt=\"names\">{}</dd>\
         <dt>issuer</dt><dd data-f=\"certificate.issuer\">{}</dd>\
         <dt>not after</dt><dd data-f=\"certificate.not_after\">{}</dd>\
         <dt>next renewal</dt><dd data-f=\"certificate.next_renewal\">{}</dd>\
         <dt>last error</dt><dd data-f=\"certificate.last_error\" class=\"bad\">{}</dd></dl></section>",
        if c.state == "valid" { "ok" } else { "bad" },
        c.state,
        esc(&c.names.join(", ")),
        opt(c.issuer.as_deref()),
        opt(c.not_after.as_deref()),
        opt(c.next_renewal.as_deref()),
        opt(c.last_error.as_deref()),
    );
}

fn rate_limits(h: &mut String, r: &Report) {
    let s = &r.rate_limit_store;
    let _ = write!(
        h,
        "<section id=\"ratelimit\"><h2>Rate limiting</h2><dl>\
         <dt>store</dt><dd data-f=\"rate_limit_store.kind\">{}</dd>\
         <dt>state</dt><dd data-f=\"rate_limit_store.healthy\" data-fmt=\"store\" class=\"{}\">{}</dd>\
         <dt>store errors, last minute</dt><dd data-f=\"rate_limit_store.errors_last_minute\">{}</dd></dl>\n\
         <h3>Most limited clients, last minute</h3><table><thead><tr><th>client (bucket)</th><th>refusals</th><th>limit</th></tr></thead><tbody data-list=\"rate_limited_clients\">\n",
        s.kind,
        if s.healthy { "ok" } else { "bad" },
        store_state(s),
        s.errors_last_minute,
    );
    if r.rate_limited_clients.is_empty() {
        h.push_str(EMPTY_3);
    }
    for c in &r.rate_limited_clients {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&c.client),
            c.refusals,
            c.scope
        );
    }
    h.push_str("</tbody></table></section>\n");
}

fn suspicious(h: &mut String, r: &Report) {
    let _ = write!(
        h,
        "<section id=\"suspicious\"><h2>Suspicious requests <small>mode <span data-f=\"suspicious.mode\">{}</span></small></h2>\n\
         <table><thead><tr><th>rule</th><th>logged</th><th>blocked</th><th>last minute</th></tr></thead><tbody data-list=\"suspicious.rules\">\n",
        r.suspicious.mode
    );
    for rule in &r.suspicious.rules {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            rule.rule, rule.logged, rule.blocked, rule.last_minute
        );
    }
    let _ = write!(
        h,
        "</tbody></table>\n<h3>Bans <small><span data-f=\"bans_total\">{}</span> in force</small></h3><table><thead><tr><th>client or range</th><th>expires</th><th>seconds left</th></tr></thead><tbody data-list=\"bans\">\n",
        r.bans_total
    );
    if r.bans.is_empty() {
        h.push_str(EMPTY_3);
    }
    for b in &r.bans {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
            esc(&b.client),
            esc(&b.expires_at),
            b.expires_in_seconds
        );
    }
    h.push_str("</tbody></table></section>\n");
}

/// `[tracing]`: the slowest sampled requests, each linked to its trace when `trace_link` is set.
fn tracing(h: &mut String, t: Option<&TracingReport>) {
    let Some(t) = t else { return };
    let _ = write!(
        h,
        "<section id=\"tracing\"><h2>Slow traced requests <small>sample ratio <span data-f=\"tracing.sample_ratio\">{}</span> · trust <span data-f=\"tracing.trust_incoming\">{}</span> · spans exported <span data-f=\"tracing.spans_exported\">{}</span>, dropped <span data-f=\"tracing.spans_dropped\">{}</span></small></h2>\n\
         <table><thead><tr><th>ended</th><th>route</th><th>status</th><th>ms</th><th>trace</th></tr></thead><tbody data-list=\"tracing.slow\">\n",
        t.sample_ratio, t.trust_incoming, t.spans_exported, t.spans_dropped
    );
    if t.slow.is_empty() {
        h.push_str(EMPTY_5);
    }
    for s in &t.slow {
        let trace = match &s.link {
            Some(link) => format!("<a href=\"{}\">{}</a>", esc(link), esc(&s.trace_id)),
            None => esc(&s.trace_id),
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"trace\">{trace}</td></tr>",
            esc(&s.at),
            esc(&s.route),
            s.status,
            fmt_ms(Some(s.duration_ms)),
        );
    }
    h.push_str("</tbody></table></section>\n");
}

// === formats (the script's are the same) ===

fn bounds(h: &mut String, b: &BoundsReport) {
    let _ = write!(
        h,
        "<section id=\"bounds\"><h2>Bounded requests</h2><dl>\
         <dt>client connections</dt><dd><b data-f=\"bounds.connections\">{}</b> of <span data-f=\"bounds.max_connections\">{}</span></dd>\
         <dt>requests in flight</dt><dd data-f=\"bounds.requests_in_flight\">{}</dd>\
         <dt>buffered body bytes</dt><dd><b data-f=\"bounds.buffered_body_bytes\">{}</b> of <span data-f=\"bounds.body_buffer_memory\">{}</span></dd></dl>\n\
         <h3>Refusals by limit</h3><table><thead><tr><th>limit</th><th>last minute</th><th>since start</th></tr></thead><tbody data-list=\"bounds.refusals\">\n",
        b.connections, b.max_connections, b.requests_in_flight, b.buffered_body_bytes, b.body_buffer_memory,
    );
    for r in &b.refusals {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            r.limit, r.last_minute, r.total
        );
    }
    h.push_str("</tbody></table></section>\n");
}

fn fmt_rate(x: f64) -> String {
    format!("{x:.2}")
}

fn fmt_ms(x: Option<f64>) -> String {
    match x {
        None => "—".into(),
        Some(ms) if ms < 10.0 => format!("{ms:.2}"),
        Some(ms) if ms < 100.0 => format!("{ms:.1}"),
        Some(ms) => format!("{ms:.0}"),
    }
}

fn pct(x: Option<f64>) -> String {
    x.map_or("—".into(), |r| format!("{:.1}%", r * 100.0))
}

fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

fn store_state(s: &StoreReport) -> &'static str {
    match (s.kind, s.healthy) {
        ("memory", _) => "in memory",
        (_, true) => "reachable",
        (_, false) => "unreachable: limiting in memory (fallback)",
    }
}

fn result_class(result: &str) -> &'static str {
    match result {
        "success" => "ok",
        "error" => "bad",
        _ => "",
    }
}

fn breaker_class(state: &str, enabled: bool) -> &'static str {
    match (enabled, state) {
        (false, _) => "",
        (_, "open") => "bad",
        (_, "half_open") => "warn",
        _ => "ok",
    }
}

fn peer_state(p: &PeerReport) -> (&'static str, &'static str) {
    match (p.resolved, p.healthy) {
        (false, _) => ("bad", "unresolved"),
        (_, true) => ("ok", "healthy"),
        (_, false) => ("bad", "unhealthy"),
    }
}

fn opt(s: Option<&str>) -> String {
    s.map_or("—".into(), esc)
}

/// HTML text and attribute escaping (the five characters that matter, OWASP's rule #1).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_formats_are_stable() {
        assert_eq!(
            esc("<a href=\"x\">'&"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
        );
        assert_eq!(fmt_ms(Some(0.4)), "0.40");
        assert_eq!(fmt_ms(Some(42.25)), "42.2");
        assert_eq!(fmt_ms(Some(1234.5)), "1234");
        assert_eq!(fmt_ms(None), "—");
        assert_eq!(uptime(3725), "1h 2m");
        assert_eq!(pct(Some(0.875)), "87.5%");
    }

    #[test]
    fn the_chart_has_one_point_per_minute() {
        let mut h = String::new();
        chart(&mut h, &[0, 5, 10]);
        assert!(h.contains("points=\"0.0,31.0 75.0,16.0 150.0,1.0\""), "{h}");
    }
}

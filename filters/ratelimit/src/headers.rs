//! Rate-limit response fields: the de-facto `X-RateLimit-Limit/-Remaining/-Reset` and the
//! IETF `RateLimit-Policy` / `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers,
//! structured-field form: `"name";q=100;w=60` and `"name";r=99;t=1`). `Retry-After` (RFC
//! 9110 section 10.2.3) on refusals, in whole seconds, at least 1.

use std::time::Duration;

use http::{HeaderName, HeaderValue};
use portcullis_config::Rate;

use crate::gcra::Check;

/// The limit to show when several apply: the one with the smallest share left.
pub fn tightest<'a>(rates: &[&'a Rate], checks: &'a [Check]) -> Option<(&'a Rate, &'a Check)> {
    rates
        .iter()
        .zip(checks)
        .min_by(|(ra, ca), (rb, cb)| {
            let share = |r: &Rate, c: &Check| f64::from(c.remaining) / f64::from(r.count);
            share(ra, ca).total_cmp(&share(rb, cb))
        })
        .map(|(r, c)| (*r, c))
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

pub fn fields(
    policy: &str,
    rate: &Rate,
    check: &Check,
    refused: bool,
) -> Vec<(HeaderName, HeaderValue)> {
    let reset = ceil_secs(check.reset);
    let mut out = vec![
        (
            HeaderName::from_static("x-ratelimit-limit"),
            HeaderValue::from(rate.count),
        ),
        (
            HeaderName::from_static("x-ratelimit-remaining"),
            HeaderValue::from(check.remaining),
        ),
        (
            HeaderName::from_static("x-ratelimit-reset"),
            HeaderValue::from(reset),
        ),
    ];
    // Policy names are validated identifiers, so they are safe inside a quoted string.
    if let Ok(v) = HeaderValue::from_str(&format!(
        "\"{policy}\";q={};w={}",
        rate.count,
        rate.window_secs()
    )) {
        out.push((HeaderName::from_static("ratelimit-policy"), v));
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{policy}\";r={};t={reset}", check.remaining)) {
        out.push((HeaderName::from_static("ratelimit"), v));
    }
    if refused {
        out.push((
            http::header::RETRY_AFTER,
            HeaderValue::from(ceil_secs(check.retry_after).max(1)),
        ));
    }
    out
}

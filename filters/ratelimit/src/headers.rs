//! Rate-limit response fields: the de-facto `X-RateLimit-Limit/-Remaining/-Reset` and the
//! IETF `RateLimit-Policy` / `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers,
//! structured-field form: `"name";q=100;w=60` and `"name";r=99;t=1`). `Retry-After` (RFC
//! 9110 section 10.2.3) on refusals, in whole seconds, at least 1.

use std::time::Duration;

use http::{HeaderName, HeaderValue};
use portcullis_config::Rate;

use crate::gcra::Check;

// Parsed at compile time: `from_static` called at run time checks every byte again.
const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

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

/// A structured field `"policy";a=1;b=2` written into a stack buffer: no `format!`
/// machinery and no intermediate `String`, only the value's own bytes (a policy name too long
/// for the buffer takes the `format!` path).
struct Field {
    buf: [u8; 128],
    len: usize,
}

impl Field {
    fn value_of(policy: &str, (k1, a): (&str, u64), (k2, b): (&str, u64)) -> Option<HeaderValue> {
        match Field::new(policy, k1.as_bytes(), a, k2.as_bytes(), b) {
            Some(field) => field.value(),
            None => HeaderValue::from_str(&format!("\"{policy}\";{k1}={a};{k2}={b}")).ok(),
        }
    }

    fn new(policy: &str, first: &[u8], a: u64, second: &[u8], b: u64) -> Option<Field> {
        let mut field = Field {
            buf: [0; 128],
            len: 0,
        };
        field.push(b"\"")?;
        field.push(policy.as_bytes())?;
        field.push(b"\";")?;
        field.push(first)?;
        field.push(b"=")?;
        field.number(a)?;
        field.push(b";")?;
        field.push(second)?;
        field.push(b"=")?;
        field.number(b)?;
        Some(field)
    }

    fn push(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.len.checked_add(bytes.len())?;
        self.buf.get_mut(self.len..end)?.copy_from_slice(bytes);
        self.len = end;
        Some(())
    }

    fn number(&mut self, mut n: u64) -> Option<()> {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[at..])
    }

    fn value(self) -> Option<HeaderValue> {
        HeaderValue::from_bytes(&self.buf[..self.len]).ok()
    }
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
    // Sized once for every field below, `Retry-After` included.
    let mut out = Vec::with_capacity(6);
    out.extend([
        (X_RATELIMIT_LIMIT, HeaderValue::from(rate.count)),
        (X_RATELIMIT_REMAINING, HeaderValue::from(check.remaining)),
        (X_RATELIMIT_RESET, HeaderValue::from(reset)),
    ]);
    // Policy names are validated identifiers, so they are safe inside a quoted string.
    let count = u64::from(rate.count);
    if let Some(v) = Field::value_of(policy, ("q", count), ("w", rate.window_secs())) {
        out.push((RATELIMIT_POLICY, v));
    }
    let remaining = u64::from(check.remaining);
    if let Some(v) = Field::value_of(policy, ("r", remaining), ("t", reset)) {
        out.push((RATELIMIT, v));
    }
    if refused {
        out.push((
            http::header::RETRY_AFTER,
            HeaderValue::from(ceil_secs(check.retry_after).max(1)),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_fields_match_their_formatted_definition() {
        for (a, b) in [
            (0, 0),
            (1, 60),
            (99_999_999, 1),
            (u64::MAX, u64::from(u32::MAX)),
        ] {
            let field = Field::value_of("default", ("r", a), ("t", b));
            assert_eq!(
                field.unwrap(),
                format!("\"default\";r={a};t={b}").as_str(),
                "{a} {b}"
            );
        }
    }

    #[test]
    fn a_policy_name_too_long_for_the_buffer_takes_the_formatted_path() {
        let name = "p".repeat(200);
        assert!(Field::new(&name, b"q", 1, b"w", 2).is_none());
        let value = Field::value_of(&name, ("q", 1), ("w", 2)).unwrap();
        assert_eq!(value, format!("\"{name}\";q=1;w=2").as_str());
    }
}

//! Parsing the `Retry-After` response header (RFC 9110 section 10.2.3):
//!
//! ```text
//! Retry-After = HTTP-date / delay-seconds
//! delay-seconds = 1*DIGIT
//! ```

use std::time::{Duration, SystemTime};

use http::HeaderValue;

/// How long the upstream asks to wait, measured from `now`; `None` when the value is neither
/// form (the header is then ignored, as if absent).
///
/// - `delay-seconds`: a run of ASCII digits. One too large for a `u64` means "practically
///   never" and saturates, so it is refused as too long rather than ignored.
/// - `HTTP-date`: IMF-fixdate and, as section 5.6.7 requires recipients to accept, the
///   obsolete RFC 850 and asctime forms. A date in the past means "now": zero.
///
/// Surrounding whitespace is tolerated; signs, fractions and anything else are not.
pub fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim_matches([' ', '\t']);
    if text.is_empty() {
        return None;
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let secs = text.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs));
    }
    let date = httpdate::parse_http_date(text).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

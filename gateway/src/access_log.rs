//! One JSON object per request on stdout (the contract's Logs section).
//!
//! Proxy workers append lines to a shared buffer and never wait for stdout or wake another
//! thread: a writer thread drains the buffer every `FLUSH_EVERY` (waking per request cost
//! more than the proxying itself on a busy core). The buffer is bounded by `MAX_PENDING`
//! bytes; if stdout falls that far behind, further lines are dropped and counted
//! (`portcullis_access_log_dropped_total`) instead of growing memory without limit.
//! Never a token, secret or API key: only the fields below are written. U+2028 and U+2029 are
//! escaped (`json_line`), so no value can split a line for a reader that breaks on them.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;

const FLUSH_EVERY: Duration = Duration::from_millis(20);
const MAX_PENDING: usize = 8 * 1024 * 1024;

#[derive(Serialize)]
pub struct Entry<'a> {
    pub ts: String,
    pub request_id: &'a str,
    pub client_ip: String,
    pub method: &'a str,
    pub path: &'a str,
    pub route: Option<&'a str>,
    pub status: u16,
    pub duration_ms: f64,
    pub upstream: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tries: Option<u32>,
    /// On cached routes: what the edge cache did (`hit`, `miss`, `stale`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<&'a str>,
    pub bytes_sent: usize,
    /// A sampled request's trace id (`[tracing]`), to find its trace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<&'a str>,
}

/// A structured event (suspicious request, breaker transition, reload) on the same stream.
#[derive(Serialize)]
pub struct Event<'a> {
    pub ts: String,
    pub event: &'a str,
    #[serde(flatten)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    /// Flush requests not yet served (see `flush`).
    flushes_requested: u64,
    flushes_done: u64,
}

pub struct AccessLog {
    shared: Arc<(Mutex<Pending>, Condvar)>,
}

impl AccessLog {
    pub fn start() -> std::io::Result<Self> {
        let shared = Arc::new((Mutex::new(Pending::default()), Condvar::new()));
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_loop(&writer))?;
        Ok(AccessLog { shared })
    }

    /// Queues one line; returns false when it had to be dropped. The line is serialised
    /// straight into the shared buffer (no line of its own to allocate and copy); one that
    /// fails or overflows the bound is cut off again.
    pub fn write<T: Serialize>(&self, record: &T) -> bool {
        let Ok(mut pending) = self.shared.0.lock() else {
            return false;
        };
        let start = pending.buf.len();
        if start >= MAX_PENDING {
            return false;
        }
        let written = crate::json_line::to_writer(&mut pending.buf, record).is_ok();
        if !written || pending.buf.len() >= MAX_PENDING {
            pending.buf.truncate(start);
            return false;
        }
        pending.buf.push(b'\n');
        true
    }

    /// Writes out everything queued so far (before the process exits), waiting at most 2 s.
    pub fn flush(&self) {
        let (lock, signal) = &*self.shared;
        let Ok(mut pending) = lock.lock() else { return };
        pending.flushes_requested += 1;
        let wanted = pending.flushes_requested;
        signal.notify_all();
        let _ =
            signal.wait_timeout_while(pending, Duration::from_secs(2), |p| p.flushes_done < wanted);
    }
}

fn write_loop(shared: &(Mutex<Pending>, Condvar)) {
    let (lock, signal) = shared;
    let mut out = std::io::stdout();
    let mut batch = Vec::with_capacity(64 * 1024);
    loop {
        let served = {
            let Ok(pending) = lock.lock() else { return };
            let Ok((mut pending, _)) = signal.wait_timeout_while(pending, FLUSH_EVERY, |p| {
                p.flushes_requested == p.flushes_done
            }) else {
                return;
            };
            std::mem::swap(&mut batch, &mut pending.buf);
            pending.flushes_requested
        };
        if !batch.is_empty() {
            let _ = out.write_all(&batch);
            let _ = out.flush();
            batch.clear();
        }
        if let Ok(mut pending) = lock.lock() {
            if pending.flushes_done < served {
                pending.flushes_done = served;
                signal.notify_all();
            }
        }
    }
}

/// RFC 3339 UTC timestamp with milliseconds (written digit by digit: `format!` cost more
/// than the rest of the log line, once per request).
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    let mut out = String::with_capacity(24);
    push_digits(&mut out, y.clamp(0, 9999) as u64, 4);
    let fields = [
        ('-', u64::from(m), 2),
        ('-', u64::from(day), 2),
        ('T', rem / 3600, 2),
        (':', (rem % 3600) / 60, 2),
        (':', rem % 60, 2),
        ('.', u64::from(d.subsec_millis()), 3),
    ];
    for (separator, n, width) in fields {
        out.push(separator);
        push_digits(&mut out, n, width);
    }
    out.push('Z');
    out
}

/// `n` in exactly `width` decimal digits, zero-padded.
fn push_digits(out: &mut String, n: u64, width: u32) {
    for i in (0..width).rev() {
        out.push(char::from(b'0' + (n / 10u64.pow(i) % 10) as u8));
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's civil_from_days algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_000_000_123);
        assert_eq!(timestamp(t), "2025-11-24T16:00:00.123Z");
        assert_eq!(
            timestamp(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&timestamp(leap)[..10], "2000-02-29");
    }

    /// The digit-by-digit writer agrees with `format!` over 130 years of instants.
    #[test]
    fn timestamps_match_the_formatted_definition() {
        let formatted = |t: SystemTime| {
            let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
            let (days, rem) = (d.as_secs() / 86_400, d.as_secs() % 86_400);
            let (y, m, day) = civil_from_days(days as i64);
            format!(
                "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
                rem / 3600,
                (rem % 3600) / 60,
                rem % 60,
                d.subsec_millis()
            )
        };
        let mut ms: u64 = 0;
        while ms < 4_102_444_800_000 {
            let t = SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
            assert_eq!(timestamp(t), formatted(t));
            ms += 7_919_993_317; // about 92 days, so every field's digits vary
        }
    }
}

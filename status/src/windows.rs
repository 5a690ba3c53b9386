//! Rolling windows of one route's traffic: a ring of 60 one-second buckets (the last minute's
//! rate, error rates and latency quantiles) and a ring of 15 one-minute buckets (the chart).
//!
//! Bounds: a route's windows are two fixed arrays, [`RouteWindows`] is about 15 KiB whatever
//! the traffic, and nothing here allocates after construction.
//!
//! Concurrency: every write is a relaxed atomic add, no lock. A bucket carries the number of
//! the period it holds (`stamp`); the first write of a new period claims the bucket with a
//! compare-and-swap and zeroes it. A write racing that reset at a period boundary can be lost
//! (a few requests in a second of thousands): the figures are for an operator's eyes, and
//! `/metrics` keeps the exact counters. Readers only add up buckets whose stamp lies inside the
//! window they ask for, so a bucket left over from an idle period never shows.
//!
//! Latency goes into a log-spaced histogram, two buckets per power of two from 32 µs to about
//! 67 s (HdrHistogram's idea with two significant bits): a quantile is read with at most 25%
//! relative error, interpolated within its bucket, for the price of one `leading_zeros`.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// Buckets of the per-second ring: the last minute.
pub const SECONDS: usize = 60;
/// Buckets of the per-minute ring: the chart's last 15 minutes.
pub const MINUTES: usize = 15;

/// Smallest latency with a bucket of its own: everything below 2^5 µs = 32 µs shares bucket 0.
const FIRST_OCTAVE: u32 = 5;
/// Octaves from 32 µs up to 2^26 µs (67 s); slower answers share the last bucket.
const OCTAVES: usize = 21;
/// Latency buckets: below 32 µs, two per octave, and 67 s or more.
pub const LATENCY_BUCKETS: usize = 2 + 2 * OCTAVES;

/// What one answer adds to a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub micros: u64,
}

/// Sums over a span of buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    /// Answers 400-499.
    pub client_errors: u64,
    /// Answers 500-599 (499 and the intake's own refusals included when the status says so).
    pub server_errors: u64,
    /// Requests refused by the route's rate limit.
    pub limited: u64,
    pub latency: [u64; LATENCY_BUCKETS],
}

impl Default for Totals {
    fn default() -> Self {
        Totals {
            requests: 0,
            client_errors: 0,
            server_errors: 0,
            limited: 0,
            latency: [0; LATENCY_BUCKETS],
        }
    }
}

/// One period's counts.
struct Bucket {
    /// The period held, plus one (0: never written).
    stamp: AtomicU64,
    requests: AtomicU32,
    client_errors: AtomicU32,
    server_errors: AtomicU32,
    limited: AtomicU32,
    latency: [AtomicU32; LATENCY_BUCKETS],
}

/// A fixed ring of `N` buckets, one per period (a second or a minute).
struct Ring<const N: usize> {
    buckets: [Bucket; N],
}

/// The windows of one route (or of the requests that matched none).
pub struct RouteWindows {
    seconds: Ring<SECONDS>,
    minutes: Ring<MINUTES>,
}

// === impl RouteWindows ===

impl Default for RouteWindows {
    fn default() -> Self {
        RouteWindows {
            seconds: Ring::new(),
            minutes: Ring::new(),
        }
    }
}

impl RouteWindows {
    /// Counts one finished request in second `sec` (minute `sec / 60`).
    pub fn record(&self, sec: u64, answer: Answer) {
        self.seconds.at(sec).add(answer);
        self.minutes.at(sec / 60).add(answer);
    }

    /// Counts one request refused by the route's rate limit (it is also `record`ed).
    pub fn limited(&self, sec: u64) {
        self.seconds.at(sec).limited.fetch_add(1, Relaxed);
        self.minutes.at(sec / 60).limited.fetch_add(1, Relaxed);
    }

    /// The last minute: seconds `now - 59 ..= now`.
    pub fn last_minute(&self, now: u64) -> Totals {
        self.seconds
            .sum(now.saturating_sub(SECONDS as u64 - 1), now)
    }

    /// Minute by minute, oldest first, ending with the current (partial) minute.
    pub fn by_minute(&self, now: u64) -> Vec<Totals> {
        let current = now / 60;
        (0..MINUTES as u64)
            .rev()
            .map(|back| match current.checked_sub(back) {
                Some(minute) => self.minutes.sum(minute, minute),
                None => Totals::default(),
            })
            .collect()
    }

    /// Forgets everything (the slot passes to another route).
    pub fn clear(&self) {
        for bucket in self.seconds.buckets.iter().chain(&self.minutes.buckets) {
            bucket.stamp.store(0, Relaxed);
            bucket.zero();
        }
    }
}

// === impl Ring ===

impl<const N: usize> Ring<N> {
    fn new() -> Self {
        Ring {
            buckets: std::array::from_fn(|_| Bucket::new()),
        }
    }

    /// The bucket of `period`, claimed for it (and zeroed) if it still holds an older one.
    fn at(&self, period: u64) -> &Bucket {
        let bucket = &self.buckets[(period % N as u64) as usize];
        let stamp = period + 1;
        let held = bucket.stamp.load(Relaxed);
        if held < stamp
            && bucket
                .stamp
                .compare_exchange(held, stamp, Relaxed, Relaxed)
                .is_ok()
        {
            bucket.zero();
        }
        bucket
    }

    /// Sums the buckets holding periods `from ..= to`.
    fn sum(&self, from: u64, to: u64) -> Totals {
        let mut totals = Totals::default();
        for bucket in &self.buckets {
            let stamp = bucket.stamp.load(Relaxed);
            if stamp == 0 || stamp - 1 < from || stamp - 1 > to {
                continue;
            }
            totals.requests += u64::from(bucket.requests.load(Relaxed));
            totals.client_errors += u64::from(bucket.client_errors.load(Relaxed));
            totals.server_errors += u64::from(bucket.server_errors.load(Relaxed));
            totals.limited += u64::from(bucket.limited.load(Relaxed));
            for (sum, count) in totals.latency.iter_mut().zip(&bucket.latency) {
                *sum += u64::from(count.load(Relaxed));
            }
        }
        totals
    }
}

// === impl Bucket ===

impl Bucket {
    fn new() -> Self {
        Bucket {
            stamp: AtomicU64::new(0),
            requests: AtomicU32::new(0),
            client_errors: AtomicU32::new(0),
            server_errors: AtomicU32::new(0),
            limited: AtomicU32::new(0),
            latency: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }

    fn add(&self, answer: Answer) {
        self.requests.fetch_add(1, Relaxed);
        match answer.status {
            400..=499 => self.client_errors.fetch_add(1, Relaxed),
            500..=599 => self.server_errors.fetch_add(1, Relaxed),
            _ => 0,
        };
        self.latency[latency_bucket(answer.micros)].fetch_add(1, Relaxed);
    }

    fn zero(&self) {
        for counter in [
            &self.requests,
            &self.client_errors,
            &self.server_errors,
            &self.limited,
        ]
        .into_iter()
        .chain(&self.latency)
        {
            counter.store(0, Relaxed);
        }
    }
}

// === the latency histogram ===

/// The bucket of a latency in microseconds: 0 below 32 µs, then two per octave (the lower
/// and upper half of `[2^k, 2^(k+1))`), the last one open-ended.
pub fn latency_bucket(micros: u64) -> usize {
    if micros < 1 << FIRST_OCTAVE {
        return 0;
    }
    let octave = 63 - micros.leading_zeros();
    let upper_half = ((micros >> (octave - 1)) & 1) as usize;
    let index = 1 + 2 * (octave - FIRST_OCTAVE) as usize + upper_half;
    index.min(LATENCY_BUCKETS - 1)
}

/// The microseconds bucket `index` covers, `[low, high)`.
fn bucket_bounds(index: usize) -> (f64, f64) {
    if index == 0 {
        return (0.0, f64::from(1u32 << FIRST_OCTAVE));
    }
    let k = index - 1;
    let octave = FIRST_OCTAVE + (k / 2) as u32;
    let base = (1u64 << octave) as f64;
    let half = base / 2.0;
    let low = base + half * (k % 2) as f64;
    (low, low + half)
}

/// The `q` quantile (0 < q <= 1) in milliseconds, or `None` without any request.
pub fn quantile_ms(latency: &[u64; LATENCY_BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = latency.iter().sum();
    if total == 0 {
        return None;
    }
    // The rank of the answer asked for, 1-based (nearest-rank definition).
    let rank = (q * total as f64).ceil().max(1.0);
    let mut below = 0u64;
    for (index, &count) in latency.iter().enumerate() {
        if count == 0 {
            continue;
        }
        if (below + count) as f64 >= rank {
            let (low, high) = bucket_bounds(index);
            let within = (rank - below as f64) / count as f64;
            let micros = low + (high - low) * within;
            return Some((micros / 10.0).round() / 100.0);
        }
        below += count;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(micros: u64) -> Answer {
        Answer {
            status: 200,
            micros,
        }
    }

    #[test]
    fn latency_buckets_are_two_per_octave_and_bounded() {
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_bucket(31), 0);
        assert_eq!(latency_bucket(32), 1);
        assert_eq!(latency_bucket(47), 1);
        assert_eq!(latency_bucket(48), 2);
        assert_eq!(latency_bucket(64), 3);
        assert_eq!(latency_bucket(u64::MAX), LATENCY_BUCKETS - 1);
        for micros in [32, 100, 1_000, 12_345, 1_000_000, 60_000_000] {
            let (low, high) = bucket_bounds(latency_bucket(micros));
            assert!(
                low <= micros as f64 && (micros as f64) < high,
                "{micros} in [{low}, {high})"
            );
        }
    }

    #[test]
    fn quantiles_are_within_a_quarter_of_the_truth() {
        let w = RouteWindows::default();
        // 98 answers of 1 ms, 2 of 200 ms.
        for _ in 0..98 {
            w.record(10, ok(1_000));
        }
        w.record(10, ok(200_000));
        w.record(11, ok(200_000));
        let t = w.last_minute(11);
        assert_eq!(t.requests, 100);
        let p50 = quantile_ms(&t.latency, 0.5).unwrap();
        let p99 = quantile_ms(&t.latency, 0.99).unwrap();
        assert!((0.75..=1.25).contains(&p50), "p50 {p50}");
        assert!((150.0..=250.0).contains(&p99), "p99 {p99}");
        assert_eq!(quantile_ms(&Totals::default().latency, 0.5), None);
    }

    #[test]
    fn the_last_minute_forgets_older_seconds_and_a_reused_bucket_starts_empty() {
        let w = RouteWindows::default();
        w.record(5, ok(100));
        w.record(
            6,
            Answer {
                status: 503,
                micros: 100,
            },
        );
        w.limited(6);
        let t = w.last_minute(6);
        assert_eq!((t.requests, t.server_errors, t.limited), (2, 1, 1));
        // Second 65 lands in second 5's bucket: claimed and zeroed first.
        w.record(
            65,
            Answer {
                status: 404,
                micros: 100,
            },
        );
        let t = w.last_minute(65);
        assert_eq!((t.requests, t.client_errors, t.server_errors), (2, 1, 1));
        assert_eq!(w.last_minute(200).requests, 0, "an idle minute later");
    }

    #[test]
    fn minutes_come_oldest_first_ending_now() {
        let w = RouteWindows::default();
        w.record(0, ok(100));
        w.record(61, ok(100));
        w.record(62, ok(100));
        let minutes = w.by_minute(62);
        assert_eq!(minutes.len(), MINUTES);
        let counts: Vec<u64> = minutes.iter().map(|t| t.requests).collect();
        assert_eq!(counts[MINUTES - 2..], [1, 2]);
        assert!(counts[..MINUTES - 2].iter().all(|&c| c == 0));
        // 15 minutes on, the first two have left the chart.
        let later: u64 = w.by_minute(62 + 15 * 60).iter().map(|t| t.requests).sum();
        assert_eq!(later, 0);
        w.clear();
        assert_eq!(w.last_minute(62).requests, 0);
    }
}

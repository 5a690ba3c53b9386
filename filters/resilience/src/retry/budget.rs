//! The retry budget: retries may be at most a share of recent requests, so that when an
//! upstream fails wholesale, retries add at most that share of load instead of multiplying it
//! by `attempts + 1` (the retry storm). The idea of Finagle's `RetryBudget` and linkerd's
//! `retry_budget`, with a bucketed window instead of a token bucket.
//!
//! The rule, over a sliding window of [`BUDGET_WINDOW`] (10 s, in [`BUDGET_SLOTS`] buckets of
//! 1 s, so memory is bounded):
//!
//! ```text
//! allowed = max(MIN_RETRIES_PER_WINDOW, floor(budget_ratio * requests))
//! a retry is granted iff retries < allowed, and then counts as one more retry
//! ```
//!
//! `requests` counts the client requests sent to the upstream in the window (first tries;
//! [`RetryBudget::record_request`]) and `retries` the retries granted in it. The floor of
//! [`MIN_RETRIES_PER_WINDOW`] (10) lets a quiet upstream still retry the odd failure, as
//! Finagle's `minRetriesPerSec` does; it also applies with `budget_ratio = 0`.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::window::SlidingWindow;

/// Span of the budget's sliding window.
pub const BUDGET_WINDOW: Duration = Duration::from_secs(10);
/// Buckets of the budget's window (1 s each).
pub const BUDGET_SLOTS: usize = 10;
/// Retries always allowed per window, whatever the traffic.
pub const MIN_RETRIES_PER_WINDOW: u64 = 10;

const REQUESTS: usize = 0;
const RETRIES: usize = 1;

/// The retry budget of one upstream (`Send + Sync`; one short mutex section per call).
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    window: Mutex<SlidingWindow<2>>,
}

impl RetryBudget {
    /// `ratio` is clamped to `[0, 1]` (NaN counts as 0); the loader already guarantees it.
    pub fn new(ratio: f64) -> Self {
        let ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1.0)
        };
        RetryBudget {
            ratio,
            window: Mutex::new(SlidingWindow::new(BUDGET_WINDOW, BUDGET_SLOTS)),
        }
    }

    /// Counts one client request sent to the upstream.
    pub fn record_request(&self, now: Instant) {
        self.lock().add(now, [1, 0]);
    }

    /// Spends one retry if the budget allows it at `now`.
    pub fn try_withdraw(&self, now: Instant) -> bool {
        let mut window = self.lock();
        let totals = window.totals(now);
        if totals[RETRIES] < self.allowed(totals[REQUESTS]) {
            window.add(now, [0, 1]);
            true
        } else {
            false
        }
    }

    /// Retries still available at `now` (for diagnostics).
    pub fn available(&self, now: Instant) -> u64 {
        let totals = self.lock().totals(now);
        self.allowed(totals[REQUESTS])
            .saturating_sub(totals[RETRIES])
    }

    fn allowed(&self, requests: u64) -> u64 {
        // The float-to-int `as` saturates; precision loss above 2^53 requests is irrelevant.
        let share = (self.ratio * requests as f64).floor() as u64;
        share.max(MIN_RETRIES_PER_WINDOW)
    }

    /// Nothing panics while the lock is held, so a poisoned window is still consistent.
    fn lock(&self) -> MutexGuard<'_, SlidingWindow<2>> {
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

//! A sliding time window of counters in a fixed ring of buckets, shared by the circuit
//! breaker (calls, failures) and the retry budget (requests, retries).
//!
//! Memory is bounded by construction: `slots` buckets of `N` counters, whatever the traffic
//! (a list of timestamps would grow with the request rate). The price is granularity: the
//! window covers the newest bucket plus the `slots - 1` before it, so an event is forgotten
//! between `span - span/slots` and `span` after it happened.

use std::time::{Duration, Instant};

/// `N` counters summed over the last `span` of time.
#[derive(Debug)]
pub(crate) struct SlidingWindow<const N: usize> {
    /// Bucket numbers count from the first instant the window saw, so no clock is read here.
    origin: Option<Instant>,
    slot_nanos: u64,
    slots: Box<[[u64; N]]>,
    /// Absolute number of the newest bucket; `head % slots.len()` is its index in the ring.
    head: u64,
    /// Sum of every bucket, kept up to date so reading the window is O(1).
    totals: [u64; N],
}

impl<const N: usize> SlidingWindow<N> {
    /// A window of `span` split into `slots` equal buckets (at least one, each at least 1 ns).
    pub(crate) fn new(span: Duration, slots: usize) -> Self {
        let slots = slots.max(1);
        let span_nanos = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
        SlidingWindow {
            origin: None,
            slot_nanos: (span_nanos / slots as u64).max(1),
            slots: vec![[0; N]; slots].into_boxed_slice(),
            head: 0,
            totals: [0; N],
        }
    }

    /// Adds `counts` to the bucket of `now`.
    pub(crate) fn add(&mut self, now: Instant, counts: [u64; N]) {
        self.advance(now);
        let index = self.index(self.head);
        for (k, count) in counts.into_iter().enumerate() {
            self.slots[index][k] = self.slots[index][k].saturating_add(count);
            self.totals[k] = self.totals[k].saturating_add(count);
        }
    }

    /// The sums over the window ending at `now`.
    pub(crate) fn totals(&mut self, now: Instant) -> [u64; N] {
        self.advance(now);
        self.totals
    }

    /// Forgets every event (the breaker starts each closed period with an empty window).
    pub(crate) fn clear(&mut self) {
        self.slots.fill([0; N]);
        self.totals = [0; N];
    }

    /// Moves the head to the bucket of `now`, emptying the buckets that fell out. An instant
    /// older than the head (threads race between reading the clock and taking the lock) counts
    /// in the head bucket: off by at most one bucket, never lost.
    fn advance(&mut self, now: Instant) {
        let origin = *self.origin.get_or_insert(now);
        let nanos =
            u64::try_from(now.saturating_duration_since(origin).as_nanos()).unwrap_or(u64::MAX);
        let slot = nanos / self.slot_nanos;
        if slot <= self.head {
            return;
        }
        if slot - self.head >= self.slots.len() as u64 {
            self.clear();
        } else {
            for expired in self.head + 1..=slot {
                let index = self.index(expired);
                for k in 0..N {
                    self.totals[k] = self.totals[k].saturating_sub(self.slots[index][k]);
                }
                self.slots[index] = [0; N];
            }
        }
        self.head = slot;
    }

    fn index(&self, slot: u64) -> usize {
        // The remainder is below `slots.len()`, which is a usize.
        (slot % self.slots.len() as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn sums_events_inside_the_window() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::<2>::new(10 * SECOND, 10);
        w.add(t0, [1, 0]);
        w.add(t0 + 3 * SECOND, [1, 1]);
        w.add(t0 + 9 * SECOND, [1, 1]);
        assert_eq!(w.totals(t0 + 9 * SECOND), [3, 2]);
    }

    #[test]
    fn forgets_events_once_they_slide_out() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::<2>::new(10 * SECOND, 10);
        w.add(t0, [1, 1]);
        w.add(t0 + 5 * SECOND, [1, 0]);
        assert_eq!(w.totals(t0 + 9 * SECOND), [2, 1]);
        assert_eq!(w.totals(t0 + 10 * SECOND), [1, 0]);
        assert_eq!(w.totals(t0 + 15 * SECOND), [0, 0]);
    }

    #[test]
    fn a_long_gap_empties_everything() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::<1>::new(10 * SECOND, 10);
        for s in 0..10 {
            w.add(t0 + s * SECOND, [5]);
        }
        assert_eq!(w.totals(t0 + 9 * SECOND), [50]);
        assert_eq!(w.totals(t0 + 3600 * SECOND), [0]);
        w.add(t0 + 3600 * SECOND, [1]);
        assert_eq!(w.totals(t0 + 3601 * SECOND), [1]);
    }

    #[test]
    fn late_instants_count_in_the_newest_bucket() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::<1>::new(10 * SECOND, 10);
        w.add(t0 + 5 * SECOND, [1]);
        w.add(t0 + 4 * SECOND, [1]);
        assert_eq!(w.totals(t0 + 5 * SECOND), [2]);
        assert_eq!(w.totals(t0 + 15 * SECOND), [0]);
    }

    #[test]
    fn clear_keeps_the_clock() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::<1>::new(SECOND, 4);
        w.add(t0, [3]);
        w.clear();
        assert_eq!(w.totals(t0), [0]);
        w.add(t0 + SECOND / 2, [1]);
        assert_eq!(w.totals(t0 + SECOND / 2), [1]);
    }

    #[test]
    fn degenerate_sizes_stay_usable() {
        let t0 = Instant::now();
        let mut tiny = SlidingWindow::<1>::new(Duration::ZERO, 0);
        tiny.add(t0, [1]);
        assert_eq!(tiny.totals(t0), [1]);
        let mut huge = SlidingWindow::<1>::new(Duration::MAX, 60);
        huge.add(t0, [1]);
        assert_eq!(huge.totals(t0 + 1000 * SECOND), [1]);
    }
}

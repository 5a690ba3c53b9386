//! The slowest sampled requests of the last minute, for the status page's "Slow traced
//! requests": from a slow request to its trace in one click.
//!
//! Bounded: the [`KEEP`] slowest of the current and of the previous clock minute. A request
//! faster than the slowest kept ones returns after one atomic load, so the lock is taken a
//! handful of times per minute once the list is full.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use portcullis_trace_context::TraceId;

use crate::clock::unix_ms;

/// Requests kept per minute.
pub const KEEP: usize = 10;

#[derive(Debug, Clone)]
pub struct SlowTrace {
    /// Unix milliseconds when it ended.
    pub at_ms: u64,
    pub duration_us: u64,
    pub route: String,
    pub status: u16,
    pub trace_id: TraceId,
}

#[derive(Default)]
pub struct SlowTraces {
    /// The fastest duration kept this minute once the list is full (0 until then), with the
    /// minute it belongs to in the upper bits: `minute << 40 | duration_us`.
    floor: AtomicU64,
    minutes: Mutex<Minutes>,
}

#[derive(Default)]
struct Minutes {
    minute: u64,
    current: Vec<SlowTrace>,
    previous: Vec<SlowTrace>,
}

const DURATION_BITS: u32 = 40;

impl SlowTraces {
    /// Keeps `trace` when it is among this minute's slowest.
    pub fn offer(&self, duration_us: u64, make: impl FnOnce(u64) -> SlowTrace) {
        let now_ms = unix_ms();
        let minute = now_ms / 60_000;
        let floor = self.floor.load(Ordering::Relaxed);
        if floor >> DURATION_BITS == minute & 0xff_ffff
            && duration_us <= floor & ((1 << DURATION_BITS) - 1)
        {
            return;
        }
        let Ok(mut m) = self.minutes.lock() else {
            return;
        };
        m.turn(minute);
        let list = &mut m.current;
        if list.len() >= KEEP && list.last().is_some_and(|l| l.duration_us >= duration_us) {
            return;
        }
        list.push(make(now_ms));
        list.sort_by_key(|t| std::cmp::Reverse(t.duration_us));
        list.truncate(KEEP);
        if list.len() == KEEP {
            let fastest = list.last().map_or(0, |l| l.duration_us);
            self.floor.store(
                (minute & 0xff_ffff) << DURATION_BITS | fastest.min((1 << DURATION_BITS) - 1),
                Ordering::Relaxed,
            );
        }
    }

    /// The slowest of the last 60 s, slowest first.
    pub fn list(&self) -> Vec<SlowTrace> {
        let now_ms = unix_ms();
        let Ok(mut m) = self.minutes.lock() else {
            return Vec::new();
        };
        m.turn(now_ms / 60_000);
        let mut all: Vec<SlowTrace> = m
            .current
            .iter()
            .chain(&m.previous)
            .filter(|t| t.at_ms + 60_000 >= now_ms)
            .cloned()
            .collect();
        all.sort_by_key(|t| std::cmp::Reverse(t.duration_us));
        all.truncate(KEEP);
        all
    }
}

impl Minutes {
    fn turn(&mut self, minute: u64) {
        if minute == self.minute {
            return;
        }
        self.previous = if minute == self.minute + 1 {
            std::mem::take(&mut self.current)
        } else {
            Vec::new()
        };
        self.current.clear();
        self.minute = minute;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(duration_us: u64) -> impl FnOnce(u64) -> SlowTrace {
        move |at_ms| SlowTrace {
            at_ms,
            duration_us,
            route: "r".into(),
            status: 200,
            trace_id: TraceId::random(),
        }
    }

    #[test]
    fn keeps_the_slowest_ten_slowest_first() {
        let slow = SlowTraces::default();
        for d in 1..=100 {
            slow.offer(d * 1000, trace(d * 1000));
        }
        let list = slow.list();
        assert_eq!(list.len(), KEEP);
        assert_eq!(list[0].duration_us, 100_000);
        assert_eq!(list[9].duration_us, 91_000);
        slow.offer(5, trace(5));
        assert_eq!(slow.list().len(), KEEP, "a fast one does not get in");
    }
}

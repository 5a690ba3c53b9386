//! Per-minute figures of counters the request path already keeps for `/metrics` (JWT
//! validations and cache hits, retries, suspicious requests, rate-limit store errors): once a
//! second the admin thread copies their totals into a ring of [`SAMPLES`] samples, and "in
//! the last minute" is the current total minus the one of 60 s ago. The request path pays
//! nothing more for these. The gateway reads its counters into [`Totals`]; the ring only
//! keeps and subtracts them.
//!
//! Bounds: the ring has a fixed length; a sample holds one value per series, and every series
//! has a bounded label set (results and rules are fixed lists, upstreams come from the
//! configuration).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, PoisonError};

/// One a second, for a minute and one more (the baseline 60 s back).
pub const SAMPLES: usize = 61;

/// A counter series: the metric and its labels as (name, value) pairs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Series {
    pub metric: &'static str,
    pub labels: Vec<(String, String)>,
}

/// Every sampled series' total at one second.
pub type Totals = BTreeMap<Series, u64>;

pub struct Sampler {
    ring: Mutex<VecDeque<(u64, Totals)>>,
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler {
            ring: Mutex::new(VecDeque::with_capacity(SAMPLES)),
        }
    }
}

impl Sampler {
    /// Records the totals at second `sec` (the admin thread calls this once a second).
    pub fn sample(&self, totals: Totals, sec: u64) {
        let mut ring = self.lock();
        if ring.back().is_some_and(|(at, _)| *at >= sec) {
            return;
        }
        if ring.len() == SAMPLES {
            ring.pop_front();
        }
        ring.push_back((sec, totals));
    }

    /// The current totals `now`, and what each series added in the 60 s before `sec` (since
    /// start when the process is younger than that).
    pub fn last_minute(&self, now: Totals, sec: u64) -> (Totals, Totals) {
        let ring = self.lock();
        let baseline = ring
            .iter()
            .find(|(at, _)| *at + 60 >= sec)
            .or(ring.back())
            .map(|(_, t)| t);
        let delta = now
            .iter()
            .map(|(series, &value)| {
                let before = baseline.and_then(|b| b.get(series)).copied().unwrap_or(0);
                (series.clone(), value.saturating_sub(before))
            })
            .collect();
        (now, delta)
    }

    /// The samples the ring holds (at most [`SAMPLES`]).
    pub fn held(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, Totals)>> {
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sum of `metric`'s series carrying every one of `labels` (0 when never counted).
pub fn value(totals: &Totals, metric: &'static str, labels: &[(&str, &str)]) -> u64 {
    totals
        .iter()
        .filter(|(s, _)| s.metric == metric && labels.iter().all(|(n, v)| label(s, n) == Some(*v)))
        .map(|(_, v)| *v)
        .sum()
}

/// The value of label `name` in `series`.
pub fn label<'s>(series: &'s Series, name: &str) -> Option<&'s str> {
    series
        .labels
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The series of `metric`, with their values.
pub fn series<'t>(
    totals: &'t Totals,
    metric: &'static str,
) -> impl Iterator<Item = (&'t Series, u64)> {
    totals
        .iter()
        .filter(move |(s, _)| s.metric == metric)
        .map(|(s, v)| (s, *v))
}

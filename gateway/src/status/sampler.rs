//! Per-minute figures of counters the request path already keeps for `/metrics` (JWT
//! validations and cache hits, retries, suspicious requests, rate-limit store errors): once a
//! second the admin thread copies their totals into a ring of [`SAMPLES`] samples, and "in
//! the last minute" is the current total minus the one of 60 s ago. The request path pays
//! nothing more for these.
//!
//! Bounds: the ring has a fixed length; a sample holds one value per series, and every series
//! has a bounded label set (results and rules are fixed lists, upstreams come from the
//! configuration).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use prometheus::core::Collector;
use prometheus::{IntCounter, IntCounterVec};

use crate::metrics::Metrics;

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

pub const JWT_VALIDATIONS: &str = "jwt_validations";
pub const JWT_CACHE_HITS: &str = "jwt_cache_hits";
pub const JWT_CACHE_MISSES: &str = "jwt_cache_misses";
pub const RETRIES: &str = "upstream_retries";
pub const SUSPICIOUS: &str = "suspicious";
pub const STORE_ERRORS: &str = "rate_limit_store_errors";
pub const REQUEST_LIMITS: &str = "request_limits";

impl Default for Sampler {
    fn default() -> Self {
        Sampler {
            ring: Mutex::new(VecDeque::with_capacity(SAMPLES)),
        }
    }
}

impl Sampler {
    /// Records the totals at second `sec` (the admin thread calls this once a second).
    pub fn sample(&self, metrics: &Metrics, sec: u64) {
        let totals = totals(metrics);
        let mut ring = self.lock();
        if ring.back().is_some_and(|(at, _)| *at >= sec) {
            return;
        }
        if ring.len() == SAMPLES {
            ring.pop_front();
        }
        ring.push_back((sec, totals));
    }

    /// Current totals, and what each series added in the 60 s before `sec` (since start when
    /// the process is younger than that).
    pub fn last_minute(&self, metrics: &Metrics, sec: u64) -> (Totals, Totals) {
        let now = totals(metrics);
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

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, Totals)>> {
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The totals of every sampled series now.
fn totals(metrics: &Metrics) -> Totals {
    let mut out = Totals::new();
    vec(&mut out, JWT_VALIDATIONS, &metrics.jwt_validations);
    vec(&mut out, RETRIES, &metrics.upstream_retries);
    vec(&mut out, SUSPICIOUS, &metrics.suspicious);
    vec(&mut out, REQUEST_LIMITS, &metrics.request_limits);
    single(&mut out, JWT_CACHE_HITS, &metrics.jwt_cache_hits);
    single(&mut out, JWT_CACHE_MISSES, &metrics.jwt_cache_misses);
    single(&mut out, STORE_ERRORS, &metrics.rate_limit_store_errors);
    out
}

fn vec(out: &mut Totals, metric: &'static str, counters: &IntCounterVec) {
    for family in counters.collect() {
        for m in family.get_metric() {
            let labels = m
                .get_label()
                .iter()
                .map(|l| (l.name().to_string(), l.value().to_string()))
                .collect();
            out.insert(Series { metric, labels }, m.get_counter().value() as u64);
        }
    }
}

fn single(out: &mut Totals, metric: &'static str, counter: &IntCounter) {
    out.insert(
        Series {
            metric,
            labels: Vec::new(),
        },
        counter.get(),
    );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_minute_is_the_difference_with_the_sample_of_60_s_ago() {
        let metrics = Metrics::new().unwrap();
        let sampler = Sampler::default();
        metrics
            .jwt_validations
            .with_label_values(&["valid"])
            .inc_by(5);
        sampler.sample(&metrics, 0);
        metrics
            .jwt_validations
            .with_label_values(&["valid"])
            .inc_by(3);
        metrics.jwt_cache_hits.inc();
        sampler.sample(&metrics, 30);
        metrics
            .jwt_validations
            .with_label_values(&["expired"])
            .inc();
        let (now, minute) = sampler.last_minute(&metrics, 50);
        assert_eq!(value(&now, JWT_VALIDATIONS, &[("result", "valid")]), 8);
        assert_eq!(value(&minute, JWT_VALIDATIONS, &[("result", "valid")]), 3);
        assert_eq!(value(&minute, JWT_VALIDATIONS, &[("result", "expired")]), 1);
        assert_eq!(value(&minute, JWT_CACHE_HITS, &[]), 1);
        // At 90 s the baseline is the sample of 30 s.
        let (_, minute) = sampler.last_minute(&metrics, 90);
        assert_eq!(value(&minute, JWT_VALIDATIONS, &[("result", "valid")]), 0);
        for s in 100..200 {
            sampler.sample(&metrics, s);
        }
        assert_eq!(sampler.lock().len(), SAMPLES);
    }
}

//! The `/metrics` counters the status page shows per minute (JWT validations and cache hits,
//! retries, suspicious requests, rate-limit store errors, request-limit refusals), read into
//! the [`Totals`] that `portcullis_status`'s sampler keeps once a second.

use portcullis_status::sampler::{Series, Totals};
use prometheus::core::Collector;
use prometheus::{IntCounter, IntCounterVec};

use crate::metrics::Metrics;

pub const JWT_VALIDATIONS: &str = "jwt_validations";
pub const JWT_CACHE_HITS: &str = "jwt_cache_hits";
pub const JWT_CACHE_MISSES: &str = "jwt_cache_misses";
pub const RETRIES: &str = "upstream_retries";
pub const SUSPICIOUS: &str = "suspicious";
pub const STORE_ERRORS: &str = "rate_limit_store_errors";
pub const REQUEST_LIMITS: &str = "request_limits";

/// The totals of every sampled series now.
pub fn totals(metrics: &Metrics) -> Totals {
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

#[cfg(test)]
mod tests {
    use portcullis_status::sampler::{value, Sampler, SAMPLES};

    use super::*;

    #[test]
    fn the_last_minute_is_the_difference_with_the_sample_of_60_s_ago() {
        let metrics = Metrics::new().unwrap();
        let sampler = Sampler::default();
        metrics
            .jwt_validations
            .with_label_values(&["valid"])
            .inc_by(5);
        sampler.sample(totals(&metrics), 0);
        metrics
            .jwt_validations
            .with_label_values(&["valid"])
            .inc_by(3);
        metrics.jwt_cache_hits.inc();
        sampler.sample(totals(&metrics), 30);
        metrics
            .jwt_validations
            .with_label_values(&["expired"])
            .inc();
        let (now, minute) = sampler.last_minute(totals(&metrics), 50);
        assert_eq!(value(&now, JWT_VALIDATIONS, &[("result", "valid")]), 8);
        assert_eq!(value(&minute, JWT_VALIDATIONS, &[("result", "valid")]), 3);
        assert_eq!(value(&minute, JWT_VALIDATIONS, &[("result", "expired")]), 1);
        assert_eq!(value(&minute, JWT_CACHE_HITS, &[]), 1);
        // At 90 s the baseline is the sample of 30 s.
        let (_, minute) = sampler.last_minute(totals(&metrics), 90);
        assert_eq!(value(&minute, JWT_VALIDATIONS, &[("result", "valid")]), 0);
        for s in 100..200 {
            sampler.sample(totals(&metrics), s);
        }
        assert_eq!(sampler.held(), SAMPLES);
    }
}

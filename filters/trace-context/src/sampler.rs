//! The ratio sampler for traces the gateway starts (a trusted parent's decision is kept:
//! parent-based sampling).

use crate::TraceId;

/// Samples a share of new traces, decided by the trace id alone, as OpenTelemetry's
/// `TraceIdRatioBased` does: every service sampling at the same ratio keeps the same traces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    /// Trace ids whose lower 64 bits are below this are sampled.
    threshold: u64,
    always: bool,
}

impl Sampler {
    /// `ratio` in 0..=1 (validated by the configuration; clamped here).
    pub fn new(ratio: f64) -> Sampler {
        let ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1.0)
        };
        Sampler {
            threshold: (ratio * u64::MAX as f64) as u64,
            always: ratio >= 1.0,
        }
    }

    pub fn sample(&self, trace_id: &TraceId) -> bool {
        self.always || trace_id.low_u64() < self.threshold
    }
}

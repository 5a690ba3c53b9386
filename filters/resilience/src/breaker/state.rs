//! The breaker's state machine, without locking: [`super::CircuitBreaker`] wraps it in a mutex.
//!
//! Closed -> Open when the failure rate over the window reaches the threshold (once
//! `min_requests` calls are in it); Open -> HalfOpen when `open_for` has passed (lazily, on the
//! next acquire); HalfOpen -> Closed when every probe succeeded, HalfOpen -> Open on the first
//! failed probe.

use std::time::{Duration, Instant};

use portcullis_config::CircuitBreakerPolicy;

use super::{BreakerState, Rejected, Transition};
use crate::window::SlidingWindow;

/// Buckets of the closed-state window: the window is resolved to `window / 60` (half a second
/// for the default 30 s), and memory stays 60 pairs of counters whatever the traffic.
pub(super) const WINDOW_SLOTS: usize = 60;

/// `Retry-After` for a call refused because every half-open probe is out: the probes usually
/// settle within one request time, so the client is told to come back soon.
pub(super) const PROBES_BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

const CALLS: usize = 0;
const FAILURES: usize = 1;

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed,
    Open {
        since: Instant,
    },
    /// `issued` probes are out or reported; `succeeded` of them reported success.
    HalfOpen {
        issued: u32,
        succeeded: u32,
    },
}

/// What [`Machine::acquire`] granted.
pub(super) struct Grant {
    pub(super) generation: u64,
    pub(super) probe: bool,
    pub(super) transition: Option<Transition>,
}

#[derive(Debug)]
pub(super) struct Machine {
    failure_rate: f64,
    min_requests: u64,
    open_for: Duration,
    probes: u32,
    window: SlidingWindow<2>,
    phase: Phase,
    /// Bumped on every transition. A permit remembers the generation it was issued in, so an
    /// outcome reported after the state moved on (a slow call from the previous closed period,
    /// a probe that lost the race to a failed one) is ignored instead of being counted against
    /// a state it never saw.
    generation: u64,
}

impl Machine {
    pub(super) fn new(policy: &CircuitBreakerPolicy) -> Self {
        Machine {
            failure_rate: policy.failure_rate,
            // The loader guarantees at least 1 for both; a hand-built policy with 0 would
            // otherwise open on no evidence or never let a probe through.
            min_requests: u64::from(policy.min_requests.max(1)),
            open_for: policy.open_for,
            probes: policy.half_open_requests.max(1),
            window: SlidingWindow::new(policy.window, WINDOW_SLOTS),
            phase: Phase::Closed,
            generation: 0,
        }
    }

    pub(super) fn acquire(&mut self, now: Instant) -> Result<Grant, Rejected> {
        let mut transition = None;
        if let Phase::Open { since } = self.phase {
            let elapsed = now.saturating_duration_since(since);
            if elapsed < self.open_for {
                return Err(Rejected {
                    retry_after: self.open_for - elapsed,
                    state: BreakerState::Open,
                });
            }
            transition = Some(self.move_to(
                Phase::HalfOpen {
                    issued: 0,
                    succeeded: 0,
                },
                BreakerState::Open,
            ));
        }
        let probe = match &mut self.phase {
            Phase::Closed => false,
            Phase::HalfOpen { issued, .. } if *issued < self.probes => {
                *issued += 1;
                true
            }
            Phase::HalfOpen { .. } | Phase::Open { .. } => {
                return Err(Rejected {
                    retry_after: PROBES_BUSY_RETRY_AFTER,
                    state: BreakerState::HalfOpen,
                })
            }
        };
        Ok(Grant {
            generation: self.generation,
            probe,
            transition,
        })
    }

    pub(super) fn record(
        &mut self,
        generation: u64,
        failed: bool,
        now: Instant,
    ) -> Option<Transition> {
        if generation != self.generation {
            return None;
        }
        match &mut self.phase {
            Phase::Closed => {
                self.window.add(now, [1, u64::from(failed)]);
                let totals = self.window.totals(now);
                let (calls, failures) = (totals[CALLS], totals[FAILURES]);
                // resilience4j: the rate is only computed once minimumNumberOfCalls are in the
                // window, and the breaker opens when it is equal to or above the threshold.
                let tripped = calls >= self.min_requests
                    && failures as f64 / calls as f64 >= self.failure_rate;
                tripped.then(|| self.move_to(Phase::Open { since: now }, BreakerState::Closed))
            }
            Phase::HalfOpen { succeeded, .. } => {
                if failed {
                    Some(self.move_to(Phase::Open { since: now }, BreakerState::HalfOpen))
                } else {
                    *succeeded += 1;
                    (*succeeded >= self.probes)
                        .then(|| self.move_to(Phase::Closed, BreakerState::HalfOpen))
                }
            }
            // No permit is ever issued while open, so nothing of this generation can report.
            Phase::Open { .. } => None,
        }
    }

    /// Gives back the half-open slot of a probe that ended without an outcome.
    pub(super) fn release(&mut self, generation: u64) {
        if generation != self.generation {
            return;
        }
        if let Phase::HalfOpen { issued, succeeded } = &mut self.phase {
            *issued = issued.saturating_sub(1).max(*succeeded);
        }
    }

    pub(super) fn state(&self, now: Instant) -> BreakerState {
        match self.phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { since } if now.saturating_duration_since(since) < self.open_for => {
                BreakerState::Open
            }
            // open_for is over: the next acquire moves to half-open, so report that already
            // (the gauge must not show "open" while probes would be let through).
            Phase::Open { .. } | Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    fn move_to(&mut self, phase: Phase, from: BreakerState) -> Transition {
        self.phase = phase;
        self.generation = self.generation.wrapping_add(1);
        // Each closed period starts from an empty window (resilience4j resets the metrics on
        // every transition), so calls from before an outage cannot re-trip the breaker.
        self.window.clear();
        let to = match phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        };
        Transition { from, to }
    }
}

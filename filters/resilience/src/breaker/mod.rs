//! The per-upstream circuit breaker, with resilience4j's semantics
//! (<https://resilience4j.readme.io/docs/circuitbreaker>):
//!
//! - **Closed**: calls pass and their outcomes go into a time-based sliding window of `window`
//!   (60 buckets, so bounded memory and a resolution of `window / 60`). Once at least `min_requests` calls are in the
//!   window, the failure rate `failures / calls` is computed after every call, and the breaker
//!   opens when it is `>= failure_rate`.
//! - **Open**: every [`CircuitBreaker::try_acquire`] is [`Rejected`] at once, with the rest of
//!   `open_for` as `retry_after`; the upstream is not touched.
//! - **Half-open** (after `open_for`): exactly `half_open_requests` permits are handed out;
//!   further calls are rejected until those report. All succeed -> closed with an empty window;
//!   any fails -> open again for a new `open_for`. This is stricter than resilience4j, which
//!   compares the probes' failure rate with the threshold: one failed probe is enough evidence
//!   that the upstream has not recovered.
//!
//! Failures are what the gateway reports as [`CallOutcome::Failure`]: connect errors, timeouts
//! and 5xx answers ([`CallOutcome::for_status`]).

mod state;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use portcullis_config::CircuitBreakerPolicy;

use state::Machine;

/// The breaker of one upstream. Cheap to share (`Send + Sync`); every operation is one short
/// mutex critical section with O(1) work apart from emptying expired window buckets.
#[derive(Debug)]
pub struct CircuitBreaker {
    machine: Arc<Mutex<Machine>>,
}

/// Leave to make one call. Report its outcome with [`CircuitBreaker::record`]; dropping it
/// unreported (the client went away, the call was abandoned) gives a half-open probe slot back,
/// so a lost probe cannot wedge the breaker in half-open.
#[must_use = "record the call's outcome with CircuitBreaker::record"]
pub struct Permit {
    machine: Arc<Mutex<Machine>>,
    generation: u64,
    probe: bool,
    transition: Option<Transition>,
    settled: bool,
}

/// A call refused without touching the upstream (answered 503 `upstream_unavailable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker {state}: retry after {} s", self.retry_after_secs())]
pub struct Rejected {
    /// The rest of the open time; 1 s when the breaker is half-open with every probe out.
    pub retry_after: Duration,
    /// `Open`, or `HalfOpen` when every probe is out.
    pub state: BreakerState,
}

/// The outcome of a call, as the breaker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Success,
    /// Connect error, timeout or 5xx answer.
    Failure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

/// A state change, returned so the gateway can log it and update the gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: BreakerState,
    pub to: BreakerState,
}

// === impl CircuitBreaker ===

impl CircuitBreaker {
    pub fn new(policy: &CircuitBreakerPolicy) -> Self {
        CircuitBreaker {
            machine: Arc::new(Mutex::new(Machine::new(policy))),
        }
    }

    /// Asks to make a call at `now`. Open (or half-open with every probe out): rejected at once.
    /// When `open_for` has just passed, this call moves the breaker to half-open and takes the
    /// first probe; [`Permit::transition`] reports that change.
    pub fn try_acquire(&self, now: Instant) -> Result<Permit, Rejected> {
        let grant = lock(&self.machine).acquire(now)?;
        Ok(Permit {
            machine: Arc::clone(&self.machine),
            generation: grant.generation,
            probe: grant.probe,
            transition: grant.transition,
            settled: false,
        })
    }

    /// Reports the outcome of the call `permit` allowed; returns the transition it caused, if
    /// any. An outcome from before the latest transition (a slow call that started while
    /// closed and ends after the breaker opened) is ignored. A permit from another breaker is
    /// ignored too (and released on its own breaker).
    pub fn record(&self, permit: Permit, outcome: CallOutcome, now: Instant) -> Option<Transition> {
        let mut permit = permit;
        if !Arc::ptr_eq(&permit.machine, &self.machine) {
            return None;
        }
        // Set before locking: the permit's Drop then never takes the (non-reentrant) lock.
        permit.settled = true;
        lock(&self.machine).record(permit.generation, outcome == CallOutcome::Failure, now)
    }

    /// The state at `now`, for the `portcullis_circuit_breaker_state` gauge. Once `open_for`
    /// has passed this already reports `HalfOpen`, although the move happens on the next
    /// [`CircuitBreaker::try_acquire`].
    pub fn state(&self, now: Instant) -> BreakerState {
        lock(&self.machine).state(now)
    }
}

/// No code path panics while holding the lock, so a poisoned mutex still guards a consistent
/// state machine; carrying on beats failing every request of the upstream.
fn lock(machine: &Mutex<Machine>) -> MutexGuard<'_, Machine> {
    machine.lock().unwrap_or_else(PoisonError::into_inner)
}

// === impl Permit ===

impl Permit {
    /// The transition taking this permit caused: `Open -> HalfOpen` for the first probe after
    /// `open_for`, otherwise `None`.
    pub fn transition(&self) -> Option<Transition> {
        self.transition
    }

    /// Whether this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.settled && self.probe {
            lock(&self.machine).release(self.generation);
        }
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("generation", &self.generation)
            .field("probe", &self.probe)
            .field("transition", &self.transition)
            .finish_non_exhaustive()
    }
}

// === impl Rejected ===

impl Rejected {
    /// `retry_after` in whole seconds for the `Retry-After` header (RFC 9110 section 10.2.3):
    /// rounded up, and at least 1 so a client never retries in a tight loop.
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs();
        let rounded = if self.retry_after.subsec_nanos() > 0 {
            secs.saturating_add(1)
        } else {
            secs
        };
        rounded.max(1)
    }
}

// === impl CallOutcome ===

impl CallOutcome {
    /// The outcome of a call answered with `status`: 5xx is a failure (the upstream is
    /// unwell); 4xx is the client's problem and counts as a success.
    pub fn for_status(status: u16) -> Self {
        if (500..600).contains(&status) {
            CallOutcome::Failure
        } else {
            CallOutcome::Success
        }
    }
}

// === impl BreakerState ===

impl BreakerState {
    /// The value of the `portcullis_circuit_breaker_state` gauge (CONTRACT.md).
    pub fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }

    /// Lower-case name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.from, self.to)
    }
}

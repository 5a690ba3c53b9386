//! Resilience policies for upstream calls: the retry decision (full-jitter backoff, overall
//! deadline, retry budget, method safety) and the per-upstream circuit breaker.
//!
//! Plain Rust, no pingora and no I/O: the gateway's retrying upstream client asks these types
//! what to do and acts on the answer. Every method that depends on time takes `now: Instant`,
//! so tests drive the clock and never sleep.
//!
//! | module | decides |
//! |---|---|
//! | [`breaker`] | whether a call may reach the upstream at all (resilience4j semantics) |
//! | [`retry`] | whether, and after how long, a failed try is retried |
//!
//! Configuration comes validated from `portcullis_config` (`[upstreams.NAME.retry]`,
//! `[upstreams.NAME.circuit_breaker]`, `retry_non_idempotent` on routes); defaults and the
//! operator-facing rules are in docs/configuration.md.

pub mod breaker;
pub mod retry;
mod window;

pub use breaker::{BreakerState, CallOutcome, CircuitBreaker, Permit, Rejected, Transition};
pub use retry::{
    is_idempotent, parse_retry_after, Backoff, Failure, GiveUpReason, RetryBudget, RetryDecision,
    RetryPolicy,
};

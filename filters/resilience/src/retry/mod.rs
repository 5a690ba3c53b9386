//! The retry decision for one upstream: after a try failed, retry (and after how long) or give
//! up and hand the last answer (or a 502/504) to the client.
//!
//! [`RetryPolicy::decide`] applies, in this order (the first that applies is the reason):
//!
//! 1. **Retryable failure** ([`GiveUpReason::NotRetryable`]): a connect failure always is (the
//!    request never left), a timeout always is, an answer is when its status is in `on_status`.
//! 2. **Method safety** ([`GiveUpReason::UnsafeMethod`]): once a request was sent, a method
//!    that is not idempotent (RFC 9110 section 9.2.2, see [`is_idempotent`]) is retried only
//!    on answers that prove the upstream did not process it, 503 or 429 with `Retry-After`,
//!    and never after a timeout, unless the route sets `retry_non_idempotent`. Both statuses
//!    must still be in `on_status`.
//! 3. **Attempts** ([`GiveUpReason::AttemptsExhausted`]): at most `attempts` retries, so at
//!    most `attempts + 1` tries.
//! 4. **Wait**: the upstream's `Retry-After` (parsed with [`parse_retry_after`]) when present
//!    and at most `backoff_max`, exactly; a longer one ends the retries
//!    ([`GiveUpReason::RetryAfterTooLong`]). Otherwise the full-jitter backoff of [`Backoff`].
//! 5. **Deadline** ([`GiveUpReason::Deadline`]): the wait must end before `started + deadline`
//!    (there must be time left for the next try).
//! 6. **Budget** ([`GiveUpReason::Budget`]): the upstream's [`RetryBudget`] must have room;
//!    checked last, because a granted retry spends from it.

mod backoff;
mod budget;
mod decide;
mod retry_after;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::{Duration, Instant};

use http::Method;

pub use backoff::Backoff;
pub use budget::{RetryBudget, BUDGET_SLOTS, BUDGET_WINDOW, MIN_RETRIES_PER_WINDOW};
pub use retry_after::parse_retry_after;

/// The retry policy of one upstream, built from `[upstreams.NAME.retry]`. Owns the upstream's
/// retry budget, so build one per upstream and share it (`Send + Sync`).
#[derive(Debug)]
pub struct RetryPolicy {
    attempts: u32,
    backoff: Backoff,
    /// Sorted, for a binary search per decision.
    on_status: Vec<u16>,
    deadline: Duration,
    budget: RetryBudget,
}

/// How a try failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The request was never sent (connection refused, reset or TLS failure before the request
    /// was written): safe to send again whatever the method.
    Connect,
    /// Sent, but no answer within the read timeout: the upstream may have processed it.
    Timeout,
    /// The upstream answered with this status; `retry_after` is its parsed `Retry-After`.
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Wait `after`, then send the request again (to another healthy peer when there is one).
    Retry { after: Duration },
    /// Hand the last answer (or a 502/504) to the client.
    GiveUp(GiveUpReason),
}

/// Why a failed try is not retried, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GiveUpReason {
    /// The status is not in `on_status`.
    NotRetryable,
    /// `attempts` retries were already made.
    AttemptsExhausted,
    /// The wait would end at or after the overall deadline.
    Deadline,
    /// The retry budget of the upstream is spent.
    Budget,
    /// The upstream asked for a wait longer than `backoff_max`.
    RetryAfterTooLong,
    /// The method is not idempotent and the failure does not prove the request unprocessed.
    UnsafeMethod,
}

// === impl RetryPolicy ===

impl RetryPolicy {
    pub fn new(cfg: &portcullis_config::RetryPolicy) -> Self {
        let mut on_status = cfg.on_status.clone();
        on_status.sort_unstable();
        on_status.dedup();
        RetryPolicy {
            attempts: cfg.attempts,
            backoff: Backoff::new(cfg.backoff_base, cfg.backoff_max),
            on_status,
            deadline: cfg.deadline,
            budget: RetryBudget::new(cfg.budget_ratio),
        }
    }

    /// Counts a request to the upstream toward the budget. Call it once per client request,
    /// when its first try is sent; retries are counted by [`RetryPolicy::decide`] itself.
    pub fn record_request(&self, now: Instant) {
        self.budget.record_request(now);
    }

    /// Retries after the first try.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    pub fn budget(&self) -> &RetryBudget {
        &self.budget
    }

    /// What is left of the overall deadline of a request started at `started`: the gateway
    /// bounds each try's timeouts by it.
    pub fn remaining(&self, started: Instant, now: Instant) -> Duration {
        self.deadline
            .saturating_sub(now.saturating_duration_since(started))
    }

    /// Whether `code` is one of the configured `on_status` codes.
    pub fn retries_status(&self, code: u16) -> bool {
        self.on_status.binary_search(&code).is_ok()
    }
}

/// Whether `method` is idempotent per RFC 9110 section 9.2.2: the safe methods GET, HEAD,
/// OPTIONS, TRACE, plus PUT and DELETE. Everything else (POST, PATCH, CONNECT, extension
/// methods) may have an effect per request, so sending it twice may do the work twice.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

// === impl GiveUpReason ===

impl GiveUpReason {
    /// Snake-case name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            GiveUpReason::NotRetryable => "not_retryable",
            GiveUpReason::AttemptsExhausted => "attempts_exhausted",
            GiveUpReason::Deadline => "deadline",
            GiveUpReason::Budget => "budget",
            GiveUpReason::RetryAfterTooLong => "retry_after_too_long",
            GiveUpReason::UnsafeMethod => "unsafe_method",
        }
    }
}

impl fmt::Display for GiveUpReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

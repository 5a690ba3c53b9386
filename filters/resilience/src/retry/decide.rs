//! [`RetryPolicy::decide`]: the rules, in the order the module documentation of
//! [`super`] lists them.

use std::time::{Duration, Instant};

use http::Method;

use super::{is_idempotent, Failure, GiveUpReason, RetryDecision, RetryPolicy};

impl RetryPolicy {
    /// Decides whether to retry after try number `attempt` (1 = the first try) failed with
    /// `failure`. `route_non_idempotent` is the route's `retry_non_idempotent`; `started` is
    /// when the first try began (the deadline runs from there). A `Retry` has already been
    /// counted against the budget.
    pub fn decide(
        &self,
        method: &Method,
        failure: &Failure,
        attempt: u32,
        route_non_idempotent: bool,
        started: Instant,
        now: Instant,
    ) -> RetryDecision {
        match self.check(method, failure, attempt, route_non_idempotent, started, now) {
            Ok(after) => RetryDecision::Retry { after },
            Err(reason) => RetryDecision::GiveUp(reason),
        }
    }

    fn check(
        &self,
        method: &Method,
        failure: &Failure,
        attempt: u32,
        route_non_idempotent: bool,
        started: Instant,
        now: Instant,
    ) -> Result<Duration, GiveUpReason> {
        if let Failure::Status { code, .. } = *failure {
            if !self.retries_status(code) {
                return Err(GiveUpReason::NotRetryable);
            }
        }
        if !route_non_idempotent && !is_idempotent(method) && !unprocessed(failure) {
            return Err(GiveUpReason::UnsafeMethod);
        }
        if attempt > self.attempts {
            return Err(GiveUpReason::AttemptsExhausted);
        }
        let after = match *failure {
            Failure::Status {
                retry_after: Some(asked),
                ..
            } => {
                if asked > self.backoff.max() {
                    return Err(GiveUpReason::RetryAfterTooLong);
                }
                asked
            }
            _ => self.backoff.delay(attempt),
        };
        if after >= self.remaining(started, now) {
            return Err(GiveUpReason::Deadline);
        }
        if !self.budget.try_withdraw(now) {
            return Err(GiveUpReason::Budget);
        }
        Ok(after)
    }
}

/// Whether the failure proves the upstream did not act on the request, so that even a
/// non-idempotent one may be sent again: it was never sent, or the answer says so. 503 means
/// the server is not handling requests right now (RFC 9110 section 15.6.4); a 429 that names
/// when to come back (RFC 6585 section 4) is a refusal before any work.
fn unprocessed(failure: &Failure) -> bool {
    match *failure {
        Failure::Connect => true,
        Failure::Timeout => false,
        Failure::Status { code, retry_after } => {
            code == 503 || (code == 429 && retry_after.is_some())
        }
    }
}

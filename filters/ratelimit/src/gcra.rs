//! GCRA (the generic cell rate algorithm, ITU-T I.371): a token bucket of `burst` tokens
//! refilling `count` per `period`, kept as one number per key, the theoretical arrival time
//! (TAT). A request at `now` fits when `tat - now <= burst * interval - interval`; it then
//! moves `tat` on by one interval. One u64 per key instead of a count plus a timestamp.

use std::time::Duration;

use portcullis_config::Rate;

/// The result of checking one bucket without consuming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    pub allowed: bool,
    /// Tokens left after this request (when allowed) or now (when refused).
    pub remaining: u32,
    /// Until the bucket is full again.
    pub reset: Duration,
    /// Until the next request would pass (zero when allowed).
    pub retry_after: Duration,
    /// The TAT to store if the request is admitted.
    pub next_tat: u64,
}

/// Checks a bucket whose stored TAT is `tat` (nanoseconds on the limiter's clock; 0 = fresh).
pub fn check(rate: &Rate, tat: u64, now: u64) -> Check {
    let interval = rate.emission_interval().as_nanos().max(1) as u64;
    let capacity = interval.saturating_mul(u64::from(rate.count));
    let tat = tat.max(now);
    let next_tat = tat.saturating_add(interval);
    // Admitted when, after this request, the bucket does not hold more than `capacity` debt.
    let allowed = next_tat - now <= capacity;
    let debt = if allowed { next_tat - now } else { tat - now };
    let remaining = ((capacity - debt.min(capacity)) / interval) as u32;
    let retry_after = if allowed {
        0
    } else {
        next_tat - now - capacity
    };
    Check {
        allowed,
        remaining,
        reset: Duration::from_nanos(debt),
        retry_after: Duration::from_nanos(retry_after),
        next_tat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn rate(count: u32, secs: u64) -> Rate {
        Rate {
            count,
            period: Duration::from_secs(secs),
        }
    }

    #[test]
    fn a_burst_of_n_passes_and_n_plus_one_is_refused() {
        let r = rate(5, 60);
        let (mut tat, now) = (0, 1000 * SEC);
        for expected_remaining in [4, 3, 2, 1, 0] {
            let c = check(&r, tat, now);
            assert!(c.allowed);
            assert_eq!(c.remaining, expected_remaining);
            tat = c.next_tat;
        }
        let c = check(&r, tat, now);
        assert!(!c.allowed);
        assert_eq!(c.remaining, 0);
        assert_eq!(
            c.retry_after,
            Duration::from_secs(12),
            "one token every 12 s"
        );
        assert_eq!(c.reset, Duration::from_secs(60));
    }

    #[test]
    fn tokens_come_back_over_time() {
        let r = rate(2, 1);
        let now = 50 * SEC;
        let a = check(&r, 0, now);
        let b = check(&r, a.next_tat, now);
        assert!(check(&r, b.next_tat, now).allowed == false);
        let later = check(&r, b.next_tat, now + SEC / 2);
        assert!(later.allowed, "half a second refills one of two per second");
        let full = check(&r, b.next_tat, now + 2 * SEC);
        assert_eq!(full.remaining, 1, "a full bucket minus this request");
    }
}

//! Exponential backoff with full jitter, as in the AWS Architecture Blog's "Exponential Backoff
//! and Jitter" (<https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/>):
//!
//! ```text
//! ceiling(n) = min(backoff_max, backoff_base * 2^(n-1))
//! delay(n)   = uniform random in [0, ceiling(n)]        (nanosecond resolution)
//! ```
//!
//! where `n` is the number of the try that failed (1 = the first try), so the first retry waits
//! up to `backoff_base`, the second up to twice that, and so on up to `backoff_max`. Full
//! jitter spreads the retries of many clients that failed together over the whole interval,
//! instead of having them hammer a recovering upstream in synchronised waves.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
}

impl Backoff {
    /// The loader guarantees `base <= max`; a larger `base` is lowered to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base: base.min(max),
            max,
        }
    }

    /// The cap of one wait (and the longest `Retry-After` that is honoured).
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The upper bound of the wait after try `attempt` failed: `min(max, base * 2^(attempt-1))`,
    /// with `attempt` 0 treated as 1 and no overflow however large it is.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1);
        let base = self.base.as_nanos();
        let grown = if doublings >= 64 || base == 0 {
            // 2^64 ns is centuries: any non-zero base is far beyond every sane max.
            if base == 0 {
                0
            } else {
                u128::MAX
            }
        } else {
            base.saturating_mul(1u128 << doublings)
        };
        let capped = grown.min(self.max.as_nanos());
        Duration::from_nanos(u64::try_from(capped).unwrap_or(u64::MAX))
    }

    /// A random wait after try `attempt` failed, uniform in `[0, ceiling(attempt)]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, &mut rand::rng())
    }

    /// [`Backoff::delay`] with a given random source (tests seed one).
    pub fn delay_with<R: Rng + ?Sized>(&self, attempt: u32, rng: &mut R) -> Duration {
        let ceiling = u64::try_from(self.ceiling(attempt).as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=ceiling))
    }
}

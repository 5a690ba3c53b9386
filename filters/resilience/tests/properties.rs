//! Property tests: the retry decision and the breaker never panic on arbitrary input, a
//! decided wait never exceeds `backoff_max`, and the breaker never lets more than
//! `half_open_requests` probes out at once.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Method};
use portcullis_config::CircuitBreakerPolicy;
use portcullis_resilience::{
    parse_retry_after, Backoff, BreakerState, CallOutcome, CircuitBreaker, Failure, RetryDecision,
    RetryPolicy,
};
use proptest::prelude::*;

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (0u64..5_000).prop_map(Duration::from_millis),
        any::<u64>().prop_map(Duration::from_nanos),
        Just(Duration::ZERO),
        Just(Duration::MAX),
    ]
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::GET),
        Just(Method::HEAD),
        Just(Method::PUT),
        Just(Method::DELETE),
        Just(Method::POST),
        Just(Method::PATCH),
        Just(Method::CONNECT),
        "[A-Z]{1,10}".prop_filter_map("token", |m| Method::from_bytes(m.as_bytes()).ok()),
    ]
}

fn failure() -> impl Strategy<Value = Failure> {
    prop_oneof![
        Just(Failure::Connect),
        Just(Failure::Timeout),
        (any::<u16>(), proptest::option::of(duration()))
            .prop_map(|(code, retry_after)| Failure::Status { code, retry_after }),
        (
            prop_oneof![Just(429u16), Just(502), Just(503), Just(504)],
            proptest::option::of(duration())
        )
            .prop_map(|(code, retry_after)| Failure::Status { code, retry_after }),
    ]
}

fn retry_config() -> impl Strategy<Value = portcullis_config::RetryPolicy> {
    (
        0u32..=10,
        duration(),
        duration(),
        proptest::collection::vec(400u16..600, 0..6),
        prop_oneof![0.0..=1.0, Just(f64::NAN), Just(-1.0), Just(2.0)],
        duration(),
    )
        .prop_map(|(attempts, a, b, on_status, budget_ratio, deadline)| {
            portcullis_config::RetryPolicy {
                attempts,
                backoff_base: a.min(b),
                backoff_max: a.max(b),
                on_status,
                max_replay_body: 0,
                budget_ratio,
                deadline,
            }
        })
}

proptest! {
    #[test]
    fn decide_never_panics_and_waits_at_most_backoff_max(
        cfg in retry_config(),
        method in method(),
        failure in failure(),
        attempt in any::<u32>(),
        route_non_idempotent in any::<bool>(),
        started_offset in 0u64..100_000,
        now_offset in 0u64..100_000,
    ) {
        let base = Instant::now();
        let started = base + Duration::from_millis(started_offset);
        let now = base + Duration::from_millis(now_offset);
        let policy = RetryPolicy::new(&cfg);
        policy.record_request(now);
        let decision = policy.decide(&method, &failure, attempt, route_non_idempotent, started, now);
        if let RetryDecision::Retry { after } = decision {
            prop_assert!(after <= cfg.backoff_max);
            prop_assert!(after < policy.remaining(started, now));
            prop_assert!(attempt <= cfg.attempts);
        }
    }

    #[test]
    fn backoff_delay_never_exceeds_its_ceiling_or_the_max(
        a in duration(),
        b in duration(),
        attempt in any::<u32>(),
    ) {
        let backoff = Backoff::new(a.min(b), a.max(b));
        let ceiling = backoff.ceiling(attempt);
        prop_assert!(ceiling <= a.max(b));
        prop_assert!(backoff.ceiling(attempt.saturating_add(1)) >= ceiling);
        prop_assert!(backoff.delay(attempt) <= ceiling);
    }

    #[test]
    fn parse_retry_after_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        if let Ok(value) = HeaderValue::from_bytes(&bytes) {
            let _ = parse_retry_after(&value, now);
            let _ = parse_retry_after(&value, SystemTime::UNIX_EPOCH);
        }
    }

    #[test]
    fn breaker_never_exceeds_its_probes(
        steps in proptest::collection::vec((0u64..3_000, 0u8..4), 1..200),
        min_requests in 0u32..6,
        half_open_requests in 0u32..4,
        failure_rate in 0.01f64..=1.0,
    ) {
        let breaker = CircuitBreaker::new(&CircuitBreakerPolicy {
            failure_rate,
            min_requests,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(1),
            half_open_requests,
        });
        let t0 = Instant::now();
        let mut now = t0;
        let mut outstanding = Vec::new();
        for (advance_ms, action) in steps {
            now += Duration::from_millis(advance_ms);
            match action {
                0 => {
                    if let Ok(permit) = breaker.try_acquire(now) {
                        outstanding.push(permit);
                    }
                }
                1 | 2 => {
                    if let Some(permit) = outstanding.pop() {
                        let outcome = if action == 1 { CallOutcome::Success } else { CallOutcome::Failure };
                        let _ = breaker.record(permit, outcome, now);
                    }
                }
                _ => drop(outstanding.pop()),
            }
            // Probes of an earlier half-open period (one failed and reopened the breaker) are
            // stale: their outcomes are ignored, so only the current period's count.
            if breaker.state(now) != BreakerState::HalfOpen {
                outstanding.retain(|p| !p.is_probe());
            }
            let probes = outstanding.iter().filter(|p| p.is_probe()).count() as u32;
            prop_assert!(probes <= half_open_requests.max(1));
            prop_assert!(breaker.state(now).gauge() <= 2);
        }
    }
}

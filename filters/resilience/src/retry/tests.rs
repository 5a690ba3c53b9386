use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Method};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);

fn config() -> portcullis_config::RetryPolicy {
    portcullis_config::RetryPolicy {
        attempts: 3,
        backoff_base: 100 * MS,
        backoff_max: 2 * SECOND,
        on_status: vec![504, 429, 503, 502, 503],
        max_replay_body: 1024 * 1024,
        budget_ratio: 0.2,
        deadline: 60 * SECOND,
    }
}

fn status(code: u16) -> Failure {
    Failure::Status {
        code,
        retry_after: None,
    }
}

fn status_after(code: u16, after: Duration) -> Failure {
    Failure::Status {
        code,
        retry_after: Some(after),
    }
}

/// One decision on a fresh policy (a fresh budget), first try failed, plenty of deadline.
fn first(method: &Method, failure: Failure, non_idempotent_route: bool) -> RetryDecision {
    let now = Instant::now();
    RetryPolicy::new(&config()).decide(method, &failure, 1, non_idempotent_route, now, now)
}

fn retries(d: RetryDecision) -> bool {
    matches!(d, RetryDecision::Retry { .. })
}

#[test]
fn policy_and_budget_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RetryPolicy>();
    assert_send_sync::<RetryBudget>();
}

#[test]
fn idempotent_methods_per_rfc_9110() {
    for m in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
        assert!(
            is_idempotent(&Method::from_bytes(m.as_bytes()).unwrap()),
            "{m}"
        );
    }
    for m in ["POST", "PATCH", "CONNECT", "PURGE", "get"] {
        assert!(
            !is_idempotent(&Method::from_bytes(m.as_bytes()).unwrap()),
            "{m}"
        );
    }
}

#[test]
fn method_by_failure_matrix() {
    use GiveUpReason::*;
    let ra = status_after(429, SECOND);
    // (failure, idempotent method, non-idempotent method, non-idempotent on a
    // retry_non_idempotent route); None = retried.
    let table: [(
        Failure,
        Option<GiveUpReason>,
        Option<GiveUpReason>,
        Option<GiveUpReason>,
    ); 8] = [
        (Failure::Connect, None, None, None),
        (Failure::Timeout, None, Some(UnsafeMethod), None),
        (status(502), None, Some(UnsafeMethod), None),
        (status(504), None, Some(UnsafeMethod), None),
        (status(503), None, None, None),
        (ra, None, None, None),
        (status(429), None, Some(UnsafeMethod), None),
        (
            status(500),
            Some(NotRetryable),
            Some(NotRetryable),
            Some(NotRetryable),
        ),
    ];
    let idempotent = ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"];
    let unsafe_ = ["POST", "PATCH", "CONNECT", "PURGE"];
    let outcome = |d: RetryDecision| match d {
        RetryDecision::Retry { .. } => None,
        RetryDecision::GiveUp(reason) => Some(reason),
    };
    for (failure, for_idempotent, for_unsafe, for_unsafe_on_route) in table {
        for m in idempotent {
            let m = Method::from_bytes(m.as_bytes()).unwrap();
            assert_eq!(
                outcome(first(&m, failure, false)),
                for_idempotent,
                "{m} {failure:?}"
            );
            assert_eq!(
                outcome(first(&m, failure, true)),
                for_idempotent,
                "{m} {failure:?}"
            );
        }
        for m in unsafe_ {
            let m = Method::from_bytes(m.as_bytes()).unwrap();
            assert_eq!(
                outcome(first(&m, failure, false)),
                for_unsafe,
                "{m} {failure:?}"
            );
            assert_eq!(
                outcome(first(&m, failure, true)),
                for_unsafe_on_route,
                "{m} {failure:?}"
            );
        }
    }
}

#[test]
fn a_429_or_503_outside_on_status_is_not_retried_even_for_get() {
    let cfg = portcullis_config::RetryPolicy {
        on_status: vec![502],
        ..config()
    };
    let now = Instant::now();
    let p = RetryPolicy::new(&cfg);
    for failure in [status(503), status_after(429, SECOND)] {
        assert_eq!(
            p.decide(&Method::POST, &failure, 1, false, now, now),
            RetryDecision::GiveUp(GiveUpReason::NotRetryable)
        );
    }
    assert!(retries(p.decide(
        &Method::GET,
        &Failure::Connect,
        1,
        false,
        now,
        now
    )));
    assert!(retries(p.decide(
        &Method::GET,
        &Failure::Timeout,
        1,
        false,
        now,
        now
    )));
}

#[test]
fn at_most_attempts_retries() {
    let now = Instant::now();
    let p = RetryPolicy::new(&config());
    for attempt in 0..=3 {
        assert!(retries(p.decide(
            &Method::GET,
            &status(503),
            attempt,
            false,
            now,
            now
        )));
    }
    for attempt in [4, 5, u32::MAX] {
        assert_eq!(
            p.decide(&Method::GET, &status(503), attempt, false, now, now),
            RetryDecision::GiveUp(GiveUpReason::AttemptsExhausted)
        );
    }
    let none = RetryPolicy::new(&portcullis_config::RetryPolicy {
        attempts: 0,
        ..config()
    });
    assert_eq!(
        none.decide(&Method::GET, &Failure::Connect, 1, false, now, now),
        RetryDecision::GiveUp(GiveUpReason::AttemptsExhausted)
    );
}

#[test]
fn backoff_ceiling_doubles_up_to_the_max() {
    let b = Backoff::new(100 * MS, 2 * SECOND);
    let ceilings: Vec<_> = (1..=7).map(|n| b.ceiling(n)).collect();
    let ms = |v: &[u64]| v.iter().map(|&n| MS * n as u32).collect::<Vec<_>>();
    assert_eq!(ceilings, ms(&[100, 200, 400, 800, 1600, 2000, 2000]));
    assert_eq!(b.ceiling(0), 100 * MS);
    assert_eq!(b.ceiling(64), 2 * SECOND);
    assert_eq!(b.ceiling(u32::MAX), 2 * SECOND);
    assert_eq!(
        Backoff::new(Duration::ZERO, SECOND).ceiling(100),
        Duration::ZERO
    );
    assert_eq!(Backoff::new(5 * SECOND, SECOND).ceiling(1), SECOND);
    assert_eq!(
        Backoff::new(SECOND, Duration::MAX).ceiling(200).as_nanos(),
        u128::from(u64::MAX)
    );
}

#[test]
fn full_jitter_covers_zero_to_the_ceiling_uniformly() {
    let b = Backoff::new(100 * MS, 2 * SECOND);
    let mut rng = StdRng::seed_from_u64(6);
    for attempt in 1..=6 {
        let ceiling = b.ceiling(attempt);
        let samples: Vec<Duration> = (0..20_000)
            .map(|_| b.delay_with(attempt, &mut rng))
            .collect();
        let max = samples.iter().max().copied().unwrap_or_default();
        let min = samples.iter().min().copied().unwrap_or_default();
        let mean = samples.iter().sum::<Duration>() / 20_000;
        assert!(max <= ceiling, "attempt {attempt}: {max:?} > {ceiling:?}");
        assert!(
            max >= ceiling.mul_f64(0.99),
            "attempt {attempt}: never near the ceiling"
        );
        assert!(
            min <= ceiling.mul_f64(0.01),
            "attempt {attempt}: never near zero"
        );
        // Uniform on [0, c]: mean c/2, standard error c/sqrt(12 * 20000) ~ 0.002 c.
        let ratio = mean.as_secs_f64() / ceiling.as_secs_f64();
        assert!(
            (ratio - 0.5).abs() < 0.02,
            "attempt {attempt}: mean ratio {ratio}"
        );
    }
}

#[test]
fn decided_waits_stay_within_the_backoff_ceiling() {
    let start = Instant::now();
    // A budget as large as the traffic, so only the backoff is under test here.
    let p = RetryPolicy::new(&portcullis_config::RetryPolicy {
        budget_ratio: 1.0,
        ..config()
    });
    for i in 0..200u32 {
        let attempt = i % 3 + 1;
        let now = start + i * MS;
        p.record_request(now);
        match p.decide(&Method::GET, &status(502), attempt, false, now, now) {
            RetryDecision::Retry { after } => assert!(after <= p.backoff().ceiling(attempt)),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn retry_after_within_backoff_max_is_honoured_exactly() {
    let get = Method::GET;
    for wait in [Duration::ZERO, 1500 * MS, 2 * SECOND] {
        assert_eq!(
            first(&get, status_after(503, wait), false),
            RetryDecision::Retry { after: wait }
        );
    }
    assert_eq!(
        first(&Method::POST, status_after(429, 700 * MS), false),
        RetryDecision::Retry { after: 700 * MS }
    );
}

#[test]
fn a_longer_retry_after_ends_the_retries() {
    for method in [Method::GET, Method::POST] {
        assert_eq!(
            first(&method, status_after(503, 2 * SECOND + MS), false),
            RetryDecision::GiveUp(GiveUpReason::RetryAfterTooLong)
        );
    }
}

#[test]
fn the_deadline_bounds_tries_plus_waits() {
    let p = RetryPolicy::new(&portcullis_config::RetryPolicy {
        deadline: 3 * SECOND,
        ..config()
    });
    let started = Instant::now();
    let get = Method::GET;
    let wait = status_after(503, SECOND);
    // 1.5 s used, 1.5 s left: a 1 s wait fits.
    let now = started + 1500 * MS;
    assert_eq!(p.remaining(started, now), 1500 * MS);
    assert!(retries(p.decide(&get, &wait, 1, false, started, now)));
    // 2 s used: the wait would end exactly at the deadline, leaving no time for the try.
    let now = started + 2 * SECOND;
    assert_eq!(
        p.decide(&get, &wait, 2, false, started, now),
        RetryDecision::GiveUp(GiveUpReason::Deadline)
    );
    // Past the deadline even a zero wait gives up; a clock going backwards does not panic.
    let zero = status_after(503, Duration::ZERO);
    let late = started + 5 * SECOND;
    assert_eq!(
        p.decide(&get, &zero, 1, false, started, late),
        RetryDecision::GiveUp(GiveUpReason::Deadline)
    );
    assert!(retries(p.decide(&get, &zero, 1, false, late, started)));
}

#[test]
fn the_budget_has_a_floor_for_quiet_upstreams() {
    let now = Instant::now();
    let p = RetryPolicy::new(&config());
    let granted = (0..20)
        .filter(|_| retries(p.decide(&Method::GET, &Failure::Connect, 1, false, now, now)))
        .count();
    assert_eq!(granted as u64, MIN_RETRIES_PER_WINDOW);
    assert_eq!(
        p.decide(&Method::GET, &Failure::Connect, 1, false, now, now),
        RetryDecision::GiveUp(GiveUpReason::Budget)
    );
}

#[test]
fn the_budget_grows_with_traffic_and_refills_as_the_window_slides() {
    let t0 = Instant::now();
    let budget = RetryBudget::new(0.2);
    for _ in 0..100 {
        budget.record_request(t0);
    }
    assert_eq!(budget.available(t0), 20);
    let spent = (0..30).filter(|_| budget.try_withdraw(t0 + SECOND)).count();
    assert_eq!(spent, 20);
    assert!(!budget.try_withdraw(t0 + 9 * SECOND));
    // The requests and the retries at t0 + 1 s have left the 10 s window: the floor is back.
    assert_eq!(budget.available(t0 + 11 * SECOND), MIN_RETRIES_PER_WINDOW);
    assert!(budget.try_withdraw(t0 + 11 * SECOND));
}

#[test]
fn the_budget_ratio_is_sanitised() {
    let now = Instant::now();
    for ratio in [f64::NAN, -1.0, 0.0] {
        let b = RetryBudget::new(ratio);
        (0..1000).for_each(|_| b.record_request(now));
        assert_eq!(b.available(now), MIN_RETRIES_PER_WINDOW, "{ratio}");
    }
    let b = RetryBudget::new(7.0);
    (0..1000).for_each(|_| b.record_request(now));
    assert_eq!(b.available(now), 1000);
}

#[test]
fn giving_up_for_another_reason_spends_no_budget() {
    let now = Instant::now();
    let p = RetryPolicy::new(&config());
    for _ in 0..50 {
        p.decide(&Method::POST, &status(502), 1, false, now, now);
        p.decide(&Method::GET, &status(500), 1, false, now, now);
        p.decide(&Method::GET, &status(503), 9, false, now, now);
        p.decide(
            &Method::GET,
            &status_after(503, 10 * SECOND),
            1,
            false,
            now,
            now,
        );
    }
    assert_eq!(p.budget().available(now), MIN_RETRIES_PER_WINDOW);
}

#[test]
fn on_status_is_looked_up_after_sorting() {
    let p = RetryPolicy::new(&config());
    assert!([429, 502, 503, 504].iter().all(|&c| p.retries_status(c)));
    assert!(![200, 500, 501].iter().any(|&c| p.retries_status(c)));
    assert_eq!(p.attempts(), 3);
}

#[test]
fn give_up_reasons_have_stable_names() {
    use GiveUpReason::*;
    let names: Vec<_> = [
        NotRetryable,
        AttemptsExhausted,
        Deadline,
        Budget,
        RetryAfterTooLong,
        UnsafeMethod,
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(
        names,
        [
            "not_retryable",
            "attempts_exhausted",
            "deadline",
            "budget",
            "retry_after_too_long",
            "unsafe_method"
        ]
    );
}

// === parse_retry_after ===

/// Sun, 06 Nov 1994 08:49:37 GMT, the example date of RFC 9110 section 5.6.7.
fn rfc_example() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(784_111_777)
}

fn parse(value: &str, now: SystemTime) -> Option<Duration> {
    parse_retry_after(&HeaderValue::from_str(value).ok()?, now)
}

#[test]
fn retry_after_delay_seconds() {
    let now = SystemTime::now();
    assert_eq!(parse("120", now), Some(120 * SECOND));
    assert_eq!(parse("0", now), Some(Duration::ZERO));
    assert_eq!(parse(" 5\t", now), Some(5 * SECOND));
    assert_eq!(parse("007", now), Some(7 * SECOND));
    let huge = "99999999999999999999999999";
    assert_eq!(parse(huge, now), Some(Duration::from_secs(u64::MAX)));
}

#[test]
fn retry_after_http_date_in_all_three_forms() {
    let now = rfc_example() - 90 * SECOND;
    assert_eq!(
        parse("Sun, 06 Nov 1994 08:49:37 GMT", now),
        Some(90 * SECOND)
    );
    assert_eq!(
        parse("Sunday, 06-Nov-94 08:49:37 GMT", now),
        Some(90 * SECOND)
    );
    assert_eq!(parse("Sun Nov  6 08:49:37 1994", now), Some(90 * SECOND));
    let fmt = httpdate::fmt_http_date(rfc_example() + 30 * SECOND);
    assert_eq!(parse(&fmt, rfc_example()), Some(30 * SECOND));
}

#[test]
fn retry_after_in_the_past_means_now() {
    let now = rfc_example() + 3600 * SECOND;
    assert_eq!(
        parse("Sun, 06 Nov 1994 08:49:37 GMT", now),
        Some(Duration::ZERO)
    );
}

#[test]
fn retry_after_garbage_is_ignored() {
    let now = SystemTime::now();
    for value in [
        "",
        "  ",
        "soon",
        "-5",
        "+5",
        "1.5",
        "5s",
        "1e3",
        "Sun, 32 Nov 1994 08:49:37 GMT",
    ] {
        assert_eq!(parse(value, now), None, "{value:?}");
    }
    let opaque = HeaderValue::from_bytes(b"\xff12").unwrap();
    assert_eq!(parse_retry_after(&opaque, now), None);
}

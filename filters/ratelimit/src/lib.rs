//! Per-IP and per-user rate limits: GCRA token buckets in a bounded in-memory store or shared
//! by every replica through Redis ([`shared`]), with the contract's response headers.

pub mod gcra;
pub mod headers;
pub mod memory;
pub mod shared;

use std::net::IpAddr;
use std::time::Instant;

use http::{HeaderName, HeaderValue};
use portcullis_config::{Rate, RatePolicy};

use memory::KeyedStore;
use portcullis_routing::client_ip::bucket;

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Ip,
    User,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ip => "ip",
            Scope::User => "user",
        }
    }
}

/// The outcome of one check: whether to admit, and the headers to put on the response.
#[derive(Debug, Clone)]
pub struct Decision {
    pub allowed: bool,
    pub refused: Option<Scope>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

pub struct RateLimiter {
    store: KeyedStore,
    max_keys: usize,
    epoch: Instant,
}

impl RateLimiter {
    pub fn new(max_keys: usize) -> Self {
        RateLimiter {
            store: KeyedStore::new(max_keys),
            max_keys,
            epoch: Instant::now(),
        }
    }

    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// Checks every limit of `policy` that applies; a request must pass all of them, and a
    /// refused request consumes nothing from any.
    pub fn check(&self, policy: &RatePolicy, ip: IpAddr, user: Option<&str>) -> Decision {
        self.check_at(policy, ip, user, self.epoch.elapsed().as_nanos() as u64 + 1)
    }

    pub fn check_at(
        &self,
        policy: &RatePolicy,
        ip: IpAddr,
        user: Option<&str>,
        now: u64,
    ) -> Decision {
        let mut scopes: Vec<(Scope, &Rate, u64)> = Vec::with_capacity(2);
        if let Some(rate) = &policy.per_ip {
            let ip = bucket(ip, policy.ipv6_prefix);
            scopes.push((
                Scope::Ip,
                rate,
                self.store
                    .digest((&policy.name, rate.count, rate.period, "ip", ip)),
            ));
        }
        if let (Some(rate), Some(user)) = (&policy.per_user, user) {
            scopes.push((
                Scope::User,
                rate,
                self.store
                    .digest((&policy.name, rate.count, rate.period, "user", user)),
            ));
        }
        let checks: Vec<gcra::Check> = if let [(_, rate, key)] = scopes[..] {
            // One bucket: looked at and consumed under one lock.
            vec![self.store.update(key, now, |tat| {
                let c = gcra::check(rate, tat, now);
                (c.allowed.then_some(c.next_tat), c)
            })]
        } else {
            // First look without consuming; only when every scope admits is anything consumed.
            scopes
                .iter()
                .map(|(_, rate, key)| {
                    self.store
                        .update(*key, now, |tat| (None, gcra::check(rate, tat, now)))
                })
                .collect()
        };
        if scopes.len() > 1 && checks.iter().all(|c| c.allowed) {
            for (_, rate, key) in &scopes {
                self.store.update(*key, now, |tat| {
                    let c = gcra::check(rate, tat, now);
                    (c.allowed.then_some(c.next_tat), ())
                });
            }
        }
        let rates: Vec<(Scope, &Rate)> = scopes.iter().map(|(s, r, _)| (*s, *r)).collect();
        Decision::new(&policy.name, &rates, &checks)
    }
}

impl Decision {
    /// The decision for the buckets of `rates`, each looked at in `checks`: admitted when
    /// every one admits, headers from the tightest.
    pub fn new(policy: &str, rates: &[(Scope, &Rate)], checks: &[gcra::Check]) -> Decision {
        let refused = rates
            .iter()
            .zip(checks)
            .find(|(_, c)| !c.allowed)
            .map(|((s, _), _)| *s);
        let only_rates: Vec<&Rate> = rates.iter().map(|(_, r)| *r).collect();
        let headers = headers::tightest(&only_rates, checks)
            .map_or_else(Vec::new, |(rate, check)| {
                headers::fields(policy, rate, check, refused.is_some())
            });
        Decision {
            allowed: refused.is_none(),
            refused,
            headers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SEC: u64 = 1_000_000_000;

    fn policy(per_ip: Option<u32>, per_user: Option<u32>) -> RatePolicy {
        let rate = |n| Rate {
            count: n,
            period: Duration::from_secs(60),
        };
        RatePolicy {
            name: "p".into(),
            per_ip: per_ip.map(rate),
            per_user: per_user.map(rate),
            ipv6_prefix: 64,
        }
    }

    #[test]
    fn ipv6_addresses_of_one_prefix_share_the_per_ip_budget() {
        let l = RateLimiter::new(1000);
        let p = policy(Some(2), None);
        assert!(l.check_at(&p, ip("2001:db8:0:1::1"), None, SEC).allowed);
        assert!(
            l.check_at(&p, ip("2001:db8:0:1:ffff::2"), None, SEC)
                .allowed
        );
        assert!(
            !l.check_at(&p, ip("2001:db8:0:1:1234:5678:9abc:def0"), None, SEC)
                .allowed,
            "a third address in the same /64 finds the budget spent"
        );
        assert!(
            l.check_at(&p, ip("2001:db8:0:2::1"), None, SEC).allowed,
            "the next /64 has its own"
        );
        let exact = RatePolicy {
            ipv6_prefix: 128,
            ..policy(Some(1), None)
        };
        assert!(l.check_at(&exact, ip("2001:db8:0:3::1"), None, SEC).allowed);
        assert!(l.check_at(&exact, ip("2001:db8:0:3::2"), None, SEC).allowed);
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_ip_allows_exactly_the_burst() {
        let l = RateLimiter::new(1000);
        let p = policy(Some(3), None);
        let got: Vec<bool> = (0..4)
            .map(|_| l.check_at(&p, ip("1.1.1.1"), None, SEC).allowed)
            .collect();
        assert_eq!(got, [true, true, true, false]);
        assert!(
            l.check_at(&p, ip("2.2.2.2"), None, SEC).allowed,
            "another IP has its own bucket"
        );
    }

    #[test]
    fn per_user_follows_the_user_across_ips_and_anonymous_counts_per_ip() {
        let l = RateLimiter::new(1000);
        let p = policy(Some(100), Some(2));
        assert!(l.check_at(&p, ip("1.1.1.1"), Some("alice"), SEC).allowed);
        assert!(l.check_at(&p, ip("2.2.2.2"), Some("alice"), SEC).allowed);
        let third = l.check_at(&p, ip("3.3.3.3"), Some("alice"), SEC);
        assert_eq!(third.refused, Some(Scope::User));
        assert!(l.check_at(&p, ip("3.3.3.3"), Some("bob"), SEC).allowed);
        assert!(l.check_at(&p, ip("3.3.3.3"), None, SEC).allowed);
    }

    #[test]
    fn per_ip_limits_hold_across_users_of_one_address() {
        let l = RateLimiter::new(1000);
        let p = policy(Some(2), Some(100));
        assert!(l.check_at(&p, ip("1.1.1.1"), Some("alice"), SEC).allowed);
        assert!(l.check_at(&p, ip("1.1.1.1"), Some("bob"), SEC).allowed);
        let third = l.check_at(&p, ip("1.1.1.1"), Some("carol"), SEC);
        assert_eq!(third.refused, Some(Scope::Ip));
        assert!(l.check_at(&p, ip("2.2.2.2"), Some("carol"), SEC).allowed);
    }

    #[test]
    fn a_refused_request_consumes_nothing() {
        let l = RateLimiter::new(1000);
        let p = policy(Some(2), Some(1));
        assert!(l.check_at(&p, ip("1.1.1.1"), Some("alice"), SEC).allowed);
        // alice is out of her per-user budget; these refusals must not eat the IP's budget.
        for _ in 0..5 {
            assert_eq!(
                l.check_at(&p, ip("1.1.1.1"), Some("alice"), SEC).refused,
                Some(Scope::User)
            );
        }
        assert!(
            l.check_at(&p, ip("1.1.1.1"), None, SEC).allowed,
            "the IP still has one token"
        );
    }
}

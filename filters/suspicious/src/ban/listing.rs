//! The bans in force, for the admin listener's status page.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use super::BanList;

impl BanList {
    /// The clients banned at `now` (bucket keys: an IPv6 client by its `ipv6_prefix`) with the
    /// rest of their ban, longest first, at most `limit` of them; and how many there are in
    /// all. Each shard is locked in turn, for one pass over its entries.
    pub fn banned(&self, now: Instant, limit: usize) -> (Vec<(IpAddr, Duration)>, usize) {
        if self.threshold == 0 || self.tracked.load(Ordering::Relaxed) == 0 {
            return (Vec::new(), 0);
        }
        let mut bans: Vec<(IpAddr, Duration)> = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            bans.extend(
                shard
                    .iter()
                    .filter(|(_, e)| e.banned(now))
                    .filter_map(|(ip, e)| {
                        e.banned_until
                            .map(|until| (*ip, until.saturating_duration_since(now)))
                    }),
            );
        }
        let total = bans.len();
        bans.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        bans.truncate(limit);
        (bans, total)
    }

    /// The IPv6 prefix length bans are keyed by.
    pub fn ipv6_prefix(&self) -> u8 {
        self.ipv6_prefix
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_config::Suspicious;

    #[test]
    fn lists_the_bans_in_force_longest_first() {
        let cfg = Suspicious {
            ban_threshold: 1,
            ban_duration: Duration::from_secs(60),
            ..Suspicious::default()
        };
        let bans = BanList::new(&cfg);
        let t0 = Instant::now();
        assert_eq!(bans.banned(t0, 10), (Vec::new(), 0));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8:0:1::5".parse().unwrap();
        bans.record_block(a, t0);
        bans.record_block(b, t0 + Duration::from_secs(10));
        let (list, total) = bans.banned(t0 + Duration::from_secs(20), 10);
        assert_eq!(total, 2);
        assert_eq!(
            list[0],
            ("2001:db8:0:1::".parse().unwrap(), Duration::from_secs(50))
        );
        assert_eq!(list[1], (a, Duration::from_secs(40)));
        assert_eq!(bans.banned(t0 + Duration::from_secs(20), 1).0.len(), 1);
        assert_eq!(bans.banned(t0 + Duration::from_secs(100), 10).1, 0);
    }
}

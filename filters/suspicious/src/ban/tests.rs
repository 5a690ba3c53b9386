use super::*;

fn config(threshold: u32, table: usize) -> Suspicious {
    Suspicious {
        mode: portcullis_config::SuspiciousMode::Block,
        max_uri_bytes: 8192,
        max_headers: 100,
        ban_threshold: threshold,
        ban_window: Duration::from_secs(60),
        ban_duration: Duration::from_secs(600),
        ban_table_size: table,
        disabled_rules: vec![],
        ipv6_prefix: 64,
    }
}

#[test]
fn an_ipv6_client_cannot_rotate_out_of_its_ban() {
    let bans = BanList::new(&config(2, 1000));
    let t0 = Instant::now();
    assert!(!bans.record_block(ip("2001:db8:7:7::1"), t0));
    assert!(
        bans.record_block(ip("2001:db8:7:7::2"), t0),
        "two addresses, one /64, one ban"
    );
    assert!(bans.check(ip("2001:db8:7:7:dead:beef:0:1"), t0).is_some());
    assert_eq!(
        bans.check(ip("2001:db8:7:8::1"), t0),
        None,
        "the next /64 is someone else"
    );
    let mapped = BanList::new(&config(1, 1000));
    assert!(mapped.record_block(ip("::ffff:203.0.113.5"), t0));
    assert!(
        mapped.check(ip("203.0.113.5"), t0).is_some(),
        "mapped IPv6 is the IPv4 client"
    );
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

const S: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn bans_on_the_threshold_and_reports_the_rest_of_the_ban() {
    let bans = BanList::new(&config(3, 1000));
    let client = ip("203.0.113.9");
    let t0 = Instant::now();
    assert!(!bans.record_block(client, t0));
    assert!(!bans.record_block(client, t0 + S(1)));
    assert_eq!(bans.check(client, t0 + S(1)), None);
    assert!(bans.record_block(client, t0 + S(2)), "the third block bans");
    assert_eq!(bans.check(client, t0 + S(2)), Some(S(600)));
    assert_eq!(bans.check(client, t0 + S(302)), Some(S(300)));
    assert!(
        !bans.record_block(client, t0 + S(3)),
        "already banned: not banned again"
    );
    assert_eq!(
        bans.check(ip("203.0.113.10"), t0 + S(3)),
        None,
        "others pass"
    );
}

#[test]
fn the_ban_expires() {
    let bans = BanList::new(&config(2, 1000));
    let client = ip("2001:db8::7");
    let t0 = Instant::now();
    bans.record_block(client, t0);
    assert!(bans.record_block(client, t0));
    assert!(bans.check(client, t0 + S(599)).is_some());
    assert_eq!(bans.check(client, t0 + S(600)), None);
    assert_eq!(bans.check(client, t0 + S(3600)), None);
    // After the ban a fresh window starts: one block is not enough again.
    assert!(!bans.record_block(client, t0 + S(3600)));
    assert!(bans.record_block(client, t0 + S(3601)));
}

#[test]
fn blocks_outside_the_window_do_not_add_up() {
    let bans = BanList::new(&config(3, 1000));
    let client = ip("198.51.100.1");
    let t0 = Instant::now();
    assert!(!bans.record_block(client, t0));
    assert!(!bans.record_block(client, t0 + S(30)));
    // The window (60 s from the first block) is over: counting restarts.
    assert!(!bans.record_block(client, t0 + S(61)));
    assert!(!bans.record_block(client, t0 + S(62)));
    assert!(bans.record_block(client, t0 + S(63)));
}

#[test]
fn threshold_zero_disables_bans_and_tracks_nothing() {
    let bans = BanList::new(&config(0, 10));
    let client = ip("203.0.113.9");
    let now = Instant::now();
    assert!((0..100).all(|_| !bans.record_block(client, now)));
    assert_eq!(bans.check(client, now), None);
    assert!(bans.is_empty());
}

#[test]
fn time_going_backwards_or_huge_durations_do_not_panic() {
    let mut cfg = config(1, 10);
    cfg.ban_duration = Duration::MAX;
    let bans = BanList::new(&cfg);
    let client = ip("203.0.113.9");
    let now = Instant::now();
    assert!(bans.record_block(client, now + S(10)));
    assert!(bans.check(client, now).is_some());
    assert!(bans.check(client, now + S(86_400 * 365)).is_some());
}

#[test]
fn a_million_unique_clients_stay_within_the_table_size() {
    let bans = BanList::new(&config(10, 100_000));
    let now = Instant::now();
    for i in 0..1_000_000u32 {
        bans.record_block(IpAddr::V4((0x0A00_0000 + i).into()), now);
        assert!(i % 100_000 != 0 || bans.len() <= 100_000);
    }
    let len = bans.len();
    assert!(len <= 100_000, "{len} entries");
    assert!(len >= 80_000, "recent clients are still tracked ({len})");
    assert_eq!(
        bans.tracked.load(Ordering::Relaxed),
        len,
        "the counter is exact"
    );
}

#[test]
fn a_flood_does_not_push_out_a_real_ban() {
    let bans = BanList::new(&config(3, 1000));
    let attacker = ip("203.0.113.66");
    let t0 = Instant::now();
    for _ in 0..3 {
        bans.record_block(attacker, t0);
    }
    for i in 0..200_000u32 {
        bans.record_block(IpAddr::V4((0xC000_0000 + i).into()), t0 + S(1));
    }
    assert!(bans.len() <= 1000);
    assert_eq!(bans.check(attacker, t0 + S(1)), Some(S(599)));
}

#[test]
fn stale_entries_are_evicted_before_live_ones() {
    let bans = BanList::new(&config(5, 16));
    let t0 = Instant::now();
    let old: Vec<IpAddr> = (0..16u32).map(|i| IpAddr::V4(i.into())).collect();
    for ip in &old {
        bans.record_block(*ip, t0);
    }
    // Two minutes later the old windows are over; new clients replace them.
    let fresh = ip("203.0.113.1");
    bans.record_block(fresh, t0 + S(120));
    assert!(bans.len() <= 16);
    for _ in 0..4 {
        bans.record_block(fresh, t0 + S(121));
    }
    assert!(bans.check(fresh, t0 + S(121)).is_some());
}

#[test]
fn shared_between_threads() {
    let bans = std::sync::Arc::new(BanList::new(&config(100, 10_000)));
    let now = Instant::now();
    let client = ip("203.0.113.9");
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let bans = bans.clone();
            std::thread::spawn(move || (0..25).filter(|_| bans.record_block(client, now)).count())
        })
        .collect();
    let bans_made: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(bans_made, 1, "exactly one of the 100 blocks bans");
    assert!(bans.check(client, now).is_some());
}

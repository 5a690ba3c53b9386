//! The wall clock as the stores, the admin API and the status page count it: whole
//! milliseconds or seconds since the Unix epoch (0 for a clock set before it).

use std::time::{SystemTime, UNIX_EPOCH};

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub fn unix_secs() -> u64 {
    unix_ms() / 1000
}

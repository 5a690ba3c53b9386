//! When the JWKS was last fetched and how it went, for the status page. The gateway's
//! authenticator, which does the fetching, records every fetch; a fetch is rare (a schedule, or an unknown `kid` behind a
//! cooldown), so a mutex costs nothing that matters.
//!
//! The error kept is the fetcher's own text ("answered 503", "cannot connect: ...", "no
//! answer within 5s"), which names no URL path or query, cut to 300 bytes.

use std::sync::Mutex;
use std::time::SystemTime;

const MAX_ERROR_BYTES: usize = 300;

#[derive(Debug, Default, Clone)]
pub struct Fetches {
    pub last_fetch: Option<SystemTime>,
    pub last_success: Option<SystemTime>,
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
pub struct FetchLog(Mutex<Fetches>);

impl FetchLog {
    /// Records one fetch's result.
    pub fn record<T>(&self, result: &Result<T, String>) {
        let now = SystemTime::now();
        let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f.last_fetch = Some(now);
        match result {
            Ok(_) => {
                f.last_success = Some(now);
                f.last_error = None;
            }
            Err(e) => {
                let mut e = e.clone();
                if e.len() > MAX_ERROR_BYTES {
                    let mut cut = MAX_ERROR_BYTES;
                    while !e.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    e.truncate(cut);
                    e.push('…');
                }
                f.last_error = Some(e);
            }
        }
    }

    pub fn get(&self) -> Fetches {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

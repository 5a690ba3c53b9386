//! The status page's collector: gathers a [`Report`] from the process (the figures
//! `portcullis_status::Status` recorded, the sampled `/metrics` counters, and what the current
//! snapshot's pieces say now), samples those counters once a second, and answers the admin
//! listener's status paths. The crate renders; this module collects.
//!
//! It sits above `State` and `Snapshot` and imports them; they know only the crate (`State`
//! holds the `Status`, a snapshot each route's `Slot`), never this module.

mod collect;
mod counters;

use std::sync::Arc;
use std::time::Duration;

use portcullis_status::json::Report;
use portcullis_status::Page;

use crate::state::State;

/// Samples the `/metrics` counters once a second, on the admin thread, for as long as the
/// process runs.
pub async fn sample_every_second(state: Arc<State>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        state
            .status
            .sampler()
            .sample(counters::totals(&state.metrics), state.status.now_sec());
    }
}

/// The answer for `path` (one of [`portcullis_status::serves`]).
pub fn answer(path: &[u8], state: &State) -> Page {
    portcullis_status::answer(path, || collect::report(state), to_json)
}

/// `/status.json`'s bytes: through the gateway's one JSON writer (`json_line`, which escapes
/// U+2028 and U+2029), newline-terminated.
fn to_json(report: &Report) -> Vec<u8> {
    let mut out = crate::json_line::to_vec(report).unwrap_or_else(|e| {
        log::error!("encoding the status failed: {e}");
        b"{}".to_vec()
    });
    out.push(b'\n');
    out
}

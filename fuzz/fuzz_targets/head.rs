//! The intake's header-section judge: arbitrary bytes, delivered whole and in pieces cut where
//! the input's first bytes say, reach the same verdict and never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_intake::{Head, Limits, Scan};

const LIMITS: Limits = Limits {
    bytes: 4096,
    fields: 32,
};

fuzz_target!(|data: &[u8]| {
    let Some((&cuts, bytes)) = data.split_first() else {
        return;
    };
    let whole = Scan::default().examine(bytes, &LIMITS);
    let mut scan = Scan::default();
    let mut pieces = Head::Partial;
    let step = usize::from(cuts % 7) + 1;
    let mut end = 0;
    while end < bytes.len() && pieces == Head::Partial {
        end = (end + step).min(bytes.len());
        pieces = scan.examine(&bytes[..end], &LIMITS);
    }
    if bytes.is_empty() {
        pieces = scan.examine(bytes, &LIMITS);
    }
    let same = match (&whole, &pieces) {
        (Head::Malformed(_), Head::Malformed(_)) => true,
        _ => whole == pieces,
    };
    assert!(same, "whole {whole:?} but in pieces {pieces:?}");
});

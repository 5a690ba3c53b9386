//! The config loader and its duration and rate parsers: any text gets a value or errors that
//! point into the file, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use portcullis_config::{parse, parse_duration, parse_rate};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_duration(&text);
    if let Ok(rate) = parse_rate(&text) {
        assert!(rate.count >= 1);
    }
    if let Err(errors) = parse(Path::new("/nonexistent/fuzz.toml"), &text, &|_| {
        Some("an-environment-value-long-enough-for-any-secret-0123456789".into())
    }) {
        let lines = text.lines().count() + 1;
        for e in errors.0 {
            assert!(e.at.line >= 1 && e.at.line <= lines, "{e:?}");
            assert!(!e.at.key.is_empty());
        }
    }
});

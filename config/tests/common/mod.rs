//! What the key tests share: loading a file with a fixed environment, and checking that a
//! refusal names the right line, key and message.
#![allow(dead_code)]

use std::path::Path;

use portcullis_config::{parse, Config};

/// Loads `text` as `file`, with `env` as the environment; errors as (line, key, message).
pub fn load_with(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<(usize, String, String)>> {
    parse(Path::new(file), text, env).map_err(|e| {
        e.0.into_iter()
            .map(|e| (e.at.line, e.at.key, e.message))
            .collect()
    })
}

/// The 1-based line of the first line holding `needle`.
pub fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle in text")
        + 1
}

/// `loaded` is a refusal with exactly one error, on the line of `text` holding `needle`,
/// naming `key` and saying `message`.
#[track_caller]
pub fn assert_refused(
    loaded: Result<Config, Vec<(usize, String, String)>>,
    text: &str,
    needle: &str,
    key: &str,
    message: &str,
) {
    let errors = loaded.expect_err("the file should be refused");
    assert_eq!(errors.len(), 1, "{errors:?}");
    let (line, got_key, got_message) = &errors[0];
    assert_eq!(
        (*line, got_key.as_str()),
        (line_of(text, needle), key),
        "{errors:?}"
    );
    assert!(got_message.contains(message), "{got_message}");
}

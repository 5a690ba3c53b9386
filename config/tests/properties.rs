//! Property tests for the parsers that read the operator's file: duration and rate strings,
//! and the loader itself on damaged copies of the shipped examples. Whatever the text, they
//! answer (a value or errors that point into the file) and never panic.

use std::path::Path;
use std::time::Duration;

use portcullis_config::{parse, parse_duration, parse_rate, parse_size};
use proptest::prelude::*;

const UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    std::fs::read_to_string(path).expect("the example config")
}

/// Parses `text` as the example's own path (its relative files resolve) with every
/// `${VAR}` set.
fn load(name: &str, text: &str) -> Result<(), Vec<(usize, String)>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    parse(&path, text, &|_| {
        Some("an-environment-value-long-enough-for-any-secret-0123456789".into())
    })
    .map(|_| ())
    .map_err(|e| e.0.into_iter().map(|e| (e.at.line, e.at.key)).collect())
}

fn assert_located(text: &str, errors: &[(usize, String)]) -> Result<(), TestCaseError> {
    prop_assert!(!errors.is_empty());
    let lines = text.lines().count() + 1;
    for (line, key) in errors {
        prop_assert!(*line >= 1 && *line <= lines, "line {line} of {lines}");
        prop_assert!(!key.is_empty());
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Damage {
    Delete(prop::sample::Index, usize),
    Insert(prop::sample::Index, String),
    Replace(prop::sample::Index, String),
}

fn damage() -> impl Strategy<Value = Damage> {
    let junk = prop_oneof![
        "[\\[\\]{}=\"',.#\\n a-z0-9_${}]{1,12}",
        any::<String>().prop_map(|s| s.chars().take(12).collect()),
        Just("\"1x\"".to_string()),
        Just("-1".to_string()),
        Just("99999999999999999999".to_string()),
        Just("\"0s\"".to_string()),
        Just("[[routes]]\n".to_string()),
        Just("${UNSET".to_string()),
    ];
    prop_oneof![
        (any::<prop::sample::Index>(), 1usize..40).prop_map(|(i, n)| Damage::Delete(i, n)),
        (any::<prop::sample::Index>(), junk.clone()).prop_map(|(i, s)| Damage::Insert(i, s)),
        (any::<prop::sample::Index>(), junk).prop_map(|(i, s)| Damage::Replace(i, s)),
    ]
}

fn apply(text: &str, damage: &Damage) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: &prop::sample::Index| i.index(chars.len() + 1);
    let mut out: Vec<char> = chars.clone();
    match damage {
        Damage::Delete(i, n) => {
            let start = at(i).min(out.len());
            let end = (start + n).min(out.len());
            out.drain(start..end);
        }
        Damage::Insert(i, s) => {
            let start = at(i).min(out.len());
            out.splice(start..start, s.chars());
        }
        Damage::Replace(i, s) => {
            let start = at(i).min(out.len());
            let end = (start + s.chars().count()).min(out.len());
            out.splice(start..end, s.chars());
        }
    }
    out.into_iter().collect()
}

/// The shipped example `name`, damaged in turn by each of `damage`: a config, or errors that
/// point into the damaged text.
fn damaged_example_is_located(name: &str, damage: &[Damage]) -> Result<(), TestCaseError> {
    let text = damage.iter().fold(example(name), |text, d| apply(&text, d));
    match load(name, &text) {
        Ok(()) => Ok(()),
        Err(errors) => assert_located(&text, &errors),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    #[test]
    fn durations_never_panic(text in any::<String>()) {
        let _ = parse_duration(&text);
    }

    #[test]
    fn durations_read_as_written(n in 0u64..10_000_000, unit in prop::sample::select(UNITS)) {
        let text = format!("{n}{}", unit.0);
        prop_assert_eq!(parse_duration(&text), Ok(Duration::from_millis(n * unit.1)));
    }

    #[test]
    fn rates_never_panic(text in "[0-9]{0,12}/?[a-z]{0,8}|.{0,20}") {
        if let Ok(rate) = parse_rate(&text) {
            prop_assert!(rate.count >= 1);
            prop_assert!(rate.emission_interval() > Duration::ZERO);
        }
    }

    #[test]
    fn rates_read_as_written(
        n in 1u32..1_000_000_000,
        unit in prop::sample::select(&[("s", 1u64), ("sec", 1), ("min", 60), ("minute", 60),
            ("h", 3600), ("hour", 3600), ("d", 86_400), ("day", 86_400)][..]),
    ) {
        let rate = parse_rate(&format!("{n}/{}", unit.0)).expect("a valid rate");
        prop_assert_eq!(rate.count, n);
        prop_assert_eq!(rate.period, Duration::from_secs(unit.1));
    }

    #[test]
    fn sizes_read_as_written(
        n in 0u64..1_000_000,
        unit in prop::sample::select(&[("B", 1u64), ("KiB", 1024), ("MiB", 1 << 20), ("GiB", 1 << 30)][..]),
    ) {
        let size = parse_size(&format!("{n}{}", unit.0)).expect("a valid size");
        prop_assert_eq!(size as u64, n * unit.1);
    }

    #[test]
    fn a_damaged_production_config_is_refused_with_locations_or_still_valid(
        damage in prop::collection::vec(damage(), 1..4),
    ) {
        damaged_example_is_located("production.toml", &damage)?;
    }

    #[test]
    fn a_damaged_quickstart_config_is_refused_with_locations_or_still_valid(
        damage in prop::collection::vec(damage(), 1..4),
    ) {
        damaged_example_is_located("quickstart.toml", &damage)?;
    }

    #[test]
    fn arbitrary_text_is_refused_with_locations(text in any::<String>()) {
        if let Err(errors) = load("x.toml", &text) {
            assert_located(&text, &errors)?;
        }
    }
}

#[test]
fn the_undamaged_examples_load() {
    assert_eq!(load("quickstart.toml", &example("quickstart.toml")), Ok(()));
    // The production example names certificate files under /etc/portcullis, absent here:
    // those are its only complaints, so the damage tests start from a valid file.
    let errors = load("production.toml", &example("production.toml")).unwrap_err();
    assert!(
        errors
            .iter()
            .all(|(_, key)| key == "server.tls_cert" || key == "server.tls_key"),
        "{errors:?}"
    );
}

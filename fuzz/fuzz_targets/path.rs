//! Path normalisation: never panics, and a normalised path normalises to itself, starts with
//! `/`, holds no `//` and no non-ASCII byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_routing::normalize;

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    if let Ok(once) = normalize(&raw) {
        let twice = normalize(once.as_str()).expect("a normalised path normalises");
        assert_eq!(once.as_str(), twice.as_str());
        assert!(once.as_str().starts_with('/'));
        assert!(!once.as_str().contains("//"));
        assert!(once.as_str().is_ascii());
    }
});

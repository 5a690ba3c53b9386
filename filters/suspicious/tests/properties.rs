//! Property tests: detection never panics on arbitrary input, and what it reports is printable.

use std::sync::LazyLock;

use portcullis_config::Suspicious;
use portcullis_suspicious::Detector;
use proptest::prelude::*;

/// Built once: the property is about `inspect`, not about compiling the signatures.
static DETECTOR: LazyLock<Detector> = LazyLock::new(|| {
    Detector::new(&Suspicious {
        ban_table_size: 1000,
        ..Suspicious::default()
    })
});

/// Strings built from the pieces that matter for the property (so shrinking finds the
/// interesting cases), mixed with arbitrary bytes.
fn pieces(parts: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            3 => proptest::sample::select(parts).prop_map(str::to_string),
            1 => "[\\x00-\\x7f\u{80}-\u{10ffff}]{0,3}",
        ],
        0..8,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn inspect_never_panics(
        target in pieces(&["/", "..", "%", "%2", "%25", "%c0", "%ae", "%u00", "'", "\"", " ",
                           "+", "or", "=", "1", "--", "#", "<", "script", "on", "x", "?", "&",
                           ";", "/*", "*/", "%00", "\\", "union", "select"]),
        agent in proptest::collection::vec(any::<u8>(), 0..64),
        method in "[A-Za-z]{1,10}",
    ) {
        let mut builder = http::Request::builder().method(method.as_str());
        if let Ok(uri) = target.parse::<http::Uri>() {
            builder = builder.uri(uri);
        }
        if let Ok(value) = http::HeaderValue::from_bytes(&agent) {
            builder = builder.header("user-agent", value);
        }
        if let Ok(req) = builder.body(()) {
            let finding = DETECTOR.inspect(&req.into_parts().0);
            if let Some(f) = finding {
                prop_assert!(f.detail.bytes().all(|b| (0x20..0x7f).contains(&b)));
            }
        }
    }
}

//! Property tests for token decoding: whatever bytes arrive in an Authorization header, the
//! verifier answers with an error and never panics, and no change to a valid token's bytes
//! (other than none at all) still verifies.

mod common;

use std::time::SystemTime;

use common::*;
use portcullis_config::JwtAlgorithm;
use portcullis_jwt::Verifier;
use proptest::prelude::*;

/// Token-shaped strings: base64url-ish segments, dots, and the odd hostile byte.
fn token_like() -> impl Strategy<Value = String> {
    let segment = proptest::collection::vec(
        prop_oneof![
            8 => proptest::char::ranges(vec!['A'..='Z', 'a'..='z', '0'..='9'].into()),
            1 => Just('-'),
            1 => Just('_'),
            1 => Just('='),
            1 => Just('+'),
            1 => any::<char>(),
        ],
        0..80,
    )
    .prop_map(|c| c.into_iter().collect::<String>());
    proptest::collection::vec(segment, 0..5).prop_map(|parts| parts.join("."))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5_000))]

    #[test]
    fn arbitrary_strings_never_verify_and_never_panic(token in token_like()) {
        let v = Verifier::new(&fixture_config(JwtAlgorithm::RS256)).expect("verifier");
        prop_assert!(v.verify(&token, SystemTime::now()).result.is_err());
    }

    #[test]
    fn arbitrary_bytes_never_verify(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let v = Verifier::new(&hmac_config(JwtAlgorithm::HS256)).expect("verifier");
        let token = String::from_utf8_lossy(&bytes);
        prop_assert!(v.verify(&token, SystemTime::now()).result.is_err());
    }

    #[test]
    fn any_change_to_a_valid_token_is_refused(
        at in any::<prop::sample::Index>(),
        replacement in proptest::char::ranges(vec!['A'..='Z', 'a'..='z', '0'..='9', '-'..='.'].into()),
        alg in prop::sample::select(vec![JwtAlgorithm::HS256, JwtAlgorithm::ES256, JwtAlgorithm::EdDSA]),
    ) {
        let now = SystemTime::now();
        let token = sign(alg, &claims(now));
        let v = Verifier::new(&fixture_config(alg)).expect("verifier");
        prop_assert!(v.verify(&token, now).result.is_ok());
        let i = at.index(token.len());
        let original = token.as_bytes()[i] as char;
        prop_assume!(original != replacement);
        let mut changed = token.clone();
        changed.replace_range(i..=i, &replacement.to_string());
        // Base64url's last character of a segment may carry unused bits: decoding can map
        // two spellings to the same bytes, so only a change that alters the bytes must fail.
        let same_bytes = decoded(&changed) == decoded(&token);
        prop_assert!(same_bytes || v.verify(&changed, now).result.is_err(), "{changed}");
    }
}

/// The decoded bytes of each segment (None where a segment does not decode).
fn decoded(token: &str) -> Vec<Option<Vec<u8>>> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    token
        .split('.')
        .map(|s| URL_SAFE_NO_PAD.decode(s).ok())
        .collect()
}

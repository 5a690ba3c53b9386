use std::time::Duration;

use proptest::prelude::*;

use crate::*;

/// The fixed vector of the crate documentation (and of the Node.js snippet there).
const KEY: &str = "portcullis-example-key-0123456789abcdef";
const OLD_KEY: &str = "an-older-key-still-accepted-for-a-while";
const PATH: &str = "/media/b.mp3";
const EXP: u64 = 1_767_225_600;
const ALICE_SIG: &str = "gaEcmrybbkZYT_QbKfffd42hEcdXmX1o3a5mvyZBRz8";
const ANYONE_SIG: &str = "dE7lzBZM3xvfmjipTAzD-_DX-UEAcp_kRuGc4ATnjXQ";

const HOUR: Duration = Duration::from_secs(3600);
/// Ten minutes before `EXP`.
const NOW: u64 = EXP - 600;

fn urls() -> SignedUrls {
    SignedUrls::new(&[KEY], HOUR).unwrap()
}

fn verify(query: &str) -> Result<Option<Signed>, SignedUrlError> {
    urls().verify(PATH, Some(query), NOW)
}

fn alice() -> Result<Option<Signed>, SignedUrlError> {
    Ok(Some(Signed {
        user: Some("alice".into()),
        exp: EXP,
    }))
}

fn malformed(r: Result<Option<Signed>, SignedUrlError>) -> bool {
    matches!(r, Err(SignedUrlError::Malformed(_)))
}

#[test]
fn the_fixed_vectors_match_python_and_node() {
    // python3 -c 'import hmac,hashlib,base64; print(base64.urlsafe_b64encode(hmac.new(
    //   b"portcullis-example-key-0123456789abcdef",
    //   b"portcullis-url-v1\n/media/b.mp3\n1767225600\nalice", hashlib.sha256).digest()))'
    let u = urls();
    assert_eq!(
        u.sign(PATH, EXP, Some("alice")).unwrap(),
        format!("exp={EXP}&user=alice&sig={ALICE_SIG}")
    );
    assert_eq!(
        u.sign(PATH, EXP, None).unwrap(),
        format!("exp={EXP}&sig={ANYONE_SIG}")
    );
    // What the Node snippet prints for the user `j doe+1@x` (URLSearchParams writes a space
    // as `+`); the gateway's own encoding of that user differs but signs the same string.
    let node = "exp=1767225600&user=j+doe%2B1%40x&sig=BWuJqa5jHpVQW23H4OcVFQO4DxkX8mOFMB2iJluSGMs";
    let ours = u.sign(PATH, EXP, Some("j doe+1@x")).unwrap();
    assert_eq!(
        ours,
        "exp=1767225600&user=j%20doe%2B1%40x&sig=BWuJqa5jHpVQW23H4OcVFQO4DxkX8mOFMB2iJluSGMs"
    );
    for query in [node, ours.as_str()] {
        assert_eq!(
            verify(query).unwrap().unwrap().user.as_deref(),
            Some("j doe+1@x")
        );
    }
}

#[test]
fn a_valid_url_is_accepted_in_any_parameter_order_among_others() {
    assert_eq!(
        verify(&format!("exp={EXP}&user=alice&sig={ALICE_SIG}")),
        alice()
    );
    assert_eq!(
        verify(&format!(
            "sig={ALICE_SIG}&download=1&user=alice&exp={EXP}&t=3"
        )),
        alice()
    );
    assert_eq!(
        verify(&format!("exp={EXP}&sig={ANYONE_SIG}")),
        Ok(Some(Signed {
            user: None,
            exp: EXP
        }))
    );
}

#[test]
fn not_a_signed_request_without_exp_and_sig() {
    let u = urls();
    for query in [
        None,
        Some(""),
        Some("a=1"),
        Some("user=bob"),
        Some("user=a&user=b"),
    ] {
        assert_eq!(u.verify(PATH, query, NOW), Ok(None), "{query:?}");
    }
}

#[test]
fn expiry_and_lifetime_bound_are_inclusive() {
    let u = urls();
    let q = format!("exp={EXP}&user=alice&sig={ALICE_SIG}");
    assert_eq!(u.verify(PATH, Some(&q), EXP), alice());
    assert_eq!(
        u.verify(PATH, Some(&q), EXP + 1),
        Err(SignedUrlError::Expired)
    );
    assert_eq!(u.verify(PATH, Some(&q), EXP - 3600), alice());
    assert_eq!(
        u.verify(PATH, Some(&q), EXP - 3601),
        Err(SignedUrlError::TooFar)
    );
    let far = SignedUrls::new(&[KEY], Duration::from_secs(60)).unwrap();
    assert_eq!(far.verify(PATH, Some(&q), NOW), Err(SignedUrlError::TooFar));
}

#[test]
fn tampering_with_anything_signed_is_a_bad_signature() {
    let bad = Err(SignedUrlError::BadSignature);
    let mut sig = ALICE_SIG.to_string();
    sig.replace_range(0..1, "h");
    assert_eq!(verify(&format!("exp={EXP}&user=alice&sig={sig}")), bad);
    assert_eq!(
        verify(&format!("exp={}&user=alice&sig={ALICE_SIG}", EXP - 1)),
        bad
    );
    assert_eq!(
        verify(&format!("exp={EXP}&user=alicf&sig={ALICE_SIG}")),
        bad
    );
    assert_eq!(
        verify(&format!("exp={EXP}&user=Alice&sig={ALICE_SIG}")),
        bad
    );
    // The user dropped (a URL for anyone) or added to a URL for anyone.
    assert_eq!(verify(&format!("exp={EXP}&sig={ALICE_SIG}")), bad);
    assert_eq!(
        verify(&format!("exp={EXP}&user=alice&sig={ANYONE_SIG}")),
        bad
    );
    // Another path, another case, a trailing slash.
    let q = format!("exp={EXP}&user=alice&sig={ALICE_SIG}");
    for path in [
        "/media/c.mp3",
        "/media/B.mp3",
        "/media/b.mp3/",
        "/media",
        "/",
    ] {
        assert_eq!(urls().verify(path, Some(&q), NOW), bad, "{path}");
    }
    // Another key.
    let other = SignedUrls::new(&[OLD_KEY], HOUR).unwrap();
    assert_eq!(other.verify(PATH, Some(&q), NOW), bad);
}

#[test]
fn spellings_of_one_path_sign_alike_after_normalisation() {
    let normal = |p: &str| portcullis_routing::path::normalize(p).unwrap();
    let u = urls();
    let want = u.sign(PATH, EXP, None).unwrap();
    for spelling in ["/media/a/../b.mp3", "/media/%62.mp3", "//media/./b.mp3"] {
        let path = normal(spelling);
        assert_eq!(path.as_str(), PATH, "{spelling}");
        assert_eq!(u.sign(path.as_str(), EXP, None).unwrap(), want);
        assert!(u.verify(path.as_str(), Some(&want), NOW).unwrap().is_some());
    }
}

#[test]
fn rotated_keys_verify_until_removed() {
    let old = SignedUrls::new(&[OLD_KEY], HOUR).unwrap();
    let q = old.sign(PATH, EXP, Some("alice")).unwrap();
    let rotated = SignedUrls::new(&[KEY, OLD_KEY], HOUR).unwrap();
    assert_eq!(rotated.verify(PATH, Some(&q), NOW), alice());
    // The new key signs.
    assert_eq!(
        rotated.sign(PATH, EXP, Some("alice")).unwrap(),
        urls().sign(PATH, EXP, Some("alice")).unwrap()
    );
    assert_eq!(
        urls().verify(PATH, Some(&q), NOW),
        Err(SignedUrlError::BadSignature)
    );
}

#[test]
fn duplicated_or_lone_parameters_are_malformed() {
    let q = |s: &str| s.replace("SIG", ALICE_SIG).replace("EXP", &EXP.to_string());
    for query in [
        "exp=EXP&exp=EXP&user=alice&sig=SIG",
        "exp=EXP&user=alice&sig=SIG&sig=SIG",
        "exp=EXP&user=alice&user=alice&sig=SIG",
        "exp=EXP&user=alice&sig=SIG&%73ig=SIG",
        "exp=EXP&user=alice",
        "user=alice&sig=SIG",
        "sig=SIG",
        "exp=EXP",
    ] {
        assert!(malformed(verify(&q(query))), "{query}");
    }
}

#[test]
fn exp_and_sig_must_be_plainly_spelt() {
    for exp in [
        "",
        "+1767225600",
        "-1",
        "01767225600",
        "1767225600.0",
        "1e9",
        " 1767225600",
        "%31767225600",
        "99999999999999999999999",
    ] {
        assert!(
            malformed(verify(&format!("exp={exp}&user=alice&sig={ALICE_SIG}"))),
            "exp={exp}"
        );
    }
    let last = |c: &str| format!("{}{c}", &ALICE_SIG[..42]);
    for sig in [
        String::new(),
        ALICE_SIG[..42].to_string(),
        format!("{ALICE_SIG}A"),
        format!("{ALICE_SIG}="),
        ALICE_SIG.replace('_', "/"),
        // `8` and `9` share the top bits of the final `8`: only the canonical spelling decodes.
        last("9"),
    ] {
        assert!(
            malformed(verify(&format!("exp={EXP}&user=alice&sig={sig}"))),
            "sig={sig}"
        );
    }
    assert!(ALICE_SIG.ends_with('8'));
}

#[test]
fn unusable_users_are_malformed() {
    for user in [
        "",
        "%",
        "%zz",
        "%00",
        "a%0Ab",
        "%FF",
        &"u".repeat(MAX_USER_BYTES + 1),
    ] {
        assert!(
            malformed(verify(&format!("exp={EXP}&user={user}&sig={ALICE_SIG}"))),
            "user={user}"
        );
    }
}

#[test]
fn escapes_that_decode_alike_are_the_same_user() {
    let u = urls();
    let q = u.sign(PATH, EXP, Some("a+b")).unwrap();
    assert!(q.contains("user=a%2Bb"), "{q}");
    let lower = q.replace("%2B", "%2b");
    assert_eq!(
        u.verify(PATH, Some(&lower), NOW)
            .unwrap()
            .unwrap()
            .user
            .as_deref(),
        Some("a+b")
    );
}

#[test]
fn signing_refuses_what_could_collide() {
    let u = urls();
    assert_eq!(u.sign(PATH, EXP, Some("")), Err(SignError::User));
    assert_eq!(u.sign(PATH, EXP, Some("a\nb")), Err(SignError::User));
    assert_eq!(
        u.sign(PATH, EXP, Some(&"u".repeat(MAX_USER_BYTES + 1))),
        Err(SignError::User)
    );
    assert!(u.sign(PATH, EXP, Some(&"u".repeat(MAX_USER_BYTES))).is_ok());
    assert_eq!(u.sign("media/b.mp3", EXP, None), Err(SignError::Path));
    assert_eq!(u.sign("/x\n1", EXP, None), Err(SignError::Path));
    let q = format!("exp={EXP}&sig={ANYONE_SIG}");
    assert!(malformed(u.verify("/media/b.mp3\n", Some(&q), NOW)));
}

#[test]
fn keys_are_checked_when_built() {
    let none: [&str; 0] = [];
    assert_eq!(SignedUrls::new(&none, HOUR).unwrap_err(), KeyError::NoKeys);
    assert_eq!(
        SignedUrls::new(&[KEY, "short"], HOUR).unwrap_err(),
        KeyError::TooShort {
            index: 1,
            len: 5,
            min: MIN_KEY_BYTES
        }
    );
    let many = vec![KEY; MAX_KEYS + 1];
    assert_eq!(
        SignedUrls::new(&many, HOUR).unwrap_err(),
        KeyError::TooMany { max: MAX_KEYS }
    );
    assert!(SignedUrls::new(&many[..MAX_KEYS], HOUR).is_ok());
    assert!(SignedUrls::new(&[b"k".repeat(MIN_KEY_BYTES)], HOUR).is_ok());
}

#[test]
fn nothing_printed_holds_a_key_or_a_signature() {
    let u = SignedUrls::new(&[KEY, OLD_KEY], HOUR).unwrap();
    let debug = format!("{u:?}");
    assert_eq!(debug, "SignedUrls { keys: 2, max_ttl: 3600s }");
    let errors = [
        verify(&format!("exp={EXP}&user=alicf&sig={ALICE_SIG}")),
        verify(&format!("exp=0{EXP}&user=alice&sig={ALICE_SIG}")),
        verify(&format!("exp={EXP}&user=alice&sig={ALICE_SIG}x")),
        urls().verify(
            PATH,
            Some(&format!("exp={EXP}&user=alice&sig={ALICE_SIG}")),
            EXP + 1,
        ),
    ];
    for e in errors {
        let e = e.unwrap_err();
        for text in [e.to_string(), format!("{e:?}")] {
            assert!(
                !text.contains(&ALICE_SIG[..8]) && !text.contains("key-0123"),
                "{text}"
            );
        }
    }
    let reasons: Vec<&str> = [
        SignedUrlError::Expired,
        SignedUrlError::TooFar,
        SignedUrlError::BadSignature,
        SignedUrlError::Malformed("x"),
    ]
    .iter()
    .map(SignedUrlError::reason)
    .collect();
    assert_eq!(
        reasons,
        ["expired", "too_far", "bad_signature", "malformed"]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    #[test]
    fn changing_any_character_of_the_query_never_verifies(
        path in "/[a-z0-9._~-]{0,20}(/[a-z0-9._~-]{1,20}){0,3}",
        ttl in 0u64..3600,
        user in proptest::option::of("[A-Za-z0-9._~-]{1,20}"),
        at in any::<prop::sample::Index>(),
        replacement in proptest::char::ranges(
            vec!['0'..='9', 'A'..='Z', 'a'..='z', '-'..='.', '_'..='_', '%'..='&', '+'..='+', '='..='='].into()
        ),
    ) {
        let u = urls();
        let query = u.sign(&path, NOW + ttl, user.as_deref()).expect("a signable path");
        let signed = u.verify(&path, Some(&query), NOW);
        prop_assert_eq!(&signed, &Ok(Some(Signed { user: user.clone(), exp: NOW + ttl })));
        let i = at.index(query.len());
        prop_assume!(query.as_bytes()[i] as char != replacement);
        let mut changed = query.clone();
        changed.replace_range(i..=i, &replacement.to_string());
        let result = u.verify(&path, Some(&changed), NOW);
        prop_assert!(matches!(result, Err(_) | Ok(None)), "{} -> {:?}", changed, result);
    }

    #[test]
    fn any_user_and_path_round_trip(
        path in "/[^\\x00-\\x1f\\x7f-\\u{9f}]{0,40}",
        user in proptest::option::of("[^\\x00-\\x1f\\x7f-\\u{9f}]{1,40}"),
        other in "[a-z]{1,5}=[a-z0-9%+]{0,5}",
    ) {
        prop_assume!(user.as_ref().is_none_or(|u| u.len() <= MAX_USER_BYTES));
        let u = urls();
        let query = u.sign(&path, EXP, user.as_deref()).expect("a signable path");
        let with_other = format!("{other}&{query}");
        prop_assume!(!matches!(other.split('=').next(), Some("exp" | "sig" | "user")));
        prop_assert_eq!(
            u.verify(&path, Some(&with_other), NOW),
            Ok(Some(Signed { user, exp: EXP }))
        );
        prop_assert_eq!(strip_params(&with_other), Some(other));
    }

    #[test]
    fn arbitrary_queries_never_panic(query in any::<String>(), path in any::<String>(), now in any::<u64>()) {
        let _ = urls().verify(&path, Some(&query), now);
        let _ = strip_params(&query);
    }
}

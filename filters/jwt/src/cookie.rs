//! The token cookie: a browser session's JWT read from the `Cookie` request header, and the
//! same header with that cookie taken out (for `forward_credentials = false`).
//!
//! The syntax is RFC 6265 section 4.2.1 (`cookie-string = cookie-pair *( ";" SP cookie-pair )`),
//! read as section 5.4 and real browsers produce it: whitespace around `;` and `=` is
//! optional, a piece without `=` is a nameless cookie (`document.cookie = "x"` sends `x`) and
//! names compare case-sensitively, byte for byte. HTTP/2 clients may send one `Cookie` field
//! per cookie (RFC 9113 section 8.2.3 "cookie crumbs"), HTTP/1 clients one field joined with
//! `; `; every field is read either way.
//!
//! A cookie that appears more than once is refused rather than picking one: RFC 6265
//! section 8.6 gives cookies weak integrity, so a sibling subdomain or a plain-HTTP page can
//! set a second cookie of the same name for a wider domain or path ("cookie tossing") and
//! the server cannot tell which is genuine. Refusing leaves the attacker no say over which
//! token is verified.

use std::borrow::Cow;

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};

use crate::{AuthError, MAX_TOKEN_BYTES};

/// The value of the cookie `name` across every `Cookie` field of `headers`, with a
/// `DQUOTE`-wrapped value unwrapped (RFC 6265 section 4.1.1 allows `"value"`).
///
/// `Ok(None)` when no cookie has that name. [`AuthError::Malformed`] when it appears more
/// than once, or its value is empty, larger than [`MAX_TOKEN_BYTES`], or holds bytes outside
/// `cookie-octet` (controls, space, `"`, `,`, `;`, `\` and non-ASCII). Other cookies are not
/// judged: a site's unrelated cookie with odd bytes must not log its users out.
///
/// `name` is a configured cookie-name token (the config loader checks it); an empty `name`
/// never matches.
pub fn cookie_token<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, AuthError> {
    if name.is_empty() {
        return Ok(None);
    }
    let mut found = None;
    for field in headers.get_all(COOKIE) {
        for pair in pairs(field.as_bytes()) {
            if pair.name != name.as_bytes() {
                continue;
            }
            if found.is_some() {
                return Err(AuthError::Malformed(
                    "the token cookie appears more than once",
                ));
            }
            found = Some(pair.value);
        }
    }
    let Some(value) = found else {
        return Ok(None);
    };
    let value = match value {
        [b'"', inner @ .., b'"'] => inner,
        other => other,
    };
    if value.is_empty() {
        return Err(AuthError::Malformed("the token cookie is empty"));
    }
    if value.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Malformed("the token is larger than 8 KiB"));
    }
    if !value.iter().all(|&b| is_cookie_octet(b)) {
        return Err(AuthError::Malformed(
            "the token cookie holds bytes a cookie value may not",
        ));
    }
    // Cookie-octets are ASCII, so this cannot fail; no panic path either way.
    std::str::from_utf8(value)
        .map(Some)
        .map_err(|_| AuthError::Malformed("the token cookie is not ASCII"))
}

/// One `Cookie` field value without the cookie `name` (every occurrence of it).
///
/// The other cookies keep their bytes and order exactly; where two of them were adjacent
/// their original separator is kept, and where a removed cookie stood between them they are
/// joined with `; `; separators and whitespace before the first and after the last kept
/// cookie are dropped. Returns the input borrowed when `name` is not in it, and `None` when
/// removing it leaves no cookie (drop the field).
pub fn without_cookie<'v>(value: &'v [u8], name: &str) -> Option<Cow<'v, [u8]>> {
    let matches = |p: &Pair| !name.is_empty() && p.name == name.as_bytes();
    if !pairs(value).any(|p| matches(&p)) {
        return Some(Cow::Borrowed(value));
    }
    let mut out = Vec::with_capacity(value.len());
    // Where the last kept pair ends, and whether a removed pair came after it.
    let mut last_kept: Option<usize> = None;
    let mut removed_since = false;
    for pair in pairs(value) {
        if matches(&pair) {
            removed_since = true;
            continue;
        }
        if let Some(end) = last_kept {
            if removed_since {
                out.extend_from_slice(b"; ");
            } else {
                out.extend_from_slice(value.get(end..pair.start).unwrap_or(b"; "));
            }
        }
        out.extend_from_slice(value.get(pair.start..pair.end).unwrap_or_default());
        last_kept = Some(pair.end);
        removed_since = false;
    }
    (!out.is_empty()).then_some(Cow::Owned(out))
}

/// Every `Cookie` field of `headers` without the cookie `name`, for the upstream request:
/// `None` when no field holds it (leave the header alone), otherwise the fields to send in
/// place of all current ones (possibly none).
pub fn strip_cookie(headers: &HeaderMap, name: &str) -> Option<Vec<HeaderValue>> {
    let mut changed = false;
    let mut kept = Vec::new();
    for field in headers.get_all(COOKIE) {
        match without_cookie(field.as_bytes(), name) {
            Some(Cow::Borrowed(_)) => kept.push(field.clone()),
            Some(Cow::Owned(bytes)) => {
                changed = true;
                // Bytes of a valid field value joined by `; ` are a valid field value.
                kept.extend(HeaderValue::from_bytes(&bytes).ok());
            }
            None => changed = true,
        }
    }
    changed.then_some(kept)
}

/// One `cookie-pair`: its trimmed name and value, and where the pair sits in the field.
struct Pair<'v> {
    name: &'v [u8],
    value: &'v [u8],
    start: usize,
    end: usize,
}

/// The non-empty `;`-separated pieces of a field, trimmed of optional whitespace. A piece
/// without `=` is a nameless cookie (its name is empty, so it never matches).
fn pairs(field: &[u8]) -> impl Iterator<Item = Pair<'_>> {
    let mut offset = 0;
    field.split(|&b| b == b';').filter_map(move |piece| {
        let piece_start = offset;
        offset += piece.len() + 1;
        let (lead, trimmed) = trim(piece);
        if trimmed.is_empty() {
            return None;
        }
        let start = piece_start + lead;
        let (name, value) = match trimmed.iter().position(|&b| b == b'=') {
            Some(eq) => (trim(&trimmed[..eq]).1, trim(&trimmed[eq + 1..]).1),
            None => (&trimmed[..0], trimmed),
        };
        Some(Pair {
            name,
            value,
            start,
            end: start + trimmed.len(),
        })
    })
}

/// `bytes` without leading and trailing space and tab (RFC 6265 section 5.4 step 4; RFC
/// 9110 `OWS`), and how many bytes were cut at the front.
fn trim(bytes: &[u8]) -> (usize, &[u8]) {
    let is_ws = |b: &u8| *b == b' ' || *b == b'\t';
    let lead = bytes.iter().take_while(|b| is_ws(b)).count();
    let rest = &bytes[lead..];
    let tail = rest.iter().rev().take_while(|b| is_ws(b)).count();
    (lead, &rest[..rest.len() - tail])
}

/// RFC 6265 section 4.1.1 `cookie-octet`: US-ASCII except controls, whitespace, `"`, `,`,
/// `;` and `\`.
fn is_cookie_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn headers(fields: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for f in fields {
            h.append(COOKIE, HeaderValue::from_bytes(f).unwrap());
        }
        h
    }

    fn token(fields: &[&[u8]]) -> Result<Option<String>, AuthError> {
        cookie_token(&headers(fields), "session").map(|t| t.map(str::to_owned))
    }

    fn stripped(value: &str) -> Option<String> {
        without_cookie(value.as_bytes(), "session")
            .map(|v| String::from_utf8(v.into_owned()).unwrap())
    }

    fn malformed(r: Result<Option<String>, AuthError>) -> bool {
        matches!(r, Err(AuthError::Malformed(_)))
    }

    #[test]
    fn finds_the_cookie_in_one_field_or_among_many() {
        let ok = |t: &str| Ok(Some(t.to_string()));
        assert_eq!(token(&[b"session=abc"]), ok("abc"));
        assert_eq!(token(&[b"a=1; session=abc; b=2"]), ok("abc"));
        assert_eq!(token(&[b"a=1;session=abc;b=2"]), ok("abc"));
        assert_eq!(token(&[b"a=1 ;  session = abc\t; b=2"]), ok("abc"));
        assert_eq!(token(&[b"a=1", b"session=abc", b"b=2"]), ok("abc"));
        assert_eq!(token(&[b"a=1; b=2", b"c=3; session=e.y.J"]), ok("e.y.J"));
        // The value keeps its own `=` (base64 padding, say).
        assert_eq!(token(&[b"session=ab=="]), ok("ab=="));
    }

    #[test]
    fn a_quoted_value_is_unwrapped() {
        assert_eq!(token(&[b"session=\"abc\""]), Ok(Some("abc".into())));
        assert!(malformed(token(&[b"session=\"\""])));
        assert!(malformed(token(&[b"session=\"abc"])));
        assert!(malformed(token(&[b"session=a\"b\"c"])));
    }

    #[test]
    fn names_compare_exactly() {
        assert_eq!(token(&[b"Session=abc; SESSION=def"]), Ok(None));
        assert_eq!(token(&[b"sessionx=abc; xsession=def"]), Ok(None));
        assert_eq!(token(&[b"session"]), Ok(None), "a nameless cookie");
        assert_eq!(token(&[b"=session"]), Ok(None));
        assert_eq!(token(&[]), Ok(None));
        assert_eq!(token(&[b""]), Ok(None));
        assert_eq!(cookie_token(&headers(&[b"=abc"]), ""), Ok(None));
    }

    #[test]
    fn a_cookie_sent_twice_is_refused_in_one_field_or_across_fields() {
        assert!(malformed(token(&[b"session=abc; session=abc"])));
        assert!(malformed(token(&[b"session=abc; a=1; session=def"])));
        assert!(malformed(token(&[b"session=abc", b"session=def"])));
        assert!(malformed(token(&[
            b"a=1; session=abc",
            b"b=2; session=abc"
        ])));
        // Even when one of them is empty.
        assert!(malformed(token(&[b"session=abc; session="])));
    }

    #[test]
    fn bad_values_are_malformed() {
        for bad in [
            &b"session="[..],
            b"session=  ",
            b"session=a b",
            b"session=a,b",
            b"session=a\\b",
            b"session=a\tb",
            b"session=caf\xc3\xa9",
            b"session=\x80",
        ] {
            assert!(malformed(token(&[bad])), "{}", String::from_utf8_lossy(bad));
        }
        let big = format!("session={}", "a".repeat(MAX_TOKEN_BYTES + 1));
        assert_eq!(
            token(&[big.as_bytes()]),
            Err(AuthError::Malformed("the token is larger than 8 KiB"))
        );
        let limit = format!("session={}", "a".repeat(MAX_TOKEN_BYTES));
        assert!(token(&[limit.as_bytes()]).unwrap().is_some());
    }

    #[test]
    fn odd_bytes_in_other_cookies_do_not_matter() {
        assert_eq!(
            token(&[b"pref=caf\xc3\xa9; session=abc; x=\"a b\""]),
            Ok(Some("abc".into()))
        );
    }

    #[test]
    fn removal_keeps_every_other_cookie_byte_for_byte() {
        assert_eq!(
            stripped("a=1; session=abc; b=2").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(
            stripped("session=abc; a=1; b=2").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(
            stripped("a=1; b=2; session=abc").as_deref(),
            Some("a=1; b=2")
        );
        // Adjacent survivors keep their own separator; a gap is joined with `; `.
        assert_eq!(
            stripped("a=1;b=2 ;  session=abc;c=\"x y\"").as_deref(),
            Some("a=1;b=2; c=\"x y\"")
        );
        assert_eq!(
            stripped("a = 1;session=x;session=y;  b=\"q\";;c").as_deref(),
            Some("a = 1; b=\"q\";;c")
        );
        assert_eq!(stripped("session=abc"), None);
        assert_eq!(stripped(" session=abc ; session=def;"), None);
        assert_eq!(stripped("Session=abc").as_deref(), Some("Session=abc"));
    }

    #[test]
    fn removal_borrows_when_the_cookie_is_absent() {
        let value = b" a=1;;b=\xff ";
        assert!(matches!(
            without_cookie(value, "session"),
            Some(Cow::Borrowed(v)) if v == value
        ));
        assert!(matches!(
            without_cookie(b"", "session"),
            Some(Cow::Borrowed(b""))
        ));
    }

    #[test]
    fn strip_cookie_rewrites_only_the_fields_that_held_it() {
        let h = headers(&[b"a=1", b"b=2"]);
        assert_eq!(strip_cookie(&h, "session"), None);
        let h = headers(&[b"a=1", b"session=abc", b"b=2; session=abc; c=3"]);
        assert_eq!(
            strip_cookie(&h, "session"),
            Some(vec![
                HeaderValue::from_static("a=1"),
                HeaderValue::from_static("b=2; c=3"),
            ])
        );
        let h = headers(&[b"session=abc"]);
        assert_eq!(strip_cookie(&h, "session"), Some(vec![]));
    }

    /// A cookie name (RFC 9110 `token`) other than `session`.
    fn other_name() -> impl Strategy<Value = String> {
        "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}".prop_filter("not the token cookie", |n| n != "session")
    }

    /// A value of cookie-octets, sometimes quoted.
    fn octets() -> impl Strategy<Value = String> {
        ("[!#-+\\--:<-\\[\\]-~]{0,40}", any::<bool>()).prop_map(|(v, q)| {
            if q {
                format!("\"{v}\"")
            } else {
                v
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn arbitrary_fields_never_panic(
            fields in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..4),
            name in "[a-z=; ]{0,8}",
        ) {
            let mut h = HeaderMap::new();
            for f in &fields {
                if let Ok(v) = HeaderValue::from_bytes(f) {
                    h.append(COOKIE, v);
                }
            }
            let _ = cookie_token(&h, &name);
            let _ = strip_cookie(&h, &name);
            for f in &fields {
                let _ = without_cookie(f, &name);
            }
        }

        #[test]
        fn the_cookie_is_found_among_others_and_removed_cleanly(
            others in proptest::collection::btree_map(other_name(), octets(), 0..6),
            at in any::<prop::sample::Index>(),
            token in "[A-Za-z0-9._-]{1,200}",
            separator in prop::sample::select(vec!["; ", ";", " ; ", ";\t"]),
            split in any::<bool>(),
        ) {
            let mut pairs: Vec<String> = others.iter().map(|(n, v)| format!("{n}={v}")).collect();
            let i = at.index(pairs.len() + 1);
            pairs.insert(i, format!("session={token}"));
            let h = if split {
                let fields: Vec<&[u8]> = pairs.iter().map(|p| p.as_bytes()).collect();
                headers(&fields)
            } else {
                headers(&[pairs.join(separator).as_bytes()])
            };
            prop_assert_eq!(cookie_token(&h, "session"), Ok(Some(token.as_str())));

            let joined = pairs.join(separator);
            let rest = without_cookie(joined.as_bytes(), "session");
            pairs.remove(i);
            let expected = if pairs.is_empty() {
                None
            } else if i == 0 || i == pairs.len() {
                Some(pairs.join(separator))
            } else {
                Some(format!("{}; {}", pairs[..i].join(separator), pairs[i..].join(separator)))
            };
            prop_assert_eq!(rest.as_deref().map(|r| String::from_utf8_lossy(r).into_owned()), expected);
            if let Some(rest) = rest {
                let h = headers(&[&rest]);
                prop_assert_eq!(cookie_token(&h, "session"), Ok(None));
            }
        }
    }
}

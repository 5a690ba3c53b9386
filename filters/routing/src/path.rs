//! Request-path normalisation (RFC 3986 sections 5.2.4 and 6.2.2).
//!
//! The router, every policy and the upstream all see the same normalised path, so a path
//! trick (`/api/images/../music`, `/api//music`, `/api/%6Dusic`) cannot reach a route while
//! dodging that route's auth. Encoded `/`, `\` and NUL are refused outright: backends disagree
//! about them (CVE-2007-0450 in Tomcat, the IIS `%5C` traversal family), so there is no safe
//! way to forward them.
//!
//! Path parameters (`;` in a segment, raw or as `%3B`) are removed from every segment, before
//! `.` and `..` resolve. Tomcat, Jetty and Spring strip them and serve `/api;x=1/images` as
//! `/api/images`; Express reads them as part of the name. Routing on one reading while the
//! backend uses the other dodges a route's auth (Envoy CVE-2019-9901, Spring Security's
//! StrictHttpFirewall), so the gateway keeps one reading for itself and the upstream alike:
//! the path without them. `/public/..;/api` is therefore `/api`, as Tomcat reads it.

use std::fmt;

/// Why a path was refused (answered 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with `/`")]
    NotAbsolute,
    #[error("the path escapes the root with `..`")]
    EscapesRoot,
    #[error("the path holds an encoded `/`, `\\` or NUL")]
    EncodedSeparator,
    #[error("the path holds a backslash")]
    Backslash,
    #[error("the path holds a malformed percent-escape")]
    BadEscape,
    #[error("the path holds a control character")]
    ControlChar,
}

/// A normalised absolute path: percent-decoded where that is safe (unreserved characters),
/// other escapes upper-cased, `//` collapsed, `.` and `..` resolved. A trailing `/` is kept.
#[derive(Clone, PartialEq, Eq)]
pub struct NormalPath(String);

impl NormalPath {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NormalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// RFC 3986 section 2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Bytes that may stand unescaped in a path segment (RFC 3986 `pchar` minus `%`).
fn is_pchar(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Normalises the path part of a request target (no query). Costs one pass and one
/// allocation; paths are bounded by the header-size limit before they get here.
pub fn normalize(raw: &str) -> Result<NormalPath, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // Pass 1: decode into segments of canonical bytes.
    let mut segments: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut i = 1;
    let mut trailing_slash = false;
    // Inside a segment's `;` parameters: still validated, never kept.
    let mut in_params = false;
    while i <= bytes.len() {
        let b = if i < bytes.len() { bytes[i] } else { b'/' };
        let at_end = i == bytes.len();
        let kept = current.len();
        match b {
            b'/' => {
                if !at_end {
                    trailing_slash = true;
                }
                push_segment(&mut segments, std::mem::take(&mut current))?;
                in_params = false;
                i += 1;
                continue;
            }
            b';' => {
                in_params = true;
                i += 1;
            }
            b'%' => {
                let (Some(h), Some(l)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadEscape);
                };
                let decoded = h * 16 + l;
                match decoded {
                    b'/' | b'\\' | 0 => return Err(PathError::EncodedSeparator),
                    b';' => in_params = true,
                    d if is_unreserved(d) => current.push(d as char),
                    d => {
                        current.push('%');
                        current.push(HEX[(d >> 4) as usize] as char);
                        current.push(HEX[(d & 15) as usize] as char);
                    }
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash),
            b if b < 0x20 || b == 0x7f => return Err(PathError::ControlChar),
            b if is_pchar(b) => {
                current.push(b as char);
                i += 1;
            }
            b => {
                // Space, quotes, non-ASCII and the like: escape so the result is a valid URI.
                current.push('%');
                current.push(HEX[(b >> 4) as usize] as char);
                current.push(HEX[(b & 15) as usize] as char);
                i += 1;
            }
        }
        if in_params {
            current.truncate(kept);
        } else if current.len() > kept {
            trailing_slash = false;
        }
    }
    let mut out = String::with_capacity(raw.len());
    for seg in &segments {
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() || (trailing_slash && !segments.is_empty()) {
        out.push('/');
    }
    Ok(NormalPath(out))
}

/// Applies one decoded segment: empty and `.` vanish, `..` pops (refusing to climb above
/// the root).
fn push_segment(segments: &mut Vec<String>, seg: String) -> Result<(), PathError> {
    match seg.as_str() {
        "" | "." => Ok(()),
        ".." => segments.pop().map(|_| ()).ok_or(PathError::EscapesRoot),
        _ => {
            segments.push(seg);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> Result<String, PathError> {
        normalize(p).map(|p| p.0)
    }

    #[test]
    fn plain_paths_are_unchanged() {
        for p in [
            "/",
            "/api",
            "/api/music/1",
            "/api/music/",
            "/a-b_c.d~e/x=y,z",
            "/@user:1",
        ] {
            assert_eq!(n(p).as_deref(), Ok(p));
        }
    }

    #[test]
    fn slashes_collapse_and_dots_resolve() {
        assert_eq!(n("//api///music").as_deref(), Ok("/api/music"));
        assert_eq!(n("/api/./music").as_deref(), Ok("/api/music"));
        assert_eq!(n("/api/images/../music/1").as_deref(), Ok("/api/music/1"));
        assert_eq!(n("/api/music/..").as_deref(), Ok("/api"));
        assert_eq!(n("/api/music/../").as_deref(), Ok("/api/"));
        assert_eq!(n("/a/b/../../").as_deref(), Ok("/"));
    }

    #[test]
    fn unreserved_escapes_decode_so_tricks_resolve() {
        assert_eq!(n("/api/%6Dusic").as_deref(), Ok("/api/music"));
        assert_eq!(n("/api/images/%2e%2e/music").as_deref(), Ok("/api/music"));
        assert_eq!(n("/api/images/%2E./music").as_deref(), Ok("/api/music"));
    }

    #[test]
    fn other_escapes_stay_encoded_in_upper_case() {
        assert_eq!(n("/q/%e2%82%ac").as_deref(), Ok("/q/%E2%82%AC"));
        assert_eq!(n("/a%20b").as_deref(), Ok("/a%20b"));
        assert_eq!(n("/a b").as_deref(), Ok("/a%20b"));
    }

    #[test]
    fn path_parameters_leave_every_segment_raw_or_encoded() {
        for p in [
            "/api;x=1/images/1",
            "/api/images;x=1/1",
            "/api;/images;jsessionid=abc/1;v=2",
            "/api%3bx=1/images/1",
            "/api%3Bx/images%3B/1",
            "/api/;x/images/1",
            "/api/images/x/..;/1",
            "/api/images/x/%2e%2e;y/1",
            "/public/..;/api/images/1",
        ] {
            assert_eq!(n(p).as_deref(), Ok("/api/images/1"), "{p}");
        }
        assert_eq!(n("/api/images;x").as_deref(), Ok("/api/images"));
        assert_eq!(n("/api/images/;x").as_deref(), Ok("/api/images/"));
        assert_eq!(n("/;x").as_deref(), Ok("/"));
        assert_eq!(n("/..;x/etc"), Err(PathError::EscapesRoot));
        // Parameters are still read: what is refused in a name is refused in them.
        assert_eq!(n("/a;x=%2F"), Err(PathError::EncodedSeparator));
        assert_eq!(n("/a;x=%zz"), Err(PathError::BadEscape));
        assert_eq!(n("/a;\u{1}"), Err(PathError::ControlChar));
    }

    #[test]
    fn escapes_above_the_root_are_refused() {
        assert_eq!(n("/../etc/passwd"), Err(PathError::EscapesRoot));
        assert_eq!(n("/api/../../etc/passwd"), Err(PathError::EscapesRoot));
        assert_eq!(n("/%2e%2e/etc/passwd"), Err(PathError::EscapesRoot));
    }

    #[test]
    fn encoded_separators_and_nul_are_refused() {
        assert_eq!(n("/api%2Fmusic"), Err(PathError::EncodedSeparator));
        assert_eq!(n("/api%2fmusic"), Err(PathError::EncodedSeparator));
        assert_eq!(n("/api%5Cmusic"), Err(PathError::EncodedSeparator));
        assert_eq!(n("/api%00"), Err(PathError::EncodedSeparator));
        assert_eq!(n("/api\\music"), Err(PathError::Backslash));
    }

    #[test]
    fn malformed_input_is_refused() {
        assert_eq!(n("api"), Err(PathError::NotAbsolute));
        assert_eq!(n(""), Err(PathError::NotAbsolute));
        assert_eq!(n("/a%2"), Err(PathError::BadEscape));
        assert_eq!(n("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(n("/a\u{1}b"), Err(PathError::ControlChar));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]

        #[test]
        fn never_panics_and_is_idempotent(raw in "/[ -~\u{80}-\u{10ffff}]{0,64}") {
            if let Ok(once) = normalize(&raw) {
                let twice = normalize(once.as_str()).expect("a normalised path normalises");
                proptest::prop_assert_eq!(&once, &twice);
                proptest::prop_assert!(once.as_str().starts_with('/'));
                proptest::prop_assert!(!once.as_str().contains("//"));
                proptest::prop_assert!(once.as_str().is_ascii());
                proptest::prop_assert!(!once.as_str().contains(';'));
                proptest::prop_assert!(!once.as_str().to_ascii_uppercase().contains("%3B"));
            }
        }

        /// Both readings of a segment agree: a path with `;` parameters normalises to the
        /// same path as the one without them (or is refused).
        #[test]
        fn parameters_never_change_the_path(
            segments in proptest::collection::vec("(\\.|\\.\\.|[a-z]{1,3}|%2[eE])", 1..6),
            params in proptest::collection::vec(proptest::option::of("(;|%3[bB])[a-z=.;]{0,4}"), 1..6),
        ) {
            let plain: String = segments.iter().map(|s| format!("/{s}")).collect();
            let with: String = segments
                .iter()
                .zip(params.iter().chain(std::iter::repeat(&None)))
                .map(|(s, p)| format!("/{s}{}", p.as_deref().unwrap_or("")))
                .collect();
            proptest::prop_assert_eq!(normalize(&plain), normalize(&with));
        }

        #[test]
        fn dot_heavy_paths_never_panic(raw in "(/|\\.|\\.\\.|%2[eEfF]|a|%){0,40}") {
            let _ = normalize(&raw);
        }
    }
}

//! `path_traversal`: `..` used as a path segment, in the path or in a query value, after
//! every decoding in [`super::target`] (OWASP "Path Traversal"; CWE-22), plus the files such
//! attacks reach for.
//!
//! Only a dot-dot *segment* counts: `..` bounded by a separator (`/`, `\`, `=`, `?`, `;`) on
//! the left and by a separator or the end on the right. `1..10`, `wait...` or
//! `...And Justice for All` are ordinary text; `../`, `..\`, `=..`, `/..;/` (Tomcat's path
//! parameter trick) and `....//` (which survives a naive `../` stripper) are not.

use super::needles::Needles;
use super::target::Target;

/// Files worth reading and encodings that are still there after two rounds of decoding
/// (only a third, deliberate round produces those).
pub(super) const SIGNATURES: &[&str] = &[
    "etc/passwd",
    "etc/shadow",
    "proc/self/",
    "win.ini",
    "boot.ini",
    "system.ini",
    "c:\\windows",
    "c:/windows",
    "windows\\system32",
    "windows/system32",
    "web-inf/",
    ".htpasswd",
    ".htaccess",
    "file:///",
    "%2e%2e",
    "%2e.",
    ".%2e",
    "%252e",
    "..%2f",
    "..%5c",
    "%2f..",
    "%5c..",
];

pub(super) fn find(target: &Target, signatures: &Needles) -> Option<&'static str> {
    if target.overlong_separator {
        return Some("overlong UTF-8 dot or slash");
    }
    if dot_dot_segment(&target.canonical) {
        return Some("dot-dot path segment");
    }
    signatures.find(&target.canonical)
}

fn dot_dot_segment(s: &[u8]) -> bool {
    let mut from = 0;
    while let Some(pos) = memchr::memchr(b'.', &s[from..]) {
        let start = from + pos;
        let mut i = start;
        while s.get(i) == Some(&b'.') {
            i += 1;
        }
        let run = i - start;
        let left = start == 0 || matches!(s[start - 1], b'/' | b'\\' | b'=' | b'?' | b';');
        let right_separator = matches!(s.get(i), Some(b'/' | b'\\'));
        let right_end = matches!(s.get(i), None | Some(b';' | b'?' | b'&' | b'#'));
        if left && (right_separator || (run == 2 && right_end)) && run >= 2 {
            return true;
        }
        from = i;
    }
    false
}

//! `script_injection`: reflected cross-site scripting shapes (OWASP "Cross Site Scripting
//! Prevention Cheat Sheet"; CWE-79) in the decoded, lower-cased target.
//!
//! Three kinds of evidence: an opening tag of an element that runs script or loads content
//! (`<script`, `<svg/`, `<img `; not `<insert title here>`), an event-handler attribute
//! (`onerror=`, `" onmouseover =`; not a query parameter that happens to start with `on`,
//! such as `&online=1`), and fixed signatures (`javascript:`, `document.cookie`, `alert(`).

use super::needles::Needles;

pub(super) const SIGNATURES: &[&str] = &[
    "javascript:",
    "vbscript:",
    "livescript:",
    "data:text/html",
    "data:image/svg",
    "document.cookie",
    "document.domain",
    "document.write",
    "document.location",
    "window.location",
    "location.href=",
    "alert(",
    "alert`",
    "prompt(",
    "confirm(",
    "eval(",
    "fromcharcode(",
    "expression(",
    "settimeout(",
    "setinterval(",
    "srcdoc=",
    "formaction=",
    "xlink:href",
    "-moz-binding",
    "&lt;script",
    "&#60;script",
    "&#x3c;script",
];

/// Elements that run script, load a document or carry event handlers in common payloads.
const TAGS: &[&[u8]] = &[
    b"script",
    b"svg",
    b"iframe",
    b"frame",
    b"frameset",
    b"img",
    b"image",
    b"object",
    b"embed",
    b"applet",
    b"body",
    b"math",
    b"details",
    b"video",
    b"audio",
    b"source",
    b"style",
    b"link",
    b"meta",
    b"base",
    b"form",
    b"input",
    b"textarea",
    b"button",
    b"marquee",
    b"isindex",
    b"template",
    b"xss",
    b"html",
];

pub(super) fn find(canonical: &[u8], signatures: &Needles) -> Option<&'static str> {
    if dangerous_tag(canonical) {
        return Some("HTML tag");
    }
    if event_handler(canonical) {
        return Some("event handler attribute");
    }
    signatures.find(canonical)
}

/// `<name` or `</name` with a listed name, followed by a space, `/`, `>` or the end.
fn dangerous_tag(s: &[u8]) -> bool {
    memchr::memchr_iter(b'<', s).any(|i| {
        let rest = &s[i + 1..];
        let rest = rest.strip_prefix(b"/").unwrap_or(rest);
        let len = rest
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric())
            .count();
        TAGS.contains(&&rest[..len]) && matches!(rest.get(len), None | Some(b' ' | b'/' | b'>'))
    })
}

/// `on` plus 3 to 30 letters, an optional space and `=`, where the `on` follows a space, a
/// quote, a backtick or `/` (attribute position), never `?`, `&` or a letter.
fn event_handler(s: &[u8]) -> bool {
    memchr::memmem::find_iter(s, b"on").any(|i| {
        if i == 0 || !matches!(s[i - 1], b' ' | b'"' | b'\'' | b'`' | b'/') {
            return false;
        }
        let rest = &s[i + 2..];
        let letters = rest.iter().take_while(|c| c.is_ascii_lowercase()).count();
        let after = &rest[letters..];
        let after = after.strip_prefix(b" ").unwrap_or(after);
        (3..=30).contains(&letters) && after.first() == Some(&b'=')
    })
}

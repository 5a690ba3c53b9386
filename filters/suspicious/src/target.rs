//! The request target as the rules see it.
//!
//! Attackers hide signatures behind encodings that the backend will undo: percent-encoding
//! (once or twice: `%252e` is `%2e` is `.`), `+` for space in queries (HTML form encoding),
//! IIS-style `%u002e`, and overlong UTF-8 (`%c0%ae` is a forbidden two-byte spelling of `.`,
//! CVE-2000-0884; RFC 3629 section 10). The target is decoded twice, overlong sequences that
//! spell ASCII are folded back, and the result is kept twice: `decoded` (exact bytes, for NUL
//! and control checks) and `canonical` (ASCII lower-cased, every run of whitespace or control
//! bytes collapsed into one space, for signature matching).
//!
//! Work and memory are linear in the target, whose length the gateway bounds (pingora's
//! request-header limit, and `oversized_uri` before this runs).

/// The decoded views of one request target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) decoded: Vec<u8>,
    pub(super) canonical: Vec<u8>,
    /// An overlong UTF-8 sequence spelled `.`, `/` or `\`: only ever a traversal attempt.
    pub(super) overlong_separator: bool,
    /// The decoded target holds a NUL byte.
    pub(super) nul: bool,
    /// The first other control byte (0x01-0x1F, 0x7F) in the decoded target.
    pub(super) control: Option<u8>,
}

impl Target {
    pub(super) fn new(raw: &[u8]) -> Target {
        // Most targets hold no escape at all: skip the decoding passes for them.
        let mut decoded = if memchr::memchr2(b'%', b'+', raw).is_some() {
            let once = percent_decode(raw, true);
            percent_decode(&once, false)
        } else {
            raw.to_vec()
        };
        let overlong_separator = decoded.iter().any(|b| *b >= 0xC0) && fold_overlong(&mut decoded);
        let (canonical, nul, control) = canonicalise(&decoded);
        Target {
            decoded,
            canonical,
            overlong_separator,
            nul,
            control,
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// One round of percent-decoding (RFC 3986 section 2.1) plus `%uXXXX`; malformed escapes
/// are kept as they are. `plus_as_space` applies form encoding (only on the first round: a
/// `%2B` is a literal plus).
fn percent_decode(input: &[u8], plus_as_space: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        if b == b'%' {
            if let (Some(h), Some(l)) = (
                input.get(i + 1).copied().and_then(hex),
                input.get(i + 2).copied().and_then(hex),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
            if let Some(c) = unicode_escape(input.get(i + 1..i + 6)) {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                i += 6;
                continue;
            }
        }
        out.push(if plus_as_space && b == b'+' { b' ' } else { b });
        i += 1;
    }
    out
}

/// `uXXXX` after a `%` (the non-standard IIS escape).
fn unicode_escape(after_percent: Option<&[u8]>) -> Option<char> {
    let [u, digits @ ..] = after_percent? else {
        return None;
    };
    if !u.eq_ignore_ascii_case(&b'u') {
        return None;
    }
    let mut code = 0u32;
    for &d in digits {
        code = code << 4 | u32::from(hex(d)?);
    }
    char::from_u32(code)
}

/// Replaces overlong UTF-8 sequences that encode an ASCII byte with that byte, in place.
/// Returns whether one of them was `.`, `/` or `\`. Valid UTF-8 (any script, emoji) never
/// contains these sequences and is left alone.
fn fold_overlong(bytes: &mut Vec<u8>) -> bool {
    let mut separator = false;
    let (mut read, mut write) = (0, 0);
    while read < bytes.len() {
        let b0 = bytes[read];
        let folded = match (
            b0,
            bytes.get(read + 1),
            bytes.get(read + 2),
            bytes.get(read + 3),
        ) {
            // C0/C1 xx: two-byte overlong. IIS also accepted a non-continuation second byte,
            // so only its low six bits count.
            (0xC0 | 0xC1, Some(&b1), _, _) => Some(((b0 & 0x01) << 6 | (b1 & 0x3F), 2)),
            (0xE0, Some(&b1 @ 0x80..=0x81), Some(&b2 @ 0x80..=0xBF), _) => {
                Some(((b1 & 0x01) << 6 | (b2 & 0x3F), 3))
            }
            (0xF0, Some(0x80), Some(&b2 @ 0x80..=0x81), Some(&b3 @ 0x80..=0xBF)) => {
                Some(((b2 & 0x01) << 6 | (b3 & 0x3F), 4))
            }
            _ => None,
        };
        let (byte, len) = folded.unwrap_or((b0, 1));
        if folded.is_some() && matches!(byte, b'.' | b'/' | b'\\') {
            separator = true;
        }
        bytes[write] = byte;
        write += 1;
        read += len;
    }
    bytes.truncate(write);
    separator
}

/// Each byte's canonical form: ASCII lower case, whitespace and control bytes as a space.
const CANONICAL: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] = if b < 0x20 || b == 0x7F {
            b' '
        } else {
            b.to_ascii_lowercase()
        };
        i += 1;
    }
    table
};

/// The canonical form (one space per run of spaces), and the NUL and control bytes seen on
/// the way (one pass over the target instead of three).
fn canonicalise(decoded: &[u8]) -> (Vec<u8>, bool, Option<u8>) {
    let mut out = vec![0u8; decoded.len()];
    let (mut len, mut nul, mut control) = (0, false, None);
    let mut previous = 0u8;
    for &b in decoded {
        let c = CANONICAL[usize::from(b)];
        if c == b' ' && b != b' ' {
            if b == 0 {
                nul = true;
            } else if control.is_none() {
                control = Some(b);
            }
        }
        if c == b' ' && previous == b' ' {
            continue;
        }
        out[len] = c;
        len += 1;
        previous = c;
    }
    out.truncate(len);
    (out, nul, control)
}

/// Whether `needle` occurs in `hay` (both already in the case the caller wants).
pub(super) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

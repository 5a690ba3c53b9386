//! The `tracestate` header (W3C section 3.3): vendor entries `key=value`, comma-separated.

/// The longest `tracestate` passed on. W3C asks to propagate at least 512 characters; a
/// longer list is dropped whole rather than cut (cutting could split a vendor's entry).
pub const MAX_TRACESTATE_BYTES: usize = 512;
/// At most 32 list members (section 3.3.1.1).
const MAX_MEMBERS: usize = 32;

/// The combined `tracestate` of all the header's fields, when it is valid and within bounds.
pub(crate) fn join<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<String> {
    let mut joined = String::new();
    for value in values {
        let text = std::str::from_utf8(value).ok()?.trim();
        if text.is_empty() {
            continue;
        }
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(text);
        if joined.len() > MAX_TRACESTATE_BYTES {
            return None;
        }
    }
    (!joined.is_empty() && valid_tracestate(&joined)).then_some(joined)
}

/// Whether `value` is a well-formed list: at most 32 members, each `key=value` with the
/// grammar of section 3.3.1.3, no key twice. Empty members (`a=1,,b=2`) are allowed.
pub fn valid_tracestate(value: &str) -> bool {
    let mut keys: Vec<&str> = Vec::new();
    for member in value.split(',') {
        let member = member.trim_matches([' ', '\t']);
        if member.is_empty() {
            continue;
        }
        let Some((key, val)) = member.split_once('=') else {
            return false;
        };
        if !valid_key(key) || !valid_value(val) || keys.contains(&key) {
            return false;
        }
        keys.push(key);
        if keys.len() > MAX_MEMBERS {
            return false;
        }
    }
    true
}

/// `simple-key` (lcalpha then up to 255 of lcalpha, digit, `_-*/`), or `tenant@system`
/// (tenant up to 241, system up to 14 characters).
fn valid_key(key: &str) -> bool {
    let part = |s: &str, max: usize, first_digit: bool| {
        let b = s.as_bytes();
        !b.is_empty()
            && b.len() <= max
            && (b[0].is_ascii_lowercase() || (first_digit && b[0].is_ascii_digit()))
            && b.iter().all(|c| {
                c.is_ascii_lowercase()
                    || c.is_ascii_digit()
                    || matches!(c, b'_' | b'-' | b'*' | b'/')
            })
    };
    match key.split_once('@') {
        Some((tenant, system)) => part(tenant, 241, true) && part(system, 14, false),
        None => part(key, 256, false),
    }
}

/// Up to 256 printable ASCII characters except `,` and `=`, not ending in a space.
fn valid_value(value: &str) -> bool {
    let b = value.as_bytes();
    !b.is_empty()
        && b.len() <= 256
        && b.last() != Some(&b' ')
        && b.iter()
            .all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
}

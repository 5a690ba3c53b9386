//! Token sources: `[jwt] sources` and a route's `auth_sources`, each `"header"` or
//! `"cookie:NAME"`.

use crate::model::TokenSource;
use crate::reader::{Diag, Field};

/// Longest cookie name accepted. RFC 6265 sets no limit, but browsers cap a whole cookie at
/// 4096 bytes, and a token cookie's name is a short, fixed word.
const MAX_COOKIE_NAME: usize = 128;

/// A non-empty list of sources without duplicates. `allowed` is checked for every entry
/// (`Some` for a route's narrowing of `[jwt].sources`).
pub(crate) fn sources(
    field: &Field,
    d: &mut Diag,
    mut allowed: impl FnMut(&Field, &TokenSource, &mut Diag) -> bool,
) -> Option<Vec<TokenSource>> {
    let mut seen: Vec<TokenSource> = Vec::new();
    let list = field.list(d, |f, d| {
        let source = source(f, d)?;
        if seen.contains(&source) {
            f.error(d, format!("`{source}` is listed twice"));
            return None;
        }
        seen.push(source.clone());
        allowed(f, &source, d).then_some(source)
    })?;
    if list.is_empty() {
        field.error(
            d,
            "must list at least one source (\"header\" or \"cookie:NAME\")",
        );
        return None;
    }
    Some(list)
}

fn source(field: &Field, d: &mut Diag) -> Option<TokenSource> {
    let text = field.string(d)?;
    if text == "header" {
        return Some(TokenSource::Header);
    }
    let Some(name) = text.strip_prefix("cookie:") else {
        field.error(d, format!("`{text}` is not \"header\" or \"cookie:NAME\""));
        return None;
    };
    if name.is_empty() || name.len() > MAX_COOKIE_NAME || !name.bytes().all(is_tchar) {
        field.error(
            d,
            format!(
                "`{name}` is not a cookie name: 1 to {MAX_COOKIE_NAME} letters, digits or \
                 !#$%&'*+-.^_`|~ (RFC 6265 section 4.1.1)"
            ),
        );
        return None;
    }
    Some(TokenSource::Cookie(name.to_string()))
}

/// RFC 9110 section 5.6.2 `tchar`, which RFC 6265's `cookie-name = token` refers to.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

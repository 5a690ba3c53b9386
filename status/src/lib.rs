//! The live status page of the admin listener: `GET /status` (HTML, readable without
//! JavaScript, refreshed every 2 s by `/status.js`) and `GET /status.json` (the same figures
//! for scripts). Read-only: nothing here changes what the gateway does.
//!
//! This crate renders what it is handed; the gateway collects. It holds the rolling windows
//! ([`windows`]) and the top rate-limited clients ([`sketch`]), the JSON model ([`json`]) and
//! the page with its script, style sheet and icon. It knows nothing of the gateway's state,
//! snapshots or pingora: the gateway gathers a [`json::Report`] and hands it to [`answer`].

pub mod json;
mod page;
pub mod sketch;
pub mod windows;

use json::Report;

/// The longest reload error kept, in bytes.
const MAX_ERROR_BYTES: usize = 2048;

/// An admin-listener answer of the status page.
pub struct Page {
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// The paths the status page answers on the admin listener.
pub fn serves(path: &[u8]) -> bool {
    matches!(
        path,
        b"/status" | b"/status.json" | b"/status.js" | b"/status.css" | b"/favicon.ico"
    )
}

/// The answer for `path` (one of [`serves`]). `report` gathers the figures (asked only for the
/// page and the document); `encode` writes the document: the gateway's one JSON writer, so
/// `/status.json` is escaped like every other JSON the gateway writes.
pub fn answer(
    path: &[u8],
    report: impl FnOnce() -> Report,
    encode: impl FnOnce(&Report) -> Vec<u8>,
) -> Page {
    match path {
        b"/status.json" => Page {
            content_type: "application/json",
            body: encode(&report()),
        },
        b"/status.js" => Page {
            content_type: "text/javascript; charset=utf-8",
            body: page::SCRIPT.as_bytes().to_vec(),
        },
        b"/status.css" => Page {
            content_type: "text/css; charset=utf-8",
            body: page::STYLE.as_bytes().to_vec(),
        },
        b"/favicon.ico" => Page {
            content_type: "image/svg+xml",
            body: page::ICON.as_bytes().to_vec(),
        },
        _ => Page {
            content_type: "text/html; charset=utf-8",
            body: page::render(&report()).into_bytes(),
        },
    }
}

/// The admin listener's Content-Security-Policy: only its own scripts, styles and fetches;
/// no inline script or style, no frames, no forms, no plugins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A reload error as the page shows it: every `` `quoted` `` or `"quoted"` value replaced by
/// `…` (a value can come from the file or from `${ENV}` and be a secret), cut to 2 KiB. The
/// locations and keys stay, enough to find the line; the log has the whole text.
pub fn redact(errors: &str) -> String {
    let mut out = String::with_capacity(errors.len().min(MAX_ERROR_BYTES));
    let mut open: Option<char> = None;
    for c in errors.chars() {
        match open {
            Some(quote) if c == quote => {
                out.push('…');
                out.push(c);
                open = None;
            }
            Some(_) if c == '\n' => {
                out.push('…');
                out.push(c);
                open = None;
            }
            Some(_) => {}
            None if c == '`' || c == '"' => {
                out.push(c);
                open = Some(c);
            }
            None => out.push(c),
        }
        if out.len() >= MAX_ERROR_BYTES {
            out.push_str(" …");
            break;
        }
    }
    if open.is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_errors_lose_their_quoted_values() {
        let e = "/etc/p.toml:3:10: jwt.secret: `hunter2-secret` is too short\n/etc/p.toml:9:1: routes[0].upstream: unknown upstream \"app\"";
        assert_eq!(
            redact(e),
            "/etc/p.toml:3:10: jwt.secret: `…` is too short\n/etc/p.toml:9:1: routes[0].upstream: unknown upstream \"…\""
        );
        assert_eq!(redact("a `never closed"), "a `…");
        assert!(redact(&"x".repeat(10_000)).len() < MAX_ERROR_BYTES + 8);
    }
}

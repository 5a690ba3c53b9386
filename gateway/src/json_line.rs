//! JSON as the gateway writes it: serde_json's compact form, with U+2028 LINE SEPARATOR and
//! U+2029 PARAGRAPH SEPARATOR escaped (`\u2028`, `\u2029`).
//!
//! Both are legal raw in a JSON string (RFC 8259), but many line-oriented readers take them
//! for line breaks (JavaScript before ES2019, editors, some log shippers and terminals), so a
//! value an attacker chose (a signed URL's `user`, a path) could split one access-log record
//! into two and forge the second. Go's `encoding/json` and Python's `json.dumps` escape them
//! for the same reason; every JSON document the gateway writes goes through here: the access
//! log and its events, the error bodies, the admin API's answers and `/status.json`.

use std::io;

use serde::Serialize;
use serde_json::ser::Formatter;

/// serde_json's [`serde_json::ser::CompactFormatter`] (the trait's defaults), escaping U+2028 and U+2029 in strings.
struct LineSafe;

impl Formatter for LineSafe {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // UTF-8: U+2028 is E2 80 A8, U+2029 is E2 80 A9. Most fragments hold neither, and
        // are written in one call.
        let bytes = fragment.as_bytes();
        let mut start = 0;
        let mut at = 0;
        while let Some(found) = bytes[at..].iter().position(|b| *b == 0xE2) {
            let i = at + found;
            match bytes.get(i + 1..i + 3) {
                Some([0x80, last @ (0xA8 | 0xA9)]) => {
                    writer.write_all(&bytes[start..i])?;
                    writer.write_all(if *last == 0xA8 {
                        b"\\u2028"
                    } else {
                        b"\\u2029"
                    })?;
                    start = i + 3;
                    at = i + 3;
                }
                _ => at = i + 1,
            }
        }
        writer.write_all(&bytes[start..])
    }
}

/// Serialises `value` into `writer`.
pub fn to_writer<W: io::Write, T: ?Sized + Serialize>(
    writer: W,
    value: &T,
) -> serde_json::Result<()> {
    let mut serializer = serde_json::Serializer::with_formatter(writer, LineSafe);
    value.serialize(&mut serializer)
}

/// `value` as a JSON document.
pub fn to_vec<T: ?Sized + Serialize>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(128);
    to_writer(&mut out, value)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_paragraph_separators_are_escaped_and_read_back_the_same() {
        let user = "alice\u{2028}{\"forged\":1}\u{2029}é€\u{2027}\u{202a}\n\"";
        let line = to_vec(&serde_json::json!({ "user": user })).unwrap();
        let text = String::from_utf8(line.clone()).unwrap();
        assert_eq!(
            text,
            "{\"user\":\"alice\\u2028{\\\"forged\\\":1}\\u2029é€\u{2027}\u{202a}\\n\\\"\"}"
        );
        assert!(!text.contains('\u{2028}') && !text.contains('\u{2029}'));
        let back: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(back["user"], user);
    }

    #[test]
    fn everything_else_is_serde_jsons_compact_form() {
        let value = serde_json::json!({"a": [1, 2.5, null, true], "b": "x\u{0001}\t", "c": {}});
        assert_eq!(to_vec(&value).unwrap(), serde_json::to_vec(&value).unwrap());
    }
}

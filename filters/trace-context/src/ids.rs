//! Trace and span identifiers: 16 and 8 random bytes, never all zero (W3C section 3.2.2.3).

use std::fmt;

/// A trace id: 16 bytes, not all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// A span (parent) id: 8 bytes, not all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    pub fn random() -> TraceId {
        loop {
            let id: u128 = rand::random();
            if id != 0 {
                return TraceId(id.to_be_bytes());
            }
        }
    }

    /// 32 lower-case hex digits, written into `out` (no allocation).
    pub fn hex<'b>(&self, out: &'b mut [u8; 32]) -> &'b str {
        hex_into(&self.0, out)
    }

    /// The lower 8 bytes as an integer (what the ratio sampler compares).
    pub fn low_u64(&self) -> u64 {
        let mut low = [0u8; 8];
        low.copy_from_slice(&self.0[8..]);
        u64::from_be_bytes(low)
    }
}

impl SpanId {
    pub fn random() -> SpanId {
        loop {
            let id: u64 = rand::random();
            if id != 0 {
                return SpanId(id.to_be_bytes());
            }
        }
    }

    pub fn hex<'b>(&self, out: &'b mut [u8; 16]) -> &'b str {
        hex_into(&self.0, out)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex(&mut [0; 32]))
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex(&mut [0; 32]))
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex(&mut [0; 16]))
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex(&mut [0; 16]))
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_into<'b>(bytes: &[u8], out: &'b mut [u8]) -> &'b str {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0x0f)];
    }
    // Only ASCII hex digits were written.
    std::str::from_utf8(&out[..bytes.len() * 2]).unwrap_or_default()
}

/// Lower-case hex only (W3C: upper case is invalid) into `out`; `None` on any other byte.
pub(crate) fn parse_hex(text: &[u8], out: &mut [u8]) -> Option<()> {
    if text.len() != out.len() * 2 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(())
}

//! The `traceparent` header: `version-trace_id-parent_id-flags` (W3C section 3.2).

use std::fmt;

use crate::ids::{parse_hex, SpanId, TraceId};

/// The `sampled` bit of `trace-flags`.
pub const FLAG_SAMPLED: u8 = 0x01;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub parent_id: SpanId,
    pub flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` value; `None` for anything malformed. Version `00` must be
    /// exactly 55 characters; a higher version is read by its version-00 prefix, which must be
    /// followed by the end or a `-` (section 3.2.4). Version `ff`, an all-zero trace or parent
    /// id, upper-case hex and surrounding garbage are refused.
    pub fn parse(value: &[u8]) -> Option<TraceParent> {
        // Optional whitespace around a field value is not part of it (RFC 9110 section 5.5).
        let value = value.trim_ascii();
        if value.len() < 55 {
            return None;
        }
        let mut version = [0u8; 1];
        parse_hex(&value[..2], &mut version)?;
        match version[0] {
            0xff => return None,
            0x00 if value.len() != 55 => return None,
            0x00 => {}
            _ if value.len() > 55 && value[55] != b'-' => return None,
            _ => {}
        }
        if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let mut trace_id = [0u8; 16];
        parse_hex(&value[3..35], &mut trace_id)?;
        let mut parent_id = [0u8; 8];
        parse_hex(&value[36..52], &mut parent_id)?;
        let mut flags = [0u8; 1];
        parse_hex(&value[53..55], &mut flags)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id: TraceId(trace_id),
            parent_id: SpanId(parent_id),
            // Flags this version does not define are not passed on (section 3.2.2.5).
            flags: flags[0] & FLAG_SAMPLED,
        })
    }

    pub fn sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }

    /// The version-00 header value, 55 bytes, written into `out` (no allocation).
    pub fn write<'b>(&self, out: &'b mut [u8; 55]) -> &'b str {
        out[..3].copy_from_slice(b"00-");
        let mut trace = [0u8; 32];
        out[3..35].copy_from_slice(self.trace_id.hex(&mut trace).as_bytes());
        out[35] = b'-';
        let mut span = [0u8; 16];
        out[36..52].copy_from_slice(self.parent_id.hex(&mut span).as_bytes());
        out[52] = b'-';
        out[53] = b'0';
        out[54] = if self.sampled() { b'1' } else { b'0' };
        std::str::from_utf8(out).unwrap_or_default()
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.write(&mut [0; 55]))
    }
}

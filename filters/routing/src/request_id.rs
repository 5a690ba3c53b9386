//! `x-request-id`: kept from the client when it is a sane token (so a trace started upstream
//! of us survives), otherwise generated. Sane means 1 to 128 characters from a conservative
//! set, so an id can never smuggle quotes, spaces or control bytes into logs and headers.

pub const MAX_LEN: usize = 128;

pub fn is_sane(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id.iter().all(|&b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=' | b'@')
        })
}

/// 128 random bits as 32 lower-case hex characters, written nibble by nibble (`{:032x}`
/// through the formatting machinery cost about 1,500 instructions, on every request that
/// brings no id of its own).
pub fn generate() -> String {
    hex(rand::random())
}

fn hex(n: u128) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    (0..32)
        .rev()
        .map(|i| char::from(HEX[((n >> (i * 4)) & 0xf) as usize]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_kept_and_others_refused() {
        assert!(is_sane(b"judge-req-123"));
        assert!(is_sane(b"4bf92f3577b34da6a3ce929d0e0e4736"));
        assert!(!is_sane(b""));
        assert!(!is_sane(b"bad id \"x\""));
        assert!(!is_sane(&[b'a'; 129]));
        assert!(is_sane(&[b'a'; 128]));
    }

    #[test]
    fn generated_ids_are_sane_and_distinct() {
        let a = generate();
        let b = generate();
        assert_eq!(a.len(), 32);
        assert!(is_sane(a.as_bytes()));
        assert_ne!(a, b);
    }

    #[test]
    fn ids_are_written_as_the_formatter_writes_them() {
        for n in [
            0,
            1,
            0xabc,
            u128::from(u64::MAX),
            u128::MAX,
            0x0123_4567_89ab_cdef << 40,
        ] {
            assert_eq!(hex(n), format!("{n:032x}"));
        }
    }
}

//! Durations, rates and sizes as they appear in the file: `"250ms"`, `"5s"`, `"1m"`, `"1h"`,
//! `"100/min"` and `"512B"`, `"64KiB"`, `"8MiB"`, `"1GiB"`. Parsed once, at load time, into
//! types the hot path uses directly.

use std::fmt;
use std::time::Duration;

/// Parses a duration string: an unsigned integer followed by `ms`, `s`, `m`, `h` or `d`.
///
/// Zero is allowed here (some keys accept it); keys that must be positive check that
/// themselves. Fractions and compound forms (`1m30s`) are refused so a value reads one way.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit (use ms, s, m, h or d, e.g. \"5s\")"))?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "`{text}` is not a duration (e.g. \"250ms\", \"5s\", \"1m\")"
        ));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}`: the number is too large"))?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "`{text}` has an unknown unit `{unit}` (use ms, s, m, h or d)"
            ))
        }
    };
    n.checked_mul(unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is too long"))
}

/// Parses a size string: an unsigned integer followed by `B`, `KiB`, `MiB` or `GiB` (binary
/// units, 1 KiB = 1024 bytes).
///
/// Like durations, one reading only: no fractions, no decimal `KB`/`MB` (which would be read
/// as 1000 or 1024 depending on who wrote the file), no bare numbers.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit (use B, KiB, MiB or GiB, e.g. \"64KiB\")"))?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "`{text}` is not a size (e.g. \"512B\", \"64KiB\", \"8MiB\", \"1GiB\")"
        ));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}`: the number is too large"))?;
    let unit_bytes: u64 = match unit {
        "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" | "MB" | "GB" | "K" | "M" | "G" | "kb" | "mb" | "gb" => {
            return Err(format!(
                "`{text}`: write binary units (KiB, MiB, GiB), so the size reads one way"
            ))
        }
        _ => {
            return Err(format!(
                "`{text}` has an unknown unit `{unit}` (use B, KiB, MiB or GiB)"
            ))
        }
    };
    n.checked_mul(unit_bytes)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// A request rate: `count` requests per `period`. As a token bucket it holds `count` tokens
/// and refills `count` tokens per `period`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    pub count: u32,
    pub period: Duration,
}

impl Rate {
    /// Time to earn back one token.
    pub fn emission_interval(&self) -> Duration {
        self.period / self.count
    }

    /// Period in whole seconds, as the IETF RateLimit-Policy `w` parameter wants.
    pub fn window_secs(&self) -> u64 {
        self.period.as_secs().max(1)
    }
}

impl fmt::Debug for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s", self.count, self.period.as_secs_f64())
    }
}

/// Parses `"N/unit"` with units `s`/`sec`/`second`, `m`/`min`/`minute`, `h`/`hour`, `d`/`day`
/// (plural forms accepted too). N must be between 1 and 1,000,000,000.
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let (count, unit) = text
        .split_once('/')
        .ok_or_else(|| format!("`{text}` is not a rate (e.g. \"100/min\")"))?;
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|_| format!("`{text}`: `{}` is not a whole number", count.trim()))?;
    if count == 0 || count > 1_000_000_000 {
        return Err(format!(
            "`{text}`: the count must be between 1 and 1000000000"
        ));
    }
    let secs = match unit.trim() {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hour" | "hours" => 3_600,
        "d" | "day" | "days" => 86_400,
        other => {
            return Err(format!(
                "`{text}` has an unknown unit `{other}` (use s, min, hour or day)"
            ))
        }
    };
    Ok(Rate {
        count,
        period: Duration::from_secs(secs),
    })
}

/// A transfer rate: bytes per second (`"1KiB/s"`, `"512B/s"`, `"1MiB/s"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ByteRate {
    pub bytes_per_sec: u64,
}

/// Parses `"SIZE/s"` (a size as [`parse_size`] reads it, per second). `"0B/s"` is allowed
/// (keys that accept it read it as "off").
pub fn parse_byte_rate(text: &str) -> Result<ByteRate, String> {
    let (size, unit) = text
        .trim()
        .rsplit_once('/')
        .ok_or_else(|| format!("`{text}` is not a rate of bytes (e.g. \"1KiB/s\")"))?;
    if !matches!(unit.trim(), "s" | "sec" | "second") {
        return Err(format!(
            "`{text}`: rates of bytes are per second (e.g. \"1KiB/s\")"
        ));
    }
    let bytes = parse_size(size)?;
    Ok(ByteRate {
        bytes_per_sec: bytes as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations_are_refused_with_a_reason() {
        for bad in [
            "soon",
            "5",
            "s",
            "1.5s",
            "5 sec",
            "-1s",
            "1m30s",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
        assert!(parse_duration("5").unwrap_err().contains("no unit"));
    }

    #[test]
    fn sizes_in_every_unit() {
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("64KiB"), Ok(64 * 1024));
        assert_eq!(parse_size("8MiB"), Ok(8 * 1024 * 1024));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("0B"), Ok(0));
        assert_eq!(parse_size(" 2MiB "), Ok(2 << 20));
    }

    #[test]
    fn bad_sizes_are_refused_with_a_reason() {
        for bad in [
            "big",
            "512",
            "MiB",
            "1.5MiB",
            "8 MiB",
            "-1B",
            "8mib",
            "1TiB",
            "99999999999999999999B",
            "17179869184GiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad} accepted");
        }
        assert!(parse_size("8MB").unwrap_err().contains("binary units"));
        assert!(parse_size("64").unwrap_err().contains("no unit"));
    }

    #[test]
    fn rates_in_every_unit() {
        for (text, secs) in [
            ("5/s", 1),
            ("5/sec", 1),
            ("5/second", 1),
            ("5/m", 60),
            ("5/min", 60),
            ("5/minute", 60),
            ("5/h", 3600),
            ("5/hour", 3600),
            ("5/d", 86400),
            ("5/day", 86400),
        ] {
            let rate = parse_rate(text).unwrap();
            assert_eq!(
                (rate.count, rate.period),
                (5, Duration::from_secs(secs)),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_rates_are_refused() {
        for bad in [
            "100",
            "0/min",
            "-1/min",
            "x/min",
            "10/fortnight",
            "10/",
            "/min",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn byte_rates_read_one_way() {
        assert_eq!(parse_byte_rate("1KiB/s").map(|r| r.bytes_per_sec), Ok(1024));
        assert_eq!(parse_byte_rate("512B/s").map(|r| r.bytes_per_sec), Ok(512));
        assert_eq!(
            parse_byte_rate("1MiB/s").map(|r| r.bytes_per_sec),
            Ok(1 << 20)
        );
        assert_eq!(parse_byte_rate("0B/s").map(|r| r.bytes_per_sec), Ok(0));
        for bad in ["1KiB", "1KiB/min", "1KB/s", "fast/s", "/s", "1.5KiB/s"] {
            assert!(parse_byte_rate(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn emission_interval_divides_the_period() {
        let rate = parse_rate("100/min").unwrap();
        assert_eq!(rate.emission_interval(), Duration::from_millis(600));
    }
}

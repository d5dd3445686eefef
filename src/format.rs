//! Text formats of the control tree, as DESIGN.md ("The control tree") fixes
//! them: escaped names, sizes with K/M/G/T suffixes (powers of 1024),
//! durations such as `500ms` or `5m`, and RFC 3339 UTC times.
//!
//! Everything here is pure and unit-tested; control files call these and
//! nothing else to read or write a field.

use crate::ids::BlobHash;
use std::time::{Duration, SystemTime};

/// Why a field could not be parsed; the text is shown in `/.ctl/errors`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    /// A size that is not a number with an optional K, M, G or T suffix.
    #[error("bad size {0:?}: expected a number with an optional K, M, G or T suffix")]
    Size(String),
    /// A size that does not fit in 64 bits.
    #[error("size {0:?} is out of range")]
    SizeRange(String),
    /// A duration that is not a number followed by ms, s, m, h or d.
    #[error("bad duration {0:?}: expected a number followed by ms, s, m, h or d")]
    Duration(String),
    /// A name with a backslash escape other than `\s`, `\n` or `\\`.
    #[error("bad escape in {0:?}: only \\s, \\n and \\\\ are allowed")]
    Escape(String),
}

/// Escapes a name so it stays one field: space becomes `\s`, newline `\n`
/// and backslash `\\`. Bytes that are not UTF-8 are replaced by U+FFFD.
pub fn escape(name: &[u8]) -> String {
    let text = String::from_utf8_lossy(name);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            ' ' => out.push_str("\\s"),
            '\n' => out.push_str("\\n"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out
}

/// Reverses [`escape`]. Errors on any other backslash sequence.
pub fn unescape(field: &str) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('s') => out.push(b' '),
            Some('n') => out.push(b'\n'),
            Some('\\') => out.push(b'\\'),
            _ => return Err(FormatError::Escape(field.to_string())),
        }
    }
    Ok(out)
}

/// Parses a size in bytes: digits with an optional suffix K, M, G or T
/// (powers of 1024, upper or lower case). `0` is allowed.
pub fn parse_size(text: &str) -> Result<u64, FormatError> {
    let (digits, shift) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(FormatError::Size(text.to_string())),
            };
            (&text[..i], shift)
        }
        _ => (text, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FormatError::Size(text.to_string()));
    }
    let number: u64 = digits
        .parse()
        .map_err(|_| FormatError::SizeRange(text.to_string()))?;
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| FormatError::SizeRange(text.to_string()))
}

/// Formats a size with the largest suffix that divides it exactly
/// (`1073741824` → `1G`, `1500` → `1500`), so [`parse_size`] reads it back.
pub fn format_size(bytes: u64) -> String {
    for (shift, suffix) in [(40, 'T'), (30, 'G'), (20, 'M'), (10, 'K')] {
        let unit = 1u64 << shift;
        if bytes != 0 && bytes.is_multiple_of(unit) {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

/// Parses a duration written as a whole number followed by `ms`, `s`, `m`
/// or `h` (`500ms`, `30s`, `5m`, `2h`); `0` alone means zero.
pub fn parse_duration(text: &str) -> Result<Duration, FormatError> {
    let bad = || FormatError::Duration(text.to_string());
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .filter(|&i| i > 0)
        .ok_or_else(bad)?;
    let number: u64 = text[..split].parse().map_err(|_| bad())?;
    let millis = match &text[split..] {
        "ms" => Some(number),
        "s" => number.checked_mul(1_000),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        "d" => number.checked_mul(86_400_000),
        _ => None,
    }
    .ok_or_else(bad)?;
    Ok(Duration::from_millis(millis))
}

/// Formats a duration with the largest unit that divides it exactly, the
/// inverse of [`parse_duration`] (sub-millisecond parts are dropped).
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 {
        return "0".to_string();
    }
    for (unit, suffix) in [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ] {
        if millis.is_multiple_of(unit) {
            return format!("{}{suffix}", millis / unit);
        }
    }
    format!("{millis}ms")
}

/// Formats a time as RFC 3339 in UTC to the second (`2026-11-22T18:39:55Z`).
pub fn format_time(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Formats a BLAKE3 hash as 64 lowercase hex characters, or `-` for none.
pub fn format_hash(hash: Option<&BlobHash>) -> String {
    match hash {
        Some(hash) => hash.to_string(),
        None => "-".to_string(),
    }
}

/// Parses a hash written by [`format_hash`] (64 lowercase hex characters).
pub fn parse_hash(text: &str) -> Option<BlobHash> {
    text.parse().ok()
}

/// Splits a command line into fields at single spaces, after dropping one
/// trailing newline. Returns `None` for an empty line, several lines, or
/// empty fields (two spaces in a row).
pub fn split_command(text: &str) -> Option<Vec<&str>> {
    let line = text.strip_suffix('\n').unwrap_or(text);
    if line.is_empty() || line.contains('\n') {
        return None;
    }
    let fields: Vec<&str> = line.split(' ').collect();
    if fields.iter().any(|f| f.is_empty()) {
        return None;
    }
    Some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1500"), Ok(1500));
        assert_eq!(parse_size("2K"), Ok(2048));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("3T"), Ok(3 << 40));
        assert!(matches!(parse_size("1X"), Err(FormatError::Size(_))));
        assert!(matches!(parse_size("K"), Err(FormatError::Size(_))));
        assert!(matches!(parse_size("-1"), Err(FormatError::Size(_))));
        assert!(matches!(parse_size("1.5G"), Err(FormatError::Size(_))));
        assert!(matches!(
            parse_size("99999999999T"),
            Err(FormatError::SizeRange(_))
        ));
    }

    #[test]
    fn durations_parse_in_the_design_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "s", "10", "10x", "1.5s", "-1s", "10 s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(format_duration(Duration::from_secs(10)), "10s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
    }

    #[test]
    fn commands_split_at_single_spaces() {
        assert_eq!(split_command("max 1G\n"), Some(vec!["max", "1G"]));
        assert_eq!(split_command("now"), Some(vec!["now"]));
        assert_eq!(split_command(""), None);
        assert_eq!(split_command("\n"), None);
        assert_eq!(split_command("a  b"), None);
        assert_eq!(split_command("a\nb\n"), None);
    }

    #[test]
    fn time_is_rfc3339_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400 + 61);
        assert_eq!(format_time(t), "1970-01-02T00:01:01Z");
    }

    proptest! {
        #[test]
        fn escape_round_trips(name in "[ -~\n\\\\é]{0,40}") {
            let escaped = escape(name.as_bytes());
            prop_assert!(!escaped.contains(' ') && !escaped.contains('\n'));
            prop_assert_eq!(unescape(&escaped).unwrap(), name.as_bytes());
        }

        #[test]
        fn sizes_round_trip(bytes in any::<u64>()) {
            prop_assert_eq!(parse_size(&format_size(bytes)), Ok(bytes));
        }

        #[test]
        fn durations_round_trip(millis in 0u64..10_000_000_000) {
            let d = Duration::from_millis(millis);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}

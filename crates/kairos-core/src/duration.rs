//! Go duration strings (`time.ParseDuration`), as Dapr accepts them in `dueTime`, `ttl` and
//! `@every`.
//!
//! The grammar is `[-+]?([0-9]*(\.[0-9]*)?(ns|us|µs|μs|ms|s|m|h))+`, or the bare string `0`
//! (optionally signed). There is no `d` unit. Values must fit in an `i64` of nanoseconds, as
//! in Go. Fractions are converted the way Go does it (through `f64`), so `1.1h` and every
//! other input round exactly as upstream rounds them.

use jiff::SignedDuration;

/// Why a Go duration string was rejected; the texts are Go's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GoDurationError {
    /// The string does not follow the grammar, or overflows an `i64` of nanoseconds.
    #[error("time: invalid duration {0:?}")]
    Invalid(String),
    /// A number without a unit, such as `10`.
    #[error("time: missing unit in duration {0:?}")]
    MissingUnit(String),
    /// A unit Go does not know, such as `d` in `1d`.
    #[error("time: unknown unit {unit:?} in duration {input:?}")]
    UnknownUnit { unit: String, input: String },
}

const LIMIT: u64 = 1 << 63;

/// Parses a Go duration string exactly as Go's `time.ParseDuration` does.
///
/// # Errors
/// [`GoDurationError`] with Go's message when the input is not a Go duration.
pub fn parse_go_duration(input: &str) -> Result<SignedDuration, GoDurationError> {
    let invalid = || GoDurationError::Invalid(input.to_owned());
    let mut s = input;
    let mut neg = false;
    if let Some(rest) = s.strip_prefix('-') {
        neg = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(SignedDuration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        let first = s.as_bytes()[0];
        if !(first == b'.' || first.is_ascii_digit()) {
            return Err(invalid());
        }
        let (whole, rest) = leading_int(s).ok_or_else(invalid)?;
        let pre = rest.len() != s.len();
        s = rest;
        let mut fraction = 0u64;
        let mut scale = 1f64;
        let mut post = false;
        if let Some(rest) = s.strip_prefix('.') {
            let (f, sc, after) = leading_fraction(rest);
            post = after.len() != rest.len();
            fraction = f;
            scale = sc;
            s = after;
        }
        if !pre && !post {
            return Err(invalid());
        }
        let unit_len = s.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(s.len());
        if unit_len == 0 {
            return Err(GoDurationError::MissingUnit(input.to_owned()));
        }
        let (unit_str, rest) = s.split_at(unit_len);
        s = rest;
        let unit = unit_nanos(unit_str).ok_or_else(|| GoDurationError::UnknownUnit {
            unit: unit_str.to_owned(),
            input: input.to_owned(),
        })?;
        if whole > LIMIT / unit {
            return Err(invalid());
        }
        let mut v = whole * unit;
        if fraction > 0 {
            // Go converts through f64 so that fractions of hours stay nanosecond accurate;
            // the cast truncates toward zero exactly like Go's uint64(float64).
            #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let frac_nanos = (fraction as f64 * (unit as f64 / scale)) as u64;
            v += frac_nanos;
            if v > LIMIT {
                return Err(invalid());
            }
        }
        total += v;
        if total > LIMIT {
            return Err(invalid());
        }
    }
    let nanos: i64 = if neg {
        // total <= 2^63, so the negation always fits (2^63 becomes i64::MIN).
        0i64.wrapping_sub_unsigned(total)
    } else {
        i64::try_from(total).map_err(|_| invalid())?
    };
    Ok(SignedDuration::from_nanos(nanos))
}

fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        _ => return None,
    })
}

/// Consumes leading digits; `None` on overflow past 2^63 (Go's `errLeadingInt`).
fn leading_int(s: &str) -> Option<(u64, &str)> {
    let mut x: u64 = 0;
    let mut end = 0;
    for (i, b) in s.bytes().enumerate() {
        if !b.is_ascii_digit() {
            break;
        }
        if x > LIMIT / 10 {
            return None;
        }
        x = x * 10 + u64::from(b - b'0');
        if x > LIMIT {
            return None;
        }
        end = i + 1;
    }
    Some((x, &s[end..]))
}

/// Consumes leading fraction digits; digits past what fits are consumed but ignored, as in Go.
fn leading_fraction(s: &str) -> (u64, f64, &str) {
    let mut x: u64 = 0;
    let mut scale = 1f64;
    let mut overflow = false;
    let mut end = 0;
    for (i, b) in s.bytes().enumerate() {
        if !b.is_ascii_digit() {
            break;
        }
        end = i + 1;
        if overflow {
            continue;
        }
        if x > (LIMIT - 1) / 10 {
            overflow = true;
            continue;
        }
        let y = x * 10 + u64::from(b - b'0');
        if y > LIMIT {
            overflow = true;
            continue;
        }
        x = y;
        scale *= 10.0;
    }
    (x, scale, &s[end..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ns(input: &str) -> i64 {
        parse_go_duration(input)
            .unwrap_or_else(|e| panic!("{input:?} should parse: {e}"))
            .as_nanos()
            .try_into()
            .unwrap()
    }

    // spec §7.2: Go duration units ns, us/µs, ms, s, m, h; decimals, negatives, combinations.
    #[test]
    fn spec_7_2_accepts_go_durations() {
        let table: &[(&str, i64)] = &[
            ("0", 0),
            ("-0", 0),
            ("+0", 0),
            ("0s", 0),
            ("1ns", 1),
            ("1us", 1_000),
            ("1\u{b5}s", 1_000),
            ("1\u{3bc}s", 1_000),
            ("300ms", 300_000_000),
            ("10s", 10_000_000_000),
            ("1000s", 1_000_000_000_000),
            ("1m", 60_000_000_000),
            ("1h30m", 5_400_000_000_000),
            ("2h45m", 9_900_000_000_000),
            ("1.5h", 5_400_000_000_000),
            ("-1.5h", -5_400_000_000_000),
            (".5s", 500_000_000),
            ("1.s", 1_000_000_000),
            ("-10s", -10_000_000_000),
            ("+5s", 5_000_000_000),
            ("1h1m1s1ms1us1ns", 3_661_001_001_001),
            ("1s1s", 2_000_000_000),
            ("9223372036854775807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("0.000000001s", 1),
            ("0.0000000001s", 0),
            ("1.0000000000000000000000001s", 1_000_000_000),
            // Go's float path: 1.1h is not exactly representable; Go yields this value.
            ("1.1h", 3_960_000_000_000),
        ];
        for (input, want) in table {
            assert_eq!(ns(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn spec_7_2_rejects_non_go_durations() {
        let cases: &[(&str, &str)] = &[
            ("", "time: invalid duration \"\""),
            ("1d", "time: unknown unit \"d\" in duration \"1d\""),
            ("10", "time: missing unit in duration \"10\""),
            ("00", "time: missing unit in duration \"00\""),
            ("-", "time: invalid duration \"-\""),
            (".s", "time: invalid duration \".s\""),
            ("s", "time: invalid duration \"s\""),
            ("1 h", "time: unknown unit \" h\" in duration \"1 h\""),
            ("1hour", "time: unknown unit \"hour\" in duration \"1hour\""),
            ("PT1H", "time: invalid duration \"PT1H\""),
            ("1h-1m", "time: unknown unit \"h-\" in duration \"1h-1m\""),
            ("9223372036854775808ns", "time: invalid duration \"9223372036854775808ns\""),
            ("3000000h", "time: invalid duration \"3000000h\""),
            ("--1s", "time: invalid duration \"--1s\""),
        ];
        for (input, msg) in cases {
            let err = parse_go_duration(input).expect_err(input);
            assert_eq!(err.to_string(), *msg, "input {input:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse_go_duration(&s);
        }

        #[test]
        fn never_panics_on_duration_like_input(s in "[-+]?[0-9.]{0,25}(ns|us|ms|s|m|h|d|)([0-9.]{0,5}(s|m|h))?") {
            let _ = parse_go_duration(&s);
        }

        #[test]
        fn whole_seconds_round_trip(secs in -9_000_000_000i64..9_000_000_000i64) {
            prop_assert_eq!(ns(&format!("{secs}s")), secs * 1_000_000_000);
        }
    }
}

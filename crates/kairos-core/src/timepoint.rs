//! `dueTime` and `ttl` strings (spec §7.2): RFC 3339, Go duration, or ISO-8601 duration.
//!
//! This is a port of go-etcd-cron's `parsePointInTime` (`internal/scheduler/builder.go`) and
//! of what it calls: Go's `time.Parse(time.RFC3339, …)`, Go's `time.ParseDuration`
//! ([`crate::duration`]), dapr/kit's `ParseISO8601Duration` (`time/time.go`) and Go's
//! `Time.AddDate`. Each is reproduced with its quirks, because a due time that Dapr accepts
//! must be accepted here and land on the same instant.
//!
//! The caller supplies the reference time; upstream uses:
//! * for `dueTime`, the job's creation time, `now.UTC().Truncate(time.Second)`;
//! * for `ttl`, the resolved due time (as UTC) if `dueTime` is set, else the creation time.
//!
//! Departures from upstream, all on inputs no client is likely to send:
//! * An ISO-8601 duration whose parts overflow Go's `int64` arithmetic (days, or the time part
//!   as nanoseconds) is rejected as out of range; Go silently wraps around.
//! * An instant outside jiff's range is rejected as out of range
//!   ([`PointInTimeError::OutOfRange`], whose message gives the range). jiff's last instant is
//!   `9999-12-30T22:00:00.999999999Z`, so the RFC 3339 times of the last 26 hours of year 9999
//!   (`9999-12-31T23:59:59Z`, or .NET's `DateTimeOffset.MaxValue`) are rejected, although Go
//!   accepts them. Every earlier RFC 3339 time is accepted, whatever its offset: jiff's first
//!   instant, `-009999-01-02T01:59:59Z`, lies before any RFC 3339 time and can only be crossed
//!   by adding a duration. Outside those 26 hours, an instant out of jiff's range is also out of
//!   the range of protobuf's `Timestamp` (years 1–9999), in which upstream stores it.

use jiff::civil::{Date, DateTime};
use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Timestamp, Zoned};

use crate::duration::parse_go_duration;

/// Why a due time or ttl string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointInTimeError {
    /// None of the three formats matched (upstream: "due time format not recognized").
    #[error("due time format not recognized")]
    NotRecognized,
    /// An ISO-8601 repeating interval `Rn/…` with n > 0.
    #[error("repeats not supported for due time")]
    RepeatsNotSupported,
    /// The string is in one of the formats, but the instant it names is outside the range
    /// kairos can represent (see the module documentation). Holds the string.
    #[error("due time {0:?} is out of range: {SUPPORTED_RANGE}")]
    OutOfRange(String),
}

/// The instants kairos can represent (jiff's), as an error message states them.
pub const SUPPORTED_RANGE: &str =
    "kairos represents instants from -009999-01-02T01:59:59Z to 9999-12-30T22:00:00.999999999Z";

/// Why [`parse_rfc3339`] rejected a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rfc3339Error {
    /// Go's `time.Parse(time.RFC3339, …)` rejects it too.
    #[error("not an RFC 3339 time")]
    Syntax,
    /// Go accepts it, but the instant is after jiff's last one.
    #[error("RFC 3339 time out of range")]
    OutOfRange,
}

/// Resolves a due time or ttl string against `reference` (spec §7.2): RFC 3339 is absolute;
/// a Go duration or an ISO-8601 duration is added to `reference` (calendar parts with Go's
/// `AddDate` normalisation, in `reference`'s zone).
///
/// The formats are tried in upstream's order: [`parse_rfc3339`], then
/// [`parse_go_duration`] (added as exact time), then [`parse_iso8601_duration`] (added as
/// `reference.AddDate(years, months, days).Add(time)`, see [`go_add_date`]). An ISO
/// duration with an `Rn/` prefix is accepted when n ≤ 0, as upstream does.
///
/// # Errors
/// [`PointInTimeError::NotRecognized`] when the string is in none of the formats,
/// [`PointInTimeError::OutOfRange`] when it is in one but names an instant kairos cannot
/// represent, [`PointInTimeError::RepeatsNotSupported`] for `Rn/…` with n > 0.
pub fn parse_point_in_time(input: &str, reference: &Zoned) -> Result<Zoned, PointInTimeError> {
    let out_of_range = || PointInTimeError::OutOfRange(input.to_owned());
    match parse_rfc3339(input) {
        Ok(absolute) => return Ok(absolute),
        Err(Rfc3339Error::OutOfRange) => return Err(out_of_range()),
        Err(Rfc3339Error::Syntax) => {}
    }
    if let Ok(duration) = parse_go_duration(input) {
        return add_exact(reference, duration).ok_or_else(out_of_range);
    }
    let iso = parse_iso8601_duration(input).map_err(|err| match err {
        Iso8601DurationError::Unsupported(_) => PointInTimeError::NotRecognized,
        Iso8601DurationError::OutOfRange(_) => out_of_range(),
    })?;
    if iso.repeats.is_some_and(|n| n > 0) {
        return Err(PointInTimeError::RepeatsNotSupported);
    }
    go_add_date(reference, iso.years, iso.months, iso.days)
        .and_then(|date| add_exact(&date, iso.time))
        .ok_or_else(out_of_range)
}

/// Go's `Time.Add`: exact time arithmetic, the zone is kept.
fn add_exact(t: &Zoned, d: SignedDuration) -> Option<Zoned> {
    let ts = t.timestamp().checked_add(d).ok()?;
    Some(ts.to_zoned(t.time_zone().clone()))
}

// ---------------------------------------------------------------------------------------------
// RFC 3339, as Go's time.Parse(time.RFC3339, s) accepts it
// ---------------------------------------------------------------------------------------------

/// Parses `s` exactly as Go's `time.Parse(time.RFC3339, s)` does.
///
/// Go first tries a strict fast path and then falls back to its generic layout parser, so
/// what is accepted is what the generic parser accepts for `2006-01-02T15:04:05Z07:00`:
/// * `YYYY-MM-DD` with exactly 4, 2 and 2 digits; month 1–12; the day must exist in that
///   month (no Feb 30, Feb 29 only in leap years);
/// * an uppercase `T` (no lowercase `t`, no space);
/// * the hour with **one or two** digits (0–23; `24` is rejected), minutes and seconds with
///   exactly two (0–59; a leap second `60` is rejected);
/// * optionally `.` **or `,`** and one or more digits: any length, digits after the ninth are
///   dropped (truncated, not rounded);
/// * an uppercase `Z` (UTC), or `+HH:MM`/`-HH:MM` with two-digit fields where Go tolerates
///   hour 24 and minute 60 (`+24:60` is an offset of 25 h), and nothing after it.
///
/// A `Z` time is returned in [`TimeZone::UTC`]; an offset (including `+00:00`) as a fixed
/// offset zone (Go would use its `Local` zone when the offsets agree; the instant is the
/// same).
///
/// # Errors
/// [`Rfc3339Error::Syntax`] where Go rejects `s`; [`Rfc3339Error::OutOfRange`] where Go
/// accepts it but the instant is after jiff's last one, `9999-12-30T22:00:00.999999999Z`.
pub fn parse_rfc3339(s: &str) -> Result<Zoned, Rfc3339Error> {
    let (datetime, tz) = read_rfc3339(s).ok_or(Rfc3339Error::Syntax)?;
    // Every field is checked, so the reading is a valid civil datetime of years 0000–9999 and
    // the offset is within ±25 h; jiff can only refuse the instant they make.
    datetime.to_zoned(tz).map_err(|_| Rfc3339Error::OutOfRange)
}

/// The wall-clock reading and zone of an RFC 3339 string, where Go's parser accepts it.
fn read_rfc3339(s: &str) -> Option<(DateTime, TimeZone)> {
    let mut cur = Cursor(s.as_bytes());
    let year = cur.digits(4)?;
    cur.byte(b'-')?;
    let month = cur.digits(2)?;
    cur.byte(b'-')?;
    let day = cur.digits(2)?;
    cur.byte(b'T')?;
    let hour = cur.one_or_two_digits()?;
    cur.byte(b':')?;
    let minute = cur.digits(2)?;
    cur.byte(b':')?;
    let second = cur.digits(2)?;
    if !(1..=12).contains(&month) || hour >= 24 || minute >= 60 || second >= 60 {
        return None;
    }
    let nanos = cur.fraction();
    let tz = if cur.byte(b'Z').is_some() { TimeZone::UTC } else { TimeZone::fixed(cur.offset()?) };
    // jiff refuses a day the month does not have (Feb 30, Feb 29 outside leap years).
    if !cur.0.is_empty() {
        return None;
    }
    let dt = DateTime::new(
        i16::try_from(year).ok()?,
        i8::try_from(month).ok()?,
        i8::try_from(day).ok()?,
        i8::try_from(hour).ok()?,
        i8::try_from(minute).ok()?,
        i8::try_from(second).ok()?,
        nanos,
    )
    .ok()?;
    Some((dt, tz))
}

/// A byte cursor over an RFC 3339 candidate; every method consumes on success only.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn byte(&mut self, want: u8) -> Option<()> {
        let (&first, rest) = self.0.split_first()?;
        (first == want).then(|| self.0 = rest)
    }

    /// Exactly `n` ASCII digits.
    fn digits(&mut self, n: usize) -> Option<i32> {
        let field = self.0.get(..n)?;
        if !field.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.0 = &self.0[n..];
        Some(field.iter().fold(0, |acc, &d| acc * 10 + i32::from(d - b'0')))
    }

    /// Go's `getnum(s, false)`: one digit, or two if the second is a digit too.
    fn one_or_two_digits(&mut self) -> Option<i32> {
        let two = self.0.get(1).is_some_and(u8::is_ascii_digit);
        self.digits(if two { 2 } else { 1 })
    }

    /// Go's "fractional second but no fractional second in the layout" special case:
    /// `[.,]` followed by at least one digit, all digits consumed, the first nine used.
    fn fraction(&mut self) -> i32 {
        let [sep, first, ..] = self.0 else { return 0 };
        if !(*sep == b'.' || *sep == b',') || !first.is_ascii_digit() {
            return 0;
        }
        let len = self.0[1..].iter().take_while(|d| d.is_ascii_digit()).count();
        let digits = &self.0[1..=len];
        self.0 = &self.0[1 + len..];
        (0..9).fold(0, |acc, i| acc * 10 + digits.get(i).map_or(0, |&d| i32::from(d - b'0')))
    }

    /// `±HH:MM` with Go's tolerant ranges (hour ≤ 24, minute ≤ 60).
    fn offset(&mut self) -> Option<Offset> {
        let (&sign, rest) = self.0.split_first()?;
        let sign = match sign {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        self.0 = rest;
        let hours = self.digits(2)?;
        self.byte(b':')?;
        let minutes = self.digits(2)?;
        if hours > 24 || minutes > 60 {
            return None;
        }
        Offset::from_seconds(sign * (hours * 3600 + minutes * 60)).ok()
    }
}

// ---------------------------------------------------------------------------------------------
// ISO-8601 durations, as dapr/kit's ParseISO8601Duration accepts them
// ---------------------------------------------------------------------------------------------

/// The parts of an ISO-8601 duration, as dapr/kit's `ParseISO8601Duration` returns them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Iso8601Duration {
    /// Calendar years (`nY`).
    pub years: i64,
    /// Calendar months (`nM` before `T`).
    pub months: i64,
    /// Days: `nD` plus 7 × `nW`.
    pub days: i64,
    /// Hours, minutes and seconds (`T…nH nM nS`), as exact time.
    pub time: SignedDuration,
    /// The `n` of an `Rn/` prefix; `None` without one (dapr/kit reports -1 for both).
    pub repeats: Option<i64>,
}

/// Why an ISO-8601 duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Iso8601DurationError {
    /// dapr/kit rejects the string.
    #[error("unsupported ISO8601 duration format: {0:?}")]
    Unsupported(String),
    /// dapr/kit accepts the string but its `int64` arithmetic wraps around; we reject it.
    #[error("ISO8601 duration out of range: {0:?}")]
    OutOfRange(String),
}

/// Parses an ISO-8601 duration with dapr/kit's `ParseISO8601Duration` grammar and quirks.
///
/// * The whole string must be at least 2 bytes long.
/// * An optional `R<n>` prefix runs to the first `/` (or the end); `n` is a Go `Atoi` integer
///   (optional sign, so `R0/` and `R-1/` are accepted). If nothing follows the `/`, or there
///   is no `/` (`R5`), the result is zero with those repeats.
/// * Then a `P`, then any bytes. Only the designators `Y M W D T H M S` (uppercase) are
///   looked at; the bytes since the previous designator must be a Go `Atoi` integer (`+`/`-`
///   sign allowed, not empty). `Y`, `W`, `D` are only allowed before `T`, `H`, `S` only
///   after it; `M` is months before `T`, minutes after. `T` must directly follow `P` or a
///   designator. Any other byte is skipped, so trailing or unterminated text is ignored:
///   `P1D2` is one day, `P1d` and `PT` are zero, `Px` is zero.
/// * Repeated designators: `Y` and month `M` overwrite (last wins), the others add up.
///
/// # Errors
/// [`Iso8601DurationError::Unsupported`] where dapr/kit returns an error;
/// [`Iso8601DurationError::OutOfRange`] where dapr/kit's arithmetic would overflow.
pub fn parse_iso8601_duration(input: &str) -> Result<Iso8601Duration, Iso8601DurationError> {
    let unsupported = || Iso8601DurationError::Unsupported(input.to_owned());
    let out_of_range = || Iso8601DurationError::OutOfRange(input.to_owned());
    // All slicing below happens right after an ASCII byte and up to an ASCII byte, so it
    // stays on char boundaries.
    let bytes = input.as_bytes();
    let len = bytes.len();
    if len < 2 {
        return Err(unsupported());
    }
    let mut out = Iso8601Duration::default();
    let mut i = 0;
    if bytes[0] == b'R' {
        let slash = bytes.iter().position(|&b| b == b'/').unwrap_or(len);
        if slash < 2 {
            return Err(unsupported());
        }
        out.repeats = Some(atoi(&input[1..slash]).ok_or_else(unsupported)?);
        i = slash + 1;
        if i >= len {
            return Ok(out);
        }
    }
    if bytes[i] != b'P' {
        return Err(unsupported());
    }
    i += 1;
    let mut start = i;
    let mut in_time = false;
    let mut nanos: i64 = 0;
    while i < len {
        let designator = bytes[i];
        match designator {
            b'T' => {
                if start != i {
                    return Err(unsupported());
                }
                in_time = true;
                start = i + 1;
            }
            b'Y' | b'W' | b'D' | b'H' | b'S' | b'M' => {
                let allowed = match designator {
                    b'Y' | b'W' | b'D' => !in_time,
                    b'H' | b'S' => in_time,
                    _ => true,
                };
                if !allowed || start == i {
                    return Err(unsupported());
                }
                let n = atoi(&input[start..i]).ok_or_else(unsupported)?;
                let add_nanos = |per_unit: i64| {
                    n.checked_mul(per_unit).and_then(|d| nanos.checked_add(d)).ok_or_else(out_of_range)
                };
                match (designator, in_time) {
                    (b'Y', _) => out.years = n,
                    (b'M', false) => out.months = n,
                    (b'W', _) => {
                        out.days = n
                            .checked_mul(7)
                            .and_then(|d| out.days.checked_add(d))
                            .ok_or_else(out_of_range)?;
                    }
                    (b'D', _) => out.days = out.days.checked_add(n).ok_or_else(out_of_range)?,
                    (b'H', _) => nanos = add_nanos(3_600_000_000_000)?,
                    (b'M', true) => nanos = add_nanos(60_000_000_000)?,
                    _ => nanos = add_nanos(1_000_000_000)?, // b'S'
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.time = SignedDuration::from_nanos(nanos);
    Ok(out)
}

/// Go's `strconv.Atoi` on a 64-bit platform: optional sign, decimal digits, in range.
/// Rust's `i64::from_str` accepts exactly that.
fn atoi(s: &str) -> Option<i64> {
    s.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Go's Time.AddDate
// ---------------------------------------------------------------------------------------------

/// Go's `t.AddDate(years, months, days)`: `time.Date(y+years, m+months, d+days, h, mi, s, ns,
/// loc)` on `t`'s wall clock, with Go's normalisation instead of jiff's clamping.
///
/// Months overflow into years and days overflow into months: Jan 31 + 1 month is "Feb 31",
/// which is Mar 3 (Mar 2 in a leap year); Feb 29 + 1 year is Mar 1.
///
/// A wall time that falls in a DST gap or fold is resolved as Go's `time.Date` does (its doc
/// only promises "correct in one of the two zones involved"): take the offset in force at the
/// wall time read as UTC; if the instant this gives has another offset, use that one instead.
/// For zones west of UTC (e.g. New York) this gives the earlier offset's reading in a fold
/// and the instant *before* the gap (02:30 → 01:30 EST); east of UTC (e.g. Berlin) the later
/// offset in a fold and the instant after the gap (02:30 → 03:30 CEST). jiff's
/// "compatible" disambiguation differs, so it is not used.
///
/// Returns `None` when the result is outside jiff's range.
#[must_use]
pub fn go_add_date(t: &Zoned, years: i64, months: i64, days: i64) -> Option<Zoned> {
    let dt = t.datetime();
    let total_months =
        (i128::from(dt.year()) + i128::from(years)) * 12 + i128::from(dt.month() - 1) + i128::from(months);
    let year = total_months.div_euclid(12);
    let month = total_months.rem_euclid(12) + 1;
    let day = i128::from(dt.day()) + i128::from(days);
    // Go's years are unbounded and jiff's end at ±9999; the Gregorian calendar repeats every
    // 400 years (146 097 days), so jiff dates the month in a year of 2000–2399 and whole cycles
    // are added back as days.
    let cycles = (year - 2000).div_euclid(400);
    let first = Date::new(i16::try_from(year - cycles * 400).ok()?, i8::try_from(month).ok()?, 1).ok()?;
    let first_days = first.duration_since(Date::constant(1970, 1, 1)).as_secs() / 86_400;
    let epoch_days = i128::from(first_days) + cycles * 146_097 + (day - 1);
    let second_of_day = i128::from(dt.hour()) * 3600 + i128::from(dt.minute()) * 60 + i128::from(dt.second());
    let wall = epoch_days.checked_mul(86_400)?.checked_add(second_of_day)?;
    let subsec = i128::from(dt.subsec_nanosecond());
    let tz = t.time_zone();
    let at = |unix_secs: i128| -> Option<Timestamp> {
        Timestamp::from_nanosecond(unix_secs.checked_mul(1_000_000_000)?.checked_add(subsec)?).ok()
    };
    let first = tz.to_offset(at(wall)?);
    let second = tz.to_offset(at(wall - i128::from(first.seconds()))?);
    Some(at(wall - i128::from(second.seconds()))?.to_zoned(tz.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn utc(s: &str) -> Zoned {
        s.parse::<Timestamp>().unwrap().to_zoned(TimeZone::UTC)
    }

    /// The creation time used as the reference in most tests.
    fn reference() -> Zoned {
        utc("2024-01-31T10:00:00Z")
    }

    /// Asserts that [`parse_point_in_time`] rejects `input` at [`reference`] with `error`.
    fn assert_rejected(input: &str, error: PointInTimeError) {
        assert_eq!(parse_point_in_time(input, &reference()), Err(error), "{input:?}");
    }

    fn in_zone(datetime: &str, posix_tz: &str) -> Zoned {
        let tz = TimeZone::posix(posix_tz).unwrap();
        datetime.parse::<DateTime>().unwrap().to_zoned(tz).unwrap()
    }

    const NEW_YORK: &str = "EST5EDT,M3.2.0,M11.1.0";
    const BERLIN: &str = "CET-1CEST,M3.5.0,M10.5.0/3";

    // -- §7.2 format 1: RFC 3339 --------------------------------------------------------------

    #[test]
    fn spec_7_2_rfc3339_accepts_what_go_time_parse_accepts() {
        // (input, instant in UTC, offset seconds)
        let cases = [
            ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05Z", 0),
            // .NET DateTimeOffset.ToString("O"): 7 fractional digits and an offset.
            ("2024-01-02T03:04:05.1234567+01:00", "2024-01-02T02:04:05.1234567Z", 3600),
            ("2024-01-02T03:04:05.5-05:30", "2024-01-02T08:34:05.5Z", -19800),
            ("2024-01-02T03:04:05-00:00", "2024-01-02T03:04:05Z", 0),
            ("2024-01-02T03:04:05+00:00", "2024-01-02T03:04:05Z", 0),
            // More than 9 digits: truncated, not rounded.
            ("2024-01-02T03:04:05.9999999999999Z", "2024-01-02T03:04:05.999999999Z", 0),
            // Go's generic parser takes a comma as the decimal separator ...
            ("2024-01-02T03:04:05,25Z", "2024-01-02T03:04:05.25Z", 0),
            // ... a one-digit hour ...
            ("2024-01-02T3:04:05Z", "2024-01-02T03:04:05Z", 0),
            // ... and offsets up to 24 h and 60 min.
            ("2024-01-02T03:04:05+24:00", "2024-01-01T03:04:05Z", 86_400),
            ("2024-01-02T03:04:05-23:60", "2024-01-03T03:04:05Z", -86_400),
            ("2024-02-29T00:00:00Z", "2024-02-29T00:00:00Z", 0),
            ("2000-02-29T23:59:59Z", "2000-02-29T23:59:59Z", 0),
            ("0000-01-01T00:00:00Z", "0000-01-01T00:00:00Z", 0),
            ("9999-12-30T21:59:59.999999999Z", "9999-12-30T21:59:59.999999999Z", 0),
        ];
        for (input, instant, offset) in cases {
            let got = parse_rfc3339(input).unwrap_or_else(|e| panic!("rejected {input:?}: {e}"));
            assert_eq!(got.timestamp(), instant.parse().unwrap(), "{input:?}");
            assert_eq!(got.offset().seconds(), offset, "{input:?}");
        }
    }

    #[test]
    fn spec_7_2_rfc3339_z_is_utc_and_an_offset_is_a_fixed_zone() {
        assert_eq!(parse_rfc3339("2024-01-02T03:04:05Z").unwrap().time_zone(), &TimeZone::UTC);
        let fixed = parse_rfc3339("2024-01-02T03:04:05+02:00").unwrap();
        assert_eq!(fixed.time_zone(), &TimeZone::fixed(Offset::from_seconds(7200).unwrap()));
        assert_eq!(fixed.datetime(), "2024-01-02T03:04:05".parse().unwrap());
    }

    #[test]
    fn spec_7_2_rfc3339_rejects_what_go_time_parse_rejects() {
        let cases = [
            "",
            "2024-01-02 03:04:05Z",  // space instead of T (jiff accepts it)
            "2024-01-02t03:04:05Z",  // lowercase t
            "2024-01-02T03:04:05z",  // lowercase z
            "2024-01-02T03:04:05",   // no offset
            "2024-01-02",            // date only
            "2024-02-30T00:00:00Z",  // no Feb 30
            "2023-02-29T00:00:00Z",  // 2023 is not a leap year
            "1900-02-29T00:00:00Z",  // nor is 1900
            "2024-04-31T00:00:00Z",  // April has 30 days
            "2024-13-01T00:00:00Z",  // month 13
            "2024-00-01T00:00:00Z",  // month 0
            "2024-01-00T00:00:00Z",  // day 0
            "2024-01-02T24:00:00Z",  // hour 24
            "2024-01-02T25:00:00Z",  // hour 25
            "2024-01-02T123:00:00Z", // three-digit hour
            "2024-01-02T03:60:00Z",  // minute 60
            "2024-01-02T23:59:60Z",  // leap second: "second out of range"
            "2024-01-02T03:4:05Z",   // one-digit minute
            "2024-01-02T03:04:5Z",   // one-digit second
            "2024-1-02T03:04:05Z",   // one-digit month
            "2024-01-2T03:04:05Z",   // one-digit day
            "24-01-02T03:04:05Z",    // two-digit year
            "12024-01-02T03:04:05Z", // five-digit year
            "+2024-01-02T03:04:05Z", // signed year
            "-2024-01-02T03:04:05Z",
            "2024-01-02T03:04:05.Z",    // separator without digits
            "2024-01-02T03:04:05+0100", // offset without colon
            "2024-01-02T03:04:05+01",
            "2024-01-02T03:04:05+1:00",
            "2024-01-02T03:04:05+25:00", // offset hour above 24
            "2024-01-02T03:04:05+01:61", // offset minute above 60
            "2024-01-02T03:04:05 +01:00",
            "2024-01-02T03:04:05ZZ", // trailing text
            "2024-01-02T03:04:05Z ",
            " 2024-01-02T03:04:05Z",
            "2024-01-02T03:04:05+01:00:00",
            "2024-01-02T03:04:05UTC",
            "２０２４-01-02T03:04:05Z", // non-ASCII digits
            "10000-01-01T00:00:00Z",    // Go's RFC 3339 layout has exactly four year digits
        ];
        for input in cases {
            assert_eq!(parse_rfc3339(input), Err(Rfc3339Error::Syntax), "{input:?}");
        }
    }

    #[test]
    fn spec_7_2_rfc3339_is_accepted_up_to_the_last_representable_instant() {
        // (input, instant in UTC); the last instant is jiff's, 9999-12-30T22:00:00.999999999Z.
        let cases = [
            ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
            ("0001-01-01T00:00:00+14:00", "0000-12-31T10:00:00Z"),
            ("0001-01-01T00:00:00-14:00", "0001-01-01T14:00:00Z"),
            ("0000-01-01T00:00:00+24:60", "-000001-12-30T23:00:00Z"), // the earliest Go accepts
            ("9999-01-01T00:00:00Z", "9999-01-01T00:00:00Z"),
            ("9999-12-30T22:00:00Z", "9999-12-30T22:00:00Z"),
            ("9999-12-30T22:00:00.999999999Z", "9999-12-30T22:00:00.999999999Z"),
            ("9999-12-30T22:00:00.99999999999Z", "9999-12-30T22:00:00.999999999Z"),
            ("9999-12-30T22:00:00,5Z", "9999-12-30T22:00:00.5Z"),
            ("9999-12-31T12:00:00.999999999+14:00", "9999-12-30T22:00:00.999999999Z"),
            ("9999-12-30T08:00:00.999999999-14:00", "9999-12-30T22:00:00.999999999Z"),
            ("9999-12-31T23:00:00.999999999+24:60", "9999-12-30T22:00:00.999999999Z"),
        ];
        for (input, instant) in cases {
            let got = parse_rfc3339(input).unwrap_or_else(|e| panic!("rejected {input:?}: {e}"));
            assert_eq!(got.timestamp(), instant.parse().unwrap(), "{input:?}");
            let got = parse_point_in_time(input, &reference()).unwrap();
            assert_eq!(got.timestamp(), instant.parse().unwrap(), "{input:?}");
        }
        assert_eq!(
            parse_rfc3339("9999-12-30T22:00:00.999999999Z").map(|t| t.timestamp()),
            Ok(Timestamp::MAX)
        );
    }

    #[test]
    fn rfc3339_past_the_last_representable_instant_is_out_of_range_not_unrecognized() {
        let cases = [
            "9999-12-30T22:00:01Z",
            "9999-12-31T23:59:59Z",
            "9999-12-31T23:59:59.999999999Z",
            "9999-12-31T23:59:59.9999999+00:00", // .NET DateTimeOffset.MaxValue.ToString("O")
            "9999-12-31T12:00:01+14:00",
            "9999-12-31T23:59:59+14:00",
            "9999-12-30T08:00:01-14:00",
            "9999-12-31T23:59:59-14:00",
            "9999-12-31T23:59:59-24:60",
        ];
        for input in cases {
            assert_eq!(parse_rfc3339(input), Err(Rfc3339Error::OutOfRange), "{input:?}");
            assert_rejected(input, PointInTimeError::OutOfRange(input.to_owned()));
        }
        assert_eq!(
            PointInTimeError::OutOfRange("9999-12-31T23:59:59Z".into()).to_string(),
            "due time \"9999-12-31T23:59:59Z\" is out of range: kairos represents instants from \
             -009999-01-02T01:59:59Z to 9999-12-30T22:00:00.999999999Z"
        );
        // Malformed strings near the edge are still not recognized.
        for input in ["9999-12-31", "9999-12-32T00:00:00Z", "10000-01-01T00:00:00Z"] {
            assert_rejected(input, PointInTimeError::NotRecognized);
        }
    }

    #[test]
    fn supported_range_states_jiffs_limits() {
        let want = format!("kairos represents instants from {} to {}", Timestamp::MIN, Timestamp::MAX);
        assert_eq!(SUPPORTED_RANGE, want);
    }

    #[test]
    fn spec_7_2_durations_landing_past_the_range_are_out_of_range() {
        let late = utc("9999-12-30T00:00:00Z");
        // (input, reference, the instant, or None for out of range)
        let cases = [
            ("22h", &late, Some("9999-12-30T22:00:00Z")),
            ("22h0m0.999999999s", &late, Some("9999-12-30T22:00:00.999999999Z")),
            ("22h0m1s", &late, None),
            ("PT22H", &late, Some("9999-12-30T22:00:00Z")),
            ("PT22H1S", &late, None),
            ("P1D", &late, None),
            ("P1M", &late, None),
            ("P8000Y", &reference(), None),
            ("P-20000Y", &reference(), None),
            ("PT2562048H", &reference(), None), // would wrap in Go's int64 arithmetic
        ];
        for (input, reference, want) in cases {
            let got = parse_point_in_time(input, reference);
            match want {
                Some(instant) => {
                    assert_eq!(got.map(|t| t.timestamp()), Ok(instant.parse().unwrap()), "{input:?}")
                }
                None => assert_eq!(got, Err(PointInTimeError::OutOfRange(input.to_owned())), "{input:?}"),
            }
        }
    }

    // -- §7.2 format 2: Go duration, via parse_point_in_time ---------------------------------

    #[test]
    fn spec_7_2_go_duration_is_added_to_the_reference() {
        let ms = |n: i64| SignedDuration::from_millis(n);
        let cases = [
            ("0", SignedDuration::ZERO),
            ("-0", SignedDuration::ZERO),
            ("10s", ms(10_000)),
            ("+10s", ms(10_000)),
            ("-1h", ms(-3_600_000)),
            ("1h30m", ms(5_400_000)),
            ("1.5h", ms(5_400_000)),
            ("300ms", ms(300)),
            ("1µs", SignedDuration::from_micros(1)),
            ("1us", SignedDuration::from_micros(1)),
            ("1000s", ms(1_000_000)),
        ];
        let reference = reference();
        for (input, d) in cases {
            let got = parse_point_in_time(input, &reference).unwrap();
            assert_eq!(got, add_exact(&reference, d).unwrap(), "{input:?}");
        }
    }

    #[test]
    fn spec_7_2_rfc3339_is_absolute_and_ignores_the_reference() {
        let got = parse_point_in_time("2030-06-01T12:00:00.1234567+02:00", &reference()).unwrap();
        assert_eq!(got.timestamp(), "2030-06-01T10:00:00.1234567Z".parse().unwrap());
    }

    #[test]
    fn spec_7_2_unrecognized_strings_are_rejected() {
        let cases = [
            "",
            "1d", // no d unit in Go, and not ISO: "due time format not recognized"
            "10",
            "garbage",
            "P",
            "PT1D",
            "p1d",
            "1 hour",
            "2024-01-02 03:04:05Z",
            "R/PT1H",
            "R5/X",
        ];
        for input in cases {
            assert_rejected(input, PointInTimeError::NotRecognized);
        }
        assert_eq!(PointInTimeError::NotRecognized.to_string(), "due time format not recognized");
    }

    // -- §7.2 format 3: ISO-8601 duration ----------------------------------------------------

    #[test]
    fn spec_7_2_iso_duration_is_added_with_add_date() {
        let reference = reference(); // 2024-01-31T10:00:00Z
        let cases = [
            ("P1D", "2024-02-01T10:00:00Z"),
            ("PT1H30M", "2024-01-31T11:30:00Z"),
            ("P1M", "2024-03-02T10:00:00Z"), // Go: "Feb 31" 2024 = Mar 2
            ("P1Y2M3W4DT5H6M7S", "2025-04-25T15:06:07Z"),
            ("P2W", "2024-02-14T10:00:00Z"),
            ("P-1D", "2024-01-30T10:00:00Z"),
            ("PT-30M", "2024-01-31T09:30:00Z"),
            ("R0/PT1H", "2024-01-31T11:00:00Z"), // repeats 0 is allowed (upstream: > 0)
            ("R-1/PT1H", "2024-01-31T11:00:00Z"),
            ("R0", "2024-01-31T10:00:00Z"),
            ("R0/", "2024-01-31T10:00:00Z"),
            ("PT", "2024-01-31T10:00:00Z"),
            ("P1d", "2024-01-31T10:00:00Z"), // lenient: 'd' is skipped, nothing parsed
            ("P1D2", "2024-02-01T10:00:00Z"),
        ];
        for (input, want) in cases {
            let got = parse_point_in_time(input, &reference).unwrap_or_else(|e| {
                panic!("{input:?}: {e}");
            });
            assert_eq!(got, utc(want), "{input:?}");
        }
    }

    #[test]
    fn spec_7_2_calendar_days_follow_the_wall_clock_while_go_hours_are_exact() {
        // Across New York's spring-forward night, P1D keeps 12:00 and 24h does not.
        let reference = in_zone("2024-03-09T12:00:00", NEW_YORK);
        let by_day = parse_point_in_time("P1D", &reference).unwrap();
        assert_eq!(by_day.datetime(), "2024-03-10T12:00:00".parse().unwrap());
        let by_hours = parse_point_in_time("24h", &reference).unwrap();
        assert_eq!(by_hours.datetime(), "2024-03-10T13:00:00".parse().unwrap());
        assert_eq!(
            parse_point_in_time("PT24H", &reference).unwrap(),
            by_hours,
            "the ISO time part is exact too"
        );
    }

    #[test]
    fn spec_7_2_iso_repeats_are_rejected_for_due_time() {
        for input in ["R5/PT1H", "R1/P1D", "R5", "R5/", "R+2/PT1S"] {
            assert_rejected(input, PointInTimeError::RepeatsNotSupported);
        }
        assert_eq!(PointInTimeError::RepeatsNotSupported.to_string(), "repeats not supported for due time");
    }

    #[test]
    fn iso_parser_matches_dapr_kit_test_table() {
        let hms = |h: i64, m: i64, s: i64| SignedDuration::from_secs(h * 3600 + m * 60 + s);
        let d = |years, months, days, time, repeats| Iso8601Duration { years, months, days, time, repeats };
        let zero = SignedDuration::ZERO;
        // dapr/kit time/time_test.go TestParseDuration, plus our quirk cases.
        let cases = [
            ("R5/P10Y5M3DT30M", d(10, 5, 3, hms(0, 30, 0), Some(5))),
            ("P1MT2H10M3S", d(0, 1, 0, hms(2, 10, 3), None)),
            ("P2W", d(0, 0, 14, zero, None)),
            ("PT1S", d(0, 0, 0, hms(0, 0, 1), None)),
            ("P1M", d(0, 1, 0, zero, None)),
            ("PT1M", d(0, 0, 0, hms(0, 1, 0), None)),
            ("P0D", d(0, 0, 0, zero, None)),
            ("PT0S", d(0, 0, 0, zero, None)),
            ("P1M2D", d(0, 1, 2, zero, None)),
            ("R5", d(0, 0, 0, zero, Some(5))),
            ("R5/", d(0, 0, 0, zero, Some(5))),
            // Quirks of the same parser.
            ("P1Y2Y", d(2, 0, 0, zero, None)),           // years overwrite
            ("P1M2M", d(0, 2, 0, zero, None)),           // months overwrite
            ("P1D2D", d(0, 0, 3, zero, None)),           // days add up
            ("P1W1D", d(0, 0, 8, zero, None)),           // weeks add to days
            ("PT1M1M", d(0, 0, 0, hms(0, 2, 0), None)),  // minutes add up
            ("PT1HT2H", d(0, 0, 0, hms(3, 0, 0), None)), // a second T right after a designator
            ("P-1D", d(0, 0, -1, zero, None)),
            ("P+1D", d(0, 0, 1, zero, None)),
            ("P007D", d(0, 0, 7, zero, None)),
            ("P1D2", d(0, 0, 1, zero, None)), // unterminated number ignored
            ("Px", d(0, 0, 0, zero, None)),   // stray bytes skipped
            ("P1d", d(0, 0, 0, zero, None)),
            ("P1DT", d(0, 0, 1, zero, None)),
            ("PT", d(0, 0, 0, zero, None)),
            ("R0/P1D", d(0, 0, 1, zero, Some(0))),
            ("R-1/P1D", d(0, 0, 1, zero, Some(-1))),
            ("R5/P", d(0, 0, 0, zero, Some(5))),
        ];
        for (input, want) in cases {
            assert_eq!(parse_iso8601_duration(input), Ok(want), "{input:?}");
        }
    }

    #[test]
    fn iso_parser_rejects_what_dapr_kit_rejects() {
        let cases = [
            "",
            "P",
            "R",
            "10D1M",
            "PM",
            "PT1D",
            "P_D",
            "PTxS", // dapr/kit's own cases
            "PT1Y",
            "PT1W",
            "P1H",
            "P1S", // designator on the wrong side of T
            "P1T1H",
            "PxT1H", // T not right after P or a designator
            "PD",
            "P+D",
            "P-D",
            "P1.5D",
            "P1 D",
            "P1µD",                  // not an Atoi integer
            "P9223372036854775808D", // Atoi range
            "R/P1D",
            "Rx/P1D",
            "R1.5/P1D",
            "R5/X",
            "R5/p1D",
            "p1D",
            "1D",
            "T1H",
        ];
        for input in cases {
            assert_eq!(
                parse_iso8601_duration(input),
                Err(Iso8601DurationError::Unsupported(input.to_owned())),
                "{input:?}"
            );
        }
        assert_eq!(parse_iso8601_duration("PT").map(|d| d.time), Ok(SignedDuration::ZERO));
        assert_eq!(
            Iso8601DurationError::Unsupported("P".into()).to_string(),
            r#"unsupported ISO8601 duration format: "P""#
        );
    }

    #[test]
    fn iso_parser_rejects_what_would_wrap_in_go() {
        for input in [
            "PT2562048H", // > i64::MAX nanoseconds
            "PT9223372036854775807S",
            "PT2562047H60M",           // the sum overflows
            "P1317624576693539402W",   // 7 × weeks overflows
            "P9223372036854775807D1D", // days sum overflows
        ] {
            assert_eq!(
                parse_iso8601_duration(input),
                Err(Iso8601DurationError::OutOfRange(input.to_owned())),
                "{input:?}"
            );
            assert_rejected(input, PointInTimeError::OutOfRange(input.to_owned()));
        }
        // The largest hours that fit in Go's Duration are accepted.
        assert_eq!(
            parse_iso8601_duration("PT2562047H").map(|d| d.time),
            Ok(SignedDuration::from_hours(2_562_047))
        );
    }

    // -- Go's AddDate -------------------------------------------------------------------------

    #[test]
    fn add_date_normalises_overflow_like_go_instead_of_clamping() {
        let cases = [
            // (start, years, months, days, want)
            ("2023-01-31T08:00:00Z", 0, 1, 0, "2023-03-03T08:00:00Z"),
            ("2024-01-31T08:00:00Z", 0, 1, 0, "2024-03-02T08:00:00Z"), // leap year
            ("2023-03-31T08:00:00Z", 0, -1, 0, "2023-03-03T08:00:00Z"),
            ("2024-03-31T08:00:00Z", 0, -1, 0, "2024-03-02T08:00:00Z"),
            ("2024-02-29T08:00:00Z", 1, 0, 0, "2025-03-01T08:00:00Z"),
            ("2024-02-29T08:00:00Z", 4, 0, 0, "2028-02-29T08:00:00Z"),
            ("2024-02-29T08:00:00Z", -1, 0, 0, "2023-03-01T08:00:00Z"),
            ("2024-12-31T23:59:59.5Z", 0, 1, 0, "2025-01-31T23:59:59.5Z"),
            ("2024-05-31T00:00:00Z", 0, 1, 0, "2024-07-01T00:00:00Z"),
            ("2024-01-15T00:00:00Z", 0, -13, 0, "2022-12-15T00:00:00Z"),
            ("2024-01-15T00:00:00Z", 0, 24, 0, "2026-01-15T00:00:00Z"),
            ("2024-01-15T00:00:00Z", 0, 0, -366, "2023-01-14T00:00:00Z"),
            ("2024-01-15T00:00:00Z", 0, 0, 400, "2025-02-18T00:00:00Z"),
            ("2024-01-15T00:00:00Z", 1, -12, 0, "2024-01-15T00:00:00Z"),
            // A month of 0 days normalises backwards: Mar 0 = Feb 29 (2024).
            ("2024-03-01T00:00:00Z", 0, 0, -1, "2024-02-29T00:00:00Z"),
            // dapr/kit's leap-year test: P1Y2M3D from Feb 3.
            ("2020-02-03T11:12:13Z", 1, 2, 3, "2021-04-06T11:12:13Z"),
            ("2019-02-03T11:12:13Z", 1, 2, 3, "2020-04-06T11:12:13Z"),
        ];
        for (start, y, m, d, want) in cases {
            let got = go_add_date(&utc(start), y, m, d);
            assert_eq!(got, Some(utc(want)), "{start} + ({y}, {m}, {d})");
        }
    }

    #[test]
    fn add_date_keeps_the_wall_clock_in_the_zone() {
        let start = in_zone("2024-03-09T12:00:00", NEW_YORK); // EST, the day before DST
        let got = go_add_date(&start, 0, 0, 1).unwrap();
        assert_eq!(got.datetime(), "2024-03-10T12:00:00".parse().unwrap());
        assert_eq!(got.offset().seconds(), -4 * 3600);
        let start = utc("2024-01-02T03:04:05Z")
            .with_time_zone(TimeZone::fixed(Offset::from_seconds(-19_800).unwrap()));
        let got = go_add_date(&start, 0, 1, 0).unwrap();
        assert_eq!(got.time_zone(), start.time_zone());
        assert_eq!(got.datetime(), "2024-02-01T21:34:05".parse().unwrap());
    }

    #[test]
    fn add_date_resolves_dst_gaps_and_folds_like_go_time_date() {
        // (start wall time, zone, wall time to resolve, resulting instant)
        let cases = [
            // New York 2021-03-14 02:30 does not exist: Go gives 01:30 EST.
            ("2021-03-13T02:30:00", NEW_YORK, "2021-03-14T06:30:00Z"),
            // New York 2021-11-07 01:30 happens twice: Go gives the first (EDT).
            ("2021-11-06T01:30:00", NEW_YORK, "2021-11-07T05:30:00Z"),
            // Berlin 2021-03-28 02:30 does not exist: Go gives 03:30 CEST.
            ("2021-03-27T02:30:00", BERLIN, "2021-03-28T01:30:00Z"),
            // Berlin 2021-10-31 02:30 happens twice: Go gives the second (CET).
            ("2021-10-30T02:30:00", BERLIN, "2021-10-31T01:30:00Z"),
        ];
        for (start, zone, want) in cases {
            let got = go_add_date(&in_zone(start, zone), 0, 0, 1).unwrap();
            assert_eq!(got.timestamp(), want.parse().unwrap(), "{start} {zone}");
            assert_eq!(got.time_zone(), &TimeZone::posix(zone).unwrap());
        }
    }

    #[test]
    fn add_date_returns_none_outside_jiffs_range() {
        let start = utc("2024-01-31T00:00:00Z");
        assert_eq!(go_add_date(&start, 8000, 0, 0), None);
        assert_eq!(go_add_date(&start, -20_000, 0, 0), None);
        assert_eq!(go_add_date(&start, i64::MAX, i64::MAX, i64::MAX), None);
        assert_eq!(go_add_date(&start, i64::MIN, i64::MIN, i64::MIN), None);
        assert_eq!(go_add_date(&start, 0, 0, 4_000_000), None);
        // Parts that cancel out stay in range, as Go's exact arithmetic would.
        assert_eq!(go_add_date(&start, 10_000, -120_000, 0), Some(start.clone()));
        assert_eq!(parse_point_in_time("P8000Y", &start), Err(PointInTimeError::OutOfRange("P8000Y".into())));
    }

    // -- properties ---------------------------------------------------------------------------

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC*") {
            let _ = parse_rfc3339(&s);
            let _ = parse_iso8601_duration(&s);
            let _ = parse_point_in_time(&s, &reference());
        }

        #[test]
        fn parsers_never_panic_on_near_misses(
            s in "[0-9]{0,5}[-T:.,Z+ ]?[0-9]{0,3}[-T:.,Z+ ]?[0-9]{0,3}[-T:.,Z+ ]?[0-9]{0,3}[-T:.,Z+ ]?[0-9]{0,12}[Z+-]?[0-9:]{0,6}",
            iso in "(R[-+]?[0-9]{0,3}/?)?P?[-+0-9YMWDTHSµ]{0,20}",
        ) {
            let _ = parse_point_in_time(&s, &reference());
            let _ = parse_point_in_time(&iso, &reference());
        }

        #[test]
        fn go_duration_lands_exactly_on_reference_plus_duration(
            negative: bool,
            h in 0i64..1_000_000,
            m in 0i64..1_000,
            s in 0i64..100_000,
            ns in 0i64..1_000_000_000,
            ref_secs in -50_000_000_000i64..50_000_000_000,
        ) {
            let sign = if negative { "-" } else { "" };
            let input = format!("{sign}{h}h{m}m{s}s{ns}ns");
            let magnitude = SignedDuration::new(h * 3600 + m * 60 + s, i32::try_from(ns).unwrap());
            let d = if negative { -magnitude } else { magnitude };
            let reference = Timestamp::from_second(ref_secs).unwrap().to_zoned(TimeZone::UTC);
            let got = parse_point_in_time(&input, &reference).unwrap();
            prop_assert_eq!(got.timestamp(), reference.timestamp().checked_add(d).unwrap());
            prop_assert_eq!(got.time_zone(), &TimeZone::UTC);
        }

        #[test]
        fn rfc3339_round_trips_jiff_formatted_timestamps(
            secs in -62_167_219_200i64..253_402_000_000, // 0000-01-01 .. 9999-12-27
            nanos in prop_oneof![Just(0i32), 0i32..1_000_000_000],
            offset_minutes in -(23 * 60 + 59)..=(23 * 60 + 59),
        ) {
            let ts = Timestamp::new(secs, nanos).unwrap();
            let offset = Offset::from_seconds(offset_minutes * 60).unwrap();
            let text = ts.display_with_offset(offset).to_string();
            // Local years outside 0000–9999 cannot be written in RFC 3339.
            prop_assume!(!text.starts_with('-') && !text.starts_with('+'));
            let got = parse_rfc3339(&text);
            prop_assert!(got.is_ok(), "rejected {}: {:?}", text, got);
            let got = got.unwrap();
            prop_assert_eq!(got.timestamp(), ts);
            prop_assert_eq!(got.offset(), offset);

            let z = ts.to_string();
            prop_assume!(!z.starts_with('-') && !z.starts_with('+'));
            prop_assert_eq!(parse_rfc3339(&z).map(|t| t.timestamp()), Ok(ts));
            prop_assert_eq!(parse_point_in_time(&z, &reference()).map(|t| t.timestamp()), Ok(ts));
        }

        /// Near both ends of the range, an RFC 3339 time is accepted exactly when its instant
        /// is representable, and then it lands on that instant; past the end it is out of
        /// range, never unrecognized.
        #[test]
        fn rfc3339_at_the_edges_is_accepted_exactly_when_representable(
            (year, month, day) in prop::sample::select(vec![
                (0, 1, 1), (0, 1, 2), (1, 1, 1), (9999, 12, 29), (9999, 12, 30), (9999, 12, 31),
            ]),
            hour in 0i128..24,
            minute in 0i128..60,
            second in 0i128..60,
            nanos in prop_oneof![Just(0i128), Just(999_999_999), 0i128..1_000_000_000],
            east: bool,
            offset_hours in 0i128..=24,
            offset_minutes in 0i128..=60,
        ) {
            let sign = if east { '+' } else { '-' };
            let text = format!(
                "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{nanos:09}{sign}{offset_hours:02}:{offset_minutes:02}"
            );
            // The instant, computed from the civil reading (jiff's civil calendar reaches past
            // the instants it can represent, so this works beyond the edges too).
            let offset = (offset_hours * 3600 + offset_minutes * 60) * if east { 1 } else { -1 };
            let civil = DateTime::new(year as i16, month as i8, day as i8, 0, 0, 0, 0).unwrap();
            let days = i128::from(civil.duration_since(DateTime::constant(1970, 1, 1, 0, 0, 0, 0)).as_secs() / 86_400);
            let wall = days * 86_400 + hour * 3600 + minute * 60 + second;
            let instant = (wall - offset) * 1_000_000_000 + nanos;
            let last = Timestamp::MAX.as_nanosecond();
            let got = parse_point_in_time(&text, &reference());
            if instant <= last {
                prop_assert_eq!(got.map(|t| t.timestamp().as_nanosecond()), Ok(instant), "{}", text);
            } else {
                prop_assert_eq!(got, Err(PointInTimeError::OutOfRange(text.clone())), "{}", text);
            }
        }

        #[test]
        fn add_date_agrees_with_jiff_when_no_overflow_happens(
            days in -3_000_000i64..3_000_000,
            secs in -60_000_000_000i64..60_000_000_000,
        ) {
            // Adding only days never hits a month end, so Go and jiff agree (in UTC).
            let start = Timestamp::from_second(secs).unwrap().to_zoned(TimeZone::UTC);
            let want = start.checked_add(jiff::Span::new().days(days)).ok();
            prop_assert_eq!(go_add_date(&start, 0, 0, days), want);
        }
    }
}

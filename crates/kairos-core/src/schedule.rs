//! The `schedule` grammar of Dapr jobs (spec §7.1) and its activation times (§7.4).
//!
//! A schedule is one of:
//!
//! * a cron expression of exactly six fields, `sec min hour dom month dow`;
//! * a descriptor: `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight`,
//!   `@hourly`, each the same as the cron expression the spec gives for it;
//! * `@every <Go duration>`.
//!
//! A cron expression or a fixed descriptor may start with `TZ=<IANA zone> ` or
//! `CRON_TZ=<IANA zone> `; without it the schedule runs in the `default_tz` handed to
//! [`Schedule::parse`]. `@every` takes no prefix (rejected since v1.18.3). Zone names resolve
//! like Go's `time.LoadLocation`: `""` and `UTC` are UTC, `Local` is `default_tz`, any other
//! name must be in the zone database with exactly that spelling.
//!
//! Choosing `default_tz` is the caller's business, but note: the spec says the Scheduler's local
//! zone applies, while the dapr/kit `SpecSchedule.Next` we could read evaluates an un-prefixed
//! schedule in the zone of the `time.Time` it is given, and go-etcd-cron passes UTC times
//! (`AsTime()`, `Now().UTC()`), so upstream effectively runs un-prefixed schedules in UTC.
//!
//! # Upstream
//!
//! The Scheduler parses schedules with dapr/kit's `cron` package, a fork of robfig/cron v3
//! (`cron/parser.go`, `cron/spec.go`, `cron/constantdelay.go`). This module reproduces what that
//! parser accepts and what its `Next` returns; the error texts are upstream's wherever upstream
//! has one, because the Scheduler sends them to clients verbatim (spec §7.3).
//!
//! Field syntax, as upstream reads it:
//!
//! * a field is a comma list; empty items are skipped (`1,,2` is `1,2`, as in Go's
//!   `strings.FieldsFunc`);
//! * an item is `*` or `?` (the whole range), `N`, `N-M`, each optionally followed by `/S`;
//!   `N/S` means `N-max/S`; months and weekdays also take three-letter names in any case;
//! * numbers are read like Go's `strconv.Atoi`: leading zeros and a `+` sign are accepted.
//!
//! Two inputs that upstream accepts are rejected here on purpose, because upstream reads them
//! in a way nobody could mean: `*-N` (upstream ignores the `-N` and reads `*`), and a field made
//! only of commas (upstream reads an empty set, so the job would never fire).
//!
//! # Day of month and day of week
//!
//! When both fields are restricted, a day matches if *either* matches; when either of them is
//! unrestricted, both must match (which makes the unrestricted one irrelevant). "Unrestricted"
//! is robfig's star bit: the field contains an item `*` or `?` whose step is 1 (`*`, `?`, `*/1`,
//! or a list such as `1,*`). A stepped star such as `*/2` is *restricted*, so
//! `0 0 0 */2 * mon` fires on odd days of the month **or** on Mondays, and `1-31` is restricted
//! too (upstream's own test: `* * */10 * Sun` matches Sunday the 15th).
//!
//! # Activation times
//!
//! A cron schedule fires at every whole second whose wall-clock reading in the schedule's zone
//! matches all six fields. [`Schedule::next_after`] returns the first such instant strictly
//! after its argument. Around daylight-saving transitions this gives exactly the results of
//! upstream's `TestNext` DST table (`cron/spec_test.go`), which is our evidence:
//!
//! * **spring forward** (a wall-clock hour does not exist): a time inside the gap does not fire
//!   that day. `0 30 2 * * *` in `America/New_York` skips 2026-03-08; hourly schedules go from
//!   01:00−05 straight to 03:00−04. (croner instead moves the job to 03:00; upstream does not.)
//! * **fall back** (a wall-clock hour happens twice): a time inside the repeated hour fires
//!   *twice*, once per occurrence. `0 30 1 * * *` fires at 01:30−04 and at 01:30−05 on
//!   2026-11-01, and `@hourly` fires at 01:00−04, 01:00−05 and 02:00−05. (croner fires once.)
//!
//! If no activation exists in the five calendar years after `after` (counted in the schedule's
//! zone, as robfig's `yearLimit` does), `next_after` gives up and returns `None`: this is how
//! `0 0 0 30 2 *` ends, and it bounds the work for every impossible schedule.
//!
//! `@every d` fires at `after + d`, with no rounding (spec §7.1): sub-second durations are
//! kept, and `@every 0s` is accepted, in which case `next_after(t) == t` and the "strictly
//! after" rule does not hold; that is upstream's behaviour, and callers must not loop on it. The
//! dapr/kit version in our reference index still clamped to 1 ms and truncated to milliseconds;
//! the spec (newer kit, integration test `precision.go`, `@every 0s` in `metrics/success.go`)
//! says there is no rounding, and we follow the spec. A negative duration (`@every -1s`) is
//! rejected: no upstream version we could read defines it (the older kit clamped it to 1 ms,
//! the newer one would step backwards), and an activation before `after` would break the
//! trigger timeline.
//!
//! # Why our own matcher rather than croner
//!
//! croner's grammar is wider (5 and 7 fields, `L`, `W`, `#`, dow 7) and its DST rules are the
//! Vixie/OCPS ones, which differ from upstream's on both transitions (see above). Wrapping it
//! would still need our own parser and would not give upstream's times, so this module parses
//! into bitmasks (as robfig does) and computes the next match on civil time itself (jiff's civil
//! calendar gives month lengths, weekdays and the conversions to and from instants). That takes
//! about a hundred lines, allocates nothing, and is bounded for impossible schedules.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::duration::parse_go_duration;

/// A parsed `schedule` string: a 6-field cron (with seconds), a descriptor, or `@every`.
#[derive(Debug, Clone)]
pub struct Schedule {
    source: String,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Cron { fields: Fields, tz: TimeZone },
    Every(SignedDuration),
}

/// Why a schedule string was rejected; the message follows upstream's parser where the spec
/// gives its text (e.g. `expected exactly 6 fields, found 5: [...]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ScheduleError {
    pub message: String,
}

impl ScheduleError {
    fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }
}

impl Schedule {
    /// Parses `expr`; cron expressions without a `TZ=`/`CRON_TZ=` prefix run in `default_tz`.
    ///
    /// # Errors
    /// [`ScheduleError`] when `expr` is not in the grammar of spec §7.1.
    pub fn parse(expr: &str, default_tz: &TimeZone) -> Result<Schedule, ScheduleError> {
        Ok(Schedule { source: expr.to_owned(), kind: parse_kind(expr, default_tz)? })
    }

    /// The first activation strictly after `after`, or `None` if there is none.
    ///
    /// `None` also when the next activation would lie more than five calendar years ahead, or
    /// beyond the range of [`Timestamp`]. The one exception to "strictly after" is `@every 0s`,
    /// which returns `after` itself (see the module documentation).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        match &self.kind {
            Kind::Every(every) => after.checked_add(*every).ok(),
            Kind::Cron { fields, tz } => fields.next_after(tz, after),
        }
    }

    /// The interval of an `@every` schedule; `None` for cron and descriptors.
    pub fn every(&self) -> Option<SignedDuration> {
        match &self.kind {
            Kind::Every(every) => Some(*every),
            Kind::Cron { .. } => None,
        }
    }

    /// The schedule exactly as the user wrote it.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing

fn parse_kind(expr: &str, default_tz: &TimeZone) -> Result<Kind, ScheduleError> {
    if expr.is_empty() {
        return Err(ScheduleError::new("empty spec string"));
    }

    let mut spec = expr;
    let mut prefixed_tz = None;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let Some(space) = spec.find(char::is_whitespace) else {
            return Err(ScheduleError::new(format!("timezone prefix {spec} is not followed by a schedule")));
        };
        // Both prefixes contain '=' before any whitespace, so `eq < space`.
        let eq = spec.find('=').unwrap_or(0);
        prefixed_tz = Some(load_location(&spec[eq + 1..space], default_tz)?);
        spec = spec[space..].trim();
    }

    if spec.starts_with('@') {
        if spec.starts_with("@every ") && prefixed_tz.is_some() {
            return Err(ScheduleError::new(format!(
                "a timezone prefix cannot be combined with @every: {expr:?}"
            )));
        }
        let tz = prefixed_tz.unwrap_or_else(|| default_tz.clone());
        return parse_descriptor(spec, tz);
    }

    let fields = parse_fields(spec)?;
    Ok(Kind::Cron { fields, tz: prefixed_tz.unwrap_or_else(|| default_tz.clone()) })
}

/// Resolves a zone name the way Go's `time.LoadLocation` does: `""` and `UTC` are UTC, `Local`
/// is the process zone (here: the default zone), anything else must be an IANA name spelled
/// exactly as in the database (Go reads files, so the lookup is case-sensitive).
fn load_location(name: &str, default_tz: &TimeZone) -> Result<TimeZone, ScheduleError> {
    match name {
        "" | "UTC" => return Ok(TimeZone::UTC),
        "Local" => return Ok(default_tz.clone()),
        _ => {}
    }
    match jiff::tz::db().get(name) {
        Ok(tz) if tz.iana_name() == Some(name) => Ok(tz),
        _ => Err(ScheduleError::new(format!("provided bad location {name}: unknown time zone {name}"))),
    }
}

fn parse_descriptor(spec: &str, tz: TimeZone) -> Result<Kind, ScheduleError> {
    let equivalent = match spec {
        "@yearly" | "@annually" => "0 0 0 1 1 *",
        "@monthly" => "0 0 0 1 * *",
        "@weekly" => "0 0 0 * * 0",
        "@daily" | "@midnight" => "0 0 0 * * *",
        "@hourly" => "0 0 * * * *",
        _ => {
            let Some(text) = spec.strip_prefix("@every ") else {
                return Err(ScheduleError::new(format!("unrecognized descriptor: {spec}")));
            };
            let every = parse_go_duration(text)
                .map_err(|err| ScheduleError::new(format!("failed to parse duration {spec}: {err}")))?;
            if every.is_negative() {
                return Err(ScheduleError::new(format!("@every needs a duration of zero or more: {spec:?}")));
            }
            return Ok(Kind::Every(every));
        }
    };
    Ok(Kind::Cron { fields: parse_fields(equivalent)?, tz })
}

/// The bitmasks of a cron expression: bit `n` of a mask is set when value `n` matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fields {
    second: u64,
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    /// Robfig's star bit on day-of-month / day-of-week: see the module documentation.
    dom_star: bool,
    dow_star: bool,
}

struct Bounds {
    min: u64,
    max: u64,
    /// Names for `min`, `min + 1`, ... (months and weekdays only).
    names: &'static [&'static str],
}

const SECONDS: Bounds = Bounds { min: 0, max: 59, names: &[] };
const MINUTES: Bounds = Bounds { min: 0, max: 59, names: &[] };
const HOURS: Bounds = Bounds { min: 0, max: 23, names: &[] };
const DAYS_OF_MONTH: Bounds = Bounds { min: 1, max: 31, names: &[] };
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
};
const DAYS_OF_WEEK: Bounds =
    Bounds { min: 0, max: 6, names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"] };

fn parse_fields(spec: &str) -> Result<Fields, ScheduleError> {
    let parts: Vec<&str> = spec.split_whitespace().collect();
    let [second, minute, hour, dom, month, dow] = parts[..] else {
        return Err(ScheduleError::new(format!(
            "expected exactly 6 fields, found {}: [{}]",
            parts.len(),
            parts.join(" ")
        )));
    };
    let (second, _) = parse_field(second, &SECONDS)?;
    let (minute, _) = parse_field(minute, &MINUTES)?;
    let (hour, _) = parse_field(hour, &HOURS)?;
    let (dom, dom_star) = parse_field(dom, &DAYS_OF_MONTH)?;
    let (month, _) = parse_field(month, &MONTHS)?;
    let (dow, dow_star) = parse_field(dow, &DAYS_OF_WEEK)?;
    Ok(Fields { second, minute, hour, dom, month, dow, dom_star, dow_star })
}

/// One field: its mask, and whether it carries robfig's star bit.
fn parse_field(field: &str, bounds: &Bounds) -> Result<(u64, bool), ScheduleError> {
    let mut mask = 0;
    let mut star = false;
    let mut items = 0;
    for item in field.split(',').filter(|item| !item.is_empty()) {
        let (bits, item_star) = parse_item(item, bounds)?;
        mask |= bits;
        star |= item_star;
        items += 1;
    }
    if items == 0 {
        return Err(ScheduleError::new(format!("field has no values: {field:?}")));
    }
    Ok((mask, star))
}

/// One list item, `(*|?|N|N-M)[/S]`; checks run in upstream's order so that the first
/// message is upstream's.
fn parse_item(item: &str, bounds: &Bounds) -> Result<(u64, bool), ScheduleError> {
    let mut slashes = item.split('/');
    let range = slashes.next().unwrap_or_default();
    let step = slashes.next();
    let mut hyphens = range.split('-');
    let low = hyphens.next().unwrap_or_default();
    let high = hyphens.next();
    let single = high.is_none();

    let (start, mut end, mut star) = if low == "*" || low == "?" {
        if high.is_some() {
            return Err(ScheduleError::new(format!("a range cannot start with {low}: {item:?}")));
        }
        (bounds.min, bounds.max, true)
    } else {
        let start = parse_number_or_name(low, bounds)?;
        let end = match high {
            None => start,
            Some(high) if hyphens.next().is_none() => parse_number_or_name(high, bounds)?,
            Some(_) => {
                return Err(ScheduleError::new(format!("too many hyphens: {item}")));
            }
        };
        (start, end, false)
    };

    let step = match step {
        None => 1,
        Some(_) if slashes.next().is_some() => {
            return Err(ScheduleError::new(format!("too many slashes: {item}")));
        }
        Some(step) => {
            let step = parse_number(step)?;
            if single {
                end = bounds.max;
            }
            if step > 1 {
                star = false;
            }
            step
        }
    };

    if start < bounds.min {
        return Err(ScheduleError::new(format!(
            "beginning of range ({start}) below minimum ({}): {item}",
            bounds.min
        )));
    }
    if end > bounds.max {
        return Err(ScheduleError::new(format!(
            "end of range ({end}) above maximum ({}): {item}",
            bounds.max
        )));
    }
    if start > end {
        return Err(ScheduleError::new(format!(
            "beginning of range ({start}) beyond end of range ({end}): {item}"
        )));
    }
    if step == 0 {
        return Err(ScheduleError::new(format!("step of range should be a positive number: {item}")));
    }

    // All values now lie in 0..=59, so the shifts cannot overflow.
    let step = usize::try_from(step).unwrap_or(usize::MAX);
    let bits = (start..=end).step_by(step).fold(0u64, |bits, value| bits | (1 << value));
    Ok((bits, star))
}

fn parse_number_or_name(text: &str, bounds: &Bounds) -> Result<u64, ScheduleError> {
    let named = bounds.names.iter().zip(bounds.min..).find(|(name, _)| name.eq_ignore_ascii_case(text));
    match named {
        Some((_, value)) => Ok(value),
        None => parse_number(text),
    }
}

/// A non-negative number as upstream's `mustParseInt` reads it (Go's `strconv.Atoi`).
fn parse_number(text: &str) -> Result<u64, ScheduleError> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let atoi_error = |why: &str| {
        ScheduleError::new(format!("failed to parse int from {text}: strconv.Atoi: parsing {text:?}: {why}"))
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(atoi_error("invalid syntax"));
    }
    let magnitude =
        digits.bytes().try_fold(0u64, |acc, b| acc.checked_mul(10)?.checked_add(u64::from(b - b'0')));
    // Atoi yields an i64: up to 2^63 - 1, or down to -2^63.
    let limit = if negative { 1 << 63 } else { (1 << 63) - 1 };
    match magnitude {
        Some(value) if value <= limit => {
            if negative && value > 0 {
                Err(ScheduleError::new(format!("negative number (-{value}) not allowed: {text}")))
            } else {
                Ok(value)
            }
        }
        _ => Err(atoi_error("value out of range")),
    }
}

// ---------------------------------------------------------------------------------------------
// Next activation of a cron schedule

/// A wall-clock reading at whole-second precision: the search's cursor, which may briefly hold
/// a month, day, hour or minute one past the last (see `Civil::carry`). The calendar itself
/// (month lengths, weekdays, seconds since the epoch) is jiff's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

/// Bits 1, 8, 15, 22 and 29: the days of a month that share day 1's weekday.
const SAME_WEEKDAY_AS_FIRST: u64 = (1 << 1) | (1 << 8) | (1 << 15) | (1 << 22) | (1 << 29);

/// Jiff's timestamps end in year 9999 (and begin in -9999).
const LAST_YEAR: i64 = 9999;

impl Fields {
    /// Walks the zone's offset segments forward from `after`. Within one segment the offset is
    /// fixed, so wall-clock order is instant order and the calendar search is plain arithmetic;
    /// a match that falls past the segment's end is searched for again in the next segment,
    /// from that segment's first wall-clock reading. This is what makes gap times vanish and
    /// repeated times fire once per occurrence.
    fn next_after(&self, tz: &TimeZone, after: Timestamp) -> Option<Timestamp> {
        // The first whole second strictly after `after` (flooring, also before 1970).
        let floor = after.as_second() - i64::from(after.subsec_nanosecond() < 0);
        let mut segment_start = floor.checked_add(1)?;
        let mut year_limit = None;
        loop {
            let start = Timestamp::from_second(segment_start).ok()?;
            let offset = tz.to_offset(start);
            let from = Civil::from_datetime(offset.to_datetime(start));
            let year_limit = *year_limit.get_or_insert(from.year + 5);
            let found = self.next_civil(from, year_limit)?;
            let candidate = found.to_epoch_second()? - i64::from(offset.seconds());
            match tz.following(start).next() {
                Some(transition) if candidate >= transition.timestamp().as_second() => {
                    segment_start = transition.timestamp().as_second();
                }
                _ => return Timestamp::from_second(candidate).ok(),
            }
        }
    }

    /// The first wall-clock reading at or after `from` that matches, in a year up to
    /// `year_limit`. From the month down to the second, each unit is settled in turn; when one
    /// carries into the unit above instead, the search starts over from the month. (Five calls
    /// rather than a loop over the units: the unit is then a constant in each, which keeps this
    /// as fast as hand-written code per unit in `benches/next_tick.rs`.)
    fn next_civil(&self, mut at: Civil, year_limit: i64) -> Option<Civil> {
        loop {
            if at.year > year_limit.min(LAST_YEAR) {
                return None;
            }
            let settled = self.settle(&mut at, Unit::Month)
                && self.settle(&mut at, Unit::Day)
                && self.settle(&mut at, Unit::Hour)
                && self.settle(&mut at, Unit::Minute)
                && self.settle(&mut at, Unit::Second);
            if settled {
                return Some(at);
            }
        }
    }

    /// Moves `unit` to its next matching value at or after the current one (the smaller units
    /// to their start when it changes); `false` when it has none left and `at` carried instead.
    fn settle(&self, at: &mut Civil, unit: Unit) -> bool {
        let current = at.get(unit);
        match next_bit(self.mask(unit, at), current) {
            None => {
                *at = at.carry(unit);
                false
            }
            Some(value) => {
                if value != current {
                    *at = at.start_of(unit, value);
                }
                true
            }
        }
    }

    /// The values of `unit` that match within `at`'s month (the days depend on it).
    fn mask(&self, unit: Unit, at: &Civil) -> u64 {
        match unit {
            Unit::Month => self.month,
            Unit::Day => self.days_of(at.year, at.month),
            Unit::Hour => self.hour,
            Unit::Minute => self.minute,
            Unit::Second => self.second,
        }
    }

    /// The days of `month` in `year` that match day-of-month and day-of-week together.
    fn days_of(&self, year: i64, month: u32) -> u64 {
        // Years past jiff's range have no days, so the search runs out of years instead.
        let Some(first) = Civil::first_of(year, month).to_datetime() else { return 0 };
        let length = u32::from(first.days_in_month().unsigned_abs());
        let real_days = ((1u64 << (length + 1)) - 1) & !1;
        let first_weekday = u32::from(first.weekday().to_sunday_zero_offset().unsigned_abs());
        let by_weekday = (0..7)
            .filter(|weekday| self.dow & (1 << weekday) != 0)
            .fold(0, |days, weekday| days | (SAME_WEEKDAY_AS_FIRST << ((weekday + 7 - first_weekday) % 7)));
        let days = if self.dom_star || self.dow_star { self.dom & by_weekday } else { self.dom | by_weekday };
        days & real_days
    }
}

/// The smallest set bit of `mask` at position `from` or above.
fn next_bit(mask: u64, from: u32) -> Option<u32> {
    let above = mask.checked_shr(from)?;
    (above != 0).then(|| from + above.trailing_zeros())
}

/// The units of a [`Civil`] reading below the year: those a cron field matches, settled largest
/// first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Month,
    Day,
    Hour,
    Minute,
    Second,
}

impl Civil {
    fn first_of(year: i64, month: u32) -> Civil {
        Civil { year, month, day: 1, hour: 0, minute: 0, second: 0 }
    }

    fn get(self, unit: Unit) -> u32 {
        match unit {
            Unit::Month => self.month,
            Unit::Day => self.day,
            Unit::Hour => self.hour,
            Unit::Minute => self.minute,
            Unit::Second => self.second,
        }
    }

    /// The reading with `unit` at `value` and every smaller unit at its start.
    fn start_of(self, unit: Unit, value: u32) -> Civil {
        match unit {
            Unit::Month => Civil::first_of(self.year, value),
            Unit::Day => Civil { day: value, hour: 0, minute: 0, second: 0, ..self },
            Unit::Hour => Civil { hour: value, minute: 0, second: 0, ..self },
            Unit::Minute => Civil { minute: value, second: 0, ..self },
            Unit::Second => Civil { second: value, ..self },
        }
    }

    /// The start of the next value of the unit above `unit`: the next year, month, day, hour or
    /// minute. It may be one past the last (month 13, day 32, hour 24, minute 60): no cron field
    /// has a bit for those, so the search carries them on in turn.
    fn carry(self, unit: Unit) -> Civil {
        match unit {
            Unit::Month => Civil::first_of(self.year + 1, 1),
            Unit::Day => self.start_of(Unit::Month, self.month + 1),
            Unit::Hour => self.start_of(Unit::Day, self.day + 1),
            Unit::Minute => self.start_of(Unit::Hour, self.hour + 1),
            Unit::Second => self.start_of(Unit::Minute, self.minute + 1),
        }
    }

    fn from_datetime(at: DateTime) -> Civil {
        let part = |n: i8| u32::from(n.unsigned_abs());
        Civil {
            year: i64::from(at.year()),
            month: part(at.month()),
            day: part(at.day()),
            hour: part(at.hour()),
            minute: part(at.minute()),
            second: part(at.second()),
        }
    }

    /// `None` for a reading that is not a date of jiff's calendar (years -9999 to 9999).
    fn to_datetime(self) -> Option<DateTime> {
        let part = |n: u32| i8::try_from(n).ok();
        let year = i16::try_from(self.year).ok()?;
        let (month, day, hour) = (part(self.month)?, part(self.day)?, part(self.hour)?);
        DateTime::new(year, month, day, hour, part(self.minute)?, part(self.second)?, 0).ok()
    }

    /// Seconds since 1970-01-01T00:00:00 on the same clock; a civil datetime reaches further
    /// than a `Timestamp`, so this also works just past the last representable instant.
    fn to_epoch_second(self) -> Option<i64> {
        Some(self.to_datetime()?.duration_since(DateTime::constant(1970, 1, 1, 0, 0, 0, 0)).as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn zone(name: &str) -> TimeZone {
        jiff::tz::db().get(name).unwrap_or_else(|err| panic!("{name}: {err}"))
    }

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap_or_else(|err| panic!("bad test timestamp {text:?}: {err}"))
    }

    fn schedule_in(expr: &str, tz: &TimeZone) -> Schedule {
        Schedule::parse(expr, tz).unwrap_or_else(|err| panic!("{expr:?} was rejected: {err}"))
    }

    fn schedule(expr: &str) -> Schedule {
        schedule_in(expr, &TimeZone::UTC)
    }

    fn rejection(expr: &str) -> String {
        match Schedule::parse(expr, &TimeZone::UTC) {
            Ok(parsed) => panic!("{expr:?} was accepted as {parsed:?}"),
            Err(err) => err.message,
        }
    }

    /// Checks `next_after` for rows of (schedule, after, expected); `None` means "no activation".
    fn check_next(tz: &TimeZone, rows: &[(&str, &str, Option<&str>)]) {
        for &(expr, after, expected) in rows {
            let got = schedule_in(expr, tz).next_after(ts(after));
            assert_eq!(got, expected.map(ts), "{expr:?} after {after}: expected {expected:?}");
        }
    }

    // ---- spec §7.1: fields ------------------------------------------------------------------

    #[test]
    fn spec_7_1_rejects_five_fields_with_upstream_message() {
        assert_eq!(rejection("*/5 * * * *"), "expected exactly 6 fields, found 5: [*/5 * * * *]");
    }

    #[test]
    fn spec_7_1_rejects_seven_fields_and_no_fields() {
        assert_eq!(rejection("0 0 0 * * * 2026"), "expected exactly 6 fields, found 7: [0 0 0 * * * 2026]");
        assert_eq!(rejection("   "), "expected exactly 6 fields, found 0: []");
        assert_eq!(rejection(""), "empty spec string");
    }

    #[test]
    fn spec_7_1_accepts_every_field_form() {
        for expr in [
            "* * * * * *",
            "? ? ? ? ? ?",
            "0 0 0 1 1 0",
            "59 59 23 31 12 6",
            "0-59 0-59 0-23 1-31 1-12 0-6",
            "*/5 */10 */2 */3 */4 */2",
            "5/15 5/15 1/2 2/3 2/2 1/2",
            "10-40/5 10-40/5 1-20/3 1-31/7 1-12/5 1-5/2",
            "0,15,30,45 0,30 8,12-14,20 1,15 1,6-8 0,6",
            "0 0 0 * jan-mar sun-sat",
            "0 0 0 * JAN,Feb,mAr SUN,Mon,tUE",
            "0 0 0 * dec mon/2",
            "08 05 09 04 Nov ?",
            "+5 0 0 * * *",
            "1,,2 0 0 * * *",
            "1, 0 0 * * *",
            "*/1 * * * * *",
            "?/5 * * * * *",
            "0\t0\t0 * * *",
            "  0  0   0 * * *  ",
        ] {
            schedule(expr);
        }
    }

    #[test]
    fn spec_7_1_field_errors_name_the_input() {
        for (expr, message) in [
            ("60 * * * * *", "end of range (60) above maximum (59): 60"),
            ("* 60 * * * *", "end of range (60) above maximum (59): 60"),
            ("* * 24 * * *", "end of range (24) above maximum (23): 24"),
            ("* * * 0 * *", "beginning of range (0) below minimum (1): 0"),
            ("* * * 32 * *", "end of range (32) above maximum (31): 32"),
            ("* * * * 0 *", "beginning of range (0) below minimum (1): 0"),
            ("* * * * 13 *", "end of range (13) above maximum (12): 13"),
            ("* * * * * 7", "end of range (7) above maximum (6): 7"),
            ("* * * * * 0-7", "end of range (7) above maximum (6): 0-7"),
            ("5-3 * * * * *", "beginning of range (5) beyond end of range (3): 5-3"),
            ("70/5 * * * * *", "beginning of range (70) beyond end of range (59): 70/5"),
            ("*/0 * * * * *", "step of range should be a positive number: */0"),
            ("1-5/0 * * * * *", "step of range should be a positive number: 1-5/0"),
            ("1--5 * * * * *", "too many hyphens: 1--5"),
            ("*//2 * * * * *", "too many slashes: *//2"),
            // Upstream names the step alone here.
            ("*/-2 * * * * *", "negative number (-2) not allowed: -2"),
            ("x * * * * *", "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax"),
            ("-5 * * * * *", "failed to parse int from : strconv.Atoi: parsing \"\": invalid syntax"),
            ("* * * * * mon-", "failed to parse int from : strconv.Atoi: parsing \"\": invalid syntax"),
            (
                "99999999999999999999 * * * * *",
                "failed to parse int from 99999999999999999999: strconv.Atoi: parsing \
                 \"99999999999999999999\": value out of range",
            ),
            (
                "0 0 0 * january *",
                "failed to parse int from january: strconv.Atoi: parsing \"january\": \
                 invalid syntax",
            ),
            ("0 0 0 mon * *", "failed to parse int from mon: strconv.Atoi: parsing \"mon\": invalid syntax"),
            // Departures from upstream (see the module doc): both are read as nonsense there.
            ("*-5 * * * * *", "a range cannot start with *: \"*-5\""),
            ("? * * * * ?-3", "a range cannot start with ?: \"?-3\""),
            ("0 0 0 ,, * *", "field has no values: \",,\""),
        ] {
            assert_eq!(rejection(expr), message, "{expr:?}");
        }
    }

    #[test]
    fn spec_7_1_rejects_forms_outside_the_grammar() {
        for expr in [
            "R5/PT1S",
            "PT1H",
            "5m",
            "0 0 0 L * *",
            "0 0 0 15W * *",
            "0 0 0 LW * *",
            "0 0 0 ? * 5#3",
            "0 0 0 ? * 5L",
            "0 0 0 ? * 7",
            "0 0 0 1 1 * 2026",
            "0 0 * * *",
            "@DAILY",
            "@every",
            "@every 5",
            "@every 1d",
            " @daily",
        ] {
            assert!(Schedule::parse(expr, &TimeZone::UTC).is_err(), "{expr:?} was accepted");
        }
    }

    #[test]
    fn spec_7_1_names_are_case_insensitive() {
        let after = ts("2026-01-01T00:00:00Z");
        let by_name = schedule("0 0 12 * FEB-apr Mon,wed");
        let by_number = schedule("0 0 12 * 2-4 1,3");
        assert_eq!(by_name.next_after(after), by_number.next_after(after));
        assert_eq!(
            by_name.next_after(after),
            Some(ts("2026-02-02T12:00:00Z")),
            "first Monday of February 2026"
        );
    }

    #[test]
    fn spec_7_1_as_str_is_the_input_verbatim() {
        for expr in ["  0 0 0 * * *  ", "TZ=Asia/Tokyo  @daily", "@every 1h30m"] {
            assert_eq!(schedule(expr).as_str(), expr);
        }
    }

    // ---- spec §7.1: descriptors -------------------------------------------------------------

    #[test]
    fn spec_7_1_descriptors_fire_like_their_cron_expressions() {
        for (descriptor, cron) in [
            ("@yearly", "0 0 0 1 1 *"),
            ("@annually", "0 0 0 1 1 *"),
            ("@monthly", "0 0 0 1 * *"),
            ("@weekly", "0 0 0 * * 0"),
            ("@daily", "0 0 0 * * *"),
            ("@midnight", "0 0 0 * * *"),
            ("@hourly", "0 0 * * * *"),
        ] {
            let (descriptor, cron) = (schedule(descriptor), schedule(cron));
            let mut at = ts("2026-02-17T13:14:15.5Z");
            for _ in 0..5 {
                let next = descriptor.next_after(at);
                assert_eq!(next, cron.next_after(at), "{descriptor:?}");
                at = next.unwrap_or_else(|| panic!("{descriptor:?} stopped"));
            }
        }
    }

    #[test]
    fn spec_7_1_descriptor_times() {
        check_next(
            &TimeZone::UTC,
            &[
                ("@yearly", "2026-05-01T00:00:00Z", Some("2027-01-01T00:00:00Z")),
                ("@monthly", "2026-05-01T00:00:00Z", Some("2026-06-01T00:00:00Z")),
                // 2026-05-01 is a Friday.
                ("@weekly", "2026-05-01T00:00:00Z", Some("2026-05-03T00:00:00Z")),
                ("@daily", "2026-05-01T23:59:59Z", Some("2026-05-02T00:00:00Z")),
                ("@hourly", "2026-05-01T10:00:00Z", Some("2026-05-01T11:00:00Z")),
            ],
        );
    }

    #[test]
    fn spec_7_1_unknown_descriptor_is_rejected_with_upstream_message() {
        assert_eq!(rejection("@foo"), "unrecognized descriptor: @foo");
        assert_eq!(rejection("@reboot"), "unrecognized descriptor: @reboot");
        assert_eq!(rejection("@every"), "unrecognized descriptor: @every");
        assert_eq!(rejection("@daily "), "unrecognized descriptor: @daily ");
    }

    // ---- spec §7.1: @every ------------------------------------------------------------------

    #[test]
    fn spec_7_1_every_adds_the_duration_without_rounding() {
        for (expr, after, expected) in [
            ("@every 1ms", "2026-01-01T00:00:00.000000123Z", "2026-01-01T00:00:00.001000123Z"),
            ("@every 1h30m", "2026-01-01T23:00:00Z", "2026-01-02T00:30:00Z"),
            ("@every 1.5s", "2026-01-01T00:00:00.75Z", "2026-01-01T00:00:02.25Z"),
            ("@every 10s", "2026-01-01T00:00:00Z", "2026-01-01T00:00:10Z"),
            ("@every 100ns", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00.0000001Z"),
            ("@every 1h", "2026-03-08T06:30:00Z", "2026-03-08T07:30:00Z"),
        ] {
            assert_eq!(schedule(expr).next_after(ts(after)), Some(ts(expected)), "{expr}");
        }
    }

    #[test]
    fn spec_7_1_every_zero_returns_the_same_instant() {
        // Upstream behaviour: the only schedule for which "strictly after" does not hold.
        let at = ts("2026-01-01T00:00:00.5Z");
        assert_eq!(schedule("@every 0s").next_after(at), Some(at));
        assert_eq!(schedule("@every 0").next_after(at), Some(at));
    }

    #[test]
    fn spec_7_1_every_rejects_negative_and_malformed_durations() {
        assert_eq!(rejection("@every -1s"), "@every needs a duration of zero or more: \"@every -1s\"");
        assert_eq!(
            rejection("@every 1x"),
            "failed to parse duration @every 1x: time: unknown unit \"x\" in duration \"1x\""
        );
        assert!(rejection("@every  1s").starts_with("failed to parse duration @every  1s: "));
    }

    #[test]
    fn spec_7_1_every_overflow_gives_none() {
        assert_eq!(schedule("@every 1h").next_after(Timestamp::MAX), None);
    }

    // ---- spec §7.1: time zones --------------------------------------------------------------

    #[test]
    fn spec_7_1_timezone_prefix_sets_the_zone() {
        let after = ts("2025-12-31T12:00:00Z");
        let nine_in_tokyo = Some(ts("2026-01-01T00:00:00Z"));
        assert_eq!(schedule("TZ=Asia/Tokyo 0 0 9 * * *").next_after(after), nine_in_tokyo);
        assert_eq!(schedule("CRON_TZ=Asia/Tokyo 0 0 9 * * *").next_after(after), nine_in_tokyo);
        assert_eq!(schedule("TZ=Asia/Tokyo \t 0 0 9 * * *").next_after(after), nine_in_tokyo);
        assert_eq!(schedule("TZ=Asia/Tokyo @daily").next_after(after), Some(ts("2025-12-31T15:00:00Z")));
        // Without a prefix the default zone applies; a prefix overrides it.
        let tokyo = zone("Asia/Tokyo");
        assert_eq!(schedule_in("0 0 9 * * *", &tokyo).next_after(after), nine_in_tokyo);
        assert_eq!(
            schedule_in("TZ=UTC 0 0 9 * * *", &tokyo).next_after(after),
            Some(ts("2026-01-01T09:00:00Z"))
        );
    }

    #[test]
    fn spec_7_1_timezone_names_follow_go_load_location() {
        let after = ts("2025-12-31T12:00:00Z");
        let tokyo = zone("Asia/Tokyo");
        // "" is UTC and "Local" is the process zone in Go; here the default zone.
        assert_eq!(
            schedule_in("TZ= 0 0 9 * * *", &tokyo).next_after(after),
            Some(ts("2026-01-01T09:00:00Z"))
        );
        assert_eq!(
            schedule_in("TZ=Local 0 0 9 * * *", &tokyo).next_after(after),
            Some(ts("2026-01-01T00:00:00Z"))
        );
        // Links and legacy names are files in the zone database, so Go loads them too.
        for name in ["US/Eastern", "Etc/GMT+5", "GMT", "EST5EDT", "Europe/Kyiv"] {
            let parsed = Schedule::parse(&format!("TZ={name} 0 0 9 * * *"), &TimeZone::UTC);
            assert!(parsed.is_ok(), "{name}: {parsed:?}");
        }
    }

    #[test]
    fn spec_7_1_unknown_zone_is_rejected() {
        assert_eq!(
            rejection("CRON_TZ=Not/AZone 0 0 9 * * *"),
            "provided bad location Not/AZone: unknown time zone Not/AZone"
        );
        // Go reads zone files, so the name is case-sensitive.
        assert_eq!(
            rejection("TZ=asia/tokyo 0 0 9 * * *"),
            "provided bad location asia/tokyo: unknown time zone asia/tokyo"
        );
        assert_eq!(rejection("TZ=Asia/Tokyo"), "timezone prefix TZ=Asia/Tokyo is not followed by a schedule");
        assert_eq!(rejection("TZ=Asia/Tokyo "), "expected exactly 6 fields, found 0: []");
    }

    #[test]
    fn spec_7_1_timezone_prefix_with_every_is_rejected() {
        assert_eq!(
            rejection("TZ=UTC @every 1s"),
            "a timezone prefix cannot be combined with @every: \"TZ=UTC @every 1s\""
        );
        assert!(Schedule::parse("CRON_TZ=Asia/Tokyo @every 1h", &TimeZone::UTC).is_err());
    }

    // ---- spec §7.4 / upstream TestNext: next_after -------------------------------------------

    #[test]
    fn next_after_ranges_steps_and_lists() {
        // Upstream `cron/spec_test.go` TestNext, in UTC.
        check_next(
            &TimeZone::UTC,
            &[
                ("0 0/15 * * * *", "2012-07-09T14:45:00Z", Some("2012-07-09T15:00:00Z")),
                ("0 0/15 * * * *", "2012-07-09T14:59:00Z", Some("2012-07-09T15:00:00Z")),
                ("0 0/15 * * * *", "2012-07-09T14:59:59Z", Some("2012-07-09T15:00:00Z")),
                ("0 20-35/15 * * * *", "2012-07-09T15:45:00Z", Some("2012-07-09T16:20:00Z")),
                ("0 */15 * * * *", "2012-07-09T23:46:00Z", Some("2012-07-10T00:00:00Z")),
                ("0 20-35/15 * * * *", "2012-07-09T23:45:00Z", Some("2012-07-10T00:20:00Z")),
                ("15/35 20-35/15 * * * *", "2012-07-09T23:35:51Z", Some("2012-07-10T00:20:15Z")),
                ("15/35 20-35/15 1/2 * * *", "2012-07-09T23:35:51Z", Some("2012-07-10T01:20:15Z")),
                ("15/35 20-35/15 10-12 * * *", "2012-07-09T23:35:51Z", Some("2012-07-10T10:20:15Z")),
                ("15/35 20-35/15 1/2 */2 * *", "2012-07-09T23:35:51Z", Some("2012-07-11T01:20:15Z")),
                ("15/35 20-35/15 * 9-20 * *", "2012-07-09T23:35:51Z", Some("2012-07-10T00:20:15Z")),
                ("15/35 20-35/15 * 9-20 Jul *", "2012-07-09T23:35:51Z", Some("2012-07-10T00:20:15Z")),
                ("0 0 0 9 Apr-Oct ?", "2012-07-09T23:35:00Z", Some("2012-08-09T00:00:00Z")),
                ("0 0 0 */5 Apr,Aug,Oct Mon", "2012-07-09T23:35:00Z", Some("2012-08-01T00:00:00Z")),
                ("0 0 0 */5 Oct Mon", "2012-07-09T23:35:00Z", Some("2012-10-01T00:00:00Z")),
                ("0 0 0 * Feb Mon", "2012-07-09T23:35:00Z", Some("2013-02-04T00:00:00Z")),
                ("0 0 0 * Feb Mon/2", "2012-07-09T23:35:00Z", Some("2013-02-01T00:00:00Z")),
                ("0 * * * * *", "2012-12-31T23:59:45Z", Some("2013-01-01T00:00:00Z")),
                ("0,30 0 0 1,15 * *", "2026-01-01T00:00:00Z", Some("2026-01-01T00:00:30Z")),
                ("0,30 0 0 1,15 * *", "2026-01-01T00:00:30Z", Some("2026-01-15T00:00:00Z")),
                ("0 0 0 31 * *", "2026-04-01T00:00:00Z", Some("2026-05-31T00:00:00Z")),
            ],
        );
    }

    #[test]
    fn next_after_is_strictly_after_at_whole_seconds() {
        check_next(
            &TimeZone::UTC,
            &[
                ("* * * * * *", "2026-01-01T12:00:00Z", Some("2026-01-01T12:00:01Z")),
                ("* * * * * *", "2026-01-01T12:00:00.999999999Z", Some("2026-01-01T12:00:01Z")),
                ("* * * * * *", "1969-12-31T23:59:59.5Z", Some("1970-01-01T00:00:00Z")),
                ("0 0 0 * * *", "2026-01-01T00:00:00Z", Some("2026-01-02T00:00:00Z")),
                ("0 0 0 * * *", "2025-12-31T23:59:59.999Z", Some("2026-01-01T00:00:00Z")),
            ],
        );
    }

    #[test]
    fn next_after_at_the_ends_of_time_gives_none_or_a_time_without_panicking() {
        let every_second = schedule("* * * * * *");
        assert_eq!(every_second.next_after(Timestamp::MAX), None);
        assert!(every_second.next_after(Timestamp::MIN).is_some());
        let new_york = schedule("TZ=America/New_York 0 0 0 * * *");
        assert_eq!(new_york.next_after(Timestamp::MAX), None);
        assert!(new_york.next_after(Timestamp::MIN).is_some());
    }

    #[test]
    fn spec_7_1_fields_split_on_unicode_whitespace_like_go() {
        // Go's strings.Fields splits on unicode.IsSpace, which includes U+00A0 and U+0085.
        let after = ts("2026-01-01T00:00:00Z");
        let expected = Some(ts("2026-01-02T00:00:00Z"));
        for expr in ["0\u{a0}0 0 * * *", "0\u{85}0\u{2003}0 * * *", "\n0 0 0 * * *\n"] {
            assert_eq!(schedule(expr).next_after(after), expected, "{expr:?}");
        }
    }

    #[test]
    fn next_after_leap_days_and_impossible_dates() {
        check_next(
            &TimeZone::UTC,
            &[
                ("0 0 0 29 Feb ?", "2012-07-09T23:35:00Z", Some("2016-02-29T00:00:00Z")),
                ("0 0 0 29 2 *", "2026-03-01T00:00:00Z", Some("2028-02-29T00:00:00Z")),
                ("0 0 0 29 2 *", "2096-02-29T00:00:00Z", None), // 2100 is no leap year
                ("0 0 0 28 2 *", "2026-03-01T00:00:00Z", Some("2027-02-28T00:00:00Z")),
                ("0 0 0 30 Feb ?", "2012-07-09T23:35:00Z", None),
                ("0 0 0 31 Apr ?", "2012-07-09T23:35:00Z", None),
                ("0 0 0 31 2,4,6,9,11 *", "2026-01-01T00:00:00Z", None),
                ("0 0 0 1 1 *", "9999-06-01T00:00:00Z", None),
            ],
        );
    }

    #[test]
    fn next_after_gives_up_after_five_years_like_robfig() {
        // Upstream's yearLimit: a match in the fifth following year is found, later ones not.
        check_next(
            &TimeZone::UTC,
            &[
                ("0 0 0 29 2 *", "2097-01-01T00:00:00Z", None),
                ("0 0 0 29 2 *", "2099-03-01T00:00:00Z", Some("2104-02-29T00:00:00Z")),
            ],
        );
    }

    #[test]
    fn next_after_dom_dow_or_rule() {
        // Upstream TestActivation: does the schedule fire at `at`?
        for (expr, at, fires) in [
            ("0 * * 1,15 * Sun", "2012-07-15T00:00:00Z", true),
            ("0 * * 1,15 * Sun", "2012-06-15T00:00:00Z", true),
            ("0 * * 1,15 * Sun", "2012-08-01T00:00:00Z", true),
            ("0 * * */10 * Sun", "2012-07-15T00:00:00Z", true),
            ("0 * * * * Mon", "2012-07-15T00:00:00Z", false),
            ("0 * * 1,15 * *", "2012-07-09T00:00:00Z", false),
            ("0 * * 1,15 * *", "2012-07-15T00:00:00Z", true),
            ("0 * * */2 * Sun", "2012-07-15T00:00:00Z", true),
            ("0 30 08 ? Jul Sun", "2012-07-15T08:30:00Z", true),
            ("0 30 08 15 Jul ?", "2012-07-15T08:30:00Z", true),
            ("0 30 08 ? Jul Sun", "2012-07-16T08:30:00Z", false),
            ("0 30 08 15 Jul ?", "2012-07-16T08:30:00Z", false),
            // A stepped star is restricted: odd days OR Mondays (Jul 16 2012 is a Monday).
            ("0 0 0 */2 * Mon", "2012-07-16T00:00:00Z", true),
            ("0 0 0 ?/2 * Mon", "2012-07-16T00:00:00Z", true),
            ("0 0 0 */2 * Mon", "2012-07-18T00:00:00Z", false),
            // `*/1` and a list holding `*` keep the star: both must match.
            ("0 0 0 */1 * Mon", "2012-07-16T00:00:00Z", true),
            ("0 0 0 */1 * Mon", "2012-07-17T00:00:00Z", false),
            ("0 0 0 1,* * Mon", "2012-07-17T00:00:00Z", false),
            // `1-31` is restricted, so it matches every day whatever the weekday.
            ("0 0 0 1-31 * Mon", "2012-07-17T00:00:00Z", true),
            ("0 0 0 15 * */1", "2012-07-15T00:00:00Z", true),
            ("0 0 0 15 * */1", "2012-07-16T00:00:00Z", false),
        ] {
            let at = ts(at);
            let fired = schedule(expr).next_after(at - SignedDuration::from_secs(1)) == Some(at);
            assert_eq!(fired, fires, "{expr:?} at {at}");
        }
    }

    // ---- DST: upstream TestNext rows and the 2026 transitions ------------------------------

    #[test]
    fn dst_spring_forward_skips_the_missing_hour() {
        let new_york = zone("America/New_York");
        check_next(
            &new_york,
            &[
                // 2026-03-08 02:00 EST -> 03:00 EDT: 02:30 does not exist that day.
                ("0 30 2 * * *", "2026-03-07T01:00:00-05:00", Some("2026-03-07T02:30:00-05:00")),
                ("0 30 2 * * *", "2026-03-07T02:30:00-05:00", Some("2026-03-09T02:30:00-04:00")),
                ("0 0 * * * *", "2026-03-08T01:00:00-05:00", Some("2026-03-08T03:00:00-04:00")),
                ("0 30 * * * *", "2026-03-08T01:30:00-05:00", Some("2026-03-08T03:30:00-04:00")),
                ("* * * * * *", "2026-03-08T01:59:59-05:00", Some("2026-03-08T03:00:00-04:00")),
                ("0 0 3 * * *", "2026-03-08T00:00:00-05:00", Some("2026-03-08T03:00:00-04:00")),
                ("@daily", "2026-03-08T00:00:00-05:00", Some("2026-03-09T00:00:00-04:00")),
                // Upstream rows (2012-03-11).
                ("0 30 2 11 Mar ?", "2012-03-11T00:00:00-05:00", Some("2013-03-11T02:30:00-04:00")),
                ("0 0 * * * ?", "2012-03-11T00:00:00-05:00", Some("2012-03-11T01:00:00-05:00")),
                ("0 0 * * * ?", "2012-03-11T01:00:00-05:00", Some("2012-03-11T03:00:00-04:00")),
                ("0 0 * * * ?", "2012-03-11T03:00:00-04:00", Some("2012-03-11T04:00:00-04:00")),
                ("0 0 1 * * ?", "2012-03-11T01:00:00-05:00", Some("2012-03-12T01:00:00-04:00")),
                ("0 0 2 * * ?", "2012-03-11T00:00:00-05:00", Some("2012-03-12T02:00:00-04:00")),
            ],
        );
        let expr = "TZ=America/New_York 0 30 2 * * *";
        assert_eq!(
            schedule(expr).next_after(ts("2026-03-07T12:00:00Z")),
            Some(ts("2026-03-09T02:30:00-04:00"))
        );
    }

    #[test]
    fn dst_fall_back_fires_once_per_occurrence_of_the_repeated_hour() {
        let new_york = zone("America/New_York");
        check_next(
            &new_york,
            &[
                // 2026-11-01 02:00 EDT -> 01:00 EST: 01:00-01:59 happens twice.
                ("0 30 1 * * *", "2026-11-01T00:00:00-04:00", Some("2026-11-01T01:30:00-04:00")),
                ("0 30 1 * * *", "2026-11-01T01:30:00-04:00", Some("2026-11-01T01:30:00-05:00")),
                ("0 30 1 * * *", "2026-11-01T01:45:00-04:00", Some("2026-11-01T01:30:00-05:00")),
                ("0 30 1 * * *", "2026-11-01T01:30:00-05:00", Some("2026-11-02T01:30:00-05:00")),
                ("0 0 * * * *", "2026-11-01T00:00:00-04:00", Some("2026-11-01T01:00:00-04:00")),
                ("0 0 * * * *", "2026-11-01T01:00:00-04:00", Some("2026-11-01T01:00:00-05:00")),
                ("0 0 * * * *", "2026-11-01T01:00:00-05:00", Some("2026-11-01T02:00:00-05:00")),
                ("@hourly", "2026-11-01T01:00:00-04:00", Some("2026-11-01T01:00:00-05:00")),
                ("* * * * * *", "2026-11-01T01:59:59-04:00", Some("2026-11-01T01:00:00-05:00")),
                ("0 0 2 * * *", "2026-11-01T00:00:00-04:00", Some("2026-11-01T02:00:00-05:00")),
                ("0 0 3 * * *", "2026-11-01T00:00:00-04:00", Some("2026-11-01T03:00:00-05:00")),
                // Upstream rows (2012-11-04).
                ("0 30 2 04 Nov ?", "2012-11-04T00:00:00-04:00", Some("2012-11-04T02:30:00-05:00")),
                ("0 30 1 04 Nov ?", "2012-11-04T01:45:00-04:00", Some("2012-11-04T01:30:00-05:00")),
                ("0 0 1 * * ?", "2012-11-04T00:00:00-04:00", Some("2012-11-04T01:00:00-04:00")),
                ("0 0 1 * * ?", "2012-11-04T01:00:00-04:00", Some("2012-11-04T01:00:00-05:00")),
                ("0 0 1 * * ?", "2012-11-04T01:00:00-05:00", Some("2012-11-05T01:00:00-05:00")),
                ("0 0 2 * * ?", "2012-11-04T02:00:00-05:00", Some("2012-11-05T02:00:00-05:00")),
                ("0 0 3 3 * ?", "2012-11-04T00:00:00-04:00", Some("2012-12-03T03:00:00-05:00")),
            ],
        );
    }

    #[test]
    fn dst_midnight_gap_and_half_hour_shifts() {
        // Upstream rows for robfig/cron#157: Sao Paulo skipped midnight.
        check_next(
            &zone("America/Sao_Paulo"),
            &[
                ("0 0 9 10 * ?", "2018-10-17T05:00:00-04:00", Some("2018-11-10T06:00:00-05:00")),
                ("0 0 9 22 * ?", "2018-02-14T05:00:00-05:00", Some("2018-02-22T07:00:00-05:00")),
                // 2018-11-04 00:00 did not exist; Brazil dropped DST in 2019.
                ("0 0 0 4 11 *", "2018-11-03T12:00:00-03:00", Some("2019-11-04T00:00:00-03:00")),
                ("0 0 0 * * *", "2018-11-03T12:00:00-03:00", Some("2018-11-05T00:00:00-02:00")),
            ],
        );
        // Lord Howe moves by 30 minutes (02:00 +10:30 -> 02:30 +11:00 on 2026-10-04).
        check_next(
            &zone("Australia/Lord_Howe"),
            &[
                ("0 15 2 * * *", "2026-10-03T12:00:00+10:30", Some("2026-10-05T02:15:00+11:00")),
                ("0 45 2 * * *", "2026-10-03T12:00:00+10:30", Some("2026-10-04T02:45:00+11:00")),
            ],
        );
    }

    #[test]
    fn schedule_is_send_sync_and_clone() {
        fn check<T: Send + Sync + Clone + std::fmt::Debug>() {}
        check::<Schedule>();
        check::<ScheduleError>();
    }

    #[test]
    fn civil_readings_convert_through_jiff() {
        let at = Civil { year: 2000, month: 2, day: 29, hour: 23, minute: 59, second: 58 };
        assert_eq!(at.to_epoch_second(), Some(951_868_798));
        assert_eq!(Civil::from_datetime(at.to_datetime().unwrap()), at);
        assert_eq!(Civil { day: 30, ..at }.to_datetime(), None);
        assert_eq!(Civil { year: 10_000, ..at }.to_epoch_second(), None);
        // the last civil second is past jiff's last instant, and still has a number
        let last = Civil { year: 9999, month: 12, day: 31, hour: 23, minute: 59, second: 59 };
        assert_eq!(last.to_epoch_second(), Some(253_402_300_799));
    }

    // ---- proptest ---------------------------------------------------------------------------

    fn item(min: u64, max: u64) -> impl Strategy<Value = String> {
        let value = min..=max;
        prop_oneof![
            Just("*".to_owned()),
            Just("?".to_owned()),
            value.clone().prop_map(|n| n.to_string()),
            (value.clone(), value.clone()).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
            (1..=max + 1).prop_map(|step| format!("*/{step}")),
            (value.clone(), 1..=max + 1).prop_map(|(n, step)| format!("{n}/{step}")),
            (value.clone(), value, 1..=max + 1).prop_map(|(a, b, step)| format!(
                "{}-{}/{step}",
                a.min(b),
                a.max(b)
            )),
        ]
    }

    fn field(min: u64, max: u64) -> impl Strategy<Value = String> {
        prop::collection::vec(item(min, max), 1..=3).prop_map(|items| items.join(","))
    }

    fn valid_cron() -> impl Strategy<Value = String> {
        (field(0, 59), field(0, 59), field(0, 23), field(1, 31), field(1, 12), field(0, 6))
            .prop_map(|(s, m, h, dom, month, dow)| format!("{s} {m} {h} {dom} {month} {dow}"))
    }

    /// A valid cron that fires every day: its next fire is less than a day and an hour away.
    fn daily_cron() -> impl Strategy<Value = String> {
        (field(0, 59), field(0, 59), field(0, 23)).prop_map(|(s, m, h)| format!("{s} {m} {h} * * *"))
    }

    fn zone_name() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "UTC",
            "America/New_York",
            "America/Sao_Paulo",
            "Australia/Lord_Howe",
            "Asia/Kolkata",
            "Europe/London",
        ])
    }

    /// Seconds from 1900 to 2200.
    fn instant() -> impl Strategy<Value = Timestamp> {
        (-2_208_988_800i64..7_258_118_400, 0..1_000_000_000i32)
            .prop_map(|(s, ns)| Timestamp::new(s, ns).unwrap_or(Timestamp::UNIX_EPOCH))
    }

    /// Does the wall clock at `at` match the fields? Computed with jiff, independently.
    fn matches(fields: &Fields, tz: &TimeZone, at: Timestamp) -> bool {
        let zoned = at.to_zoned(tz.clone());
        let bit = |mask: u64, value: i8| mask & (1 << value) != 0;
        let dom = bit(fields.dom, zoned.day());
        let dow = bit(fields.dow, zoned.weekday().to_sunday_zero_offset());
        let day = if fields.dom_star || fields.dow_star { dom && dow } else { dom || dow };
        at.subsec_nanosecond() == 0
            && bit(fields.second, zoned.second())
            && bit(fields.minute, zoned.minute())
            && bit(fields.hour, zoned.hour())
            && bit(fields.month, zoned.month())
            && day
    }

    /// The whole second at or before `at` (also before 1970, where jiff's parts are negative).
    fn floor_second(at: Timestamp) -> i64 {
        at.as_second() - i64::from(at.subsec_nanosecond() < 0)
    }

    /// How far the brute-force comparison scans, in seconds: far enough for a daily cron to
    /// fire, across a change of offset.
    const SCAN_SECONDS: i64 = 26 * 3600;

    /// The first whole second after `after`, at most [`SCAN_SECONDS`] past its floor, whose wall
    /// clock matches: found by trying every second in turn.
    fn scan(fields: &Fields, tz: &TimeZone, after: Timestamp) -> Option<Timestamp> {
        let floor = floor_second(after);
        (floor + 1..=floor + SCAN_SECONDS)
            .map(|second| Timestamp::from_second(second).unwrap())
            .find(|&at| matches(fields, tz, at))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(192))]

        /// Any valid cron, in zones with and without DST, asked from anywhere, from up to three
        /// hours before one of its fires or before a change of the zone's offset: the
        /// answer is the first matching second of a scan, or lies past the scanned span when
        /// the scan finds none.
        #[test]
        fn valid_crons_match_a_second_by_second_scan(
            expr in prop_oneof![valid_cron(), daily_cron()],
            name in zone_name(),
            anchor in instant(),
            start in 0..3u8,
            back in 1..=3 * 3600i64,
            nanos in 0..1_000_000_000i64,
        ) {
            let tz = zone(name);
            let parsed = schedule_in(&expr, &tz);
            let Kind::Cron { fields, .. } = &parsed.kind else {
                return Err(TestCaseError::fail("not a cron"));
            };
            let near = match start {
                0 => None,
                1 => parsed.next_after(anchor),
                _ => tz.following(anchor).next().map(|transition| transition.timestamp()),
            };
            let after = near.map_or(anchor, |at| {
                Timestamp::from_second(at.as_second() - back).unwrap() + SignedDuration::from_nanos(nanos)
            });
            let got = parsed.next_after(after);
            match scan(fields, &tz, after) {
                Some(scanned) => {
                    prop_assert_eq!(got, Some(scanned), "{:?} in {} after {}", expr, name, after);
                }
                None => {
                    let end = floor_second(after) + SCAN_SECONDS;
                    prop_assert!(
                        got.is_none_or(|at| at.as_second() > end),
                        "{expr:?} in {name} after {after}: {got:?}, the scan found nothing"
                    );
                }
            }
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_any_string(expr in any::<String>()) {
            let _ = Schedule::parse(&expr, &TimeZone::UTC);
        }

        #[test]
        fn parse_never_panics_on_cron_like_strings(
            prefix in prop::sample::select(vec!["", "TZ=UTC ", "CRON_TZ=Asia/Tokyo ", "TZ=", "@"]),
            fields in prop::collection::vec("[0-9a-zA-Z*?,/+-]{0,7}", 0..8),
        ) {
            let expr = format!("{prefix}{}", fields.join(" "));
            if let Ok(parsed) = Schedule::parse(&expr, &TimeZone::UTC) {
                let _ = parsed.next_after(Timestamp::UNIX_EPOCH);
            }
        }

        #[test]
        fn parse_never_panics_on_every_strings(text in "[0-9.+-]{0,6}(ns|us|ms|s|m|h|d)?[0-9]{0,3}") {
            let _ = Schedule::parse(&format!("@every {text}"), &TimeZone::UTC);
        }

        #[test]
        fn valid_crons_fire_strictly_later_on_matching_whole_seconds(
            expr in valid_cron(),
            name in zone_name(),
            after in instant(),
        ) {
            let tz = zone(name);
            let parsed = Schedule::parse(&expr, &tz);
            prop_assert!(parsed.is_ok(), "{expr:?}: {parsed:?}");
            let parsed = parsed.unwrap();
            let Kind::Cron { fields, .. } = &parsed.kind else {
                return Err(TestCaseError::fail("not a cron"));
            };
            if let Some(next) = parsed.next_after(after) {
                prop_assert!(next > after);
                prop_assert!(matches(fields, &tz, next), "{expr:?} fired at {next}");
                // Nothing fires in between: asking from just before `next` gives `next` again.
                let just_before = next - SignedDuration::from_secs(1);
                if just_before >= after {
                    prop_assert_eq!(parsed.next_after(just_before), Some(next));
                }
                if let Some(following) = parsed.next_after(next) {
                    prop_assert!(following > next);
                }
            }
        }

        #[test]
        fn next_after_is_monotone(
            expr in valid_cron(),
            name in zone_name(),
            a in instant(),
            b in instant(),
        ) {
            let parsed = schedule_in(&expr, &zone(name));
            let (early, late) = (a.min(b), a.max(b));
            if let (Some(x), Some(y)) = (parsed.next_after(early), parsed.next_after(late)) {
                prop_assert!(x <= y, "{expr:?}: {early} -> {x}, {late} -> {y}");
            }
        }

        #[test]
        fn dense_schedules_match_a_second_by_second_scan(
            minute in field(0, 59),
            hour in field(0, 23),
            name in zone_name(),
            after in instant(),
        ) {
            // Every second of the matching minutes: the answer lies within a day, so scan.
            let expr = format!("* {minute} {hour} * * *");
            let tz = zone(name);
            let parsed = schedule_in(&expr, &tz);
            let Kind::Cron { fields, .. } = &parsed.kind else {
                return Err(TestCaseError::fail("not a cron"));
            };
            let mut at = Timestamp::from_second(floor_second(after) - 1).unwrap_or(after);
            let scanned = loop {
                at += SignedDuration::from_secs(1);
                if at > after && matches(fields, &tz, at) {
                    break at;
                }
            };
            prop_assert_eq!(parsed.next_after(after), Some(scanned));
        }

        #[test]
        fn every_adds_exactly_its_duration(ms in 0i64..10_000_000, after in instant()) {
            let parsed = schedule(&format!("@every {ms}ms"));
            prop_assert_eq!(
                parsed.next_after(after),
                Some(after + SignedDuration::from_millis(ms))
            );
        }
    }
}

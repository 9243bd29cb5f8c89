//! `dueTime` / `ttl` formats (spec §7.2): Go durations, ISO-8601 durations and RFC 3339 times,
//! and the combined point-in-time parser, never panic on any input or reference time.
#![no_main]

use jiff::Timestamp;
use jiff::tz::TimeZone;
use kairos_core::duration::parse_go_duration;
use kairos_core::timepoint::{parse_iso8601_duration, parse_point_in_time, parse_rfc3339};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = parse_go_duration(text);
    let _ = parse_iso8601_duration(text);
    let _ = parse_rfc3339(text);
    for reference in [
        Timestamp::UNIX_EPOCH,
        Timestamp::new(1_790_000_000, 999_999_999).unwrap(),
        Timestamp::MAX,
        Timestamp::MIN,
    ] {
        let _ = parse_point_in_time(text, &reference.to_zoned(TimeZone::UTC));
    }
});

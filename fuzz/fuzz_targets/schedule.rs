//! `schedule` strings (spec §7.1): parsing and the next few ticks never panic, and ticks only
//! move forward.
#![no_main]

use jiff::Timestamp;
use jiff::tz::TimeZone;
use kairos_core::Schedule;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(schedule) = Schedule::parse(text, &TimeZone::UTC) else { return };
    let starts =
        [Timestamp::UNIX_EPOCH, Timestamp::new(1_790_000_000, 123).unwrap(), Timestamp::MAX, Timestamp::MIN];
    for start in starts {
        let mut t = start;
        for _ in 0..4 {
            match schedule.next_after(t) {
                Some(next) => {
                    assert!(next >= t, "{text:?}: next {next} before {t}");
                    t = next;
                }
                None => break,
            }
        }
    }
});

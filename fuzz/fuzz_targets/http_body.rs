//! The HTTP POST body decoder (spec §2.2) and everything a body leads to before storage: the
//! spec's validation and first ticks (§7.3, §7.4) and the GET rendering (§2.3). Any byte string
//! gives a result or an error, never a panic.
#![no_main]

use jiff::Timestamp;
use jiff::tz::TimeZone;
use kairos_core::timeline::{Progress, after_failure, after_success, next_tick};
use kairos_sidecar::http_json::{job_to_json, parse_schedule_body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = parse_schedule_body("job", data) else { return };
    let spec = request.spec.with_default_policy();
    let _ = job_to_json(&request.name, &spec);
    let created = Timestamp::new(1_790_000_000, 0).unwrap();
    let Ok(timing) = spec.resolve(created, &TimeZone::UTC) else { return };
    let mut progress = Progress::default();
    for i in 0..6 {
        let Some(due) = next_tick(&timing, &progress) else { break };
        // Alternate failures and successes so the failure policy runs too.
        let step = if i % 2 == 0 {
            after_failure(&timing, &progress, due)
        } else {
            after_success(&timing, &progress)
        };
        if step.due.is_none() {
            break;
        }
        progress = step.progress;
    }
});

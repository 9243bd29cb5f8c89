//! The HTTP POST body decoder (spec §2.2) and everything a body leads to before storage: the
//! spec's validation and first ticks (§7.3, §7.4) and the GET rendering (§2.3). Any byte string
//! gives a result or an error, never a panic.
//!
//! Differential while two decoders exist: the hand-written reader (`http_json`) and the
//! serde_json one (`http_json_next`) must accept and reject the same bodies, give the same
//! request, and render it to the same GET body.
#![no_main]

use jiff::Timestamp;
use jiff::tz::TimeZone;
use kairos_core::timeline::{Progress, after_failure, after_success, next_tick};
use kairos_sidecar::errors::ApiError;
use kairos_sidecar::{http_json, http_json_next};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let old = http_json::parse_schedule_body("job", data);
    let new = http_json_next::parse_schedule_body("job", data);
    let text = String::from_utf8_lossy(data);
    match (&old, &new) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "different requests for {text:?}"),
        (Err(ApiError::MalformedBody(_)), Err(ApiError::MalformedBody(_))) => {}
        (Err(a), Err(b)) => assert_eq!(a, b, "different errors for {text:?}"),
        _ => panic!("old {old:?} and new {new:?} disagree on {text:?}"),
    }
    let Ok(request) = new else { return };
    let spec = request.spec.with_default_policy();
    let old_json = http_json::job_to_json(&request.name, &spec);
    let new_json = http_json_next::job_to_json(&request.name, &spec);
    match (&old_json, &new_json) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "different GET bodies for {text:?}"),
        (Err(_), Err(_)) => {}
        _ => panic!("old {old_json:?} and new {new_json:?} renderings disagree on {text:?}"),
    }
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

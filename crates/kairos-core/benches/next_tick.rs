//! Micro-benchmarks of the trigger timeline: how long computing a job's next tick takes.
//!
//! Run with `cargo bench -p kairos-core --bench next_tick`.

use divan::Bencher;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use kairos_core::JobSpec;
use kairos_core::timeline::{Progress, next_tick};

fn main() {
    divan::main();
}

const SCHEDULES: &[&str] = &[
    "@every 1s",
    "@every 1h30m",
    "*/5 * * * * *",
    "0 30 9 * * mon-fri",
    "0 0 0 29 2 *",
    "TZ=America/New_York 0 30 2 * * *",
];

#[divan::bench(args = SCHEDULES)]
fn next_tick_after_last(bencher: Bencher, schedule: &str) {
    let created: Timestamp = "2026-03-01T10:00:00Z".parse().unwrap();
    let spec = JobSpec { schedule: Some(schedule.to_owned()), ..JobSpec::default() };
    let timing = spec.resolve(created, &TimeZone::UTC).unwrap();
    let progress =
        Progress { count: 41, last_scheduled: Some("2026-03-07T23:59:58Z".parse().unwrap()), attempts: 0 };
    bencher.bench(|| next_tick(divan::black_box(&timing), divan::black_box(&progress)));
}

#[divan::bench(args = ["@every 1s", "0 30 9 * * mon-fri"])]
fn resolve_spec(bencher: Bencher, schedule: &str) {
    let created: Timestamp = "2026-03-01T10:00:00Z".parse().unwrap();
    let spec = JobSpec {
        schedule: Some(schedule.to_owned()),
        due_time: Some("10s".into()),
        ttl: Some("P1D".into()),
        ..JobSpec::default()
    };
    bencher.bench(|| divan::black_box(&spec).resolve(created, &TimeZone::UTC));
}

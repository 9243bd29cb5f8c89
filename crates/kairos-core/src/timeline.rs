//! The trigger timeline (spec §7.4) and what each delivery result does to it (spec §7.5).
//!
//! Pure functions over a job's [`JobTiming`] and its [`Progress`]:
//!
//! * [`next_tick`] — the scheduled time of the next tick, or `None` when the job is finished
//!   (and must be deleted). A schedule without a due time first fires at
//!   `schedule.next_after(start)`, never at creation; with a due time the first tick is the due
//!   time and counts as repeat 1; later ticks are `schedule.next_after(last scheduled tick)`, so
//!   after downtime the missed ticks come back to back (catch-up), in order. `repeats` bounds
//!   the count; a tick after `expires` is never scheduled, including the first one.
//! * [`after_success`] / [`after_failure`] — the progress after a delivery result and the
//!   instant of the next attempt (a retry of the same tick, or the next tick). A tick that
//!   exhausts its retries, or is dropped, counts like a success, and the cadence is kept:
//!   `last_scheduled` is the tick's scheduled time, not when its last attempt ran.
//!
//! Every function here costs the same however far behind a job is: one `next_after` of the
//! schedule (an addition for `@every`, a calendar search bounded to five years for cron),
//! never a walk over the missed ticks. Catching up is still one delivery per missed tick
//! (≈ 8.3e8 for `@every 1s` with a due time in 2000); bounding that is a policy above this
//! module, not something the arithmetic does.

use jiff::Timestamp;

use crate::job::JobTiming;

/// How far a job has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Ticks completed: delivered, or given up on under the failure policy.
    pub count: u32,
    /// The scheduled time of the last completed tick.
    pub last_scheduled: Option<Timestamp>,
    /// Failed attempts of the current tick.
    pub attempts: u32,
}

/// The state after a delivery result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The progress to store.
    pub progress: Progress,
    /// When to fire next (a retry or the next tick); `None` means the job is finished and must be
    /// deleted.
    pub due: Option<Timestamp>,
}

/// The scheduled time of the tick after `progress`, or `None` when the job has no more ticks.
pub fn next_tick(timing: &JobTiming, progress: &Progress) -> Option<Timestamp> {
    if timing.repeats.is_some_and(|total| progress.count >= total) {
        return None;
    }
    let next = match (progress.last_scheduled, &timing.schedule) {
        (None, _) if timing.due.is_some() => timing.due?,
        (None, Some(schedule)) => schedule.next_after(timing.start)?,
        (Some(last), Some(schedule)) => schedule.next_after(last)?,
        // A one-shot job after its tick, or (unreachable for a resolved spec) neither a due
        // time nor a schedule.
        (_, None) => return None,
    };
    if timing.expires.is_some_and(|expires| next > expires) {
        return None;
    }
    Some(next)
}

/// The tick after `progress` was delivered and acknowledged.
pub fn after_success(timing: &JobTiming, progress: &Progress) -> Step {
    complete_tick(timing, progress)
}

/// An attempt of the tick after `progress`, due at `attempt_due`, failed.
///
/// The retry (if the policy allows one) is due at `attempt_due + interval`, as upstream computes
/// it, so a slow failure is retried at once when the interval has already passed.
pub fn after_failure(timing: &JobTiming, progress: &Progress, attempt_due: Timestamp) -> Step {
    after_failure_seeded(timing, progress, attempt_due, 0)
}

/// [`after_failure`] with the jitter of an exponential failure policy drawn from `seed`.
pub fn after_failure_seeded(
    timing: &JobTiming,
    progress: &Progress,
    attempt_due: Timestamp,
    seed: u64,
) -> Step {
    let attempts = progress.attempts.saturating_add(1);
    match timing.failure_policy.retry_delay_seeded(attempts, seed) {
        Some(delay) => Step {
            progress: Progress { attempts, ..*progress },
            due: Some(attempt_due.saturating_add(delay).unwrap_or(attempt_due)),
        },
        None => complete_tick(timing, progress),
    }
}

fn complete_tick(timing: &JobTiming, progress: &Progress) -> Step {
    let Some(scheduled) = next_tick(timing, progress) else {
        return Step { progress: *progress, due: None };
    };
    let progress =
        Progress { count: progress.count.saturating_add(1), last_scheduled: Some(scheduled), attempts: 0 };
    Step { progress, due: next_tick(timing, &progress) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{FailurePolicy, JobSpec};
    use jiff::SignedDuration;
    use jiff::tz::TimeZone;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const CREATED: &str = "2026-03-01T10:00:00.400Z";

    fn timing(spec: JobSpec) -> JobTiming {
        spec.resolve(t(CREATED), &TimeZone::UTC).expect("valid spec")
    }

    fn job(schedule: Option<&str>, due: Option<&str>, repeats: Option<u32>, ttl: Option<&str>) -> JobTiming {
        timing(JobSpec {
            schedule: schedule.map(str::to_owned),
            due_time: due.map(str::to_owned),
            repeats,
            ttl: ttl.map(str::to_owned),
            ..JobSpec::default()
        })
    }

    /// Every tick the job fires (all acknowledged), up to `limit`.
    fn ticks(timing: &JobTiming, limit: usize) -> Vec<Timestamp> {
        let mut out = Vec::new();
        let mut progress = Progress::default();
        let mut due = next_tick(timing, &progress);
        while let Some(at) = due {
            if out.len() == limit {
                break;
            }
            out.push(at);
            let step = after_success(timing, &progress);
            progress = step.progress;
            due = step.due;
        }
        out
    }

    fn ts(list: &[&str]) -> Vec<Timestamp> {
        list.iter().map(|s| t(s)).collect()
    }

    #[test]
    fn spec_7_4_one_shot_fires_once_at_due_time() {
        let j = job(None, Some("10s"), None, None);
        assert_eq!(ticks(&j, 10), ts(&["2026-03-01T10:00:10Z"]));
        let j = job(None, Some("10s"), Some(1), None);
        assert_eq!(ticks(&j, 10), ts(&["2026-03-01T10:00:10Z"]));
    }

    #[test]
    fn spec_7_4_one_shot_in_the_past_is_due_at_once() {
        let j = job(None, Some("2020-01-01T00:00:00Z"), None, None);
        assert_eq!(ticks(&j, 10), ts(&["2020-01-01T00:00:00Z"]));
    }

    #[test]
    fn spec_7_4_schedule_without_due_time_never_fires_at_creation() {
        let j = job(Some("@every 10s"), None, Some(3), None);
        assert_eq!(
            ticks(&j, 10),
            ts(&["2026-03-01T10:00:10Z", "2026-03-01T10:00:20Z", "2026-03-01T10:00:30Z"])
        );
        let j = job(Some("*/5 * * * * *"), None, Some(2), None);
        assert_eq!(ticks(&j, 10), ts(&["2026-03-01T10:00:05Z", "2026-03-01T10:00:10Z"]));
    }

    /// Spec §7.4: "the first trigger is `cron.Next(creation time)`". The creation time upstream
    /// means is the stored `Start`, `now.UTC().Truncate(time.Second)` (go-etcd-cron
    /// `builder.go`, `Parse`), so an `@every` job created mid-second fires on whole seconds,
    /// not at creation + d.
    #[test]
    fn spec_7_4_schedule_without_due_time_counts_from_creation_truncated_to_the_second() {
        assert_eq!(CREATED, "2026-03-01T10:00:00.400Z");
        let j = job(Some("@every 1s"), None, Some(3), None);
        assert_eq!(
            ticks(&j, 10),
            ts(&["2026-03-01T10:00:01Z", "2026-03-01T10:00:02Z", "2026-03-01T10:00:03Z"])
        );
        // A sub-second interval shorter than the truncated part is due before the creation
        // instant itself, so it fires at once.
        let j = job(Some("@every 300ms"), None, Some(2), None);
        assert_eq!(ticks(&j, 10), ts(&["2026-03-01T10:00:00.3Z", "2026-03-01T10:00:00.6Z"]));
    }

    #[test]
    fn spec_7_4_due_time_is_the_first_tick_and_counts_as_repeat_1() {
        let j = job(Some("@every 10s"), Some("3s"), Some(3), None);
        assert_eq!(
            ticks(&j, 10),
            ts(&["2026-03-01T10:00:03Z", "2026-03-01T10:00:13Z", "2026-03-01T10:00:23Z"])
        );
        let j = job(Some("0 0 * * * *"), Some("2026-03-01T10:30:00Z"), Some(2), None);
        assert_eq!(ticks(&j, 10), ts(&["2026-03-01T10:30:00Z", "2026-03-01T11:00:00Z"]));
    }

    #[test]
    fn spec_7_4_repeats_n_gives_exactly_n_ticks() {
        for n in [1, 2, 7, 10] {
            let j = job(Some("@every 1s"), None, Some(n), None);
            assert_eq!(ticks(&j, 100).len(), n as usize);
        }
    }

    #[test]
    fn spec_7_4_ttl_stops_after_the_last_tick_before_expiry() {
        // ttl counts from creation (10:00:00); ticks at :10, :20, :30 — :30 equals the expiry
        // and still fires, :40 is after it.
        let j = job(Some("@every 10s"), None, None, Some("30s"));
        assert_eq!(
            ticks(&j, 100),
            ts(&["2026-03-01T10:00:10Z", "2026-03-01T10:00:20Z", "2026-03-01T10:00:30Z"])
        );
        // ttl from the due time
        let j = job(Some("@every 10s"), Some("5s"), None, Some("15s"));
        assert_eq!(ticks(&j, 100), ts(&["2026-03-01T10:00:05Z", "2026-03-01T10:00:15Z"]));
    }

    #[test]
    fn spec_7_4_first_tick_after_ttl_never_fires() {
        let j = job(Some("@every 1m"), None, None, Some("30s"));
        assert_eq!(ticks(&j, 100), Vec::<Timestamp>::new());
    }

    #[test]
    fn spec_7_4_unbounded_schedule_keeps_going() {
        let j = job(Some("@every 1ms"), None, None, None);
        let got = ticks(&j, 1000);
        assert_eq!(got.len(), 1000);
        assert_eq!(got[999], t("2026-03-01T10:00:01Z"));
    }

    #[test]
    fn spec_7_4_catch_up_counts_from_the_last_scheduled_time() {
        // The job's ticks are computed from the last *scheduled* time, so a job that was down
        // for a minute has all missed ticks due at once, in order.
        let j = job(Some("@every 10s"), None, None, None);
        let mut progress = Progress::default();
        let mut due = Vec::new();
        for _ in 0..6 {
            due.push(next_tick(&j, &progress).unwrap());
            progress = after_success(&j, &progress).progress;
        }
        let now = t("2026-03-01T10:01:05Z");
        assert!(due.iter().all(|d| *d <= now), "all six missed ticks are already due: {due:?}");
        assert!(due.windows(2).all(|w| w[0] < w[1]), "in order");
        assert_eq!(progress.last_scheduled, Some(t("2026-03-01T10:01:00Z")));
    }

    /// Spec §7.4, catch-up: "all missed ticks fire back-to-back". A due time 26 years back on
    /// `@every 1s` means 825,674,401 ticks already due at creation, each one delivered; the
    /// timeline computes each from the previous one in constant time, however far behind.
    #[test]
    fn spec_7_4_catch_up_from_a_due_time_years_back_fires_every_missed_tick() {
        let j = job(Some("@every 1s"), Some("2000-01-01T00:00:00Z"), None, None);
        let due = t("2000-01-01T00:00:00Z");
        let second = |n: i64| due.checked_add(SignedDuration::from_secs(n)).unwrap();
        assert_eq!(ticks(&j, 3), vec![second(0), second(1), second(2)]);

        // Ticks 0..=missed-1 are at or before creation: that many fire back to back.
        let missed: i64 = 825_674_401;
        let after = |count: i64| Progress {
            count: u32::try_from(count).unwrap(),
            last_scheduled: Some(second(count - 1)),
            attempts: 0,
        };
        assert!(next_tick(&j, &after(missed - 1)).unwrap() <= t(CREATED));
        assert!(next_tick(&j, &after(missed)).unwrap() > t(CREATED));
        assert_eq!(missed, t("2026-03-01T10:00:00Z").duration_since(due).as_secs() + 1);

        // Far behind, a success or a given-up tick moves on by exactly one tick: no tick is
        // skipped, none is merged.
        let behind = after(1_000_000);
        assert_eq!(
            after_success(&j, &behind),
            Step { progress: after(1_000_001), due: Some(second(1_000_001)) }
        );
        let mut dropping = j.clone();
        dropping.failure_policy = FailurePolicy::Drop;
        assert_eq!(after_failure(&dropping, &behind, second(1_000_000)), after_success(&j, &behind));
        // A retry of a tick years overdue is due one interval after that tick: at once.
        let retry = after_failure(&j, &behind, second(1_000_000));
        assert_eq!(retry.due, Some(second(1_000_001)));
        assert_eq!(retry.progress.attempts, 1);
    }

    #[test]
    fn spec_7_5_failing_one_shot_gets_4_attempts_by_default() {
        let j = job(None, Some("10s"), None, None);
        let mut progress = Progress::default();
        let mut attempt_due = next_tick(&j, &progress).unwrap();
        let mut attempts = vec![attempt_due];
        loop {
            let step = after_failure(&j, &progress, attempt_due);
            progress = step.progress;
            match step.due {
                Some(d) => {
                    attempts.push(d);
                    attempt_due = d;
                }
                None => break,
            }
        }
        assert_eq!(
            attempts,
            ts(&[
                "2026-03-01T10:00:10Z",
                "2026-03-01T10:00:11Z",
                "2026-03-01T10:00:12Z",
                "2026-03-01T10:00:13Z"
            ])
        );
        assert_eq!(progress.count, 1, "the given-up tick counts");
    }

    #[test]
    fn spec_7_5_exhausted_tick_counts_toward_repeats_and_keeps_cadence() {
        let mut j = job(Some("@every 10s"), None, Some(3), None);
        j.failure_policy =
            FailurePolicy::Constant { interval: Some(SignedDuration::from_secs(2)), max_retries: Some(1) };
        // tick 1 fails twice (given up), tick 2 succeeds, tick 3 succeeds
        let p0 = Progress::default();
        let first = next_tick(&j, &p0).unwrap();
        assert_eq!(first, t("2026-03-01T10:00:10Z"));
        let s1 = after_failure(&j, &p0, first);
        assert_eq!(s1.due, Some(t("2026-03-01T10:00:12Z")));
        assert_eq!(s1.progress.attempts, 1);
        let s2 = after_failure(&j, &s1.progress, s1.due.unwrap());
        assert_eq!(s2.progress, Progress { count: 1, last_scheduled: Some(first), attempts: 0 });
        assert_eq!(s2.due, Some(t("2026-03-01T10:00:20Z")), "cadence from the scheduled time, not the retry");
        let s3 = after_success(&j, &s2.progress);
        assert_eq!(s3.due, Some(t("2026-03-01T10:00:30Z")));
        let s4 = after_success(&j, &s3.progress);
        assert_eq!(s4.due, None, "3 ticks done: finished");
        assert_eq!(s4.progress.count, 3);
    }

    #[test]
    fn spec_7_5_success_after_retries_resets_attempts_and_keeps_cadence() {
        let j = job(Some("@every 10s"), None, None, None);
        let p0 = Progress::default();
        let s1 = after_failure(&j, &p0, t("2026-03-01T10:00:10Z"));
        let s2 = after_success(&j, &s1.progress);
        assert_eq!(
            s2.progress,
            Progress { count: 1, last_scheduled: Some(t("2026-03-01T10:00:10Z")), attempts: 0 }
        );
        assert_eq!(s2.due, Some(t("2026-03-01T10:00:20Z")));
    }

    #[test]
    fn spec_7_5_drop_moves_on_without_retry() {
        let mut j = job(Some("@every 10s"), None, None, None);
        j.failure_policy = FailurePolicy::Drop;
        let s = after_failure(&j, &Progress::default(), t("2026-03-01T10:00:10Z"));
        assert_eq!(s.progress.count, 1);
        assert_eq!(s.due, Some(t("2026-03-01T10:00:20Z")));
    }

    #[test]
    fn spec_7_5_slow_failure_past_the_interval_retries_at_once() {
        // The retry is due at attempt_due + interval even if the app took longer than that to
        // fail; the engine then fires it immediately.
        let j = job(None, Some("10s"), None, None);
        let s = after_failure(&j, &Progress::default(), t("2026-03-01T10:00:10Z"));
        assert_eq!(s.due, Some(t("2026-03-01T10:00:11Z")));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Schedules of every form of spec §7.1, with values drawn at random.
        fn schedule() -> impl Strategy<Value = String> {
            prop_oneof![
                (0u32..=59, 1u32..=30).prop_map(|(s, step)| format!("{s}/{step} * * * * *")),
                (0u32..=59, 0u32..=59, 0u32..=23).prop_map(|(s, m, h)| format!("{s} {m} {h} * * *")),
                (0u32..=59, 1u32..=28, 0u32..=6).prop_map(|(s, d, w)| format!("{s} 0 0 {d} * {w}")),
                (1u64..=90_000).prop_map(|ms| format!("@every {ms}ms")),
                Just("@every 0s".to_owned()),
                prop::sample::select(vec!["@hourly", "@daily", "@weekly", "@monthly", "@yearly"])
                    .prop_map(str::to_owned),
                (0u32..=59).prop_map(|s| format!("TZ=Europe/Paris {s} 30 2 * * *")),
                (0u32..=59).prop_map(|s| format!("CRON_TZ=America/New_York {s} 30 1 * * *")),
            ]
        }

        fn spec() -> impl Strategy<Value = JobSpec> {
            (
                prop::option::of(schedule()),
                prop::option::of(prop_oneof![
                    (0u64..=100_000).prop_map(|s| format!("{s}s")),
                    Just("2020-01-01T00:00:00Z".to_owned()),
                    Just("PT90M".to_owned()),
                ]),
                prop::option::of(1u32..=20),
                prop::option::of((1u64..=500_000).prop_map(|s| format!("{s}s"))),
            )
                .prop_map(|(schedule, due_time, repeats, ttl)| JobSpec {
                    schedule,
                    due_time,
                    repeats,
                    ttl,
                    ..JobSpec::default()
                })
        }

        proptest! {
            /// Spec §7.4: whatever happens to each delivery, no tick comes before the due time
            /// (or, without one, at or before creation, but for `@every 0s`), none before the tick it follows, and
            /// none after the expiry; a retry never comes before the attempt it repeats.
            #[test]
            fn spec_7_4_ticks_never_go_back_in_time(
                spec in spec(),
                outcomes in prop::collection::vec(any::<bool>(), 1..40),
            ) {
                let created = t(CREATED);
                let Ok(timing) = spec.resolve(created, &TimeZone::UTC) else { return Ok(()) };
                let mut progress = Progress::default();
                let mut due = next_tick(&timing, &progress);
                let mut previous_tick: Option<Timestamp> = None;
                for success in outcomes {
                    let Some(at) = due else { break };
                    if progress.attempts == 0 {
                        // A new tick.
                        match timing.due {
                            Some(first) => prop_assert!(at >= first, "tick {at} before the due time {first}"),
                            // `@every 0s` is `start + 0`: due at once, and again and again.
                            None if spec.schedule.as_deref() == Some("@every 0s") => {
                                prop_assert!(at >= timing.start, "tick {at} before creation");
                            }
                            None => prop_assert!(at > timing.start, "tick {at} at or before creation"),
                        }
                        if let Some(prev) = previous_tick {
                            prop_assert!(at >= prev, "tick {at} before the previous tick {prev}");
                        }
                        if let Some(expires) = timing.expires {
                            prop_assert!(at <= expires, "tick {at} after the expiry {expires}");
                        }
                        previous_tick = Some(at);
                    }
                    let step = if success {
                        after_success(&timing, &progress)
                    } else {
                        after_failure(&timing, &progress, at)
                    };
                    if let (Some(next), true) = (step.due, step.progress.attempts > 0) {
                        prop_assert!(next >= at, "retry {next} before the attempt {at} it repeats");
                    }
                    if let Some(total) = timing.repeats {
                        prop_assert!(step.progress.count <= total);
                    }
                    progress = step.progress;
                    due = step.due;
                }
            }
        }
    }
}

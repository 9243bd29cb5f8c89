//! Misfire (catch-up) policy: which missed ticks a job still delivers after a gap (a kairos
//! extension; the default is upstream's behaviour).
//!
//! A tick is *missed* when it is about to fire more than [`MISFIRE_THRESHOLD`] after its
//! scheduled time: the scheduler was down, the job was paused, its app was away (the job was
//! staged), a replica handed its partitions over, or a backlog held it back. Upstream delivers
//! every missed tick back to back (spec §7.4). Per job, kairos can instead:
//!
//! ```text
//! @every 10s, down from 10:00:05 to 10:00:42 (ticks :10 :20 :30 :40 missed), back at :42
//!
//!   all    :10 :20 :30 :40 at :42, back to back, then :50 :60 ...   (upstream, the default)
//!   once   :40 at :42 (one delivery for the whole gap), then :50 :60 ...
//!   skip   nothing at :42, then :50 :60 ...
//!   all + window 15s   :30 :40 at :42 (:10 and :20 are older than 15s), then :50 ...
//!   once + window 1s   nothing at :42 (:40 is older than 1s), then :50 ...
//! ```
//!
//! Skipped ticks are not delivered and do **not** count toward `repeats` (a job with
//! `repeats: 3` delivers 3 ticks whatever it skipped); a `ttl` still ends the job at its instant.
//! A one-shot job (no schedule) is exempt: its single tick is always delivered, late or not.
//! A tick whose retries are under way is never a misfire: retries follow the failure policy.
//!
//! A window shorter than the schedule's period is allowed (the period of a cron schedule is
//! not one number): at most one missed tick can then be within it, so `all` delivers at most
//! one per gap, like `once`. A window shorter than [`MISFIRE_THRESHOLD`] is refused, since it
//! would skip ticks that are merely on time.
//!
//! [`catch_up`] costs the same however long the gap: arithmetic for `@every`, a binary search of
//! at most ~40 `next_after` calls for cron, never a walk over the missed ticks.

use jiff::{SignedDuration, Timestamp};

use crate::job::JobTiming;
use crate::timeline::{Progress, next_tick};

/// How late a tick may fire before it counts as missed.
pub const MISFIRE_THRESHOLD: SignedDuration = SignedDuration::from_secs(1);

/// What a job does with the ticks it missed. Named `all`, `once` and `skip` (`Display`,
/// `FromStr`, [`CatchUp::as_str`]); parsing any other name fails with
/// [`MisfireError::UnknownPolicy`].
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Hash,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[strum(serialize_all = "lowercase", parse_err_ty = MisfireError, parse_err_fn = unknown_policy)]
pub enum CatchUp {
    /// Deliver every missed tick, back to back (upstream's behaviour).
    #[default]
    All,
    /// Deliver only the newest missed tick, then continue on schedule.
    Once,
    /// Deliver no missed tick; continue at the next tick on time.
    Skip,
}

impl CatchUp {
    /// The policy's name: `all`, `once` or `skip`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

fn unknown_policy(name: &str) -> MisfireError {
    MisfireError::UnknownPolicy(name.to_owned())
}

/// A job's misfire policy: what to do with missed ticks, and how old a missed tick may be and
/// still be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct MisfirePolicy {
    pub catch_up: CatchUp,
    /// Missed ticks older than this are skipped whatever `catch_up` says; unset: no limit.
    pub window: Option<SignedDuration>,
}

/// Why a misfire policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MisfireError {
    #[error("invalid misfire policy {0:?}: expected all, once or skip")]
    UnknownPolicy(String),
    #[error("invalid misfire window {}s: must be at least {}s", .0.as_secs_f64(), MISFIRE_THRESHOLD.as_secs_f64())]
    Window(SignedDuration),
}

impl MisfirePolicy {
    /// Upstream's behaviour: every missed tick, however old.
    pub const DEFAULT: MisfirePolicy = MisfirePolicy { catch_up: CatchUp::All, window: None };

    /// Checks the policy.
    ///
    /// # Errors
    /// [`MisfireError::Window`] for a window shorter than [`MISFIRE_THRESHOLD`] (zero and
    /// negative included).
    pub fn validate(&self) -> Result<(), MisfireError> {
        match self.window {
            Some(w) if w < MISFIRE_THRESHOLD => Err(MisfireError::Window(w)),
            _ => Ok(()),
        }
    }

    /// Whether the policy is upstream's: then [`catch_up`] never changes anything.
    pub fn is_default(&self) -> bool {
        *self == Self::DEFAULT
    }
}

/// Whether a tick scheduled at `tick` and firing at `now` is missed.
pub fn is_missed(tick: Timestamp, now: Timestamp) -> bool {
    now.duration_since(tick) > MISFIRE_THRESHOLD
}

/// What [`catch_up`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Misfire {
    /// The progress to continue from: its next tick is the next one to deliver.
    pub progress: Progress,
    /// Whether missed ticks were skipped (the progress moved past them).
    pub skipped: bool,
}

/// Applies `policy` to a job about to fire at `now`: the progress whose next tick is the next
/// one to deliver. Unchanged when the next tick is not missed, a retry is under way, the job
/// is a one-shot, or the policy is the default.
pub fn catch_up(timing: &JobTiming, progress: &Progress, now: Timestamp, policy: &MisfirePolicy) -> Misfire {
    let unchanged = Misfire { progress: *progress, skipped: false };
    if policy.is_default() || progress.attempts > 0 || timing.schedule.is_none() {
        return unchanged;
    }
    let Some(first) = next_tick(timing, progress) else { return unchanged };
    if !is_missed(first, now) {
        return unchanged;
    }
    let before = |t: Timestamp| t.checked_sub(SignedDuration::from_nanos(1)).unwrap_or(t);
    // The newest missed tick: the newest at or before `now - threshold - 1ns`.
    let missed_until = before(now.saturating_sub(MISFIRE_THRESHOLD).unwrap_or(now));
    let too_old = policy.window.map(|w| before(now.saturating_sub(w).unwrap_or(now)));
    let skip_through = |(_, newest): (Progress, Timestamp)| Misfire {
        progress: Progress { count: progress.count, last_scheduled: Some(newest), attempts: 0 },
        skipped: true,
    };
    match policy.catch_up {
        CatchUp::All => match too_old {
            Some(old) if first <= old => skip_through(newest_tick(timing, progress, first, old)),
            _ => unchanged,
        },
        CatchUp::Once => {
            let (at, newest) = newest_tick(timing, progress, first, missed_until);
            if too_old.is_some_and(|old| newest <= old) {
                skip_through((at, newest))
            } else {
                Misfire { progress: at, skipped: at != *progress }
            }
        }
        CatchUp::Skip => skip_through(newest_tick(timing, progress, first, missed_until)),
    }
}

/// The newest tick at or before `until` of the timeline continuing from `progress` (whose next
/// tick, `first`, is at or before `until`), with the progress whose next tick it is. Ignores
/// `repeats` and `ttl`: [`next_tick`] applies them to the result.
fn newest_tick(
    timing: &JobTiming,
    progress: &Progress,
    first: Timestamp,
    until: Timestamp,
) -> (Progress, Timestamp) {
    let Some(schedule) = &timing.schedule else { return (*progress, first) };
    let at = |last: Timestamp| Progress { count: progress.count, last_scheduled: Some(last), attempts: 0 };
    if let Some(every) = schedule.every() {
        let step = every.as_nanos();
        if step <= 0 {
            return (*progress, first);
        }
        let k = until.duration_since(first).as_nanos() / step;
        if k == 0 {
            return (*progress, first);
        }
        let offset = |n: i128| SignedDuration::try_from_nanos_i128(n * step).unwrap_or(SignedDuration::MAX);
        let newest = first.saturating_add(offset(k)).unwrap_or(until);
        let previous = first.saturating_add(offset(k - 1)).unwrap_or(first);
        return (at(previous), newest);
    }
    // Cron: `next_after(x)` is monotone in x and depends only on x's whole second. Find the
    // largest second `lo` with `next_after(lo) <= until`.
    let next = |x: Timestamp| schedule.next_after(x);
    match next(first) {
        Some(n) if n <= until => {}
        _ => return (*progress, first),
    }
    let (mut lo, mut hi) = (first.as_second(), until.as_second().max(first.as_second()) + 1);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        let fits = Timestamp::from_second(mid).ok().and_then(next).is_some_and(|n| n <= until);
        if fits {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let lo = if lo == first.as_second() { first } else { Timestamp::from_second(lo).unwrap_or(first) };
    match next(lo) {
        Some(newest) => (at(lo), newest),
        None => (*progress, first),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobSpec;
    use crate::timeline::after_success;
    use jiff::tz::TimeZone;
    use strum::VariantArray;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const CREATED: &str = "2026-03-01T10:00:00Z";

    fn job(schedule: &str, due: Option<&str>, repeats: Option<u32>, ttl: Option<&str>) -> JobTiming {
        JobSpec {
            schedule: Some(schedule.to_owned()),
            due_time: due.map(str::to_owned),
            repeats,
            ttl: ttl.map(str::to_owned),
            ..JobSpec::default()
        }
        .resolve(t(CREATED), &TimeZone::UTC)
        .unwrap()
    }

    fn policy(catch_up: CatchUp, window: Option<i64>) -> MisfirePolicy {
        MisfirePolicy { catch_up, window: window.map(SignedDuration::from_secs) }
    }

    /// Every tick delivered when the job runs again at `back` after being away since its
    /// creation, and then on time until `until`: `(tick, delivered at)`.
    fn deliveries(
        timing: &JobTiming,
        p: &MisfirePolicy,
        back: &str,
        until: &str,
    ) -> Vec<(Timestamp, Timestamp)> {
        let (back, until) = (t(back), t(until));
        let mut progress = Progress::default();
        let mut out = Vec::new();
        let mut now = back;
        while let Some(due) = next_tick(timing, &progress) {
            now = now.max(due);
            if now > until {
                break;
            }
            progress = catch_up(timing, &progress, now, p).progress;
            let Some(tick) = next_tick(timing, &progress) else { break };
            if tick > now {
                continue;
            }
            out.push((tick, now));
            progress = after_success(timing, &progress).progress;
        }
        out
    }

    fn ticks(list: &[(Timestamp, Timestamp)]) -> Vec<String> {
        list.iter().map(|(tick, _)| tick.strftime("%H:%M:%S").to_string()).collect()
    }

    // The timeline of the module docs.
    #[test]
    fn each_policy_after_a_gap_delivers_what_the_docs_say() {
        let j = job("@every 10s", None, None, None);
        let run = |p| ticks(&deliveries(&j, &p, "2026-03-01T10:00:42Z", "2026-03-01T10:01:00Z"));
        assert_eq!(
            run(policy(CatchUp::All, None)),
            ["10:00:10", "10:00:20", "10:00:30", "10:00:40", "10:00:50", "10:01:00"]
        );
        assert_eq!(run(policy(CatchUp::Once, None)), ["10:00:40", "10:00:50", "10:01:00"]);
        assert_eq!(run(policy(CatchUp::Skip, None)), ["10:00:50", "10:01:00"]);
        assert_eq!(run(policy(CatchUp::All, Some(15))), ["10:00:30", "10:00:40", "10:00:50", "10:01:00"]);
        assert_eq!(run(policy(CatchUp::Once, Some(1))), ["10:00:50", "10:01:00"]);
        assert_eq!(run(policy(CatchUp::Skip, Some(3600))), ["10:00:50", "10:01:00"]);
    }

    #[test]
    fn cron_schedules_skip_and_coalesce_like_every() {
        let j = job("*/15 * * * * *", None, None, None);
        let run = |p| ticks(&deliveries(&j, &p, "2026-03-01T10:01:07Z", "2026-03-01T10:01:30Z"));
        assert_eq!(run(policy(CatchUp::Once, None)), ["10:01:00", "10:01:15", "10:01:30"]);
        assert_eq!(run(policy(CatchUp::Skip, None)), ["10:01:15", "10:01:30"]);
        assert_eq!(
            run(policy(CatchUp::All, Some(40))),
            ["10:00:30", "10:00:45", "10:01:00", "10:01:15", "10:01:30"]
        );
    }

    #[test]
    fn a_tick_late_by_less_than_the_threshold_is_on_time() {
        let j = job("@every 10s", None, None, None);
        let p = Progress::default();
        let skip = policy(CatchUp::Skip, None);
        assert_eq!(catch_up(&j, &p, t("2026-03-01T10:00:11Z"), &skip).progress, p, "1s late: on time");
        assert!(catch_up(&j, &p, t("2026-03-01T10:00:11.001Z"), &skip).skipped);
    }

    #[test]
    fn skipped_ticks_do_not_count_toward_repeats_and_ttl_still_ends_the_job() {
        let j = job("@every 10s", None, Some(2), None);
        let got =
            deliveries(&j, &policy(CatchUp::Skip, None), "2026-03-01T10:05:05Z", "2026-03-01T11:00:00Z");
        assert_eq!(
            ticks(&got),
            ["10:05:10", "10:05:20"],
            "two delivered ticks, the skipped ones not counted"
        );

        let j = job("@every 10s", None, None, Some("60s"));
        let got =
            deliveries(&j, &policy(CatchUp::Skip, None), "2026-03-01T10:00:45Z", "2026-03-01T11:00:00Z");
        assert_eq!(ticks(&got), ["10:00:50", "10:01:00"]);
        // Back after the ttl: nothing is left to deliver.
        let mut progress = Progress::default();
        progress = catch_up(&j, &progress, t("2026-03-01T10:05:00Z"), &policy(CatchUp::Skip, None)).progress;
        assert_eq!(next_tick(&j, &progress), None, "finished");
    }

    #[test]
    fn a_recurring_job_with_a_due_time_in_the_past_skips_it_and_a_one_shot_never_does() {
        let j = job("@every 10s", Some("2026-03-01T09:00:00Z"), None, None);
        let got = deliveries(&j, &policy(CatchUp::Skip, None), CREATED, "2026-03-01T10:00:20Z");
        assert_eq!(ticks(&got), ["10:00:00", "10:00:10", "10:00:20"], "10:00:00 is on time");
        let got = deliveries(&j, &policy(CatchUp::Once, None), CREATED, "2026-03-01T10:00:20Z");
        assert_eq!(
            ticks(&got),
            ["09:59:50", "10:00:00", "10:00:10", "10:00:20"],
            "newest missed at or before 09:59:59"
        );

        let one_shot = JobSpec { due_time: Some("2026-03-01T09:00:00Z".into()), ..JobSpec::default() }
            .resolve(t(CREATED), &TimeZone::UTC)
            .unwrap();
        let m = catch_up(&one_shot, &Progress::default(), t(CREATED), &policy(CatchUp::Skip, Some(1)));
        assert_eq!(next_tick(&one_shot, &m.progress), Some(t("2026-03-01T09:00:00Z")));
    }

    #[test]
    fn a_retry_under_way_is_not_a_misfire() {
        let j = job("@every 10s", None, None, None);
        let p = Progress { attempts: 2, ..Progress::default() };
        assert_eq!(catch_up(&j, &p, t("2026-03-01T11:00:00Z"), &policy(CatchUp::Skip, None)).progress, p);
    }

    #[test]
    fn a_gap_of_decades_costs_no_walk() {
        let j = job("@every 1s", Some("2000-01-01T00:00:00Z"), None, None);
        let m = catch_up(&j, &Progress::default(), t(CREATED), &policy(CatchUp::Once, None));
        assert_eq!(next_tick(&j, &m.progress), Some(t("2026-03-01T09:59:58Z")));
        let j = job("0 0 0 1 1 *", Some("1990-01-01T00:00:00Z"), None, None);
        let m = catch_up(&j, &Progress::default(), t(CREATED), &policy(CatchUp::Once, None));
        assert_eq!(next_tick(&j, &m.progress), Some(t("2026-01-01T00:00:00Z")));
        let m = catch_up(&j, &Progress::default(), t(CREATED), &policy(CatchUp::Skip, None));
        assert_eq!(next_tick(&j, &m.progress), Some(t("2027-01-01T00:00:00Z")));
    }

    #[test]
    fn policy_names_round_trip_and_are_case_sensitive() {
        let names = CatchUp::VARIANTS.iter().map(|c| c.as_str()).collect::<Vec<_>>();
        assert_eq!(names, ["all", "once", "skip"]);
        for c in CatchUp::VARIANTS {
            assert_eq!(c.to_string(), c.as_str());
            assert_eq!(c.as_str().parse::<CatchUp>(), Ok(*c));
        }
        assert_eq!("Once".parse::<CatchUp>(), Err(MisfireError::UnknownPolicy("Once".into())));
    }

    #[test]
    fn bad_policies_get_clear_errors() {
        assert_eq!(
            "latest".parse::<CatchUp>().unwrap_err().to_string(),
            r#"invalid misfire policy "latest": expected all, once or skip"#
        );
        for w in [0, -5] {
            let err = policy(CatchUp::All, Some(w)).validate().unwrap_err();
            assert!(err.to_string().starts_with("invalid misfire window"), "{err}");
        }
        let err = MisfirePolicy { window: Some(SignedDuration::from_millis(500)), ..MisfirePolicy::DEFAULT }
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("must be at least"), "{err}");
        assert_eq!(policy(CatchUp::Skip, Some(1)).validate(), Ok(()));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone, Copy)]
        enum Event {
            /// The scheduler runs for this many seconds.
            Run(i64),
            /// The scheduler is down (or the app away) for this many seconds.
            Down(i64),
            /// Paused for this many seconds, with trigger-now calls meanwhile.
            Paused(i64, u8),
        }

        fn event() -> impl Strategy<Value = Event> {
            prop_oneof![
                (0i64..300).prop_map(Event::Run),
                (0i64..3000).prop_map(Event::Down),
                (0i64..3000, 0u8..3).prop_map(|(s, n)| Event::Paused(s, n)),
            ]
        }

        fn schedule() -> impl Strategy<Value = String> {
            prop_oneof![
                (1u32..120).prop_map(|s| format!("@every {s}s")),
                (500u32..5000).prop_map(|ms| format!("@every {ms}ms")),
                (1u32..30).prop_map(|s| format!("*/{s} * * * * *")),
                (1u32..10).prop_map(|m| format!("0 */{m} * * * *")),
            ]
        }

        fn misfire() -> impl Strategy<Value = MisfirePolicy> {
            (prop::sample::select(CatchUp::VARIANTS), prop::option::of(1i64..600))
                .prop_map(|(catch_up, w)| policy(catch_up, w))
        }

        struct Delivered {
            tick: Timestamp,
            at: Timestamp,
            /// The index of the gap (outage or pause) it follows.
            gap: usize,
        }

        proptest! {
            /// Under any interleaving of running, downtime and pause (with trigger-now calls,
            /// which deliver without touching the progress), `skip` never delivers a missed
            /// tick, no policy delivers a tick older than its window, `once` delivers at most
            /// one missed tick per gap, and `all` without a window delivers every tick once,
            /// in order.
            #[test]
            fn misfire_policies_hold_under_any_interleaving(
                schedule in schedule(),
                repeats in prop::option::of(1u32..50),
                policy in misfire(),
                events in prop::collection::vec(event(), 1..12),
            ) {
                let timing = job(&schedule, None, repeats, None);
                let mut progress = Progress::default();
                let mut now = t(CREATED);
                let mut delivered: Vec<Delivered> = Vec::new();
                let mut manual = 0u32;
                let mut gap = 0usize;
                for event in events {
                    match event {
                        Event::Down(secs) => {
                            now = now.saturating_add(SignedDuration::from_secs(secs)).unwrap();
                            gap += 1;
                        }
                        Event::Paused(secs, trigger_now) => {
                            for _ in 0..trigger_now {
                                // Trigger-now is an extra delivery: the timeline does not move.
                                manual += 1;
                            }
                            now = now.saturating_add(SignedDuration::from_secs(secs)).unwrap();
                            gap += 1;
                        }
                        Event::Run(secs) => {
                            let end = now.saturating_add(SignedDuration::from_secs(secs)).unwrap();
                            while let Some(due) = next_tick(&timing, &progress) {
                                let at = now.max(due);
                                if at > end {
                                    break;
                                }
                                now = at;
                                progress = catch_up(&timing, &progress, now, &policy).progress;
                                let Some(tick) = next_tick(&timing, &progress) else { break };
                                if tick > now {
                                    continue;
                                }
                                delivered.push(Delivered { tick, at: now, gap });
                                progress = after_success(&timing, &progress).progress;
                            }
                            if policy.is_default() {
                                // None left behind: what is still to come is after the end.
                                if let Some(next) = next_tick(&timing, &progress) {
                                    prop_assert!(next > end, "tick {next} left behind at {end}");
                                }
                            }
                            now = end;
                        }
                    }
                }
                prop_assert!(manual < 1000);
                for d in &delivered {
                    let late = d.at.duration_since(d.tick);
                    if let Some(w) = policy.window {
                        prop_assert!(late <= w.max(MISFIRE_THRESHOLD), "tick {} delivered {late:?} late, window {w:?}", d.tick);
                    }
                    if policy.catch_up == CatchUp::Skip {
                        prop_assert!(!is_missed(d.tick, d.at), "skip delivered tick {} at {}", d.tick, d.at);
                    }
                }
                if policy.catch_up == CatchUp::Once {
                    for g in 0..=gap {
                        let missed = delivered.iter().filter(|d| d.gap == g && is_missed(d.tick, d.at)).count();
                        prop_assert!(missed <= 1, "once delivered {missed} missed ticks after gap {g}");
                    }
                }
                prop_assert!(delivered.windows(2).all(|w| w[0].tick < w[1].tick || schedule.contains("@every 0")), "ticks in order, none twice");
                if let Some(r) = repeats {
                    prop_assert!(delivered.len() <= r as usize);
                }
                if policy.is_default() {
                    // Every tick of the timeline up to the last one delivered, once each.
                    let mut p = Progress::default();
                    for d in &delivered {
                        prop_assert_eq!(next_tick(&timing, &p), Some(d.tick));
                        p = after_success(&timing, &p).progress;
                    }
                }
            }
        }
    }
}

//! What a job has done so far: its status and its trigger history (kairos extensions).
//!
//! [`JobStats`] are the counters the engine keeps with every job and writes with its progress;
//! [`JobStatus`] is the view an operator reads, derived from them and the job's timeline.
//! [`TriggerRecord`]s are the job's history: one per delivery attempt (and one per time it
//! found no subscriber), the last [`HistoryLimit`] of them kept by the store.

use jiff::{SignedDuration, Timestamp};

use crate::timeline::Progress;

/// How one delivery attempt ended. Named `success`, `failed`, `dropped` and `undeliverable`
/// (`Display`, [`TriggerOutcome::as_str`]).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, strum::Display, strum::IntoStaticStr, strum::VariantArray,
)]
#[strum(serialize_all = "lowercase")]
pub enum TriggerOutcome {
    /// The app acknowledged it.
    Success,
    /// The app failed it; the failure policy retries the tick.
    Failed,
    /// The app failed it and the failure policy gave the tick up.
    Dropped,
    /// No subscriber of the job's route was there: the job waits for its app (staged).
    Undeliverable,
}

impl TriggerOutcome {
    /// `success`, `failed`, `dropped` or `undeliverable`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Where a job stands. Named `scheduled`, `paused`, `waiting-for-app`, `retrying` and
/// `finished` (`Display`, `FromStr`, [`JobState::as_str`]); parsing any other name fails with
/// [`StateError`].
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[strum(serialize_all = "kebab-case", parse_err_ty = StateError, parse_err_fn = unknown_state)]
pub enum JobState {
    /// Waiting for its next tick.
    Scheduled,
    /// Paused: fires nothing until resumed (its ttl still runs).
    Paused,
    /// Its trigger found no subscriber: it waits in the store for its app (staged).
    WaitingForApp,
    /// A failed tick is being retried under the failure policy.
    Retrying,
    /// No tick is left (the store deletes such a job as soon as its last tick is settled).
    Finished,
}

impl JobState {
    /// `scheduled`, `paused`, `waiting-for-app`, `retrying` or `finished`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// An unknown job state name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid job state {0:?}: expected scheduled, paused, waiting-for-app, retrying or finished")]
pub struct StateError(pub String);

fn unknown_state(name: &str) -> StateError {
    StateError(name.to_owned())
}

/// The counters kept with a job and written with its progress. All zero for a job stored
/// before kairos kept them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobStats {
    /// When the last delivery attempt was handed to a subscriber.
    pub last_fired: Option<Timestamp>,
    /// How the last attempt (or staging) ended.
    pub last_outcome: Option<TriggerOutcome>,
    /// Delivery attempts made (retries and trigger-now included).
    pub fired: u64,
    /// Attempts the app acknowledged.
    pub successes: u64,
    /// Attempts the app failed.
    pub failures: u64,
    /// Trigger records written so far: the sequence number of the next one.
    pub records: u64,
}

impl JobStats {
    /// The stats after `record`: the counters it moves, and one more record.
    #[must_use]
    pub fn after(mut self, record: &TriggerRecord) -> JobStats {
        match record.outcome {
            TriggerOutcome::Success => self.successes = self.successes.saturating_add(1),
            TriggerOutcome::Failed | TriggerOutcome::Dropped => {
                self.failures = self.failures.saturating_add(1)
            }
            TriggerOutcome::Undeliverable => {}
        }
        if record.outcome != TriggerOutcome::Undeliverable {
            self.fired = self.fired.saturating_add(1);
            self.last_fired = Some(record.fired_at);
        }
        self.last_outcome = Some(record.outcome);
        self.records = self.records.saturating_add(1);
        self
    }
}

/// One delivery attempt of a job, as its history keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriggerRecord {
    /// The scheduled time of the tick (for trigger-now: when it was asked for).
    pub tick: Timestamp,
    /// When the attempt was handed to a subscriber (or found none).
    pub fired_at: Timestamp,
    /// When the answer came back.
    pub answered_at: Timestamp,
    /// The attempt of this tick, from 1.
    pub attempt: u32,
    pub outcome: TriggerOutcome,
    /// Whether it was a trigger-now delivery rather than a tick of the schedule.
    pub manual: bool,
}

impl TriggerRecord {
    /// How late the attempt was handed out after its tick (0 when early).
    pub fn lateness(&self) -> SignedDuration {
        self.fired_at.duration_since(self.tick).max(SignedDuration::ZERO)
    }
}

/// How many trigger records the store keeps per job.
///
/// Records have a fixed size (no payload, no free text): at most [`TriggerRecord::MAX_BYTES`]
/// encoded, so a job's history is bounded in bytes by `limit * MAX_BYTES` (≈ 5 KiB at the
/// default 50), however long the job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimit(u32);

impl TriggerRecord {
    /// The most bytes one record takes encoded (three instants, an attempt, an outcome, a flag).
    pub const MAX_BYTES: usize = 96;
}

/// A history limit out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid history limit {0}: expected 0 to {max}", max = HistoryLimit::MAX.0)]
pub struct HistoryLimitError(pub u64);

impl HistoryLimit {
    /// 50 records per job.
    pub const DEFAULT: HistoryLimit = HistoryLimit(50);
    /// At most 1,000 records per job (≈ 96 KB).
    pub const MAX: HistoryLimit = HistoryLimit(1000);
    /// No history at all.
    pub const NONE: HistoryLimit = HistoryLimit(0);

    /// A limit of `n` records.
    ///
    /// # Errors
    /// [`HistoryLimitError`] above [`HistoryLimit::MAX`].
    pub fn new(n: u64) -> Result<HistoryLimit, HistoryLimitError> {
        u32::try_from(n).ok().filter(|n| *n <= Self::MAX.0).map(HistoryLimit).ok_or(HistoryLimitError(n))
    }

    /// The limit in records.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for HistoryLimit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A job's status, as an operator reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobStatus {
    pub state: JobState,
    /// The next attempt (a tick or a retry); `None` while paused or finished.
    pub next_fire: Option<Timestamp>,
    /// When the last attempt was handed out.
    pub last_fire: Option<Timestamp>,
    pub last_outcome: Option<TriggerOutcome>,
    /// Ticks completed (delivered or given up), the count `repeats` bounds.
    pub ticks: u32,
    /// Delivery attempts made (retries and trigger-now included).
    pub fired: u64,
    pub successes: u64,
    pub failures: u64,
    /// The attempt the current tick is at: 0 before its first, n after n failed ones.
    pub attempt: u32,
    pub paused: bool,
}

impl JobStatus {
    /// The status of a job with this progress, next attempt and flags. `next_due` is `None`
    /// when the job has no tick left.
    pub fn new(
        stats: &JobStats,
        progress: &Progress,
        next_due: Option<Timestamp>,
        paused: bool,
        staged: bool,
    ) -> JobStatus {
        let state = if next_due.is_none() {
            JobState::Finished
        } else if paused {
            JobState::Paused
        } else if staged {
            JobState::WaitingForApp
        } else if progress.attempts > 0 {
            JobState::Retrying
        } else {
            JobState::Scheduled
        };
        JobStatus {
            state,
            next_fire: if paused { None } else { next_due },
            last_fire: stats.last_fired,
            last_outcome: stats.last_outcome,
            ticks: progress.count,
            fired: stats.fired,
            successes: stats.successes,
            failures: stats.failures,
            attempt: progress.attempts,
            paused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn record(outcome: TriggerOutcome) -> TriggerRecord {
        TriggerRecord {
            tick: t("2026-03-01T10:00:00Z"),
            fired_at: t("2026-03-01T10:00:02Z"),
            answered_at: t("2026-03-01T10:00:03Z"),
            attempt: 1,
            outcome,
            manual: false,
        }
    }

    #[test]
    fn stats_count_each_outcome() {
        let s = TriggerOutcome::VARIANTS.iter().fold(JobStats::default(), |s, o| s.after(&record(*o)));
        assert_eq!((s.fired, s.successes, s.failures, s.records), (3, 1, 2, 4));
        assert_eq!(s.last_outcome, Some(TriggerOutcome::Undeliverable));
        assert_eq!(s.last_fired, Some(t("2026-03-01T10:00:02Z")));
        assert_eq!(record(TriggerOutcome::Success).lateness(), SignedDuration::from_secs(2));
    }

    #[test]
    fn state_follows_pause_staging_retries_and_the_end() {
        let stats = JobStats::default();
        let due = Some(t("2026-03-01T10:00:00Z"));
        let p = Progress::default();
        let retrying = Progress { attempts: 2, ..p };
        assert_eq!(JobStatus::new(&stats, &p, due, false, false).state, JobState::Scheduled);
        assert_eq!(JobStatus::new(&stats, &retrying, due, false, false).state, JobState::Retrying);
        assert_eq!(JobStatus::new(&stats, &p, due, false, true).state, JobState::WaitingForApp);
        let paused = JobStatus::new(&stats, &retrying, due, true, true);
        assert_eq!((paused.state, paused.next_fire), (JobState::Paused, None));
        assert_eq!(JobStatus::new(&stats, &p, None, true, false).state, JobState::Finished);
    }

    #[test]
    fn names_parse_back_and_unknown_ones_are_refused() {
        let names = JobState::VARIANTS.iter().map(|s| s.as_str()).collect::<Vec<_>>();
        assert_eq!(names, ["scheduled", "paused", "waiting-for-app", "retrying", "finished"]);
        for s in JobState::VARIANTS {
            assert_eq!(s.to_string(), s.as_str());
            assert_eq!(s.as_str().parse::<JobState>(), Ok(*s));
        }
        let names = TriggerOutcome::VARIANTS.iter().map(|o| o.as_str()).collect::<Vec<_>>();
        assert_eq!(names, ["success", "failed", "dropped", "undeliverable"]);
        assert!(TriggerOutcome::VARIANTS.iter().all(|o| o.to_string() == o.as_str()));
        assert_eq!(
            "running".parse::<JobState>().unwrap_err().to_string(),
            r#"invalid job state "running": expected scheduled, paused, waiting-for-app, retrying or finished"#
        );
        assert_eq!("Paused".parse::<JobState>(), Err(StateError("Paused".into())), "case-sensitive");
        assert_eq!("waiting_for_app".parse::<JobState>(), Err(StateError("waiting_for_app".into())));
        assert_eq!(HistoryLimit::new(50), Ok(HistoryLimit::DEFAULT));
        assert_eq!(
            HistoryLimit::new(1001).unwrap_err().to_string(),
            "invalid history limit 1001: expected 0 to 1000"
        );
    }
}

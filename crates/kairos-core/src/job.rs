//! Job specifications and their validation (spec §7.3).
//!
//! A [`JobSpec`] is what the user sent, with its strings exactly as written (Get and List return
//! them unchanged). [`JobSpec::resolve`] checks it the way the upstream Scheduler does and turns
//! it into a [`JobTiming`]: the instants the trigger timeline works with.

use jiff::tz::TimeZone;
use jiff::{RoundMode, Timestamp, TimestampRound, Unit, Zoned};

use crate::misfire::MisfireError;
pub use crate::misfire::MisfirePolicy;
pub use crate::policy::FailurePolicy;
use crate::policy::PolicyError;
use crate::schedule::{Schedule, ScheduleError};
use crate::timepoint::{PointInTimeError, SUPPORTED_RANGE, parse_point_in_time};

/// An opaque payload (a protobuf `Any`): stored and returned byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Payload {
    pub type_url: String,
    pub value: Vec<u8>,
}

/// A job as the user gave it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobSpec {
    /// Cron with seconds, a descriptor or `@every` (spec §7.1).
    pub schedule: Option<String>,
    /// How many ticks before the job is deleted.
    pub repeats: Option<u32>,
    /// First tick: RFC 3339, Go duration or ISO-8601 duration, relative to creation.
    pub due_time: Option<String>,
    /// Expiry, relative to the due time if set, else to creation.
    pub ttl: Option<String>,
    /// The payload handed back to the app with every trigger.
    pub data: Option<Payload>,
    /// Unset means [`FailurePolicy::DEFAULT`]; see [`JobSpec::with_default_policy`].
    pub failure_policy: Option<FailurePolicy>,
    /// What to do with missed ticks (a kairos extension); unset means
    /// [`MisfirePolicy::DEFAULT`], upstream's behaviour.
    pub misfire_policy: Option<MisfirePolicy>,
}

/// The instants a job fires by, resolved from a [`JobSpec`] and its creation time.
#[derive(Debug, Clone)]
pub struct JobTiming {
    /// The recurring schedule; `None` for a one-shot job.
    pub schedule: Option<Schedule>,
    /// Total ticks; `None` means unbounded.
    pub repeats: Option<u32>,
    /// Where the schedule's clock starts when there is no due time: the creation time truncated
    /// to the second, as upstream does. The job never fires *at* `start`.
    pub start: Timestamp,
    /// The first tick, when a due time was given; it counts as repeat 1.
    pub due: Option<Timestamp>,
    /// No tick is scheduled after this instant.
    pub expires: Option<Timestamp>,
    /// The policy for failed ticks (the default filled in when the spec had none).
    pub failure_policy: FailurePolicy,
    /// The misfire policy ([`MisfirePolicy::DEFAULT`] when the spec had none).
    pub misfire_policy: MisfirePolicy,
}

/// Why a job was refused; the texts are upstream's (spec §7.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("job must have either a due time or a schedule")]
    ScheduleEmpty,
    #[error("job must have a schedule to repeat")]
    RepeatsWithoutSchedule,
    #[error("defined repeats must be greater than 0")]
    ZeroRepeats,
    #[error("job must have a schedule to have a ttl")]
    TtlWithoutSchedule,
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(transparent)]
    DueTime(PointInTimeError),
    #[error("ttl format not recognized")]
    Ttl,
    /// The ttl is well-formed but its instant is outside the range kairos can represent.
    #[error("ttl {0:?} is out of range: {SUPPORTED_RANGE}")]
    TtlOutOfRange(String),
    #[error("ttl must be greater than due time")]
    TtlBeforeDueTime,
    /// A kairos extension's failure policy is out of range.
    #[error(transparent)]
    FailurePolicy(#[from] PolicyError),
    /// A kairos extension's misfire policy is out of range.
    #[error(transparent)]
    MisfirePolicy(#[from] MisfireError),
}

impl JobSpec {
    /// The spec with the default failure policy filled in when none was given: what upstream
    /// stores, and so what Get and List return.
    #[must_use]
    pub fn with_default_policy(mut self) -> Self {
        self.failure_policy.get_or_insert(FailurePolicy::DEFAULT);
        self
    }

    /// Checks the spec as upstream's Scheduler does and resolves its instants.
    ///
    /// `created` is when the job was accepted; relative due times count from it truncated to
    /// the second (UTC), as upstream does. Cron schedules without a `TZ=` prefix run in
    /// `default_tz`. (Upstream parses them in its local zone but computes every tick from a UTC
    /// instant, so in effect they run in UTC; kairos passes UTC unless configured otherwise.)
    /// The same inputs always give the same timing, so a stored job resolves again identically
    /// after a restart.
    ///
    /// # Errors
    /// [`ValidationError`] for the first rule that fails, in upstream's order.
    pub fn resolve(&self, created: Timestamp, default_tz: &TimeZone) -> Result<JobTiming, ValidationError> {
        if self.due_time.is_none() && self.schedule.is_none() {
            return Err(ValidationError::ScheduleEmpty);
        }
        if self.schedule.is_none() && self.repeats.is_some_and(|r| r > 1) {
            return Err(ValidationError::RepeatsWithoutSchedule);
        }
        if self.repeats == Some(0) {
            return Err(ValidationError::ZeroRepeats);
        }
        if self.schedule.is_none() && self.ttl.is_some() {
            return Err(ValidationError::TtlWithoutSchedule);
        }
        let schedule = self.schedule.as_deref().map(|s| Schedule::parse(s, default_tz)).transpose()?;

        let truncate = TimestampRound::new().smallest(Unit::Second).mode(RoundMode::Trunc);
        let start = created.round(truncate).unwrap_or(created);
        let start = Zoned::new(start, TimeZone::UTC);
        let due = self
            .due_time
            .as_deref()
            .map(|s| parse_point_in_time(s, &start))
            .transpose()
            .map_err(ValidationError::DueTime)?;
        let expires = match &self.ttl {
            None => None,
            Some(ttl) => {
                let reference = due.as_ref().unwrap_or(&start);
                // Upstream reports every ttl failure as "not recognized"; out of range is ours.
                let expires = parse_point_in_time(ttl, reference).map_err(|err| match err {
                    PointInTimeError::OutOfRange(_) => ValidationError::TtlOutOfRange(ttl.clone()),
                    PointInTimeError::NotRecognized | PointInTimeError::RepeatsNotSupported => {
                        ValidationError::Ttl
                    }
                })?;
                if due.as_ref().is_some_and(|d| d.timestamp() > expires.timestamp()) {
                    return Err(ValidationError::TtlBeforeDueTime);
                }
                Some(expires.timestamp())
            }
        };
        if let Some(policy) = &self.failure_policy {
            policy.validate()?;
        }
        if let Some(policy) = &self.misfire_policy {
            policy.validate()?;
        }
        Ok(JobTiming {
            schedule,
            repeats: self.repeats,
            start: start.timestamp(),
            due: due.map(|d| d.timestamp()),
            expires,
            failure_policy: self.failure_policy.clone().unwrap_or(FailurePolicy::DEFAULT),
            misfire_policy: self.misfire_policy.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn spec() -> JobSpec {
        JobSpec::default()
    }

    fn resolve(spec: &JobSpec) -> Result<JobTiming, ValidationError> {
        spec.resolve(t("2026-03-01T10:00:00.750Z"), &TimeZone::UTC)
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    // spec §7.3: each rule, in upstream's order, with upstream's text.
    #[test]
    fn spec_7_3_neither_schedule_nor_due_time() {
        let err = resolve(&spec()).unwrap_err();
        assert_eq!(err, ValidationError::ScheduleEmpty);
        assert_eq!(err.to_string(), "job must have either a due time or a schedule");
    }

    #[test]
    fn spec_7_3_repeats_need_a_schedule() {
        let s = JobSpec { due_time: some("10s"), repeats: Some(2), ..spec() };
        assert_eq!(resolve(&s).unwrap_err().to_string(), "job must have a schedule to repeat");
        // repeats: 1 on a one-shot is fine
        let s = JobSpec { due_time: some("10s"), repeats: Some(1), ..spec() };
        assert!(resolve(&s).is_ok());
    }

    #[test]
    fn spec_7_3_zero_repeats_rejected() {
        let s = JobSpec { due_time: some("10s"), repeats: Some(0), ..spec() };
        assert_eq!(resolve(&s).unwrap_err().to_string(), "defined repeats must be greater than 0");
    }

    #[test]
    fn spec_7_3_ttl_needs_a_schedule() {
        let s = JobSpec { due_time: some("10s"), ttl: some("20s"), ..spec() };
        assert_eq!(resolve(&s).unwrap_err().to_string(), "job must have a schedule to have a ttl");
    }

    #[test]
    fn spec_7_3_bad_due_time_and_ttl() {
        let s = JobSpec { due_time: some("tomorrow"), ..spec() };
        assert_eq!(resolve(&s).unwrap_err().to_string(), "due time format not recognized");
        let s = JobSpec { due_time: some("R5/PT1H"), ..spec() };
        assert_eq!(resolve(&s).unwrap_err().to_string(), "repeats not supported for due time");
        let s = JobSpec { schedule: some("@every 1s"), ttl: some("soon"), ..spec() };
        assert_eq!(resolve(&s).unwrap_err().to_string(), "ttl format not recognized");
    }

    #[test]
    fn due_time_and_ttl_past_the_representable_range_say_so() {
        let s = JobSpec { due_time: some("9999-12-31T23:59:59Z"), ..spec() };
        let err = resolve(&s).unwrap_err();
        assert_eq!(
            err,
            ValidationError::DueTime(PointInTimeError::OutOfRange("9999-12-31T23:59:59Z".into()))
        );
        assert!(
            err.to_string()
                .starts_with(r#"due time "9999-12-31T23:59:59Z" is out of range: kairos represents"#),
            "{err}"
        );
        // The last representable instant itself is fine.
        let s = JobSpec { due_time: some("9999-12-30T22:00:00.999999999Z"), ..spec() };
        assert_eq!(resolve(&s).unwrap().due, Some(Timestamp::MAX));

        let every = |due: Option<&str>, ttl: &str| JobSpec {
            schedule: some("@every 1s"),
            due_time: due.map(str::to_owned),
            ttl: some(ttl),
            ..spec()
        };
        for (due, ttl) in
            [(None, "9999-12-31T23:59:59Z"), (Some("9999-12-30T12:00:00Z"), "P1D"), (None, "P8000Y")]
        {
            let err = resolve(&every(due, ttl)).unwrap_err();
            assert_eq!(err, ValidationError::TtlOutOfRange(ttl.into()), "{due:?} {ttl:?}");
            assert!(err.to_string().starts_with(&format!("ttl {ttl:?} is out of range: ")), "{err}");
        }
        let s = every(Some("9999-12-30T12:00:00Z"), "PT10H");
        assert_eq!(resolve(&s).unwrap().expires, Some(t("9999-12-30T22:00:00Z")));
    }

    #[test]
    fn spec_7_3_ttl_before_due_time_rejected_equal_allowed() {
        let s = JobSpec {
            schedule: some("@every 1s"),
            due_time: some("2026-03-01T12:00:00Z"),
            ttl: some("2026-03-01T11:00:00Z"),
            ..spec()
        };
        assert_eq!(resolve(&s).unwrap_err().to_string(), "ttl must be greater than due time");
        let s = JobSpec { ttl: some("2026-03-01T12:00:00Z"), ..s };
        assert_eq!(resolve(&s).unwrap().expires, Some(t("2026-03-01T12:00:00Z")));
    }

    #[test]
    fn spec_7_3_bad_schedule_rejected_with_parser_text() {
        let s = JobSpec { schedule: some("* * * * *"), ..spec() };
        let err = resolve(&s).unwrap_err();
        assert!(matches!(err, ValidationError::Schedule(_)), "{err:?}");
        assert!(err.to_string().contains("expected exactly 6 fields, found 5"), "{err}");
    }

    // spec §7.2: reference times.
    #[test]
    fn spec_7_2_relative_due_time_counts_from_creation_truncated_to_the_second() {
        let s = JobSpec { due_time: some("10s"), ..spec() };
        let timing = resolve(&s).unwrap();
        assert_eq!(timing.start, t("2026-03-01T10:00:00Z"));
        assert_eq!(timing.due, Some(t("2026-03-01T10:00:10Z")));
    }

    #[test]
    fn spec_7_2_ttl_counts_from_due_time_when_set_else_from_creation() {
        let s = JobSpec { schedule: some("@every 1s"), due_time: some("1m"), ttl: some("30s"), ..spec() };
        assert_eq!(resolve(&s).unwrap().expires, Some(t("2026-03-01T10:01:30Z")));
        let s = JobSpec { schedule: some("@every 1s"), ttl: some("30s"), ..spec() };
        assert_eq!(resolve(&s).unwrap().expires, Some(t("2026-03-01T10:00:30Z")));
        let s = JobSpec { schedule: some("@every 1s"), ttl: some("P1D"), ..spec() };
        assert_eq!(resolve(&s).unwrap().expires, Some(t("2026-03-02T10:00:00Z")));
    }

    #[test]
    fn spec_7_2_absolute_due_time_in_the_past_is_accepted() {
        let s = JobSpec { due_time: some("2020-01-01T00:00:00Z"), ..spec() };
        assert_eq!(resolve(&s).unwrap().due, Some(t("2020-01-01T00:00:00Z")));
    }

    #[test]
    fn spec_7_5_default_policy_is_filled_in() {
        let s = JobSpec { due_time: some("1s"), ..spec() };
        assert_eq!(resolve(&s).unwrap().failure_policy, FailurePolicy::DEFAULT);
        assert_eq!(s.clone().with_default_policy().failure_policy, Some(FailurePolicy::DEFAULT));
        let s = JobSpec { failure_policy: Some(FailurePolicy::Drop), ..s };
        assert_eq!(s.with_default_policy().failure_policy, Some(FailurePolicy::Drop));
    }

    #[test]
    fn resolving_twice_gives_the_same_instants() {
        let s = JobSpec { schedule: some("@every 3s"), due_time: some("P1M"), ttl: some("PT1H"), ..spec() };
        let a = resolve(&s).unwrap();
        let b = resolve(&s).unwrap();
        assert_eq!((a.start, a.due, a.expires), (b.start, b.due, b.expires));
    }
}

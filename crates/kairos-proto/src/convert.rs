//! Wire types ⇄ core types. Wire types stop here: the engine and the core never see them.

use jiff::SignedDuration;
use kairos_core::misfire::MisfireError;
use kairos_core::policy::PolicyError;
use kairos_core::{
    CatchUp, Exponential, FailurePolicy, JobKey, JobSpec, MisfirePolicy, Owner, Payload, Ratio,
};

use crate::{admin, common, runtime, scheduler};

/// Why a wire message cannot become a core value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// `JobMetadata` is missing, or names no owner.
    #[error("job metadata is missing or incomplete: {0}")]
    Metadata(String),
    /// A `google.protobuf.Duration` outside its documented range.
    #[error("invalid failure policy interval: {0}")]
    Interval(String),
    /// A `google.protobuf.Timestamp` outside the representable range.
    #[error("invalid timestamp: {0}")]
    Timestamp(String),
    /// An exponential failure policy with a bad parameter (a kairos extension).
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A misfire policy with an unknown catch-up value or a bad window (a kairos extension).
    #[error(transparent)]
    Misfire(#[from] MisfireError),
}

/// The multiplier of an exponential policy that names none.
pub const DEFAULT_MULTIPLIER: Ratio = Ratio::from_millionths(2_000_000);

/// `google.protobuf.Any` → payload.
pub fn payload_from_any(any: prost_types::Any) -> Payload {
    Payload { type_url: any.type_url, value: any.value }
}

/// Payload → `google.protobuf.Any`.
pub fn any_from_payload(payload: Payload) -> prost_types::Any {
    prost_types::Any { type_url: payload.type_url, value: payload.value }
}

/// `common.v1.JobFailurePolicy` → policy; a message with no member of the oneof set means
/// "no policy" (the default applies).
///
/// # Errors
/// [`ConvertError::Interval`] for an interval outside the `Duration` range,
/// [`ConvertError::Policy`] for an exponential policy that fails [`Exponential::validate`].
pub fn policy_from_proto(policy: common::JobFailurePolicy) -> Result<Option<FailurePolicy>, ConvertError> {
    use common::job_failure_policy::Policy;
    Ok(match policy.policy {
        None => None,
        Some(Policy::Drop(_)) => Some(FailurePolicy::Drop),
        Some(Policy::Constant(c)) => Some(FailurePolicy::Constant {
            interval: c.interval.map(duration_from_proto).transpose()?,
            max_retries: c.max_retries,
        }),
        Some(Policy::Exponential(e)) => Some(FailurePolicy::Exponential(exponential_from_proto(e)?)),
    })
}

fn exponential_from_proto(e: common::JobFailurePolicyExponential) -> Result<Exponential, ConvertError> {
    let ratio = |value: Option<f64>, default: Ratio| value.map_or(Ok(default), Ratio::from_f64);
    let exponential = Exponential {
        initial_interval: e
            .initial_interval
            .map(duration_from_proto)
            .transpose()?
            .unwrap_or(SignedDuration::ZERO),
        multiplier: ratio(e.multiplier, DEFAULT_MULTIPLIER)?,
        max_interval: e.max_interval.map(duration_from_proto).transpose()?,
        max_retries: e.max_retries,
        jitter: ratio(e.jitter, Ratio::ZERO)?,
    };
    exponential.validate()?;
    Ok(exponential)
}

/// `common.v1.JobMisfirePolicy` → policy.
///
/// # Errors
/// [`ConvertError::Misfire`] for an unknown catch-up value or a window under 1s,
/// [`ConvertError::Interval`] for a window outside the `Duration` range.
pub fn misfire_from_proto(policy: common::JobMisfirePolicy) -> Result<MisfirePolicy, ConvertError> {
    let catch_up = match common::JobMisfireCatchUp::try_from(policy.catch_up) {
        Ok(common::JobMisfireCatchUp::All) => CatchUp::All,
        Ok(common::JobMisfireCatchUp::Once) => CatchUp::Once,
        Ok(common::JobMisfireCatchUp::Skip) => CatchUp::Skip,
        Err(_) => return Err(MisfireError::UnknownPolicy(policy.catch_up.to_string()).into()),
    };
    let misfire = MisfirePolicy { catch_up, window: policy.window.map(duration_from_proto).transpose()? };
    misfire.validate()?;
    Ok(misfire)
}

/// Policy → `common.v1.JobMisfirePolicy`.
pub fn misfire_to_proto(policy: &MisfirePolicy) -> common::JobMisfirePolicy {
    let catch_up = match policy.catch_up {
        CatchUp::All => common::JobMisfireCatchUp::All,
        CatchUp::Once => common::JobMisfireCatchUp::Once,
        CatchUp::Skip => common::JobMisfireCatchUp::Skip,
    };
    common::JobMisfirePolicy { catch_up: catch_up.into(), window: policy.window.map(duration_to_proto) }
}

/// Policy → `common.v1.JobFailurePolicy`.
pub fn policy_to_proto(policy: &FailurePolicy) -> common::JobFailurePolicy {
    use common::job_failure_policy::Policy;
    let policy = match policy {
        FailurePolicy::Drop => Policy::Drop(common::JobFailurePolicyDrop {}),
        FailurePolicy::Constant { interval, max_retries } => {
            Policy::Constant(common::JobFailurePolicyConstant {
                interval: interval.map(duration_to_proto),
                max_retries: *max_retries,
            })
        }
        FailurePolicy::Exponential(e) => Policy::Exponential(common::JobFailurePolicyExponential {
            initial_interval: Some(duration_to_proto(e.initial_interval)),
            multiplier: Some(e.multiplier.as_f64()),
            max_interval: e.max_interval.map(duration_to_proto),
            max_retries: e.max_retries,
            jitter: Some(e.jitter.as_f64()),
        }),
    };
    common::JobFailurePolicy { policy: Some(policy) }
}

/// `google.protobuf.Duration` → duration, checked as the proto documents it (seconds within
/// ±315,576,000,000, nanos within ±999,999,999 and of the same sign).
///
/// # Errors
/// [`ConvertError::Interval`] when out of range.
pub fn duration_from_proto(d: prost_types::Duration) -> Result<SignedDuration, ConvertError> {
    const MAX_SECONDS: i64 = 315_576_000_000;
    let ok = d.seconds.abs() <= MAX_SECONDS
        && d.nanos.abs() <= 999_999_999
        && !(d.seconds > 0 && d.nanos < 0)
        && !(d.seconds < 0 && d.nanos > 0);
    if !ok {
        return Err(ConvertError::Interval(format!("seconds {} nanos {}", d.seconds, d.nanos)));
    }
    Ok(SignedDuration::new(d.seconds, d.nanos))
}

/// Duration → `google.protobuf.Duration`.
pub fn duration_to_proto(d: SignedDuration) -> prost_types::Duration {
    prost_types::Duration { seconds: d.as_secs(), nanos: d.subsec_nanos() }
}

/// `google.protobuf.Timestamp` → instant.
///
/// # Errors
/// [`ConvertError::Timestamp`] when outside jiff's range or the nanoseconds are out of
/// `0..1_000_000_000`.
pub fn timestamp_from_proto(t: prost_types::Timestamp) -> Result<jiff::Timestamp, ConvertError> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(ConvertError::Timestamp(format!("seconds {} nanos {}", t.seconds, t.nanos)));
    }
    // protobuf keeps nanos non-negative; jiff wants them signed like the seconds.
    let (seconds, nanos) = if t.seconds < 0 && t.nanos > 0 {
        (t.seconds + 1, t.nanos - 1_000_000_000)
    } else {
        (t.seconds, t.nanos)
    };
    jiff::Timestamp::new(seconds, nanos)
        .map_err(|e| ConvertError::Timestamp(format!("seconds {} nanos {}: {e}", t.seconds, t.nanos)))
}

/// Instant → `google.protobuf.Timestamp` (nanoseconds non-negative, as protobuf wants them).
pub fn timestamp_to_proto(t: jiff::Timestamp) -> prost_types::Timestamp {
    let (seconds, nanos) = (t.as_second(), t.subsec_nanosecond());
    if nanos < 0 {
        prost_types::Timestamp { seconds: seconds - 1, nanos: nanos + 1_000_000_000 }
    } else {
        prost_types::Timestamp { seconds, nanos }
    }
}

/// Scheduler `Job` → spec.
///
/// # Errors
/// [`ConvertError`] for an out-of-range policy interval.
pub fn spec_from_scheduler_job(job: scheduler::Job) -> Result<JobSpec, ConvertError> {
    Ok(JobSpec {
        schedule: job.schedule,
        repeats: job.repeats,
        due_time: job.due_time,
        ttl: job.ttl,
        data: job.data.map(payload_from_any),
        failure_policy: job.failure_policy.map(policy_from_proto).transpose()?.flatten(),
        misfire_policy: job.misfire_policy.map(misfire_from_proto).transpose()?,
    })
}

/// Spec → scheduler `Job`.
pub fn spec_to_scheduler_job(spec: &JobSpec) -> scheduler::Job {
    scheduler::Job {
        schedule: spec.schedule.clone(),
        repeats: spec.repeats,
        due_time: spec.due_time.clone(),
        ttl: spec.ttl.clone(),
        data: spec.data.clone().map(any_from_payload),
        failure_policy: spec.failure_policy.as_ref().map(policy_to_proto),
        misfire_policy: spec.misfire_policy.as_ref().map(misfire_to_proto),
    }
}

/// Runtime (`dapr.proto.runtime.v1`) `Job` → its name and spec.
///
/// # Errors
/// [`ConvertError`] for an out-of-range policy interval.
pub fn spec_from_runtime_job(job: runtime::Job) -> Result<(String, JobSpec), ConvertError> {
    // The scheduler's `Job` is the runtime one without its name: one mapping serves both.
    let runtime::Job { name, schedule, repeats, due_time, ttl, data, failure_policy, misfire_policy } = job;
    let job = scheduler::Job { schedule, repeats, due_time, ttl, data, failure_policy, misfire_policy };
    Ok((name, spec_from_scheduler_job(job)?))
}

/// Name and spec → runtime `Job`.
pub fn spec_to_runtime_job(name: &str, spec: &JobSpec) -> runtime::Job {
    let scheduler::Job { schedule, repeats, due_time, ttl, data, failure_policy, misfire_policy } =
        spec_to_scheduler_job(spec);
    runtime::Job {
        name: name.to_owned(),
        schedule,
        repeats,
        due_time,
        ttl,
        data,
        failure_policy,
        misfire_policy,
    }
}

/// Scheduler `JobMetadata` + name → key.
///
/// # Errors
/// [`ConvertError::Metadata`] when the metadata is absent, has no namespace, or its target names
/// no owner.
pub fn key_from_metadata(
    name: String,
    metadata: Option<scheduler::JobMetadata>,
) -> Result<JobKey, ConvertError> {
    let metadata = metadata.ok_or_else(|| ConvertError::Metadata("metadata is required".into()))?;
    let owner = owner_from_metadata(&metadata)?;
    Ok(JobKey { namespace: metadata.namespace, owner, name })
}

/// The owner named by a `JobMetadata`: its app (target `job`) or its actor (target `actor`).
///
/// # Errors
/// [`ConvertError::Metadata`] when the namespace or owner is empty or holds control characters.
pub fn owner_from_metadata(metadata: &scheduler::JobMetadata) -> Result<Owner, ConvertError> {
    use scheduler::job_target_metadata::Type;
    check_id("namespace", &metadata.namespace)?;
    let target = metadata.target.as_ref().and_then(|t| t.r#type.as_ref());
    match target {
        Some(Type::Actor(actor)) => {
            check_id("actor type", &actor.r#type)?;
            check_id("actor id", &actor.id)?;
            Ok(Owner::actor(actor.r#type.clone(), actor.id.clone()))
        }
        // An unset target is an app's job, as upstream treats it.
        Some(Type::Job(_)) | None => {
            check_id("app id", &metadata.app_id)?;
            Ok(Owner::app(metadata.app_id.clone()))
        }
    }
}

/// The `JobMetadata` of a key.
pub fn metadata_of(key: &JobKey) -> scheduler::JobMetadata {
    use scheduler::job_target_metadata::Type;
    let (app_id, target) = match &key.owner {
        Owner::App { app_id } => (app_id.clone(), Type::Job(scheduler::TargetJob {})),
        Owner::Actor { actor_type, actor_id } => (
            String::new(),
            Type::Actor(scheduler::TargetActorReminder { id: actor_id.clone(), r#type: actor_type.clone() }),
        ),
    };
    scheduler::JobMetadata {
        app_id,
        namespace: key.namespace.clone(),
        target: Some(scheduler::JobTargetMetadata { r#type: Some(target) }),
        concurrency_key: None,
    }
}

fn check_id(what: &str, value: &str) -> Result<(), ConvertError> {
    if value.is_empty() {
        return Err(ConvertError::Metadata(format!("{what} is empty")));
    }
    if value.chars().any(char::is_control) {
        return Err(ConvertError::Metadata(format!("{what} {value:?} contains a control character")));
    }
    Ok(())
}

/// The wire form of a job state.
pub fn state_to_wire(state: kairos_core::JobState) -> admin::JobState {
    use kairos_core::JobState as S;
    match state {
        S::Scheduled => admin::JobState::Scheduled,
        S::Paused => admin::JobState::Paused,
        S::WaitingForApp => admin::JobState::WaitingForApp,
        S::Retrying => admin::JobState::Retrying,
        S::Finished => admin::JobState::Finished,
    }
}

/// The state a wire number names; `None` for unspecified (any state, in a filter).
///
/// # Errors
/// For a number that names no state (a newer peer's, or garbage).
pub fn state_from_wire(state: i32) -> Result<Option<kairos_core::JobState>, prost::UnknownEnumValue> {
    use kairos_core::JobState as S;
    Ok(match admin::JobState::try_from(state)? {
        admin::JobState::Unspecified => None,
        admin::JobState::Scheduled => Some(S::Scheduled),
        admin::JobState::Paused => Some(S::Paused),
        admin::JobState::WaitingForApp => Some(S::WaitingForApp),
        admin::JobState::Retrying => Some(S::Retrying),
        admin::JobState::Finished => Some(S::Finished),
    })
}

/// The wire form of a delivery outcome (none: unspecified).
pub fn outcome_to_wire(outcome: Option<kairos_core::TriggerOutcome>) -> admin::TriggerOutcome {
    use kairos_core::TriggerOutcome as O;
    match outcome {
        None => admin::TriggerOutcome::Unspecified,
        Some(O::Success) => admin::TriggerOutcome::Success,
        Some(O::Failed) => admin::TriggerOutcome::Failed,
        Some(O::Dropped) => admin::TriggerOutcome::Dropped,
        Some(O::Undeliverable) => admin::TriggerOutcome::Undeliverable,
    }
}

/// A delivery outcome from its wire form (unspecified and unknown numbers: none).
pub fn outcome_from_wire(outcome: i32) -> Option<kairos_core::TriggerOutcome> {
    use kairos_core::TriggerOutcome as O;
    match admin::TriggerOutcome::try_from(outcome).ok()? {
        admin::TriggerOutcome::Unspecified => None,
        admin::TriggerOutcome::Success => Some(O::Success),
        admin::TriggerOutcome::Failed => Some(O::Failed),
        admin::TriggerOutcome::Dropped => Some(O::Dropped),
        admin::TriggerOutcome::Undeliverable => Some(O::Undeliverable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_outcomes_round_trip_and_unknown_numbers_are_refused_or_none() {
        use kairos_core::{JobState, TriggerOutcome};
        for state in [
            JobState::Scheduled,
            JobState::Paused,
            JobState::WaitingForApp,
            JobState::Retrying,
            JobState::Finished,
        ] {
            assert_eq!(state_from_wire(state_to_wire(state) as i32), Ok(Some(state)));
        }
        assert_eq!(state_from_wire(0), Ok(None));
        assert!(state_from_wire(99).is_err());
        for outcome in [
            TriggerOutcome::Success,
            TriggerOutcome::Failed,
            TriggerOutcome::Dropped,
            TriggerOutcome::Undeliverable,
        ] {
            assert_eq!(outcome_from_wire(outcome_to_wire(Some(outcome)) as i32), Some(outcome));
        }
        assert_eq!(outcome_to_wire(None), admin::TriggerOutcome::Unspecified);
        assert_eq!(outcome_from_wire(42), None);
    }

    #[test]
    fn scheduler_job_round_trips_with_every_field() {
        let spec = JobSpec {
            schedule: Some("@every 1s".into()),
            repeats: Some(0),
            due_time: Some("10s".into()),
            ttl: Some("P1D".into()),
            data: Some(Payload { type_url: String::new(), value: b"{}".to_vec() }),
            failure_policy: Some(FailurePolicy::Constant {
                interval: Some(SignedDuration::new(1, 500_000_000)),
                max_retries: None,
            }),
            misfire_policy: None,
        };
        assert_eq!(spec_from_scheduler_job(spec_to_scheduler_job(&spec)).unwrap(), spec);
        let (name, back) = spec_from_runtime_job(spec_to_runtime_job("n", &spec)).unwrap();
        assert_eq!((name.as_str(), back), ("n", spec));
    }

    #[test]
    fn extensions_round_trip_through_both_jobs() {
        let spec = JobSpec {
            schedule: Some("@every 1s".into()),
            failure_policy: Some(FailurePolicy::Exponential(Exponential {
                initial_interval: SignedDuration::from_millis(250),
                multiplier: Ratio::from_millionths(1_500_000),
                max_interval: Some(SignedDuration::from_secs(60)),
                max_retries: Some(7),
                jitter: Ratio::from_millionths(100_000),
            })),
            misfire_policy: Some(MisfirePolicy {
                catch_up: CatchUp::Once,
                window: Some(SignedDuration::from_secs(3600)),
            }),
            ..Default::default()
        };
        assert_eq!(spec_from_scheduler_job(spec_to_scheduler_job(&spec)).unwrap(), spec);
        let (_, back) = spec_from_runtime_job(spec_to_runtime_job("n", &spec)).unwrap();
        assert_eq!(back, spec);
        for catch_up in [CatchUp::All, CatchUp::Once, CatchUp::Skip] {
            let policy = MisfirePolicy { catch_up, window: None };
            assert_eq!(misfire_from_proto(misfire_to_proto(&policy)).unwrap(), policy);
        }
    }

    #[test]
    fn exponential_defaults_multiplier_2_and_jitter_0() {
        let wire = common::JobFailurePolicyExponential {
            initial_interval: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
            ..Default::default()
        };
        let e = exponential_from_proto(wire).unwrap();
        assert_eq!(
            (e.multiplier, e.jitter, e.max_interval, e.max_retries),
            (DEFAULT_MULTIPLIER, Ratio::ZERO, None, None)
        );
    }

    #[test]
    fn bad_extension_parameters_are_rejected() {
        let secs = |seconds| Some(prost_types::Duration { seconds, nanos: 0 });
        let ok = common::JobFailurePolicyExponential { initial_interval: secs(1), ..Default::default() };
        let bad = [
            common::JobFailurePolicyExponential { initial_interval: None, ..ok },
            common::JobFailurePolicyExponential { initial_interval: secs(0), ..ok },
            common::JobFailurePolicyExponential { initial_interval: secs(-1), ..ok },
            common::JobFailurePolicyExponential { multiplier: Some(0.5), ..ok },
            common::JobFailurePolicyExponential { multiplier: Some(f64::NAN), ..ok },
            common::JobFailurePolicyExponential { jitter: Some(1.5), ..ok },
            common::JobFailurePolicyExponential { jitter: Some(-0.1), ..ok },
            common::JobFailurePolicyExponential {
                max_interval: Some(prost_types::Duration { seconds: 0, nanos: 5 }),
                ..ok
            },
        ];
        for e in bad {
            let policy =
                common::JobFailurePolicy { policy: Some(common::job_failure_policy::Policy::Exponential(e)) };
            assert!(matches!(policy_from_proto(policy), Err(ConvertError::Policy(_))), "{e:?}");
        }
        let window = |seconds, nanos| common::JobMisfirePolicy {
            catch_up: 0,
            window: Some(prost_types::Duration { seconds, nanos }),
        };
        assert!(matches!(misfire_from_proto(window(0, 999_999_999)), Err(ConvertError::Misfire(_))));
        assert!(matches!(misfire_from_proto(window(-5, 0)), Err(ConvertError::Misfire(_))));
        assert!(misfire_from_proto(window(1, 0)).is_ok());
        let unknown = common::JobMisfirePolicy { catch_up: 7, window: None };
        assert!(matches!(misfire_from_proto(unknown), Err(ConvertError::Misfire(_))));
    }

    #[test]
    fn empty_failure_policy_message_means_default() {
        let job = scheduler::Job {
            failure_policy: Some(common::JobFailurePolicy { policy: None }),
            ..Default::default()
        };
        assert_eq!(spec_from_scheduler_job(job).unwrap().failure_policy, None);
    }

    #[test]
    fn out_of_range_interval_is_rejected() {
        let bad = prost_types::Duration { seconds: 1, nanos: -1 };
        assert!(duration_from_proto(bad).is_err());
        let bad = prost_types::Duration { seconds: 0, nanos: 1_000_000_000 };
        assert!(duration_from_proto(bad).is_err());
        assert_eq!(
            duration_from_proto(prost_types::Duration { seconds: -1, nanos: -5 }).unwrap(),
            SignedDuration::new(-1, -5)
        );
    }

    #[test]
    fn timestamps_round_trip_across_the_epoch() {
        for (s, n) in [(0, 0), (1, 5), (-1, -5), (-1_000, -999_999_999), (1_700_000_000, 123_456_789)] {
            let t = jiff::Timestamp::new(s, n).unwrap();
            let wire = timestamp_to_proto(t);
            assert!((0..1_000_000_000).contains(&wire.nanos), "{wire:?}");
            assert_eq!(timestamp_from_proto(wire).unwrap(), t);
        }
        assert!(timestamp_from_proto(prost_types::Timestamp { seconds: 0, nanos: -1 }).is_err());
        assert!(timestamp_from_proto(prost_types::Timestamp { seconds: i64::MAX, nanos: 0 }).is_err());
    }

    #[test]
    fn metadata_names_the_owner() {
        let key = JobKey { namespace: "ns".into(), owner: Owner::actor("T", "1"), name: "r".into() };
        assert_eq!(key_from_metadata("r".into(), Some(metadata_of(&key))).unwrap(), key);
        let key = JobKey::app("ns", "app", "j");
        assert_eq!(key_from_metadata("j".into(), Some(metadata_of(&key))).unwrap(), key);
        assert!(key_from_metadata("j".into(), None).is_err());
        let mut m = metadata_of(&key);
        m.namespace.clear();
        assert!(key_from_metadata("j".into(), Some(m)).is_err());
        let mut m = metadata_of(&key);
        m.app_id = "a\nb".into();
        assert!(key_from_metadata("j".into(), Some(m)).is_err());
    }
}

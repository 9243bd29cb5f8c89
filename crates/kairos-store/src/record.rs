//! The stored form of a job: a store-private protobuf message, part of the on-disk format.
//!
//! Every `Option` of the spec keeps its presence (`repeats: Some(0)` is not `None`,
//! `schedule: Some("")` is not `None`, `data: Some(Payload::default())` is not `None`). Instants
//! are stored as seconds and nanoseconds so that every [`Timestamp`] round-trips exactly. The key
//! is not stored: it is the record's key in the jobs table.

use jiff::{SignedDuration, Timestamp};
use kairos_core::misfire::{CatchUp, MisfirePolicy};
use kairos_core::policy::{Exponential, Ratio};
use kairos_core::timeline::Progress;
use kairos_core::{FailurePolicy, JobKey, JobSpec, JobStats, Payload, TriggerOutcome, TriggerRecord};
use prost::Message;

use crate::{StoreError, StoredJob};

#[derive(Clone, PartialEq, prost::Message)]
struct JobRecord {
    #[prost(string, optional, tag = "1")]
    schedule: Option<String>,
    #[prost(uint32, optional, tag = "2")]
    repeats: Option<u32>,
    #[prost(string, optional, tag = "3")]
    due_time: Option<String>,
    #[prost(string, optional, tag = "4")]
    ttl: Option<String>,
    #[prost(message, optional, tag = "5")]
    data: Option<PayloadRecord>,
    #[prost(message, optional, tag = "6")]
    failure_policy: Option<PolicyRecord>,
    #[prost(message, optional, tag = "7")]
    created: Option<InstantRecord>,
    #[prost(uint64, tag = "8")]
    incarnation: u64,
    #[prost(uint32, tag = "9")]
    count: u32,
    #[prost(message, optional, tag = "10")]
    last_scheduled: Option<InstantRecord>,
    #[prost(uint32, tag = "11")]
    attempts: u32,
    #[prost(message, optional, tag = "12")]
    next_due: Option<InstantRecord>,
    /// Absent (false) in records written before staging was stored.
    #[prost(bool, tag = "13")]
    staged: bool,
    /// The kairos extensions below are absent in records written before them: the job then
    /// has upstream's behaviour (misfire `all`, not paused, zero counters).
    #[prost(message, optional, tag = "14")]
    misfire_policy: Option<MisfireRecord>,
    #[prost(bool, tag = "15")]
    paused: bool,
    #[prost(message, optional, tag = "16")]
    stats: Option<StatsRecord>,
    /// Pending trigger-now requests (see [`StoredJob::manual`]).
    #[prost(message, repeated, tag = "17")]
    manual: Vec<InstantRecord>,
    /// See [`StoredJob::version`].
    #[prost(uint64, tag = "18")]
    version: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct MisfireRecord {
    /// 0 all, 1 once, 2 skip.
    #[prost(uint32, tag = "1")]
    catch_up: u32,
    #[prost(message, optional, tag = "2")]
    window: Option<InstantRecord>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct StatsRecord {
    #[prost(message, optional, tag = "1")]
    last_fired: Option<InstantRecord>,
    /// 0 none, then [`outcome_code`].
    #[prost(uint32, tag = "2")]
    last_outcome: u32,
    #[prost(uint64, tag = "3")]
    fired: u64,
    #[prost(uint64, tag = "4")]
    successes: u64,
    #[prost(uint64, tag = "5")]
    failures: u64,
    #[prost(uint64, tag = "6")]
    records: u64,
}

/// One trigger record of a job's history.
#[derive(Clone, PartialEq, prost::Message)]
struct HistoryRecord {
    #[prost(message, optional, tag = "1")]
    tick: Option<InstantRecord>,
    #[prost(message, optional, tag = "2")]
    fired_at: Option<InstantRecord>,
    #[prost(message, optional, tag = "3")]
    answered_at: Option<InstantRecord>,
    #[prost(uint32, tag = "4")]
    attempt: u32,
    #[prost(uint32, tag = "5")]
    outcome: u32,
    #[prost(bool, tag = "6")]
    manual: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PayloadRecord {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// Seconds and nanoseconds, both signed with the same sign (as jiff and protobuf do).
#[derive(Clone, PartialEq, prost::Message)]
struct InstantRecord {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PolicyRecord {
    #[prost(oneof = "PolicyKind", tags = "1, 2, 3")]
    kind: Option<PolicyKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum PolicyKind {
    #[prost(message, tag = "1")]
    Drop(DropRecord),
    #[prost(message, tag = "2")]
    Constant(ConstantRecord),
    #[prost(message, tag = "3")]
    Exponential(ExponentialRecord),
}

#[derive(Clone, PartialEq, prost::Message)]
struct ExponentialRecord {
    #[prost(message, optional, tag = "1")]
    initial_interval: Option<InstantRecord>,
    #[prost(uint32, tag = "2")]
    multiplier_millionths: u32,
    #[prost(message, optional, tag = "3")]
    max_interval: Option<InstantRecord>,
    #[prost(uint32, optional, tag = "4")]
    max_retries: Option<u32>,
    #[prost(uint32, tag = "5")]
    jitter_millionths: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct DropRecord {}

#[derive(Clone, PartialEq, prost::Message)]
struct ConstantRecord {
    #[prost(message, optional, tag = "1")]
    interval: Option<InstantRecord>,
    #[prost(uint32, optional, tag = "2")]
    max_retries: Option<u32>,
}

/// Encodes a job's record (everything but its key).
pub(crate) fn encode_record(job: &StoredJob) -> Vec<u8> {
    let spec = &job.spec;
    JobRecord {
        schedule: spec.schedule.clone(),
        repeats: spec.repeats,
        due_time: spec.due_time.clone(),
        ttl: spec.ttl.clone(),
        data: spec
            .data
            .as_ref()
            .map(|p| PayloadRecord { type_url: p.type_url.clone(), value: p.value.clone() }),
        failure_policy: spec.failure_policy.as_ref().map(|p| PolicyRecord {
            kind: Some(match p {
                FailurePolicy::Drop => PolicyKind::Drop(DropRecord {}),
                FailurePolicy::Constant { interval, max_retries } => PolicyKind::Constant(ConstantRecord {
                    interval: interval
                        .map(|d| InstantRecord { seconds: d.as_secs(), nanos: d.subsec_nanos() }),
                    max_retries: *max_retries,
                }),
                FailurePolicy::Exponential(e) => PolicyKind::Exponential(ExponentialRecord {
                    initial_interval: Some(span(e.initial_interval)),
                    multiplier_millionths: e.multiplier.millionths(),
                    max_interval: e.max_interval.map(span),
                    max_retries: e.max_retries,
                    jitter_millionths: e.jitter.millionths(),
                }),
            }),
        }),
        created: Some(instant(job.created)),
        incarnation: job.incarnation,
        version: job.version,
        count: job.progress.count,
        last_scheduled: job.progress.last_scheduled.map(instant),
        attempts: job.progress.attempts,
        next_due: Some(instant(job.next_due)),
        staged: job.staged,
        misfire_policy: spec.misfire_policy.map(|m| MisfireRecord {
            catch_up: match m.catch_up {
                CatchUp::All => 0,
                CatchUp::Once => 1,
                CatchUp::Skip => 2,
            },
            window: m.window.map(span),
        }),
        paused: job.paused,
        stats: (job.stats != JobStats::default()).then(|| StatsRecord {
            last_fired: job.stats.last_fired.map(instant),
            last_outcome: job.stats.last_outcome.map_or(0, outcome_code),
            fired: job.stats.fired,
            successes: job.stats.successes,
            failures: job.stats.failures,
            records: job.stats.records,
        }),
        manual: job.manual.iter().copied().map(instant).collect(),
    }
    .encode_to_vec()
}

fn outcome_code(outcome: TriggerOutcome) -> u32 {
    match outcome {
        TriggerOutcome::Success => 1,
        TriggerOutcome::Failed => 2,
        TriggerOutcome::Dropped => 3,
        TriggerOutcome::Undeliverable => 4,
    }
}

fn outcome_of(code: u32) -> Result<TriggerOutcome, String> {
    Ok(match code {
        1 => TriggerOutcome::Success,
        2 => TriggerOutcome::Failed,
        3 => TriggerOutcome::Dropped,
        4 => TriggerOutcome::Undeliverable,
        other => return Err(format!("unknown trigger outcome {other}")),
    })
}

fn span(d: SignedDuration) -> InstantRecord {
    InstantRecord { seconds: d.as_secs(), nanos: d.subsec_nanos() }
}

/// Encodes one trigger record of a job's history.
pub(crate) fn encode_history(record: &TriggerRecord) -> Vec<u8> {
    HistoryRecord {
        tick: Some(instant(record.tick)),
        fired_at: Some(instant(record.fired_at)),
        answered_at: Some(instant(record.answered_at)),
        attempt: record.attempt,
        outcome: outcome_code(record.outcome),
        manual: record.manual,
    }
    .encode_to_vec()
}

/// Decodes a record written by [`encode_history`] for job `key`.
///
/// # Errors
/// [`StoreError::Corrupt`] when the bytes are not such a record.
pub(crate) fn decode_history(key: &JobKey, bytes: &[u8]) -> Result<TriggerRecord, StoreError> {
    let corrupt = |why: &str| StoreError::Corrupt(format!("history record of job '{key}': {why}"));
    let r = HistoryRecord::decode(bytes).map_err(|e| corrupt(&e.to_string()))?;
    let required = |field: &str, value: Option<InstantRecord>| {
        value
            .ok_or_else(|| corrupt(&format!("{field} missing")))
            .and_then(|i| timestamp(i).map_err(|e| corrupt(&e)))
    };
    Ok(TriggerRecord {
        tick: required("tick", r.tick)?,
        fired_at: required("fired at", r.fired_at)?,
        answered_at: required("answered at", r.answered_at)?,
        attempt: r.attempt,
        outcome: outcome_of(r.outcome).map_err(|e| corrupt(&e))?,
        manual: r.manual,
    })
}

/// Decodes a record written by [`encode_record`] for `key`.
///
/// # Errors
/// [`StoreError::Corrupt`] when the bytes are not such a record.
pub(crate) fn decode_record(key: JobKey, bytes: &[u8]) -> Result<StoredJob, StoreError> {
    let corrupt = |why: &str| StoreError::Corrupt(format!("record of job '{key}': {why}"));
    let record = JobRecord::decode(bytes).map_err(|e| corrupt(&e.to_string()))?;
    let failure_policy = match record.failure_policy {
        None => None,
        Some(PolicyRecord { kind: None }) => return Err(corrupt("failure policy without a kind")),
        Some(PolicyRecord { kind: Some(PolicyKind::Drop(_)) }) => Some(FailurePolicy::Drop),
        Some(PolicyRecord { kind: Some(PolicyKind::Constant(c)) }) => Some(FailurePolicy::Constant {
            interval: c.interval.map(duration).transpose().map_err(|e| corrupt(&e))?,
            max_retries: c.max_retries,
        }),
        Some(PolicyRecord { kind: Some(PolicyKind::Exponential(e)) }) => {
            Some(FailurePolicy::Exponential(Exponential {
                initial_interval: duration(
                    e.initial_interval.ok_or_else(|| corrupt("initial interval missing"))?,
                )
                .map_err(|e| corrupt(&e))?,
                multiplier: Ratio::from_millionths(e.multiplier_millionths),
                max_interval: e.max_interval.map(duration).transpose().map_err(|e| corrupt(&e))?,
                max_retries: e.max_retries,
                jitter: Ratio::from_millionths(e.jitter_millionths),
            }))
        }
    };
    let misfire_policy = match record.misfire_policy {
        None => None,
        Some(m) => Some(MisfirePolicy {
            catch_up: match m.catch_up {
                0 => CatchUp::All,
                1 => CatchUp::Once,
                2 => CatchUp::Skip,
                other => return Err(corrupt(&format!("unknown misfire policy {other}"))),
            },
            window: m.window.map(duration).transpose().map_err(|e| corrupt(&e))?,
        }),
    };
    let stats = match record.stats {
        None => JobStats::default(),
        Some(s) => JobStats {
            last_fired: s.last_fired.map(timestamp).transpose().map_err(|e| corrupt(&e))?,
            last_outcome: match s.last_outcome {
                0 => None,
                code => Some(outcome_of(code).map_err(|e| corrupt(&e))?),
            },
            fired: s.fired,
            successes: s.successes,
            failures: s.failures,
            records: s.records,
        },
    };
    let required = |field: &str, value: Option<InstantRecord>| {
        value
            .ok_or_else(|| corrupt(&format!("{field} missing")))
            .and_then(|i| timestamp(i).map_err(|e| corrupt(&e)))
    };
    let created = required("created", record.created)?;
    let next_due = required("next due", record.next_due)?;
    let last_scheduled = record.last_scheduled.map(timestamp).transpose().map_err(|e| corrupt(&e))?;
    Ok(StoredJob {
        spec: JobSpec {
            schedule: record.schedule,
            repeats: record.repeats,
            due_time: record.due_time,
            ttl: record.ttl,
            data: record.data.map(|p| Payload { type_url: p.type_url, value: p.value }),
            failure_policy,
            misfire_policy,
        },
        created,
        incarnation: record.incarnation,
        version: record.version,
        progress: Progress { count: record.count, last_scheduled, attempts: record.attempts },
        next_due,
        staged: record.staged,
        paused: record.paused,
        stats,
        manual: record
            .manual
            .into_iter()
            .map(timestamp)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| corrupt(&e))?,
        key,
    })
}

fn instant(t: Timestamp) -> InstantRecord {
    InstantRecord { seconds: t.as_second(), nanos: t.subsec_nanosecond() }
}

fn timestamp(i: InstantRecord) -> Result<Timestamp, String> {
    Timestamp::new(i.seconds, i.nanos).map_err(|e| format!("bad instant {}s {}ns: {e}", i.seconds, i.nanos))
}

fn duration(i: InstantRecord) -> Result<SignedDuration, String> {
    // SignedDuration::new panics when the nanoseconds carry into overflowing seconds; a
    // sub-second part cannot carry.
    if i.nanos.unsigned_abs() >= 1_000_000_000 {
        return Err(format!("bad duration {}s {}ns", i.seconds, i.nanos));
    }
    Ok(SignedDuration::new(i.seconds, i.nanos))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    prop_compose! {
        pub(crate) fn any_timestamp()(s in Timestamp::MIN.as_second()..=Timestamp::MAX.as_second(), n in 0i32..1_000_000_000) -> Timestamp {
            // Clamp the sub-second part at the ends of jiff's range.
            Timestamp::new(s, if s < 0 { -n } else { n }).unwrap_or(Timestamp::new(s, 0).unwrap())
        }
    }

    fn any_policy() -> impl Strategy<Value = FailurePolicy> {
        prop_oneof![
            Just(FailurePolicy::Drop),
            (
                proptest::option::of((any::<i64>(), -999_999_999i32..=999_999_999)),
                proptest::option::of(any::<u32>())
            )
                .prop_map(|(interval, max_retries)| FailurePolicy::Constant {
                    interval: interval
                        .map(|(s, n)| SignedDuration::new(s, if (s < 0) == (n < 0) { n } else { 0 })),
                    max_retries,
                }),
            (
                1i64..=i64::from(i32::MAX),
                any::<u32>(),
                proptest::option::of(0i64..=i64::from(i32::MAX)),
                proptest::option::of(any::<u32>()),
                any::<u32>()
            )
                .prop_map(|(initial, multiplier, max, max_retries, jitter)| {
                    FailurePolicy::Exponential(Exponential {
                        initial_interval: SignedDuration::from_millis(initial),
                        multiplier: Ratio::from_millionths(multiplier),
                        max_interval: max.map(SignedDuration::from_micros),
                        max_retries,
                        jitter: Ratio::from_millionths(jitter),
                    })
                }),
        ]
    }

    fn any_misfire() -> impl Strategy<Value = MisfirePolicy> {
        (
            proptest::sample::select(vec![CatchUp::All, CatchUp::Once, CatchUp::Skip]),
            proptest::option::of((any::<i64>(), 0i32..=999_999_999)),
        )
            .prop_map(|(catch_up, window)| MisfirePolicy {
                catch_up,
                window: window.map(|(s, n)| SignedDuration::new(s, if s < 0 { -n } else { n })),
            })
    }

    fn any_outcome() -> impl Strategy<Value = TriggerOutcome> {
        proptest::sample::select(vec![
            TriggerOutcome::Success,
            TriggerOutcome::Failed,
            TriggerOutcome::Dropped,
            TriggerOutcome::Undeliverable,
        ])
    }

    prop_compose! {
        fn any_stats()(
            last_fired in proptest::option::of(any_timestamp()),
            last_outcome in proptest::option::of(any_outcome()),
            fired in any::<u64>(), successes in any::<u64>(), failures in any::<u64>(), records in any::<u64>(),
        ) -> JobStats {
            JobStats { last_fired, last_outcome, fired, successes, failures, records }
        }
    }

    prop_compose! {
        fn any_trigger()(
            tick in any_timestamp(), fired_at in any_timestamp(), answered_at in any_timestamp(),
            attempt in any::<u32>(), outcome in any_outcome(), manual in any::<bool>(),
        ) -> TriggerRecord {
            TriggerRecord { tick, fired_at, answered_at, attempt, outcome, manual }
        }
    }

    prop_compose! {
        pub(crate) fn any_spec()(
            schedule in proptest::option::of(".{0,10}"),
            repeats in proptest::option::of(any::<u32>()),
            due_time in proptest::option::of(".{0,10}"),
            ttl in proptest::option::of(".{0,10}"),
            data in proptest::option::of((".{0,10}", proptest::collection::vec(any::<u8>(), 0..20))),
            failure_policy in proptest::option::of(any_policy()),
            misfire_policy in proptest::option::of(any_misfire()),
        ) -> JobSpec {
            JobSpec {
                schedule, repeats, due_time, ttl,
                data: data.map(|(type_url, value)| Payload { type_url, value }),
                failure_policy,
                misfire_policy,
            }
        }
    }

    prop_compose! {
        fn any_job()(
            spec in any_spec(),
            created in any_timestamp(),
            incarnation in any::<u64>(),
            version in any::<u64>(),
            count in any::<u32>(),
            last_scheduled in proptest::option::of(any_timestamp()),
            attempts in any::<u32>(),
            next_due in any_timestamp(),
            staged in any::<bool>(),
            paused in any::<bool>(),
            stats in any_stats(),
            manual in proptest::collection::vec(any_timestamp(), 0..3),
        ) -> StoredJob {
            StoredJob {
                key: JobKey::app("ns", "app", "job"),
                spec, created, incarnation, version,
                progress: Progress { count, last_scheduled, attempts },
                next_due,
                staged,
                paused,
                stats,
                manual,
            }
        }
    }

    #[test]
    fn empty_and_default_values_keep_their_presence() {
        let t = Timestamp::UNIX_EPOCH;
        let spec = JobSpec {
            schedule: Some(String::new()),
            repeats: Some(0),
            due_time: Some(String::new()),
            ttl: None,
            data: Some(Payload::default()),
            failure_policy: Some(FailurePolicy::Constant { interval: None, max_retries: Some(0) }),
            misfire_policy: Some(MisfirePolicy::DEFAULT),
        };
        let job = StoredJob::new(JobKey::app("ns", "app", "job"), spec, t, 0, t);
        let back = decode_record(job.key.clone(), &encode_record(&job)).unwrap();
        assert_eq!(back, job);
    }

    #[test]
    fn garbage_bytes_are_corrupt_not_a_panic() {
        for bytes in [&b"\xff\xff\xff"[..], b"", b"\x3a\x02\x08\x01"] {
            assert!(
                matches!(decode_record(JobKey::app("n", "a", "j"), bytes), Err(StoreError::Corrupt(_))),
                "{bytes:?}"
            );
        }
    }

    /// A record as kairos wrote it before the extensions (schema tags 1 to 13), byte for byte:
    /// what a store file of that version holds. Frozen: never regenerate it from today's code.
    #[rustfmt::skip]
    const MAIN_RECORD: &[u8] = &[
        0x0a, 0x09, b'@', b'e', b'v', b'e', b'r', b'y', b' ', b'5', b's', // 1 schedule "@every 5s"
        0x10, 0x03,                                                       // 2 repeats 3
        0x22, 0x02, b'1', b'h',                                           // 4 ttl "1h"
        0x2a, 0x07, 0x0a, 0x01, b't', 0x12, 0x02, 0x01, 0x02,             // 5 data {type_url "t", value [1, 2]}
        0x32, 0x08, 0x12, 0x06, 0x0a, 0x02, 0x08, 0x01, 0x10, 0x03,       // 6 policy constant {1 s, 3 retries}
        0x3a, 0x04, 0x08, 0x64, 0x10, 0x05,                               // 7 created {100 s, 5 ns}
        0x40, 0x2a,                                                       // 8 incarnation 42
        0x48, 0x02,                                                       // 9 count 2
        0x52, 0x02, 0x08, 0x6e,                                           // 10 last_scheduled 110 s
        0x58, 0x01,                                                       // 11 attempts 1
        0x62, 0x02, 0x08, 0x6f,                                           // 12 next_due 111 s
        0x68, 0x01,                                                       // 13 staged
    ];

    #[test]
    fn a_record_written_by_main_decodes_with_upstreams_defaults() {
        let key = JobKey::app("ns", "app", "job");
        let job = decode_record(key.clone(), MAIN_RECORD).unwrap();
        assert_eq!(job.spec.schedule.as_deref(), Some("@every 5s"));
        assert_eq!(
            (job.spec.repeats, job.spec.due_time.as_deref(), job.spec.ttl.as_deref()),
            (Some(3), None, Some("1h"))
        );
        assert_eq!(job.spec.data, Some(Payload { type_url: "t".into(), value: vec![1, 2] }));
        let one_second = Some(SignedDuration::from_secs(1));
        assert_eq!(
            job.spec.failure_policy,
            Some(FailurePolicy::Constant { interval: one_second, max_retries: Some(3) })
        );
        assert_eq!(job.created, Timestamp::new(100, 5).unwrap());
        assert_eq!(job.spec.misfire_policy, None, "no misfire policy: upstream's catch-up");
        assert!(!job.paused);
        assert_eq!(job.stats, JobStats::default());
        assert_eq!(
            (job.incarnation, job.progress.count, job.progress.attempts, job.staged),
            (42, 2, 1, true)
        );
        assert_eq!(job.progress.last_scheduled, Some(Timestamp::from_second(110).unwrap()));
        assert_eq!(job.next_due, Timestamp::from_second(111).unwrap());
        assert_eq!(job.version, 0, "no version: older than any the engine stamps");
        // And a job without extensions is written exactly as main wrote it.
        assert_eq!(encode_record(&job), MAIN_RECORD);
    }

    #[test]
    fn unknown_codes_in_extension_fields_are_corrupt() {
        let epoch = Timestamp::UNIX_EPOCH;
        let job = StoredJob::new(JobKey::app("n", "a", "j"), JobSpec::default(), epoch, 1, epoch);
        let mut record = JobRecord::decode(encode_record(&job).as_slice()).unwrap();
        record.misfire_policy = Some(MisfireRecord { catch_up: 9, window: None });
        let err = decode_record(job.key.clone(), &record.encode_to_vec()).unwrap_err();
        assert!(err.to_string().contains("unknown misfire policy 9"), "{err}");
        let bad = HistoryRecord {
            outcome: 7,
            ..HistoryRecord::decode(
                encode_history(&TriggerRecord {
                    tick: Timestamp::UNIX_EPOCH,
                    fired_at: Timestamp::UNIX_EPOCH,
                    answered_at: Timestamp::UNIX_EPOCH,
                    attempt: 1,
                    outcome: TriggerOutcome::Success,
                    manual: false,
                })
                .as_slice(),
            )
            .unwrap()
        };
        let err = decode_history(&job.key, &bad.encode_to_vec()).unwrap_err();
        assert!(err.to_string().contains("unknown trigger outcome 7"), "{err}");
    }

    proptest! {
        #[test]
        fn history_records_round_trip_exactly(record in any_trigger()) {
            let key = JobKey::app("n", "a", "j");
            prop_assert_eq!(decode_history(&key, &encode_history(&record)).unwrap(), record);
            prop_assert!(encode_history(&record).len() <= TriggerRecord::MAX_BYTES);
        }

        #[test]
        fn records_round_trip_exactly(job in any_job()) {
            let back = decode_record(job.key.clone(), &encode_record(&job)).unwrap();
            prop_assert_eq!(back.version, job.version);
            prop_assert_eq!(back, job);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_record(JobKey::app("n", "a", "j"), &bytes);
        }
    }
}

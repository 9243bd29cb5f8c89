//! The stored form of a job: a store-private protobuf message, part of the on-disk format.
//!
//! Every `Option` of the spec keeps its presence (`repeats: Some(0)` is not `None`,
//! `schedule: Some("")` is not `None`, `data: Some(Payload::default())` is not `None`). Instants
//! are stored as seconds and nanoseconds so that every [`Timestamp`] round-trips exactly. The key
//! is not stored: it is the record's key in the jobs table.

use jiff::{SignedDuration, Timestamp};
use kairos_core::timeline::Progress;
use kairos_core::{FailurePolicy, JobKey, JobSpec, Payload};
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
    #[prost(oneof = "PolicyKind", tags = "1, 2")]
    kind: Option<PolicyKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum PolicyKind {
    #[prost(message, tag = "1")]
    Drop(DropRecord),
    #[prost(message, tag = "2")]
    Constant(ConstantRecord),
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
            }),
        }),
        created: Some(instant(job.created)),
        incarnation: job.incarnation,
        count: job.progress.count,
        last_scheduled: job.progress.last_scheduled.map(instant),
        attempts: job.progress.attempts,
        next_due: Some(instant(job.next_due)),
        staged: job.staged,
    }
    .encode_to_vec()
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
        },
        created,
        incarnation: record.incarnation,
        progress: Progress { count: record.count, last_scheduled, attempts: record.attempts },
        next_due,
        staged: record.staged,
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
        ]
    }

    prop_compose! {
        pub(crate) fn any_spec()(
            schedule in proptest::option::of(".{0,10}"),
            repeats in proptest::option::of(any::<u32>()),
            due_time in proptest::option::of(".{0,10}"),
            ttl in proptest::option::of(".{0,10}"),
            data in proptest::option::of((".{0,10}", proptest::collection::vec(any::<u8>(), 0..20))),
            failure_policy in proptest::option::of(any_policy()),
        ) -> JobSpec {
            JobSpec {
                schedule, repeats, due_time, ttl,
                data: data.map(|(type_url, value)| Payload { type_url, value }),
                failure_policy,
            }
        }
    }

    prop_compose! {
        fn any_job()(
            spec in any_spec(),
            created in any_timestamp(),
            incarnation in any::<u64>(),
            count in any::<u32>(),
            last_scheduled in proptest::option::of(any_timestamp()),
            attempts in any::<u32>(),
            next_due in any_timestamp(),
            staged in any::<bool>(),
        ) -> StoredJob {
            StoredJob {
                key: JobKey::app("ns", "app", "job"),
                spec, created, incarnation,
                progress: Progress { count, last_scheduled, attempts },
                next_due,
                staged,
            }
        }
    }

    #[test]
    fn empty_and_default_values_keep_their_presence() {
        let t = Timestamp::UNIX_EPOCH;
        let job = StoredJob {
            key: JobKey::app("ns", "app", "job"),
            spec: JobSpec {
                schedule: Some(String::new()),
                repeats: Some(0),
                due_time: Some(String::new()),
                ttl: None,
                data: Some(Payload::default()),
                failure_policy: Some(FailurePolicy::Constant { interval: None, max_retries: Some(0) }),
            },
            created: t,
            incarnation: 0,
            progress: Progress::default(),
            next_due: t,
            staged: false,
        };
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

    proptest! {
        #[test]
        fn records_round_trip_exactly(job in any_job()) {
            let back = decode_record(job.key.clone(), &encode_record(&job)).unwrap();
            prop_assert_eq!(back, job);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_record(JobKey::app("n", "a", "j"), &bytes);
        }
    }
}

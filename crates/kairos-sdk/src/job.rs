//! The job a client schedules, and reads back: a builder over the runtime `Job` message.

use std::time::Duration;

use kairos_proto::common::{self, job_failure_policy::Policy};
use kairos_proto::runtime;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::data::{DataError, JobData};

/// What the scheduler does when delivering a tick to the app fails.
///
/// Without a policy the sidecar applies its default, `constant(1s, Some(3))` (4 attempts per
/// tick), and returns that default from [`Client::get_job`](crate::Client::get_job).
///
/// ```
/// use std::time::Duration;
/// use kairos_sdk::{Exponential, FailurePolicy};
///
/// let retry = FailurePolicy::constant(Duration::from_secs(5), Some(2)); // 3 attempts in all
/// let forever = FailurePolicy::constant(Duration::from_millis(500), None);
/// assert_ne!(retry, forever);
/// assert_eq!(FailurePolicy::drop(), FailurePolicy::Drop);
///
/// // kairos extension: 1s, 2s, 4s, … capped at 1m, at most 5 retries, up to 10% shorter.
/// let backoff = FailurePolicy::exponential(
///     Exponential::new(Duration::from_secs(1))
///         .multiplier(2.0)
///         .max_interval(Duration::from_secs(60))
///         .max_retries(5)
///         .jitter(0.1),
/// );
/// let wire = kairos_proto::common::JobFailurePolicy::from(backoff);
/// assert!(matches!(wire.policy, Some(kairos_proto::common::job_failure_policy::Policy::Exponential(_))));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FailurePolicy {
    /// No retry: the failed tick counts and the schedule moves on.
    Drop,
    /// Retry every `interval`, at most `max_retries` times (`None`: until it succeeds).
    Constant {
        /// Pause between attempts; zero retries at once.
        interval: Duration,
        /// Retries after the first attempt; `None` retries forever.
        max_retries: Option<u32>,
    },
    /// Retry with growing pauses (a kairos extension: an upstream Dapr sidecar or scheduler
    /// does not know it and applies its default policy instead).
    Exponential(Exponential),
}

/// The exponential failure policy (a kairos extension): the pause before retry `n` is
/// `min(initial_interval * multiplier^(n-1), max_interval) * (1 - jitter * u)`, `u` in [0, 1).
///
/// Unset members take the scheduler's defaults: multiplier 2, no cap, retry forever, no jitter.
/// The scheduler refuses an interval ≤ 0, a multiplier < 1, a jitter outside [0, 1] and a
/// `max_interval` below `initial_interval` (`Error::is_invalid`).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Exponential {
    /// Pause before the first retry.
    pub initial_interval: Duration,
    /// Growth per retry; `None` means 2.
    pub multiplier: Option<f64>,
    /// Longest pause; `None` means no cap.
    pub max_interval: Option<Duration>,
    /// Retries after the first attempt; `None` retries forever.
    pub max_retries: Option<u32>,
    /// Fraction in [0, 1] by which a pause may be shortened at random; `None` means 0.
    pub jitter: Option<f64>,
}

impl Exponential {
    /// Retries starting `initial_interval` apart, doubling, forever.
    pub fn new(initial_interval: Duration) -> Self {
        Exponential {
            initial_interval,
            multiplier: None,
            max_interval: None,
            max_retries: None,
            jitter: None,
        }
    }

    setters! {
        /// Sets the growth per retry (at least 1).
        multiplier(multiplier: f64) => multiplier = Some(multiplier);

        /// Caps every pause at `max_interval`.
        max_interval(max_interval: Duration) => max_interval = Some(max_interval);

        /// Gives the tick up after `max_retries` retries.
        max_retries(max_retries: u32) => max_retries = Some(max_retries);

        /// Shortens each pause by up to this fraction (within [0, 1]) at random.
        jitter(jitter: f64) => jitter = Some(jitter);
    }
}

impl From<Exponential> for FailurePolicy {
    fn from(exponential: Exponential) -> Self {
        FailurePolicy::Exponential(exponential)
    }
}

impl From<FailurePolicy> for common::JobFailurePolicy {
    fn from(policy: FailurePolicy) -> Self {
        policy.to_proto()
    }
}

/// What happens to ticks missed while the scheduler was down, the job paused or its app away
/// (a kairos extension; upstream Dapr always delivers every missed tick).
///
/// ```
/// use std::time::Duration;
/// use kairos_sdk::{CatchUp, MisfirePolicy};
///
/// // One delivery for a whole outage, and none for ticks missed more than an hour ago.
/// let policy = MisfirePolicy::new(CatchUp::Once).window(Duration::from_secs(3600));
/// assert_eq!(policy.catch_up, CatchUp::Once);
/// assert_eq!(MisfirePolicy::default(), MisfirePolicy::new(CatchUp::All));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MisfirePolicy {
    /// Which missed ticks are delivered.
    pub catch_up: CatchUp,
    /// Missed ticks older than this are skipped whatever `catch_up` says (at least 1s);
    /// `None` means no limit.
    pub window: Option<Duration>,
}

impl MisfirePolicy {
    /// `catch_up` without a window.
    pub fn new(catch_up: CatchUp) -> Self {
        MisfirePolicy { catch_up, window: None }
    }

    setters! {
        /// Skips missed ticks older than `window`.
        window(window: Duration) => window = Some(window);
    }

    fn to_proto(self) -> common::JobMisfirePolicy {
        let catch_up = match self.catch_up {
            CatchUp::All => common::JobMisfireCatchUp::All,
            CatchUp::Once => common::JobMisfireCatchUp::Once,
            CatchUp::Skip => common::JobMisfireCatchUp::Skip,
        };
        common::JobMisfirePolicy { catch_up: catch_up as i32, window: self.window.map(duration_to_proto) }
    }

    fn from_proto(policy: common::JobMisfirePolicy) -> Self {
        let catch_up = match common::JobMisfireCatchUp::try_from(policy.catch_up) {
            Ok(common::JobMisfireCatchUp::Once) => CatchUp::Once,
            Ok(common::JobMisfireCatchUp::Skip) => CatchUp::Skip,
            // A newer catch-up this SDK does not know reads as the default.
            _ => CatchUp::All,
        };
        MisfirePolicy { catch_up, window: policy.window.map(duration_from_proto) }
    }
}

/// Which missed ticks a [`MisfirePolicy`] delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CatchUp {
    /// Every missed tick, back to back (Dapr's behaviour).
    #[default]
    All,
    /// One delivery (the newest missed tick) for the whole gap, then on schedule.
    Once,
    /// None: continue at the next future tick.
    Skip,
}

/// Out-of-range durations saturate; the scheduler rejects them.
fn duration_to_proto(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

impl FailurePolicy {
    /// [`FailurePolicy::Drop`]: never retry.
    pub fn drop() -> Self {
        FailurePolicy::Drop
    }

    /// [`FailurePolicy::Constant`]: retry every `interval`, at most `max_retries` times.
    pub fn constant(interval: Duration, max_retries: Option<u32>) -> Self {
        FailurePolicy::Constant { interval, max_retries }
    }

    /// [`FailurePolicy::Exponential`] (kairos extension): retry with growing pauses.
    pub fn exponential(exponential: Exponential) -> Self {
        FailurePolicy::Exponential(exponential)
    }

    fn to_proto(self) -> common::JobFailurePolicy {
        let policy = match self {
            FailurePolicy::Drop => Policy::Drop(common::JobFailurePolicyDrop {}),
            FailurePolicy::Constant { interval, max_retries } => {
                Policy::Constant(common::JobFailurePolicyConstant {
                    interval: Some(duration_to_proto(interval)),
                    max_retries,
                })
            }
            FailurePolicy::Exponential(e) => Policy::Exponential(common::JobFailurePolicyExponential {
                initial_interval: Some(duration_to_proto(e.initial_interval)),
                multiplier: e.multiplier,
                max_interval: e.max_interval.map(duration_to_proto),
                max_retries: e.max_retries,
                jitter: e.jitter,
            }),
        };
        common::JobFailurePolicy { policy: Some(policy) }
    }

    /// `None` for a message with no policy set; negative intervals read as zero, as the
    /// scheduler treats them.
    fn from_proto(policy: common::JobFailurePolicy) -> Option<Self> {
        Some(match policy.policy? {
            Policy::Drop(_) => FailurePolicy::Drop,
            Policy::Constant(c) => FailurePolicy::Constant {
                interval: c.interval.map(duration_from_proto).unwrap_or_default(),
                max_retries: c.max_retries,
            },
            Policy::Exponential(e) => FailurePolicy::Exponential(Exponential {
                initial_interval: e.initial_interval.map(duration_from_proto).unwrap_or_default(),
                multiplier: e.multiplier,
                max_interval: e.max_interval.map(duration_from_proto),
                max_retries: e.max_retries,
                jitter: e.jitter,
            }),
        })
    }
}

fn duration_from_proto(d: prost_types::Duration) -> Duration {
    let seconds = u64::try_from(d.seconds).unwrap_or(0);
    let nanos = if d.seconds < 0 { 0 } else { u32::try_from(d.nanos).unwrap_or(0).min(999_999_999) };
    Duration::new(seconds, nanos)
}

/// A named job: built with [`Job::new`] and scheduled with
/// [`Client::schedule_job`](crate::Client::schedule_job), or read back with
/// [`Client::get_job`](crate::Client::get_job) / [`Client::list_jobs`](crate::Client::list_jobs).
///
/// Strings are sent as written; the scheduler validates them (spec §7.1–§7.3):
///
/// * `schedule`: 6-field cron with seconds (`"0 30 2 * * *"`), `@every 1h30m`, `@daily`, …,
///   optionally prefixed `TZ=Europe/Paris `;
/// * `due_time` / `ttl`: an RFC 3339 time, a Go duration (`"10s"`, `"1h30m"`) or an ISO 8601
///   duration (`"PT1H"`). A job needs a schedule, a due time or both.
///
/// ```
/// use std::time::Duration;
/// use kairos_sdk::{FailurePolicy, Job};
///
/// #[derive(serde::Serialize)]
/// struct Backup { db: &'static str }
///
/// let job = Job::new("prod-db-backup")
///     .schedule("@every 1h")
///     .repeats(24)
///     .due_time("10s")
///     .ttl("P1D")
///     .data_json(&Backup { db: "prod" })?
///     .failure_policy(FailurePolicy::constant(Duration::from_secs(5), Some(3)));
///
/// // Fields are public to read (a job from `get_job` is the same type).
/// assert_eq!(job.name, "prod-db-backup");
/// assert_eq!(job.schedule.as_deref(), Some("@every 1h"));
/// assert_eq!(job.decode_data::<serde_json::Value>()?["db"], "prod");
///
/// // The wire message the client sends.
/// let wire = kairos_proto::runtime::Job::from(job);
/// assert_eq!(wire.repeats, Some(24));
/// assert_eq!(wire.data.unwrap().type_url, "type.googleapis.com/google.protobuf.Value");
/// # Ok::<(), kairos_sdk::DataError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Job {
    /// Unique within the app (and namespace).
    pub name: String,
    /// Cron (6 fields, seconds first), `@every <duration>` or an `@` descriptor, as written.
    pub schedule: Option<String>,
    /// How many ticks fire before the job is deleted; `None`: no limit.
    pub repeats: Option<u32>,
    /// The first tick, as written.
    pub due_time: Option<String>,
    /// When the job expires, as written.
    pub ttl: Option<String>,
    /// The payload, byte for byte.
    pub data: Option<JobData>,
    /// The failure policy; jobs read back always carry one (the sidecar fills in its default).
    pub failure_policy: Option<FailurePolicy>,
    /// The misfire policy (kairos extension); `None` is Dapr's behaviour, every missed tick.
    pub misfire_policy: Option<MisfirePolicy>,
}

impl Job {
    /// A job named `name` with nothing else set (give it a schedule or a due time).
    pub fn new(name: impl Into<String>) -> Self {
        Job {
            name: name.into(),
            schedule: None,
            repeats: None,
            due_time: None,
            ttl: None,
            data: None,
            failure_policy: None,
            misfire_policy: None,
        }
    }

    setters! {
        /// Sets the schedule: cron (6 fields, seconds first), `@every <duration>` or a descriptor.
        schedule(schedule: impl Into<String>) => schedule = Some(schedule.into());

        /// Sets how many ticks fire before the job is deleted (must be at least 1).
        repeats(repeats: u32) => repeats = Some(repeats);

        /// Sets the first tick: an RFC 3339 time or a duration from now.
        due_time(due_time: impl Into<String>) => due_time = Some(due_time.into());

        /// Sets when the job expires: an RFC 3339 time or a duration from the due time (or from now).
        ttl(ttl: impl Into<String>) => ttl = Some(ttl.into());
    }

    /// Sets the payload to a JSON value, as a `google.protobuf.Value`-typed `Any` (the form the
    /// sidecar uses for HTTP-scheduled jobs; see [`crate::data`] for why).
    ///
    /// # Errors
    /// [`DataError::Json`] when `value` cannot be serialised to JSON.
    pub fn data_json<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self, DataError> {
        self.data = Some(JobData::json(value)?);
        Ok(self)
    }

    setters! {
        /// Sets the payload to raw bytes with an empty type URL.
        data_bytes(value: impl Into<Vec<u8>>) => data = Some(JobData::bytes(value));

        /// Sets the payload to an `Any` with this type URL and value.
        data_any(type_url: impl Into<String>, value: impl Into<Vec<u8>>)
            => data = Some(JobData::any(type_url, value));

        /// Sets the payload.
        data(data: JobData) => data = Some(data);

        /// Sets the failure policy (the sidecar's default is `constant(1s, Some(3))`).
        failure_policy(policy: FailurePolicy) => failure_policy = Some(policy);

        /// Sets the misfire policy (kairos extension: an upstream Dapr sidecar ignores it and
        /// delivers every missed tick).
        misfire_policy(policy: MisfirePolicy) => misfire_policy = Some(policy);
    }

    /// Deserialises the payload (a `Value`-typed `Any` or JSON text).
    ///
    /// # Errors
    /// [`DataError::Missing`] without a payload; otherwise as [`JobData::decode_json`].
    pub fn decode_data<T: DeserializeOwned>(&self) -> Result<T, DataError> {
        self.data.as_ref().ok_or(DataError::Missing)?.decode_json()
    }
}

impl From<Job> for runtime::Job {
    fn from(job: Job) -> Self {
        runtime::Job {
            name: job.name,
            schedule: job.schedule,
            repeats: job.repeats,
            due_time: job.due_time,
            ttl: job.ttl,
            data: job.data.map(Into::into),
            failure_policy: job.failure_policy.map(FailurePolicy::to_proto),
            misfire_policy: job.misfire_policy.map(MisfirePolicy::to_proto),
        }
    }
}

impl From<runtime::Job> for Job {
    /// An `Any` with neither type URL nor value (what the Python SDK sends for "no data") reads as
    /// no payload.
    fn from(job: runtime::Job) -> Self {
        Job {
            name: job.name,
            schedule: job.schedule,
            repeats: job.repeats,
            due_time: job.due_time,
            ttl: job.ttl,
            data: job.data.filter(|a| !(a.type_url.is_empty() && a.value.is_empty())).map(Into::into),
            failure_policy: job.failure_policy.and_then(FailurePolicy::from_proto),
            misfire_policy: job.misfire_policy.map(MisfirePolicy::from_proto),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_go_out_on_the_wire_and_read_back() {
        let exponential = Exponential::new(Duration::from_millis(250))
            .multiplier(3.0)
            .max_interval(Duration::from_secs(30))
            .max_retries(4)
            .jitter(0.2);
        let misfire = MisfirePolicy::new(CatchUp::Skip).window(Duration::from_secs(600));
        let job = Job::new("steered")
            .schedule("@every 1m")
            .failure_policy(FailurePolicy::exponential(exponential))
            .misfire_policy(misfire);
        let wire = runtime::Job::from(job.clone());
        let Some(Policy::Exponential(e)) = wire.failure_policy.as_ref().and_then(|p| p.policy) else {
            panic!("no exponential policy on the wire: {wire:?}")
        };
        assert_eq!(e.initial_interval, Some(prost_types::Duration { seconds: 0, nanos: 250_000_000 }));
        assert_eq!((e.multiplier, e.max_retries, e.jitter), (Some(3.0), Some(4), Some(0.2)));
        let m = wire.misfire_policy.expect("a misfire policy on the wire");
        assert_eq!(m.catch_up, common::JobMisfireCatchUp::Skip as i32);
        assert_eq!(m.window, Some(prost_types::Duration { seconds: 600, nanos: 0 }));
        assert_eq!(Job::from(wire), job);
    }

    #[test]
    fn jobs_without_extensions_send_exactly_what_they_did() {
        let wire = runtime::Job::from(
            Job::new("plain")
                .schedule("@every 1m")
                .failure_policy(FailurePolicy::constant(Duration::from_secs(1), Some(3))),
        );
        assert_eq!(wire.misfire_policy, None);
        assert!(matches!(wire.failure_policy.and_then(|p| p.policy), Some(Policy::Constant(_))));
        assert_eq!(runtime::Job::from(Job::new("bare").due_time("1s")).failure_policy, None);
    }
}

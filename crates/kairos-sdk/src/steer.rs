//! Steering the app's own jobs (a kairos extension): status, trigger history, pause, resume,
//! trigger-now and a filtered, paginated list, through the kairos sidecar's
//! `kairos.runtime.v1.Steering` gRPC service (same port and token as the Jobs API).
//!
//! A Dapr sidecar has no such service: these calls then fail with UNIMPLEMENTED, as they do when
//! a kairos sidecar runs against a scheduler without steering ([`Error::is_unsupported`]).
//!
//! ```
//! use kairos_sdk::{Client, Job, JobState, StatusFilter};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let sidecar = sidecar::start().await;
//! # let endpoint = sidecar.grpc_addr().to_string();
//! let client = Client::connect(endpoint).await?;
//! client.schedule_job(Job::new("report-daily").schedule("@daily"), false).await?;
//! client.schedule_job(Job::new("report-weekly").schedule("@weekly"), false).await?;
//! client.schedule_job(Job::new("cleanup").schedule("@hourly"), false).await?;
//!
//! // Where a job stands.
//! let report = client.job_status("report-daily").await?;
//! assert_eq!(report.status.state, Some(JobState::Scheduled));
//! assert!(report.status.next_fire.is_some());
//!
//! // Pause it: it fires nothing until resumed.
//! let paused = client.pause_job("report-daily").await?;
//! assert_eq!(paused.state, Some(JobState::Paused));
//!
//! // The paused jobs whose names start with "report-".
//! let page = client
//!     .list_job_status(StatusFilter::new().name_prefix("report-").state(JobState::Paused))
//!     .await?;
//! let names: Vec<&str> = page.jobs.iter().map(|j| j.job.name.as_str()).collect();
//! assert_eq!(names, ["report-daily"]);
//!
//! // Every job, one per page.
//! let mut names = Vec::new();
//! let mut filter = StatusFilter::new().page_size(1);
//! loop {
//!     let page = client.list_job_status(filter.clone()).await?;
//!     names.extend(page.jobs.into_iter().map(|j| j.job.name));
//!     match page.next_after {
//!         Some(after) => filter = filter.after(after),
//!         None => break,
//!     }
//! }
//! assert_eq!(names, ["cleanup", "report-daily", "report-weekly"]);
//!
//! // Fire it once now (even while paused), then resume it.
//! client.trigger_job("report-daily").await?;
//! assert_eq!(client.resume_job("report-daily").await?.state, Some(JobState::Scheduled));
//! let history = client.job_history("report-daily", Some(10)).await?;
//! assert!(history.len() <= 10);
//!
//! // Only this app's jobs exist for it.
//! assert!(client.job_status("someone-elses").await.unwrap_err().is_not_found());
//! # sidecar.shutdown().await;
//! # Ok(())
//! # }
//! # mod sidecar {
//! #     use std::sync::Arc;
//! #     use kairos_proto::api::{AdminInProcess, SchedulerApi, SteerApi};
//! #     use kairos_sidecar::{scheduler_link::SchedulerLink, server::{Sidecar, SidecarConfig}};
//! #     pub async fn start() -> Sidecar {
//! #         let store = Arc::new(kairos_store::memory::MemoryStore::new(1));
//! #         let engine = kairos_engine::Engine::new(store, Arc::new(kairos_core::SystemClock), Default::default());
//! #         engine.own_all();
//! #         let (_hosts_tx, hosts) = tokio::sync::watch::channel(vec!["in-process".to_owned()]);
//! #         let admin = kairos_scheduler::admin::AdminService::new(engine.clone());
//! #         let scheduler: Arc<dyn SchedulerApi> = Arc::new(kairos_scheduler::SchedulerService::new(engine, hosts));
//! #         let steer: Arc<dyn SteerApi> = Arc::new(AdminInProcess(Arc::new(admin)));
//! #         let mut config = SidecarConfig::new("doc-app");
//! #         (config.http_port, config.grpc_port) = (0, 0);
//! #         Sidecar::start(config, SchedulerLink::in_process_with_steering(scheduler, steer)).await.unwrap()
//! #     }
//! # }
//! ```

use std::time::{Duration, SystemTime};

use kairos_proto::admin;
use kairos_proto::convert::{outcome_from_wire, state_from_wire, state_to_wire};
use kairos_proto::steer::{
    GetJobHistoryRequest, GetJobStatusRequest, ListJobStatusRequest, PauseJobRequest, ResumeJobRequest,
    TriggerJobRequest,
};

use crate::{Client, Error, Job};

/// Where a job stands, and what became of one delivery: the scheduler's own types (with their
/// names as `as_str`, `Display` and `FromStr` give them: `waiting-for-app`, `undeliverable`, …).
pub use kairos_core::{JobState, TriggerOutcome};

/// A job's status.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobStatus {
    /// `None` only from a scheduler newer than this SDK, with a state it does not know.
    pub state: Option<JobState>,
    pub paused: bool,
    /// When it fires next (its expiry while paused); `None` when finished.
    pub next_fire: Option<SystemTime>,
    /// When a tick of it was last delivered; `None` before the first.
    pub last_fire: Option<SystemTime>,
    /// How the last delivery went; `None` before the first.
    pub last_outcome: Option<TriggerOutcome>,
    /// Ticks completed (what counts against `repeats`).
    pub ticks: u32,
    /// Deliveries made, retries and trigger-now included.
    pub fired: u64,
    pub successes: u64,
    pub failures: u64,
    /// Failed attempts of the current tick.
    pub attempt: u32,
}

impl JobStatus {
    fn from_proto(status: admin::JobStatus) -> Self {
        JobStatus {
            state: state_from_wire(status.state).ok().flatten(),
            paused: status.paused,
            next_fire: status.next_fire.map(system_time),
            last_fire: status.last_fire.map(system_time),
            last_outcome: outcome_from_wire(status.last_outcome),
            ticks: status.ticks,
            fired: status.fired,
            successes: status.successes,
            failures: status.failures,
            attempt: status.attempt,
        }
    }
}

/// One delivery of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TriggerRecord {
    /// The scheduled time of the tick (the request time for a trigger-now).
    pub tick: Option<SystemTime>,
    pub fired_at: Option<SystemTime>,
    pub answered_at: Option<SystemTime>,
    /// 0 for the first delivery of a tick, then 1, 2, … for its retries.
    pub attempt: u32,
    pub outcome: Option<TriggerOutcome>,
    /// Whether it was a trigger-now ([`Client::trigger_job`]).
    pub manual: bool,
    /// How late it fired after its tick.
    pub lateness: Duration,
}

impl TriggerRecord {
    fn from_proto(record: admin::TriggerRecord) -> Self {
        TriggerRecord {
            tick: record.tick.map(system_time),
            fired_at: record.fired_at.map(system_time),
            answered_at: record.answered_at.map(system_time),
            attempt: record.attempt,
            outcome: outcome_from_wire(record.outcome),
            manual: record.manual,
            lateness: record.lateness.map(duration).unwrap_or_default(),
        }
    }
}

/// A job with its status.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct JobWithStatus {
    pub job: Job,
    pub status: JobStatus,
}

/// Which jobs [`Client::list_job_status`] returns, and from where.
///
/// ```
/// use kairos_sdk::{JobState, StatusFilter};
///
/// let filter = StatusFilter::new().name_prefix("nightly-").state(JobState::Retrying).page_size(50);
/// assert_eq!(filter.page_size, 50);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatusFilter {
    /// Only names starting with this.
    pub name_prefix: String,
    /// Only jobs in this state; `None` means any.
    pub state: Option<JobState>,
    /// Start strictly after this name (a page's `next_after`); `None` starts at the beginning.
    pub after: Option<String>,
    /// Jobs per page; 0 means the scheduler's default (it may cap larger values).
    pub page_size: u32,
}

impl StatusFilter {
    /// Every job, from the first, in pages of the scheduler's default size.
    pub fn new() -> Self {
        StatusFilter::default()
    }

    setters! {
        /// Only names starting with `prefix`.
        name_prefix(prefix: impl Into<String>) => name_prefix = prefix.into();

        /// Only jobs in `state`.
        state(state: JobState) => state = Some(state);

        /// Start strictly after the job named `name`.
        after(name: impl Into<String>) => after = Some(name.into());

        /// At most `size` jobs per page.
        page_size(size: u32) => page_size = size;
    }
}

/// A page of [`Client::list_job_status`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StatusPage {
    /// Ascending by name.
    pub jobs: Vec<JobWithStatus>,
    /// Pass it to [`StatusFilter::after`] for the next page; `None` when there are no more.
    pub next_after: Option<String>,
}

fn system_time(t: prost_types::Timestamp) -> SystemTime {
    let nanos = u32::try_from(t.nanos).unwrap_or(0);
    match u64::try_from(t.seconds) {
        Ok(secs) => SystemTime::UNIX_EPOCH + Duration::new(secs, nanos),
        Err(_) => {
            SystemTime::UNIX_EPOCH - Duration::from_secs(t.seconds.unsigned_abs())
                + Duration::from_nanos(u64::from(nanos))
        }
    }
}

fn duration(d: prost_types::Duration) -> Duration {
    match (u64::try_from(d.seconds), u32::try_from(d.nanos)) {
        (Ok(secs), Ok(nanos)) => Duration::new(secs, nanos.min(999_999_999)),
        _ => Duration::ZERO,
    }
}

impl Client {
    /// The job named `name` with its status.
    ///
    /// # Errors
    /// [`Error::Status`]: NotFound for a job this app does not have ([`Error::is_not_found`]),
    /// Unimplemented when the sidecar or its scheduler offers no steering
    /// ([`Error::is_unsupported`]).
    pub async fn job_status(&self, name: &str) -> Result<JobWithStatus, Error> {
        const OP: &str = "get job status";
        let request = GetJobStatusRequest { name: name.to_owned() };
        let answer = self.steer.clone().get_job_status(self.request(request)).await;
        let answer = answer.map_err(|status| Error::Status { operation: OP, status })?.into_inner();
        let missing = |what: &str| Error::InvalidResponse {
            operation: OP,
            reason: format!("the response holds no {what}"),
        };
        Ok(JobWithStatus {
            job: answer.job.ok_or_else(|| missing("job"))?.into(),
            status: JobStatus::from_proto(answer.status.ok_or_else(|| missing("status"))?),
        })
    }

    /// The newest `limit` trigger records of the job (all the scheduler keeps when `None`),
    /// oldest first.
    ///
    /// # Errors
    /// As [`Client::job_status`].
    pub async fn job_history(&self, name: &str, limit: Option<u32>) -> Result<Vec<TriggerRecord>, Error> {
        const OP: &str = "get job history";
        let request = GetJobHistoryRequest { name: name.to_owned(), limit: limit.unwrap_or(0) };
        let answer = self.steer.clone().get_job_history(self.request(request)).await;
        let records = answer.map_err(|status| Error::Status { operation: OP, status })?.into_inner().records;
        Ok(records.into_iter().map(TriggerRecord::from_proto).collect())
    }

    /// Pauses the job: it fires nothing until resumed (its ttl still ends it). Pausing a paused
    /// job is not an error. Returns its status.
    ///
    /// # Errors
    /// As [`Client::job_status`].
    pub async fn pause_job(&self, name: &str) -> Result<JobStatus, Error> {
        let answer =
            self.steer.clone().pause_job(self.request(PauseJobRequest { name: name.to_owned() })).await;
        status_answer("pause job", answer.map(|answer| answer.into_inner().status))
    }

    /// Resumes the job; its misfire policy decides what becomes of the ticks missed while it
    /// was paused. Resuming a running job is not an error. Returns its status.
    ///
    /// # Errors
    /// As [`Client::job_status`].
    pub async fn resume_job(&self, name: &str) -> Result<JobStatus, Error> {
        let answer =
            self.steer.clone().resume_job(self.request(ResumeJobRequest { name: name.to_owned() })).await;
        status_answer("resume job", answer.map(|answer| answer.into_inner().status))
    }

    /// Delivers the job once more, now, with its data and through its failure policy; it does
    /// not count against `repeats`, does not move the schedule, and works while paused.
    ///
    /// # Errors
    /// As [`Client::job_status`].
    pub async fn trigger_job(&self, name: &str) -> Result<(), Error> {
        const OP: &str = "trigger job";
        let answer =
            self.steer.clone().trigger_job(self.request(TriggerJobRequest { name: name.to_owned() })).await;
        answer.map(drop).map_err(|status| Error::Status { operation: OP, status })
    }

    /// One page of this app's jobs with their status, ascending by name, as `filter` says.
    ///
    /// # Errors
    /// As [`Client::job_status`] (without the not found).
    pub async fn list_job_status(&self, filter: StatusFilter) -> Result<StatusPage, Error> {
        const OP: &str = "list job status";
        let request = ListJobStatusRequest {
            name_prefix: filter.name_prefix,
            state: filter.state.map_or(admin::JobState::Unspecified, state_to_wire) as i32,
            after: filter.after.unwrap_or_default(),
            page_size: filter.page_size,
        };
        let answer = self.steer.clone().list_job_status(self.request(request)).await;
        let answer = answer.map_err(|status| Error::Status { operation: OP, status })?.into_inner();
        let mut jobs = Vec::with_capacity(answer.jobs.len());
        for entry in answer.jobs {
            let (Some(job), Some(status)) = (entry.job, entry.status) else {
                return Err(Error::InvalidResponse {
                    operation: OP,
                    reason: "an entry lacks its job or status".into(),
                });
            };
            jobs.push(JobWithStatus { job: job.into(), status: JobStatus::from_proto(status) });
        }
        let next_after = Some(answer.next_after).filter(|name| !name.is_empty());
        Ok(StatusPage { jobs, next_after })
    }
}

/// The status a pause or resume answered with.
fn status_answer(
    operation: &'static str,
    answer: Result<Option<admin::JobStatus>, tonic::Status>,
) -> Result<JobStatus, Error> {
    let status = answer.map_err(|status| Error::Status { operation, status })?;
    status
        .map(JobStatus::from_proto)
        .ok_or_else(|| Error::InvalidResponse { operation, reason: "the response holds no status".into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_times_and_durations_convert_without_panicking() {
        let t = system_time(prost_types::Timestamp { seconds: 1_800_000_000, nanos: 5 });
        assert_eq!(t.duration_since(SystemTime::UNIX_EPOCH).unwrap(), Duration::new(1_800_000_000, 5));
        let before = system_time(prost_types::Timestamp { seconds: -10, nanos: 0 });
        assert_eq!(SystemTime::UNIX_EPOCH.duration_since(before).unwrap(), Duration::from_secs(10));
        assert_eq!(duration(prost_types::Duration { seconds: -1, nanos: 0 }), Duration::ZERO);
        assert_eq!(
            duration(prost_types::Duration { seconds: 1, nanos: 2_000_000_000 }),
            Duration::new(1, 999_999_999)
        );
    }
}

//! The Jobs API of one app, as both the HTTP and the gRPC front ends use it: checks daprd makes
//! itself, then the call to the scheduler, scoped to this app's `(namespace, app id)`.
//!
//! The steering calls (kairos extensions: status, history, pause, resume, trigger, list with
//! status) go to the scheduler's Admin service with a key this sidecar builds from its own app
//! id and namespace, so an app reaches only its own jobs: another app's job is simply not found.

use std::time::Duration;

use kairos_core::{Backoff, JobKey, JobSpec};
use kairos_proto::admin::{
    self, GetJobHistoryRequest, GetJobStatusRequest, JobRef, ListJobStatusRequest, PauseJobRequest,
    ResumeJobRequest, TriggerJobRequest,
};
use kairos_proto::api::{SchedulerApi, SteerApi};
use kairos_proto::convert::{metadata_of, spec_from_scheduler_job, spec_to_scheduler_job};
use kairos_proto::scheduler::{
    DeleteByNamePrefixRequest, DeleteJobRequest, GetJobRequest, JobMetadata, ListJobsRequest,
    ScheduleJobRequest,
};
use tonic::{Code, Status};

use crate::errors::{ApiError, SchedulerFailure, SchedulerStatus, SteerOp};
use crate::scheduler_link::{LinkError, SchedulerLink};

/// How long a call waits for an unreachable scheduler before giving up (daprd: 30 s).
pub const DEFAULT_SCHEDULER_WAIT: Duration = Duration::from_secs(30);

/// A job of the app with its status, as the steering calls return it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobWithStatus {
    pub name: String,
    pub spec: JobSpec,
    pub status: admin::JobStatus,
}

/// Which of the app's jobs [`Jobs::list_status`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusFilter {
    /// Only names starting with this.
    pub name_prefix: String,
    /// Only jobs in this state; `None` means any.
    pub state: Option<admin::JobState>,
    /// Start strictly after this name; empty starts at the beginning.
    pub after: String,
    /// Jobs per page; 0 means the scheduler's default.
    pub page_size: u32,
}

/// A page of [`Jobs::list_status`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusPage {
    pub jobs: Vec<JobWithStatus>,
    /// The `after` of the next page; `None` when there are no more.
    pub next_after: Option<String>,
}

/// The Jobs API of one app.
#[derive(Debug, Clone)]
pub struct Jobs {
    link: SchedulerLink,
    app_id: String,
    namespace: String,
    wait: Duration,
    max_data: usize,
}

impl Jobs {
    /// The API of `app_id` in `namespace`, served by the schedulers behind `link`.
    pub fn new(link: SchedulerLink, app_id: impl Into<String>, namespace: impl Into<String>) -> Self {
        Jobs {
            link,
            app_id: app_id.into(),
            namespace: namespace.into(),
            wait: DEFAULT_SCHEDULER_WAIT,
            max_data: usize::MAX,
        }
    }

    /// Refuses jobs whose payload is larger than `bytes` before they reach the scheduler.
    #[must_use]
    pub fn with_max_job_data_size(mut self, bytes: usize) -> Self {
        self.max_data = bytes;
        self
    }

    /// Sets how long a call waits for an unreachable scheduler.
    #[must_use]
    pub fn with_scheduler_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The scheduler link.
    pub fn link(&self) -> &SchedulerLink {
        &self.link
    }

    fn metadata(&self) -> JobMetadata {
        metadata_of(&JobKey::app(self.namespace.clone(), self.app_id.clone(), String::new()))
    }

    fn job_ref(&self, name: &str) -> JobRef {
        JobRef { name: name.to_owned(), metadata: Some(self.metadata()) }
    }

    /// Calls the scheduler, retrying while it is unreachable for up to the configured wait (as
    /// daprd's WaitForReady does).
    async fn call<R, T, F, Fut>(&self, request: R, op: F) -> Result<T, SchedulerFailure>
    where
        R: Clone,
        F: Fn(std::sync::Arc<dyn SchedulerApi>, R) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        self.retrying(|| self.link.api().map_err(|_| SchedulerFailure::Disabled), request, op).await
    }

    /// [`Jobs::call`] to the scheduler's steering (Admin) API.
    async fn steer_call<R, T, F, Fut>(&self, request: R, op: F) -> Result<T, SchedulerFailure>
    where
        R: Clone,
        F: Fn(std::sync::Arc<dyn SteerApi>, R) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let pick = || {
            self.link.steer().map_err(|err| match err {
                LinkError::NoSteering => {
                    SchedulerFailure::Status(SchedulerStatus::new(Code::Unimplemented, err.to_string()))
                }
                _ => SchedulerFailure::Disabled,
            })
        };
        self.retrying(pick, request, op).await
    }

    async fn retrying<A, P, R, T, F, Fut>(&self, pick: P, request: R, op: F) -> Result<T, SchedulerFailure>
    where
        A: ?Sized,
        P: Fn() -> Result<std::sync::Arc<A>, SchedulerFailure>,
        R: Clone,
        F: Fn(std::sync::Arc<A>, R) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let attempt = async {
            let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
            loop {
                let api = pick()?;
                match op(api, request.clone()).await {
                    Err(status) if status.code() == Code::Unavailable => {
                        tracing::debug!(%status, "scheduler unavailable; retrying");
                        tokio::time::sleep(backoff.next_delay()).await;
                    }
                    other => return other.map_err(SchedulerFailure::from),
                }
            }
        };
        tokio::time::timeout(self.wait, attempt).await.unwrap_or(Err(SchedulerFailure::Unreachable))
    }

    /// Schedules `spec` as `name` (daprd's checks first: a name, and a schedule or a due time).
    ///
    /// # Errors
    /// The [`ApiError`] of spec §2.4 for the failure.
    pub async fn schedule(&self, name: &str, spec: JobSpec, overwrite: bool) -> Result<(), ApiError> {
        if name.trim().is_empty() {
            return Err(ApiError::EmptyName);
        }
        if spec.schedule.is_none() && spec.due_time.is_none() {
            return Err(ApiError::EmptySchedule);
        }
        let size = spec.data.as_ref().map_or(0, |d| d.value.len());
        if size > self.max_data {
            // The scheduler's own answer to such a job (InvalidArgument), given here without
            // the round trip: 400 DAPR_SCHEDULER_SCHEDULE_JOB.
            let status = SchedulerStatus::new(
                Code::InvalidArgument,
                format!(
                    "job data is {size} bytes, over the {}-byte limit (--max-job-data-size)",
                    self.max_data
                ),
            );
            return Err(ApiError::ScheduleJob(SchedulerFailure::Status(status)));
        }
        let request = ScheduleJobRequest {
            name: name.to_owned(),
            job: Some(spec_to_scheduler_job(&spec)),
            metadata: Some(self.metadata()),
            overwrite,
        };
        self.call(request, |api, request| async move { api.schedule_job(request).await })
            .await
            .map(drop)
            .map_err(ApiError::ScheduleJob)
    }

    /// The job as stored.
    ///
    /// # Errors
    /// [`ApiError::GetJob`] for an unknown job (upstream: 500 / Internal) or a scheduler failure.
    pub async fn get(&self, name: &str) -> Result<JobSpec, ApiError> {
        if name.is_empty() {
            return Err(ApiError::EmptyName);
        }
        let request = GetJobRequest { name: name.to_owned(), metadata: Some(self.metadata()) };
        let response = self
            .call(request, |api, request| async move { api.get_job(request).await })
            .await
            .map_err(ApiError::GetJob)?;
        let job = response.job.unwrap_or_default();
        spec_from_scheduler_job(job)
            .map_err(|e| ApiError::GetJob(SchedulerFailure::from(Status::internal(e.to_string()))))
    }

    /// Deletes a job; an unknown job is not an error.
    ///
    /// # Errors
    /// [`ApiError::DeleteJob`] when the scheduler fails.
    pub async fn delete(&self, name: &str) -> Result<(), ApiError> {
        if name.is_empty() {
            return Err(ApiError::EmptyName);
        }
        let request = DeleteJobRequest { name: name.to_owned(), metadata: Some(self.metadata()) };
        self.call(request, |api, request| async move { api.delete_job(request).await })
            .await
            .map(drop)
            .map_err(ApiError::DeleteJob)
    }

    /// Deletes this app's jobs whose names start with `prefix` (all of them when empty).
    ///
    /// # Errors
    /// [`ApiError::DeleteJobsByPrefix`] when the scheduler fails.
    pub async fn delete_by_prefix(&self, prefix: &str) -> Result<(), ApiError> {
        let request =
            DeleteByNamePrefixRequest { name_prefix: prefix.to_owned(), metadata: Some(self.metadata()) };
        self.call(request, |api, request| async move { api.delete_by_name_prefix(request).await })
            .await
            .map(drop)
            .map_err(ApiError::DeleteJobsByPrefix)
    }

    /// Every job of this app, ascending by name.
    ///
    /// # Errors
    /// [`ApiError::ListJobs`] when the scheduler fails.
    pub async fn list(&self) -> Result<Vec<(String, JobSpec)>, ApiError> {
        let request = ListJobsRequest { metadata: Some(self.metadata()) };
        let response = self
            .call(request, |api, request| async move { api.list_jobs(request).await })
            .await
            .map_err(ApiError::ListJobs)?;
        response
            .jobs
            .into_iter()
            .map(|named| {
                let spec = spec_from_scheduler_job(named.job.unwrap_or_default()).map_err(|e| {
                    ApiError::ListJobs(SchedulerFailure::from(Status::internal(e.to_string())))
                })?;
                Ok((named.name, spec))
            })
            .collect()
    }
    /// The job with its status.
    ///
    /// # Errors
    /// [`ApiError::Steer`]: not found (404) for a job this app does not have, unimplemented (501)
    /// when the scheduler offers no steering, else the scheduler's failure.
    pub async fn status(&self, name: &str) -> Result<JobWithStatus, ApiError> {
        let op = SteerOp::Status;
        let request = GetJobStatusRequest { r#ref: Some(self.job_ref(checked_name(name)?)) };
        let response = self
            .steer_call(request, |api, request| async move { api.get_job_status(request).await })
            .await
            .map_err(|f| ApiError::Steer(op, f))?;
        let job = response.job.ok_or_else(|| missing(op, "job"))?;
        self.with_status(op, job, response.status)
    }

    /// The job's newest `limit` trigger records (all that are kept when 0), oldest first.
    ///
    /// # Errors
    /// As [`Jobs::status`].
    pub async fn history(&self, name: &str, limit: u32) -> Result<Vec<admin::TriggerRecord>, ApiError> {
        let request = GetJobHistoryRequest { r#ref: Some(self.job_ref(checked_name(name)?)), limit };
        self.steer_call(request, |api, request| async move { api.get_job_history(request).await })
            .await
            .map(|response| response.records)
            .map_err(|f| ApiError::Steer(SteerOp::History, f))
    }

    /// Pauses the job (pausing a paused job is not an error); returns its status.
    ///
    /// # Errors
    /// As [`Jobs::status`].
    pub async fn pause(&self, name: &str) -> Result<admin::JobStatus, ApiError> {
        self.set_paused(name, true).await
    }

    /// Resumes the job (resuming a running job is not an error); returns its status.
    ///
    /// # Errors
    /// As [`Jobs::status`].
    pub async fn resume(&self, name: &str) -> Result<admin::JobStatus, ApiError> {
        self.set_paused(name, false).await
    }

    async fn set_paused(&self, name: &str, paused: bool) -> Result<admin::JobStatus, ApiError> {
        let op = if paused { SteerOp::Pause } else { SteerOp::Resume };
        let job_ref = Some(self.job_ref(checked_name(name)?));
        let status = self
            .steer_call(job_ref, move |api, r#ref| async move {
                if paused {
                    api.pause_job(PauseJobRequest { r#ref }).await.map(|r| r.status)
                } else {
                    api.resume_job(ResumeJobRequest { r#ref }).await.map(|r| r.status)
                }
            })
            .await
            .map_err(|f| ApiError::Steer(op, f))?;
        status.ok_or_else(|| missing(op, "status"))
    }

    /// Delivers the job once more, now.
    ///
    /// # Errors
    /// As [`Jobs::status`].
    pub async fn trigger(&self, name: &str) -> Result<(), ApiError> {
        let request = TriggerJobRequest { r#ref: Some(self.job_ref(checked_name(name)?)) };
        self.steer_call(request, |api, request| async move { api.trigger_job(request).await })
            .await
            .map(drop)
            .map_err(|f| ApiError::Steer(SteerOp::Trigger, f))
    }

    /// A page of this app's jobs with their status, ascending by name.
    ///
    /// # Errors
    /// As [`Jobs::status`] (without the not found).
    pub async fn list_status(&self, filter: StatusFilter) -> Result<StatusPage, ApiError> {
        let op = SteerOp::List;
        let request = ListJobStatusRequest {
            owner: Some(self.metadata()),
            name_prefix: filter.name_prefix,
            state: filter.state.unwrap_or(admin::JobState::Unspecified) as i32,
            after: (!filter.after.is_empty()).then(|| self.job_ref(&filter.after)),
            page_size: filter.page_size,
        };
        let response = self
            .steer_call(request, |api, request| async move { api.list_job_status(request).await })
            .await
            .map_err(|f| ApiError::Steer(op, f))?;
        let mut jobs = Vec::with_capacity(response.jobs.len());
        for entry in response.jobs {
            let job = entry.job.ok_or_else(|| missing(op, "job"))?;
            // The scheduler filters by owner; an entry of another owner would be a scheduler bug,
            // and must still never reach this app.
            if !self.owns(job.r#ref.as_ref()) {
                tracing::warn!(job = ?job.r#ref, "scheduler listed another owner's job; left out");
                continue;
            }
            jobs.push(self.with_status(op, job, entry.status)?);
        }
        let next_after = response.next_after.map(|r| r.name).filter(|name| !name.is_empty());
        Ok(StatusPage { jobs, next_after })
    }

    fn owns(&self, job_ref: Option<&JobRef>) -> bool {
        let Some(metadata) = job_ref.and_then(|r| r.metadata.as_ref()) else { return false };
        metadata.app_id == self.app_id && metadata.namespace == self.namespace
    }

    fn with_status(
        &self,
        op: SteerOp,
        job: admin::StoredJob,
        status: Option<admin::JobStatus>,
    ) -> Result<JobWithStatus, ApiError> {
        let name = job.r#ref.map(|r| r.name).ok_or_else(|| missing(op, "job ref"))?;
        let spec = spec_from_scheduler_job(job.job.unwrap_or_default())
            .map_err(|e| ApiError::Steer(op, SchedulerFailure::from(Status::internal(e.to_string()))))?;
        Ok(JobWithStatus { name, spec, status: status.ok_or_else(|| missing(op, "status"))? })
    }
}

/// A job name for a steering call: not empty.
fn checked_name(name: &str) -> Result<&str, ApiError> {
    if name.is_empty() { Err(ApiError::EmptyName) } else { Ok(name) }
}

/// The scheduler's answer lacked a part it must hold.
fn missing(op: SteerOp, what: &str) -> ApiError {
    ApiError::Steer(
        op,
        SchedulerFailure::from(Status::internal(format!("the scheduler's answer has no {what}"))),
    )
}

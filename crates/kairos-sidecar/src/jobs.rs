//! The Jobs API of one app, as both the HTTP and the gRPC front ends use it: checks daprd makes
//! itself, then the call to the scheduler, scoped to this app's `(namespace, app id)`.

use std::time::Duration;

use kairos_core::{Backoff, JobKey, JobSpec};
use kairos_proto::api::SchedulerApi;
use kairos_proto::convert::{metadata_of, spec_from_scheduler_job, spec_to_scheduler_job};
use kairos_proto::scheduler::{
    DeleteByNamePrefixRequest, DeleteJobRequest, GetJobRequest, JobMetadata, ListJobsRequest,
    ScheduleJobRequest,
};
use tonic::{Code, Status};

use crate::errors::{ApiError, SchedulerFailure, SchedulerStatus};
use crate::scheduler_link::SchedulerLink;

/// How long a call waits for an unreachable scheduler before giving up (daprd: 30 s).
pub const DEFAULT_SCHEDULER_WAIT: Duration = Duration::from_secs(30);

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

    /// Calls the scheduler, retrying while it is unreachable for up to the configured wait (as
    /// daprd's WaitForReady does).
    async fn call<R, T, F, Fut>(&self, request: R, op: F) -> Result<T, SchedulerFailure>
    where
        R: Clone,
        F: Fn(std::sync::Arc<dyn SchedulerApi>, R) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let attempt = async {
            let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
            loop {
                let api = self.link.api().map_err(|_| SchedulerFailure::Disabled)?;
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
}

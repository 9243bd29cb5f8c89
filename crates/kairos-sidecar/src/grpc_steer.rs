//! The gRPC steering service (kairos extension): `kairos.runtime.v1.Steering`, served on the
//! sidecar's gRPC API port beside `dapr.proto.runtime.v1.Dapr` and behind the same
//! `dapr-api-token`. The front end of [`Jobs`]' steering calls, so it answers for this app's
//! jobs only; errors carry the codes of [`ApiError`] (NOT_FOUND for a job the app does not have,
//! UNIMPLEMENTED when the scheduler offers no steering).

use kairos_proto::admin::{GetJobHistoryResponse, PauseJobResponse, ResumeJobResponse, TriggerJobResponse};
use kairos_proto::convert::spec_to_runtime_job;
use kairos_proto::steer::steering_server::Steering;
use kairos_proto::steer::{
    GetJobHistoryRequest, GetJobStatusRequest, GetJobStatusResponse, JobStatusEntry, ListJobStatusRequest,
    ListJobStatusResponse, PauseJobRequest, ResumeJobRequest, TriggerJobRequest,
};
use tonic::{Request, Response, Status};

use crate::errors::ApiError;
use crate::grpc_api::grpc_impl;
use crate::jobs::{Jobs, StatusFilter};

/// The gRPC front end of [`Jobs`]' steering calls.
#[derive(Debug, Clone)]
pub struct SteeringService {
    jobs: Jobs,
}

impl SteeringService {
    pub fn new(jobs: Jobs) -> Self {
        SteeringService { jobs }
    }

    fn status(&self, err: &ApiError) -> Status {
        kairos_proto::api::bounded_status(err.grpc_status(self.jobs.app_id(), self.jobs.namespace()))
    }
}

grpc_impl! {
    impl Steering for SteeringService;
    get_job_status(GetJobStatusRequest) -> GetJobStatusResponse => |this, request| {
        let job = this.jobs.status(&request.name).await.map_err(|e| this.status(&e))?;
        Ok(Response::new(GetJobStatusResponse {
            job: Some(spec_to_runtime_job(&job.name, &job.spec)),
            status: Some(job.status),
        }))
    };
    get_job_history(GetJobHistoryRequest) -> GetJobHistoryResponse => |this, request| {
        let records = this.jobs.history(&request.name, request.limit).await.map_err(|e| this.status(&e))?;
        Ok(Response::new(GetJobHistoryResponse { records }))
    };
    pause_job(PauseJobRequest) -> PauseJobResponse => |this, request| {
        let status = this.jobs.pause(&request.name).await.map_err(|e| this.status(&e))?;
        Ok(Response::new(PauseJobResponse { status: Some(status) }))
    };
    resume_job(ResumeJobRequest) -> ResumeJobResponse => |this, request| {
        let status = this.jobs.resume(&request.name).await.map_err(|e| this.status(&e))?;
        Ok(Response::new(ResumeJobResponse { status: Some(status) }))
    };
    trigger_job(TriggerJobRequest) -> TriggerJobResponse => |this, request| {
        this.jobs.trigger(&request.name).await.map_err(|e| this.status(&e))?;
        Ok(Response::new(TriggerJobResponse {}))
    };
    list_job_status(ListJobStatusRequest) -> ListJobStatusResponse
        => |this, request| this.list_status(request).await;
}

impl SteeringService {
    async fn list_status(
        &self,
        request: ListJobStatusRequest,
    ) -> Result<Response<ListJobStatusResponse>, Status> {
        // An unknown state number is refused rather than read as "any state".
        let state = match kairos_proto::admin::JobState::try_from(request.state) {
            Ok(kairos_proto::admin::JobState::Unspecified) => None,
            Ok(state) => Some(state),
            Err(_) => {
                let err = ApiError::InvalidSteerRequest(format!("unknown job state {}", request.state));
                return Err(self.status(&err));
            }
        };
        let filter = StatusFilter {
            name_prefix: request.name_prefix,
            state,
            after: request.after,
            page_size: request.page_size,
        };
        let page = self.jobs.list_status(filter).await.map_err(|e| self.status(&e))?;
        let jobs = page
            .jobs
            .into_iter()
            .map(|job| JobStatusEntry {
                job: Some(spec_to_runtime_job(&job.name, &job.spec)),
                status: Some(job.status),
            })
            .collect();
        Ok(Response::new(ListJobStatusResponse { jobs, next_after: page.next_after.unwrap_or_default() }))
    }
}

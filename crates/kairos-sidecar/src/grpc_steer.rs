//! The gRPC steering service (kairos extension): `kairos.runtime.v1.Steering`, served on the
//! sidecar's gRPC API port beside `dapr.proto.runtime.v1.Dapr` and behind the same
//! `dapr-api-token`. The front end of [`Jobs`]' steering calls, so it answers for this app's
//! jobs only; errors carry the codes of [`ApiError`] (NOT_FOUND for a job the app does not have,
//! UNIMPLEMENTED when the scheduler offers no steering).

use kairos_proto::convert::spec_to_runtime_job;
use kairos_proto::steer::steering_server::Steering;
use kairos_proto::steer::{
    GetJobHistoryRequest, GetJobHistoryResponse, GetJobStatusRequest, GetJobStatusResponse, JobStatusEntry,
    ListJobStatusRequest, ListJobStatusResponse, PauseJobRequest, PauseJobResponse, ResumeJobRequest,
    ResumeJobResponse, TriggerJobRequest, TriggerJobResponse,
};
use tonic::{Request, Response, Status};

use crate::errors::ApiError;
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

#[tonic::async_trait]
impl Steering for SteeringService {
    async fn get_job_status(
        &self,
        request: Request<GetJobStatusRequest>,
    ) -> Result<Response<GetJobStatusResponse>, Status> {
        let job = self.jobs.status(&request.into_inner().name).await.map_err(|e| self.status(&e))?;
        Ok(Response::new(GetJobStatusResponse {
            job: Some(spec_to_runtime_job(&job.name, &job.spec)),
            status: Some(job.status),
        }))
    }

    async fn get_job_history(
        &self,
        request: Request<GetJobHistoryRequest>,
    ) -> Result<Response<GetJobHistoryResponse>, Status> {
        let request = request.into_inner();
        let records = self.jobs.history(&request.name, request.limit).await.map_err(|e| self.status(&e))?;
        Ok(Response::new(GetJobHistoryResponse { records }))
    }

    async fn pause_job(
        &self,
        request: Request<PauseJobRequest>,
    ) -> Result<Response<PauseJobResponse>, Status> {
        let status = self.jobs.pause(&request.into_inner().name).await.map_err(|e| self.status(&e))?;
        Ok(Response::new(PauseJobResponse { status: Some(status) }))
    }

    async fn resume_job(
        &self,
        request: Request<ResumeJobRequest>,
    ) -> Result<Response<ResumeJobResponse>, Status> {
        let status = self.jobs.resume(&request.into_inner().name).await.map_err(|e| self.status(&e))?;
        Ok(Response::new(ResumeJobResponse { status: Some(status) }))
    }

    async fn trigger_job(
        &self,
        request: Request<TriggerJobRequest>,
    ) -> Result<Response<TriggerJobResponse>, Status> {
        self.jobs.trigger(&request.into_inner().name).await.map_err(|e| self.status(&e))?;
        Ok(Response::new(TriggerJobResponse {}))
    }

    async fn list_job_status(
        &self,
        request: Request<ListJobStatusRequest>,
    ) -> Result<Response<ListJobStatusResponse>, Status> {
        let request = request.into_inner();
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

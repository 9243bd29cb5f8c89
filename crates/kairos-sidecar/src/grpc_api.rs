//! The gRPC Jobs API: `dapr.proto.runtime.v1.Dapr`, stable and Alpha1 (spec §3).
//!
//! Only the jobs RPCs and `GetMetadata` exist in our `Dapr` service; every other method of the real service
//! answers `UNIMPLEMENTED`, which is what the SDKs' fallbacks expect (spec §3.1).

use kairos_proto::convert::{spec_from_runtime_job, spec_to_runtime_job};
use kairos_proto::runtime::dapr_server::Dapr;
use kairos_proto::runtime::{
    DeleteJobRequest, DeleteJobResponse, DeleteJobsByPrefixRequest, DeleteJobsByPrefixRequestAlpha1,
    DeleteJobsByPrefixResponse, DeleteJobsByPrefixResponseAlpha1, GetJobRequest, GetJobResponse,
    GetMetadataRequest, GetMetadataResponse, ListJobsRequest, ListJobsRequestAlpha1, ListJobsResponse,
    ListJobsResponseAlpha1, ScheduleJobRequest, ScheduleJobResponse,
};
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::errors::ApiError;
use crate::jobs::Jobs;
use crate::metadata::Metadata;

/// The gRPC front end of [`Jobs`].
#[derive(Debug, Clone)]
pub struct DaprJobsService {
    jobs: Jobs,
    metadata: Arc<Metadata>,
}

impl DaprJobsService {
    pub fn new(jobs: Jobs) -> Self {
        let metadata = Arc::new(Metadata::new(jobs.app_id(), None, None, jobs.link().clone()));
        DaprJobsService { jobs, metadata }
    }

    /// Answers `GetMetadata` from `metadata` (shared with the HTTP API).
    #[must_use]
    pub fn with_metadata(mut self, metadata: Arc<Metadata>) -> Self {
        self.metadata = metadata;
        self
    }

    fn status(&self, err: &ApiError) -> Status {
        // Messages echo input (names, schedules) and travel in a trailer; keep them small.
        kairos_proto::api::bounded_status(err.grpc_status(self.jobs.app_id(), self.jobs.namespace()))
    }

    async fn schedule(&self, request: ScheduleJobRequest) -> Result<Response<ScheduleJobResponse>, Status> {
        let job = request.job.ok_or_else(|| self.status(&ApiError::EmptyJob))?;
        let (name, spec) =
            spec_from_runtime_job(job).map_err(|e| self.status(&ApiError::MalformedBody(e.to_string())))?;
        self.jobs.schedule(&name, spec, request.overwrite).await.map_err(|e| self.status(&e))?;
        Ok(Response::new(ScheduleJobResponse {}))
    }

    async fn get(&self, request: GetJobRequest) -> Result<Response<GetJobResponse>, Status> {
        let spec = self.jobs.get(&request.name).await.map_err(|e| self.status(&e))?;
        Ok(Response::new(GetJobResponse { job: Some(spec_to_runtime_job(&request.name, &spec)) }))
    }

    async fn delete(&self, request: DeleteJobRequest) -> Result<Response<DeleteJobResponse>, Status> {
        self.jobs.delete(&request.name).await.map_err(|e| self.status(&e))?;
        Ok(Response::new(DeleteJobResponse {}))
    }

    async fn delete_by_prefix<R: Default>(&self, prefix: Option<String>) -> Result<Response<R>, Status> {
        let prefix = prefix.unwrap_or_default();
        self.jobs.delete_by_prefix(&prefix).await.map_err(|e| self.status(&e))?;
        Ok(Response::new(R::default()))
    }

    async fn list(&self) -> Result<Vec<kairos_proto::runtime::Job>, Status> {
        let jobs = self.jobs.list().await.map_err(|e| self.status(&e))?;
        Ok(jobs.iter().map(|(name, spec)| spec_to_runtime_job(name, spec)).collect())
    }
}

/// Writes a tonic service impl of unary RPCs: each entry names one or more RPCs (here a stable
/// one and its Alpha1 twin, which take and answer the same things) and the body that answers
/// them, given the service and the request message.
macro_rules! grpc_impl {
    (
        impl $service:ident for $ty:ty;
        $($($method:ident($request:ty) -> $response:ty),+ => |$this:ident, $message:ident| $body:expr;)*
    ) => {
        #[tonic::async_trait]
        impl $service for $ty {
            $($(
                async fn $method(&self, request: Request<$request>) -> Result<Response<$response>, Status> {
                    let $this = self;
                    let $message = request.into_inner();
                    $body
                }
            )+)*
        }
    };
}

pub(crate) use grpc_impl;

grpc_impl! {
    impl Dapr for DaprJobsService;
    schedule_job(ScheduleJobRequest) -> ScheduleJobResponse,
    schedule_job_alpha1(ScheduleJobRequest) -> ScheduleJobResponse
        => |this, request| this.schedule(request).await;
    get_job(GetJobRequest) -> GetJobResponse,
    get_job_alpha1(GetJobRequest) -> GetJobResponse
        => |this, request| this.get(request).await;
    delete_job(DeleteJobRequest) -> DeleteJobResponse,
    delete_job_alpha1(DeleteJobRequest) -> DeleteJobResponse
        => |this, request| this.delete(request).await;
    delete_jobs_by_prefix(DeleteJobsByPrefixRequest) -> DeleteJobsByPrefixResponse,
    delete_jobs_by_prefix_alpha1(DeleteJobsByPrefixRequestAlpha1) -> DeleteJobsByPrefixResponseAlpha1
        => |this, request| this.delete_by_prefix(request.name_prefix).await;
    list_jobs(ListJobsRequest) -> ListJobsResponse
        => |this, _request| Ok(Response::new(ListJobsResponse { jobs: this.list().await? }));
    list_jobs_alpha1(ListJobsRequestAlpha1) -> ListJobsResponseAlpha1
        => |this, _request| Ok(Response::new(ListJobsResponseAlpha1 { jobs: this.list().await? }));
    get_metadata(GetMetadataRequest) -> GetMetadataResponse
        => |this, _request| Ok(Response::new(this.metadata.to_proto()));
}

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

    async fn delete_by_prefix(&self, prefix: Option<String>) -> Result<(), Status> {
        self.jobs.delete_by_prefix(prefix.as_deref().unwrap_or_default()).await.map_err(|e| self.status(&e))
    }

    async fn list(&self) -> Result<Vec<kairos_proto::runtime::Job>, Status> {
        let jobs = self.jobs.list().await.map_err(|e| self.status(&e))?;
        Ok(jobs.iter().map(|(name, spec)| spec_to_runtime_job(name, spec)).collect())
    }
}

#[tonic::async_trait]
impl Dapr for DaprJobsService {
    async fn schedule_job(
        &self,
        request: Request<ScheduleJobRequest>,
    ) -> Result<Response<ScheduleJobResponse>, Status> {
        self.schedule(request.into_inner()).await
    }

    async fn get_job(&self, request: Request<GetJobRequest>) -> Result<Response<GetJobResponse>, Status> {
        self.get(request.into_inner()).await
    }

    async fn delete_job(
        &self,
        request: Request<DeleteJobRequest>,
    ) -> Result<Response<DeleteJobResponse>, Status> {
        self.delete(request.into_inner()).await
    }

    async fn delete_jobs_by_prefix(
        &self,
        request: Request<DeleteJobsByPrefixRequest>,
    ) -> Result<Response<DeleteJobsByPrefixResponse>, Status> {
        self.delete_by_prefix(request.into_inner().name_prefix).await?;
        Ok(Response::new(DeleteJobsByPrefixResponse {}))
    }

    async fn list_jobs(
        &self,
        _request: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        Ok(Response::new(ListJobsResponse { jobs: self.list().await? }))
    }

    async fn get_metadata(
        &self,
        _request: Request<GetMetadataRequest>,
    ) -> Result<Response<GetMetadataResponse>, Status> {
        Ok(Response::new(self.metadata.to_proto()))
    }

    async fn schedule_job_alpha1(
        &self,
        request: Request<ScheduleJobRequest>,
    ) -> Result<Response<ScheduleJobResponse>, Status> {
        self.schedule(request.into_inner()).await
    }

    async fn get_job_alpha1(
        &self,
        request: Request<GetJobRequest>,
    ) -> Result<Response<GetJobResponse>, Status> {
        self.get(request.into_inner()).await
    }

    async fn delete_job_alpha1(
        &self,
        request: Request<DeleteJobRequest>,
    ) -> Result<Response<DeleteJobResponse>, Status> {
        self.delete(request.into_inner()).await
    }

    async fn delete_jobs_by_prefix_alpha1(
        &self,
        request: Request<DeleteJobsByPrefixRequestAlpha1>,
    ) -> Result<Response<DeleteJobsByPrefixResponseAlpha1>, Status> {
        self.delete_by_prefix(request.into_inner().name_prefix).await?;
        Ok(Response::new(DeleteJobsByPrefixResponseAlpha1 {}))
    }

    async fn list_jobs_alpha1(
        &self,
        _request: Request<ListJobsRequestAlpha1>,
    ) -> Result<Response<ListJobsResponseAlpha1>, Status> {
        Ok(Response::new(ListJobsResponseAlpha1 { jobs: self.list().await? }))
    }
}

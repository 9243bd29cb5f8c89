//! `kairos.admin.v1.Admin`: every owner's jobs with their progress, by full key, and an import
//! that stores jobs exactly as exported (the operator CLI's `kairos jobs …`).

use kairos_core::JobKey;
use kairos_core::timeline::Progress;
use kairos_engine::{Engine, EngineError};
use kairos_proto::admin::admin_server::Admin;
use kairos_proto::admin::{
    DeleteJobRequest, DeleteJobResponse, GetJobHistoryRequest, GetJobHistoryResponse, GetJobRequest,
    GetJobResponse, GetJobStatusRequest, GetJobStatusResponse, ImportJobsRequest, ImportJobsResponse,
    JobProgress, JobRef, ListAllJobsRequest, ListAllJobsResponse, ListJobStatusRequest,
    ListJobStatusResponse, OnConflict, PauseJobRequest, PauseJobResponse, ResumeJobRequest,
    ResumeJobResponse, StoredJob as WireJob, TriggerJobRequest, TriggerJobResponse,
};
use kairos_proto::api::bounded_status;
use kairos_proto::convert::{
    ConvertError, key_from_metadata, metadata_of, spec_from_scheduler_job, spec_to_scheduler_job,
    timestamp_from_proto, timestamp_to_proto,
};
use kairos_store::{PutMode, StoredJob};
use tonic::{Request, Response, Status};

/// Jobs per ListAllJobs page unless the caller asks for fewer.
pub const MAX_PAGE: usize = 1000;
/// Most jobs one ImportJobs call may carry.
pub const MAX_IMPORT: usize = 10_000;

/// The admin service over an engine.
#[derive(Debug, Clone)]
pub struct AdminService {
    engine: Engine,
}

impl AdminService {
    pub fn new(engine: Engine) -> Self {
        AdminService { engine }
    }
}

/// The wire form of a stored job (everything but the internal incarnation).
pub fn job_to_wire(job: &StoredJob) -> WireJob {
    WireJob {
        r#ref: Some(ref_of(&job.key)),
        job: Some(spec_to_scheduler_job(&job.spec)),
        created: Some(timestamp_to_proto(job.created)),
        progress: Some(JobProgress {
            count: job.progress.count,
            last_scheduled: job.progress.last_scheduled.map(timestamp_to_proto),
            attempts: job.progress.attempts,
        }),
        next_due: Some(timestamp_to_proto(job.next_due)),
        // Pause and counters travel once issue 14's Admin surface lands (work in progress).
        paused: false,
        counters: None,
    }
}

/// A stored job from its wire form; the incarnation is left 0 (the engine picks one).
///
/// # Errors
/// [`ConvertError`] when the key, a timestamp or the policy is missing or out of range.
pub fn job_from_wire(job: WireJob) -> Result<StoredJob, ConvertError> {
    let key = key_of(job.r#ref)?;
    let missing = |what: &str| ConvertError::Metadata(format!("job '{key}': {what} is required"));
    let spec = spec_from_scheduler_job(job.job.ok_or_else(|| missing("job"))?)?;
    let created = timestamp_from_proto(job.created.ok_or_else(|| missing("created"))?)?;
    let next_due = timestamp_from_proto(job.next_due.ok_or_else(|| missing("next_due"))?)?;
    let progress = job.progress.unwrap_or_default();
    let progress = Progress {
        count: progress.count,
        last_scheduled: progress.last_scheduled.map(timestamp_from_proto).transpose()?,
        attempts: progress.attempts,
    };
    Ok(StoredJob {
        key,
        spec,
        created,
        incarnation: 0,
        progress,
        next_due,
        staged: false,
        paused: false,
        stats: kairos_core::JobStats::default(),
    })
}

/// The wire reference of a key.
pub fn ref_of(key: &JobKey) -> JobRef {
    JobRef { name: key.name.clone(), metadata: Some(metadata_of(key)) }
}

/// The key a wire reference names.
///
/// # Errors
/// [`ConvertError::Metadata`] when the reference or its metadata is missing or incomplete.
pub fn key_of(r: Option<JobRef>) -> Result<JobKey, ConvertError> {
    let r = r.ok_or_else(|| ConvertError::Metadata("job ref is required".into()))?;
    key_from_metadata(r.name, r.metadata)
}

fn invalid(err: ConvertError) -> Status {
    Status::invalid_argument(err.to_string())
}

fn engine_status(err: EngineError) -> Status {
    match err {
        EngineError::Name(e) => Status::invalid_argument(format!("job failed validation: {e}")),
        EngineError::Invalid(e) => Status::invalid_argument(format!("job failed validation: {e}")),
        EngineError::AlreadyExists(key) => Status::already_exists(format!("job already exists: '{key}'")),
        // The steering calls (issue 14) are not served over gRPC yet; mapped for completeness.
        EngineError::NotFound(key) => Status::not_found(format!("job not found: '{key}'")),
        e @ EngineError::NotOwned(_) => Status::failed_precondition(e.to_string()),
        e @ EngineError::Busy => Status::resource_exhausted(e.to_string()),
        EngineError::Store(e) => crate::store_status(&e),
    }
}

impl AdminService {
    async fn list_all(
        &self,
        request: Request<ListAllJobsRequest>,
    ) -> Result<Response<ListAllJobsResponse>, Status> {
        let request = request.into_inner();
        let after = request.after.map(|r| key_of(Some(r))).transpose().map_err(invalid)?;
        let limit = match usize::try_from(request.page_size).unwrap_or(MAX_PAGE) {
            0 => MAX_PAGE,
            n => n.min(MAX_PAGE),
        };
        let page = self
            .engine
            .store()
            .scan_all(after.as_ref(), limit)
            .await
            .map_err(|e| engine_status(EngineError::Store(e)))?;
        let more = page.len() == limit;
        Ok(Response::new(ListAllJobsResponse { jobs: page.iter().map(job_to_wire).collect(), more }))
    }

    async fn get(&self, request: Request<GetJobRequest>) -> Result<Response<GetJobResponse>, Status> {
        let key = key_of(request.into_inner().r#ref).map_err(invalid)?;
        match self.engine.get(&key).await.map_err(engine_status)? {
            Some(job) => Ok(Response::new(GetJobResponse { job: Some(job_to_wire(&job)) })),
            None => Err(Status::not_found(format!("job not found: '{key}'"))),
        }
    }

    async fn delete(
        &self,
        request: Request<DeleteJobRequest>,
    ) -> Result<Response<DeleteJobResponse>, Status> {
        let key = key_of(request.into_inner().r#ref).map_err(invalid)?;
        let deleted = self.engine.delete(&key).await.map_err(engine_status)?;
        Ok(Response::new(DeleteJobResponse { deleted }))
    }

    async fn import(
        &self,
        request: Request<ImportJobsRequest>,
    ) -> Result<Response<ImportJobsResponse>, Status> {
        let request = request.into_inner();
        if request.jobs.len() > MAX_IMPORT {
            return Err(Status::invalid_argument(format!(
                "{} jobs in one import request; send at most {MAX_IMPORT}",
                request.jobs.len()
            )));
        }
        let on_conflict = OnConflict::try_from(request.on_conflict)
            .map_err(|_| Status::invalid_argument(format!("unknown on_conflict {}", request.on_conflict)))?;
        // Decode and validate everything before storing anything, so that one bad line cannot
        // leave half a batch behind.
        let mut jobs = Vec::with_capacity(request.jobs.len());
        let mut seen = std::collections::HashSet::new();
        for wire in request.jobs {
            let job = job_from_wire(wire).map_err(invalid)?;
            self.engine.check_import(&job).map_err(engine_status)?;
            if !seen.insert(job.key.clone()) {
                return Err(Status::invalid_argument(format!(
                    "job '{}' appears twice in the import",
                    job.key
                )));
            }
            jobs.push(job);
        }
        let mut conflicts = Vec::new();
        if on_conflict != OnConflict::Overwrite {
            for job in &jobs {
                if self.engine.get(&job.key).await.map_err(engine_status)?.is_some() {
                    conflicts.push(job.key.to_string());
                }
            }
        }
        if on_conflict == OnConflict::Fail && !conflicts.is_empty() && !request.dry_run {
            return Err(Status::already_exists(format!(
                "{} jobs already exist, the first: '{}'; nothing was imported",
                conflicts.len(),
                conflicts[0]
            )));
        }
        let skip = on_conflict == OnConflict::Skip;
        let total = u32::try_from(jobs.len()).unwrap_or(u32::MAX);
        let conflicted = u32::try_from(conflicts.len()).unwrap_or(u32::MAX);
        if request.dry_run {
            let (imported, skipped) = match on_conflict {
                OnConflict::Overwrite => (total, 0),
                OnConflict::Skip => (total - conflicted, conflicted),
                OnConflict::Fail => (total - conflicted, 0),
            };
            return Ok(Response::new(ImportJobsResponse { imported, skipped, conflicts }));
        }
        let mode =
            if on_conflict == OnConflict::Overwrite { PutMode::Overwrite } else { PutMode::CreateOnly };
        let (mut imported, mut skipped) = (0u32, 0u32);
        let mut late_conflicts = Vec::new();
        for job in jobs {
            match self.engine.import(job, mode).await {
                Ok(_) => imported += 1,
                // Taken between the check and the put (or a skip): leave the stored job alone.
                Err(EngineError::AlreadyExists(key)) if skip => {
                    skipped += 1;
                    late_conflicts.push(key.to_string());
                }
                Err(err) => return Err(engine_status(err)),
            }
        }
        late_conflicts.sort();
        Ok(Response::new(ImportJobsResponse { imported, skipped, conflicts: late_conflicts }))
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn list_all_jobs(
        &self,
        request: Request<ListAllJobsRequest>,
    ) -> Result<Response<ListAllJobsResponse>, Status> {
        self.list_all(request).await.map_err(bounded_status)
    }

    async fn get_job(&self, request: Request<GetJobRequest>) -> Result<Response<GetJobResponse>, Status> {
        self.get(request).await.map_err(bounded_status)
    }

    async fn delete_job(
        &self,
        request: Request<DeleteJobRequest>,
    ) -> Result<Response<DeleteJobResponse>, Status> {
        self.delete(request).await.map_err(bounded_status)
    }

    async fn import_jobs(
        &self,
        request: Request<ImportJobsRequest>,
    ) -> Result<Response<ImportJobsResponse>, Status> {
        self.import(request).await.map_err(bounded_status)
    }

    // Steering RPCs: the scheduler side lands with issue 14's Admin surface (work in progress).
    async fn get_job_status(
        &self,
        _request: Request<GetJobStatusRequest>,
    ) -> Result<Response<GetJobStatusResponse>, Status> {
        Err(Status::unimplemented("GetJobStatus is not implemented yet"))
    }

    async fn get_job_history(
        &self,
        _request: Request<GetJobHistoryRequest>,
    ) -> Result<Response<GetJobHistoryResponse>, Status> {
        Err(Status::unimplemented("GetJobHistory is not implemented yet"))
    }

    async fn pause_job(
        &self,
        _request: Request<PauseJobRequest>,
    ) -> Result<Response<PauseJobResponse>, Status> {
        Err(Status::unimplemented("PauseJob is not implemented yet"))
    }

    async fn resume_job(
        &self,
        _request: Request<ResumeJobRequest>,
    ) -> Result<Response<ResumeJobResponse>, Status> {
        Err(Status::unimplemented("ResumeJob is not implemented yet"))
    }

    async fn trigger_job(
        &self,
        _request: Request<TriggerJobRequest>,
    ) -> Result<Response<TriggerJobResponse>, Status> {
        Err(Status::unimplemented("TriggerJob is not implemented yet"))
    }

    async fn list_job_status(
        &self,
        _request: Request<ListJobStatusRequest>,
    ) -> Result<Response<ListJobStatusResponse>, Status> {
        Err(Status::unimplemented("ListJobStatus is not implemented yet"))
    }
}

//! `kairos.admin.v1.Admin`: every owner's jobs with their progress, by full key, and an import
//! that stores jobs exactly as exported (the operator CLI's `kairos jobs …`).

use jiff::Timestamp;
use kairos_core::key::validate_name_prefix;
use kairos_core::timeline::Progress;
use kairos_core::{HistoryLimit, JobKey, JobStats, JobStatus as CoreStatus, TriggerRecord};
use kairos_engine::{Engine, EngineError};
use kairos_proto::admin::admin_server::Admin;
use kairos_proto::admin::{
    DeleteJobRequest, DeleteJobResponse, GetJobHistoryRequest, GetJobHistoryResponse, GetJobRequest,
    GetJobResponse, GetJobStatusRequest, GetJobStatusResponse, ImportJobsRequest, ImportJobsResponse,
    JobCounters, JobProgress, JobRef, JobStatus as WireStatus, JobStatusEntry, ListAllJobsRequest,
    ListAllJobsResponse, ListJobStatusRequest, ListJobStatusResponse, OnConflict, PauseJobRequest,
    PauseJobResponse, ResumeJobRequest, ResumeJobResponse, StoredJob as WireJob, TriggerJobRequest,
    TriggerJobResponse, TriggerRecord as WireRecord,
};
use kairos_proto::api::bounded_status;
use kairos_proto::convert::{
    ConvertError, duration_to_proto, key_from_metadata, metadata_of, outcome_from_wire, outcome_to_wire,
    owner_from_metadata, spec_from_scheduler_job, spec_to_scheduler_job, state_from_wire, state_to_wire,
    timestamp_from_proto, timestamp_to_proto,
};
use kairos_store::{OwnerScope, PutMode, StoredJob};
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
        paused: job.paused,
        counters: (job.stats != JobStats::default()).then(|| JobCounters {
            fired: job.stats.fired,
            successes: job.stats.successes,
            failures: job.stats.failures,
            last_fire: job.stats.last_fired.map(timestamp_to_proto),
            last_outcome: outcome_to_wire(job.stats.last_outcome).into(),
        }),
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
        version: 0,
        progress,
        next_due,
        staged: false,
        paused: job.paused,
        stats: match job.counters {
            Some(c) => JobStats {
                last_fired: c.last_fire.map(timestamp_from_proto).transpose()?,
                last_outcome: outcome_from_wire(c.last_outcome),
                fired: c.fired,
                successes: c.successes,
                failures: c.failures,
                // Records are counted by the store that keeps them; an import brings none.
                records: 0,
            },
            None => JobStats::default(),
        },
        // Pending trigger-now requests are not exported: they belong to the running store.
        manual: Vec::new(),
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

/// As the Scheduler service maps engine errors, but invalid input is INVALID_ARGUMENT here (the
/// Scheduler service answers it as upstream does).
fn engine_status(err: EngineError) -> Status {
    match err {
        EngineError::Name(_) | EngineError::Invalid(_) => {
            Status::invalid_argument(crate::engine_status(err).message())
        }
        err => crate::engine_status(err),
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

/// Jobs per ListJobStatus page unless the caller asks for another size.
pub const DEFAULT_STATUS_PAGE: usize = 100;
/// Most stored jobs one ListJobStatus call reads to fill its page; past that it answers with
/// what it found and a `next_after` to continue from, so a selective filter over a large store
/// costs several calls rather than one unbounded one.
pub const MAX_STATUS_SCAN: usize = 10_000;
/// Stored jobs read per store call while listing.
const SCAN_CHUNK: usize = 256;

/// The wire form of a status. A paused job's `next_fire` is its expiry (`paused_until`), when
/// it has one.
pub fn status_to_wire(status: &CoreStatus, paused_until: Option<Timestamp>) -> WireStatus {
    let next = if status.paused { paused_until.filter(|t| *t != Timestamp::MAX) } else { status.next_fire };
    WireStatus {
        state: state_to_wire(status.state).into(),
        next_fire: next.map(timestamp_to_proto),
        last_fire: status.last_fire.map(timestamp_to_proto),
        last_outcome: outcome_to_wire(status.last_outcome).into(),
        ticks: status.ticks,
        fired: status.fired,
        successes: status.successes,
        failures: status.failures,
        attempt: status.attempt,
        paused: status.paused,
    }
}

/// The status of a stored job, on the wire.
fn job_status_to_wire(job: &StoredJob, status: &CoreStatus) -> WireStatus {
    status_to_wire(status, Some(job.next_due))
}

/// The wire form of a trigger record.
pub fn record_to_wire(record: &TriggerRecord) -> WireRecord {
    WireRecord {
        tick: Some(timestamp_to_proto(record.tick)),
        fired_at: Some(timestamp_to_proto(record.fired_at)),
        answered_at: Some(timestamp_to_proto(record.answered_at)),
        attempt: record.attempt.saturating_sub(1),
        outcome: outcome_to_wire(Some(record.outcome)).into(),
        manual: record.manual,
        lateness: Some(duration_to_proto(record.lateness())),
    }
}

fn not_found(key: &JobKey) -> Status {
    Status::not_found(format!("job not found: '{key}'"))
}

impl AdminService {
    async fn status(
        &self,
        request: Request<GetJobStatusRequest>,
    ) -> Result<Response<GetJobStatusResponse>, Status> {
        let key = key_of(request.into_inner().r#ref).map_err(invalid)?;
        let (job, status) =
            self.engine.status(&key).await.map_err(engine_status)?.ok_or_else(|| not_found(&key))?;
        Ok(Response::new(GetJobStatusResponse {
            status: Some(job_status_to_wire(&job, &status)),
            job: Some(job_to_wire(&job)),
        }))
    }

    async fn history(
        &self,
        request: Request<GetJobHistoryRequest>,
    ) -> Result<Response<GetJobHistoryResponse>, Status> {
        let request = request.into_inner();
        let key = key_of(request.r#ref).map_err(invalid)?;
        // History is removed with its job: an absent job has none, and says so.
        if self.engine.get(&key).await.map_err(engine_status)?.is_none() {
            return Err(not_found(&key));
        }
        let limit = match request.limit {
            0 => HistoryLimit::MAX.get(),
            n => n.min(HistoryLimit::MAX.get()),
        };
        let records = self
            .engine
            .history(&key, usize::try_from(limit).unwrap_or(usize::MAX))
            .await
            .map_err(engine_status)?;
        Ok(Response::new(GetJobHistoryResponse { records: records.iter().map(record_to_wire).collect() }))
    }

    async fn list_status(
        &self,
        request: Request<ListJobStatusRequest>,
    ) -> Result<Response<ListJobStatusResponse>, Status> {
        let request = request.into_inner();
        let owner = match request.owner {
            Some(metadata) => {
                let owner = owner_from_metadata(&metadata).map_err(invalid)?;
                Some((metadata.namespace, owner))
            }
            None => None,
        };
        let prefix = request.name_prefix;
        if !prefix.is_empty() {
            validate_name_prefix(&prefix)
                .map_err(|e| Status::invalid_argument(format!("bad name prefix: {e}")))?;
        }
        let state = state_from_wire(request.state)
            .map_err(|_| Status::invalid_argument(format!("unknown job state {}", request.state)))?;
        let mut after = request.after.map(|r| key_of(Some(r))).transpose().map_err(invalid)?;
        if let (Some((namespace, owner)), Some(after)) = (&owner, &after)
            && (&after.namespace != namespace || &after.owner != owner)
        {
            return Err(Status::invalid_argument(format!(
                "after names job '{after}', which is not of the owner listed"
            )));
        }
        let limit = match usize::try_from(request.page_size).unwrap_or(MAX_PAGE) {
            0 => DEFAULT_STATUS_PAGE,
            n => n.min(MAX_PAGE),
        };
        let store = self.engine.store();
        let mut jobs = Vec::new();
        let mut scanned = 0usize;
        let mut next_after = None;
        let scope = owner.map(|(namespace, owner)| OwnerScope::Owner {
            namespace,
            owner,
            name_prefix: prefix.clone(),
        });
        'pages: while scanned < MAX_STATUS_SCAN {
            let page = match &scope {
                Some(scope) => store.list(scope, after.as_ref(), SCAN_CHUNK).await,
                None => store.scan_all(after.as_ref(), SCAN_CHUNK).await,
            }
            .map_err(|e| engine_status(EngineError::Store(e)))?;
            let exhausted = page.len() < SCAN_CHUNK;
            for job in page {
                scanned += 1;
                after = Some(job.key.clone());
                // Across owners the prefix is a filter; one owner's listing holds only matches.
                if job.key.name.starts_with(&prefix) {
                    let status = kairos_engine::status_of(&job);
                    if state.is_none_or(|s| s == status.state) {
                        jobs.push(JobStatusEntry {
                            status: Some(job_status_to_wire(&job, &status)),
                            job: Some(job_to_wire(&job)),
                        });
                        if jobs.len() == limit {
                            next_after = Some(ref_of(&job.key));
                            break 'pages;
                        }
                    }
                }
            }
            if exhausted {
                break;
            }
            // The scan budget is spent: the caller continues from the last job read.
            if scanned >= MAX_STATUS_SCAN {
                next_after = after.as_ref().map(ref_of);
            }
        }
        Ok(Response::new(ListJobStatusResponse { jobs, next_after }))
    }
}

impl AdminService {
    async fn pause(&self, request: Request<PauseJobRequest>) -> Result<Response<PauseJobResponse>, Status> {
        let status = self.set_paused(request.into_inner().r#ref, true).await?;
        Ok(Response::new(PauseJobResponse { status }))
    }

    async fn resume(
        &self,
        request: Request<ResumeJobRequest>,
    ) -> Result<Response<ResumeJobResponse>, Status> {
        let status = self.set_paused(request.into_inner().r#ref, false).await?;
        Ok(Response::new(ResumeJobResponse { status }))
    }

    /// Pauses or resumes the job `r#ref` names; its status after.
    async fn set_paused(&self, r#ref: Option<JobRef>, paused: bool) -> Result<Option<WireStatus>, Status> {
        let key = key_of(r#ref).map_err(invalid)?;
        let status = if paused { self.engine.pause(&key).await } else { self.engine.resume(&key).await };
        Ok(Some(status_to_wire(&status.map_err(engine_status)?, None)))
    }

    async fn trigger(
        &self,
        request: Request<TriggerJobRequest>,
    ) -> Result<Response<TriggerJobResponse>, Status> {
        let key = key_of(request.into_inner().r#ref).map_err(invalid)?;
        self.engine.trigger_now(&key).await.map_err(engine_status)?;
        Ok(Response::new(TriggerJobResponse {}))
    }
}

/// Writes `impl Admin for AdminService`: each RPC is answered by the inherent method the entry
/// names, with its status message cut to size.
macro_rules! admin_impl {
    ($($rpc:ident($request:ty) -> $response:ty => $method:ident;)*) => {
        #[tonic::async_trait]
        impl Admin for AdminService {
            $(
                async fn $rpc(&self, request: Request<$request>) -> Result<Response<$response>, Status> {
                    self.$method(request).await.map_err(bounded_status)
                }
            )*
        }
    };
}

admin_impl! {
    list_all_jobs(ListAllJobsRequest) -> ListAllJobsResponse => list_all;
    get_job(GetJobRequest) -> GetJobResponse => get;
    delete_job(DeleteJobRequest) -> DeleteJobResponse => delete;
    import_jobs(ImportJobsRequest) -> ImportJobsResponse => import;
    get_job_status(GetJobStatusRequest) -> GetJobStatusResponse => status;
    get_job_history(GetJobHistoryRequest) -> GetJobHistoryResponse => history;
    pause_job(PauseJobRequest) -> PauseJobResponse => pause;
    resume_job(ResumeJobRequest) -> ResumeJobResponse => resume;
    trigger_job(TriggerJobRequest) -> TriggerJobResponse => trigger;
    list_job_status(ListJobStatusRequest) -> ListJobStatusResponse => list_status;
}

//! The `dapr.proto.scheduler.v1.Scheduler` service of kairos.
//!
//! [`SchedulerService`] implements [`SchedulerApi`] over the engine: thin handlers that decode
//! the wire message, call the engine, and encode the answer, with upstream's error codes and
//! texts. `WatchJobs` streams carry triggers to sidecars and bring their results back by id.
//! The same service is served over gRPC ([`serve`]) and handed in-process to an embedded sidecar.
//! [`admin`] is kairos's own operator service, served next to it on the same port
//! ([`ServeOptions::admin`]), behind the same token and TLS.
//!
//! With several replicas on etcd, [`cluster`] registers this replica, spreads partitions over
//! the live ones ([`rendezvous`]) and feeds WatchHosts with their addresses.
//!
//! Sits on the engine and the store; it must never import axum or the sidecar.

pub mod admin;
pub mod cluster;
pub mod rendezvous;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use kairos_core::Owner;
use kairos_engine::{Answers, Engine, EngineError, ListFilter, Outcome, Registration, Trigger, Triggers};
use kairos_proto::api::{ApiStream, SchedulerApi, SchedulerGrpc};
use kairos_proto::auth::{TokenCheck, TokenScheme};
use kairos_proto::convert::{
    ConvertError, any_from_payload, key_from_metadata, metadata_of, owner_from_metadata,
    spec_from_scheduler_job, spec_to_scheduler_job,
};
use kairos_proto::scheduler::scheduler_server::SchedulerServer;
use kairos_proto::scheduler::watch_jobs_request::WatchJobRequestType;
use kairos_proto::scheduler::{
    DeleteByMetadataRequest, DeleteByMetadataResponse, DeleteByNamePrefixRequest, DeleteByNamePrefixResponse,
    DeleteJobRequest, DeleteJobResponse, GetJobRequest, GetJobResponse, Host, JobMetadata, JobTargetType,
    ListJobsRequest, ListJobsResponse, NamedJob, ScheduleJobRequest, ScheduleJobResponse, WatchHostsResponse,
    WatchJobsRequest, WatchJobsRequestInitial, WatchJobsRequestResultStatus, WatchJobsResponse,
};
use kairos_store::{OwnerScope, PutMode, StoreError};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tonic::Status;

pub use kairos_proto::tls::TlsIdentity;

/// The default largest job payload (`data`), in bytes: daprd's default `--max-body-size`.
pub const DEFAULT_MAX_JOB_DATA_SIZE: usize = 4 << 20;

/// The Scheduler service over an engine.
#[derive(Debug, Clone)]
pub struct SchedulerService {
    engine: Engine,
    hosts: watch::Receiver<Vec<String>>,
    max_job_data_size: usize,
    /// Cleared by [`SchedulerService::stop_accepting`]: writes are refused with Unavailable.
    accepting: Arc<AtomicBool>,
    /// Cancelled by [`SchedulerService::close_streams`]: every WatchJobs stream ends.
    streams: CancellationToken,
}

impl SchedulerService {
    /// A service over `engine`; `hosts` are the replica addresses WatchHosts reports (a single
    /// node reports its own advertised address).
    pub fn new(engine: Engine, hosts: watch::Receiver<Vec<String>>) -> Self {
        SchedulerService {
            engine,
            hosts,
            max_job_data_size: DEFAULT_MAX_JOB_DATA_SIZE,
            accepting: Arc::new(AtomicBool::new(true)),
            streams: CancellationToken::new(),
        }
    }

    /// Refuses jobs whose payload is larger than `bytes` (InvalidArgument, nothing stored).
    #[must_use]
    pub fn with_max_job_data_size(mut self, bytes: usize) -> Self {
        self.max_job_data_size = bytes;
        self
    }

    /// The engine behind the service.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// First step of a graceful stop: every later schedule or delete fails with Unavailable
    /// (a sidecar retries those against another replica, or until its deadline). Reads and
    /// trigger streams go on.
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::Release);
    }

    /// Whether writes are accepted.
    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    /// Ends every WatchJobs stream (last step of a graceful stop, after the engine drained), so
    /// that the gRPC server's own graceful shutdown can finish.
    pub fn close_streams(&self) {
        self.streams.cancel();
    }

    fn check_accepting(&self) -> Result<(), Status> {
        if self.is_accepting() { Ok(()) } else { Err(Status::unavailable("scheduler is shutting down")) }
    }

    /// Deletes the jobs that `scope` picks among those of the owner in `metadata` (given its
    /// namespace and owner).
    async fn delete_owned(
        &self,
        metadata: Option<JobMetadata>,
        scope: impl FnOnce(String, Owner) -> OwnerScope + Send,
    ) -> Result<(), Status> {
        self.check_accepting()?;
        let (metadata, owner) = owner_of(metadata)?;
        self.engine.delete_by_scope(&scope(metadata.namespace, owner)).await.map_err(engine_status)?;
        Ok(())
    }
}

/// How [`serve_with`] serves.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// When set, every call must carry `authorization: Bearer <token>` (else Unauthenticated).
    pub api_token: Option<String>,
    /// Longest a unary call may take before it fails with Cancelled/DeadlineExceeded.
    pub request_timeout: Option<Duration>,
    /// Serve over TLS with this configuration (reloading; see [`TlsIdentity::reloading_server_config`]).
    pub tls: Option<Arc<kairos_proto::tls::ServerTls>>,
    /// Also serve `kairos.admin.v1.Admin` (the `kairos jobs` commands) on the same port.
    pub admin: Option<admin::AdminService>,
}

/// The metadata key the scheduler API token travels in.
pub const API_TOKEN_METADATA: &str = "authorization";

/// Serves `api` as the Scheduler gRPC service on `listener` until `shutdown` completes.
///
/// # Errors
/// When the server fails.
pub async fn serve(
    api: Arc<dyn SchedulerApi>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    serve_with(api, listener, ServeOptions::default(), shutdown).await
}

/// [`serve`] with an API token and a request timeout.
///
/// # Errors
/// When the server fails.
pub async fn serve_with(
    api: Arc<dyn SchedulerApi>,
    listener: TcpListener,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let check = TokenCheck::new(
        TokenScheme::Bearer,
        options.api_token.as_deref(),
        "missing scheduler api token",
        "scheduler api token mismatch",
    );
    let server = SchedulerServer::new(SchedulerGrpc(api))
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    let service = tonic::service::interceptor::InterceptedService::new(server, check.clone());
    let mut builder = tonic::transport::Server::builder();
    if let Some(timeout) = options.request_timeout {
        builder = builder.timeout(timeout);
    }
    let admin = options.admin.map(|admin| {
        let server = kairos_proto::admin::admin_server::AdminServer::new(admin)
            .max_decoding_message_size(256 * 1024 * 1024)
            .max_encoding_message_size(256 * 1024 * 1024);
        tonic::service::interceptor::InterceptedService::new(server, check.clone())
    });
    let router = builder.add_service(service).add_optional_service(admin);
    match &options.tls {
        None => {
            let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            router.serve_with_incoming_shutdown(incoming, shutdown).await
        }
        // rustls through our own acceptor, so that certificate, key and client CA reload
        // (tonic's own TLS takes fixed PEMs).
        Some(tls) => {
            let incoming = kairos_proto::tls::tls_incoming(listener, Arc::clone(tls));
            router.serve_with_incoming_shutdown(incoming, shutdown).await
        }
    }
}

pub(crate) fn engine_status(err: EngineError) -> Status {
    match err {
        // Upstream returns validation failures as plain errors (gRPC Unknown) with this prefix;
        // daprd turns them into 500 DAPR_SCHEDULER_SCHEDULE_JOB (spec §2.4, §7.3).
        EngineError::Name(e) => Status::unknown(format!("job failed validation: {e}")),
        EngineError::Invalid(e) => Status::unknown(format!("job failed validation: {e}")),
        EngineError::AlreadyExists(key) => Status::already_exists(format!("job already exists: '{key}'")),
        // The steering calls (issue 14) are not served over gRPC yet; mapped for completeness.
        EngineError::NotFound(key) => Status::not_found(format!("job not found: '{key}'")),
        e @ EngineError::NotOwned(_) => Status::failed_precondition(e.to_string()),
        e @ EngineError::Busy => Status::resource_exhausted(e.to_string()),
        EngineError::Store(e) => store_status(&e),
    }
}

/// The gRPC status of a store failure: a full store (disk, etcd quota) is RESOURCE_EXHAUSTED,
/// so that callers fail at once with the cause instead of retrying as they do on UNAVAILABLE
/// (a retry cannot help until an operator frees space); a failure that a retry may cure is
/// UNAVAILABLE; the rest, corruption included, INTERNAL.
pub(crate) fn store_status(err: &StoreError) -> Status {
    match err {
        StoreError::Full { .. } => Status::resource_exhausted(err.to_string()),
        err if err.is_retryable() => Status::unavailable(err.to_string()),
        err => Status::internal(err.to_string()),
    }
}

fn convert_status(err: ConvertError) -> Status {
    Status::invalid_argument(err.to_string())
}

/// The metadata of a request and the owner it names.
fn owner_of(metadata: Option<JobMetadata>) -> Result<(JobMetadata, Owner), Status> {
    let metadata = metadata.ok_or_else(|| Status::invalid_argument("job metadata is required"))?;
    let owner = owner_from_metadata(&metadata).map_err(convert_status)?;
    Ok((metadata, owner))
}

#[async_trait]
impl SchedulerApi for SchedulerService {
    async fn schedule_job(&self, request: ScheduleJobRequest) -> Result<ScheduleJobResponse, Status> {
        self.check_accepting()?;
        let key = key_from_metadata(request.name, request.metadata).map_err(convert_status)?;
        let spec = spec_from_scheduler_job(request.job.unwrap_or_default()).map_err(convert_status)?;
        let size = spec.data.as_ref().map_or(0, |d| d.value.len());
        if size > self.max_job_data_size {
            return Err(Status::invalid_argument(format!(
                "job data is {size} bytes, over the {}-byte limit (--max-job-data-size)",
                self.max_job_data_size
            )));
        }
        let mode = if request.overwrite { PutMode::Overwrite } else { PutMode::CreateOnly };
        self.engine.schedule(key, spec, mode).await.map_err(engine_status)?;
        Ok(ScheduleJobResponse {})
    }

    async fn get_job(&self, request: GetJobRequest) -> Result<GetJobResponse, Status> {
        let name = request.name.clone();
        let key = key_from_metadata(request.name, request.metadata).map_err(convert_status)?;
        match self.engine.get(&key).await.map_err(engine_status)? {
            Some(job) => Ok(GetJobResponse { job: Some(spec_to_scheduler_job(&job.spec)) }),
            None => Err(Status::not_found(format!("job not found: {name}"))),
        }
    }

    async fn delete_job(&self, request: DeleteJobRequest) -> Result<DeleteJobResponse, Status> {
        self.check_accepting()?;
        let key = key_from_metadata(request.name, request.metadata).map_err(convert_status)?;
        // Deleting an unknown job succeeds, as in etcd.
        self.engine.delete(&key).await.map_err(engine_status)?;
        Ok(DeleteJobResponse {})
    }

    async fn list_jobs(&self, request: ListJobsRequest) -> Result<ListJobsResponse, Status> {
        let (metadata, owner) = owner_of(request.metadata)?;
        let namespace = metadata.namespace;
        let everything = ListFilter::default();
        let listed = self
            .engine
            .list_status(&namespace, &owner, &everything, None, usize::MAX)
            .await
            .map_err(engine_status)?;
        let jobs = listed
            .into_iter()
            .map(|(j, _)| NamedJob {
                name: j.key.name.clone(),
                metadata: Some(metadata_of(&j.key)),
                job: Some(spec_to_scheduler_job(&j.spec)),
            })
            .collect();
        Ok(ListJobsResponse { jobs })
    }

    async fn delete_by_metadata(
        &self,
        request: DeleteByMetadataRequest,
    ) -> Result<DeleteByMetadataResponse, Status> {
        let actor_id_prefix = request.id_prefix_match == Some(true);
        self.delete_owned(request.metadata, |namespace, owner| match owner {
            Owner::Actor { actor_type, actor_id } if actor_id_prefix => {
                OwnerScope::ActorIdPrefix { namespace, actor_type, id_prefix: actor_id }
            }
            owner => OwnerScope::Owner { namespace, owner, name_prefix: String::new() },
        })
        .await?;
        Ok(DeleteByMetadataResponse {})
    }

    async fn delete_by_name_prefix(
        &self,
        request: DeleteByNamePrefixRequest,
    ) -> Result<DeleteByNamePrefixResponse, Status> {
        let name_prefix = request.name_prefix;
        self.delete_owned(request.metadata, |namespace, owner| OwnerScope::Owner {
            namespace,
            owner,
            name_prefix,
        })
        .await?;
        Ok(DeleteByNamePrefixResponse {})
    }

    async fn watch_jobs(
        &self,
        mut requests: ApiStream<WatchJobsRequest>,
    ) -> Result<ApiStream<WatchJobsResponse>, Status> {
        let first = match requests.next().await {
            Some(first) => first?,
            None => {
                return Err(Status::invalid_argument("WatchJobs stream ended before its initial message"));
            }
        };
        let Some(WatchJobRequestType::Initial(initial)) = first.watch_job_request_type else {
            return Err(Status::invalid_argument("the first WatchJobs message must be `initial`"));
        };
        let registration = registration_of(&initial)?;
        tracing::info!(
            namespace = %registration.namespace,
            app_id = ?registration.app_id,
            actor_types = ?registration.actor_types,
            "sidecar connected"
        );
        let (triggers, answers) = self.engine.subscribe(&registration).split();
        // As large as the engine's credit, so sending a trigger never waits on gRPC.
        let (tx, rx) = mpsc::channel(self.engine.credit().max(1));
        let done = self.streams.child_token();
        tokio::spawn(read_answers(requests, answers, done.clone()));
        tokio::spawn(send_triggers(triggers, tx, done));
        Ok(receiver_stream(rx))
    }

    async fn watch_hosts(&self) -> Result<ApiStream<WatchHostsResponse>, Status> {
        let hosts = self.hosts.clone();
        let stream = futures::stream::unfold((hosts, true), |(mut hosts, first)| async move {
            if !first && hosts.changed().await.is_err() {
                // The service is gone; keep the stream open until the client leaves.
                futures::future::pending::<()>().await;
            }
            let list = hosts.borrow_and_update().clone();
            let response =
                WatchHostsResponse { hosts: list.into_iter().map(|address| Host { address }).collect() };
            Some((Ok(response), (hosts, false)))
        });
        Ok(Box::pin(stream))
    }
}

fn receiver_stream<T: Send + 'static>(rx: mpsc::Receiver<Result<T, Status>>) -> ApiStream<T> {
    Box::pin(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
}

/// What a sidecar's `initial` message subscribes to. An empty `accept_job_types` means every
/// type (upstream's rule); daprd lists `JOB` only once its app is running.
fn registration_of(initial: &WatchJobsRequestInitial) -> Result<Registration, Status> {
    if initial.namespace.is_empty() {
        return Err(Status::invalid_argument("WatchJobs initial message has an empty namespace"));
    }
    let accepts = |kind: JobTargetType| {
        initial.accept_job_types.is_empty() || initial.accept_job_types.contains(&(kind as i32))
    };
    let app_id = (accepts(JobTargetType::Job) && !initial.app_id.is_empty()).then(|| initial.app_id.clone());
    let actor_types =
        if accepts(JobTargetType::ActorReminder) { initial.actor_types.clone() } else { Vec::new() };
    Ok(Registration { namespace: initial.namespace.clone(), app_id, actor_types })
}

fn response_of(trigger: Trigger) -> WatchJobsResponse {
    WatchJobsResponse {
        metadata: Some(metadata_of(&trigger.key)),
        name: trigger.key.name,
        id: trigger.id,
        data: trigger.data.map(any_from_payload),
    }
}

/// Triggers sent to one stream in one go (they are then written out together).
const TRIGGER_BATCH: usize = 64;

/// Sends triggers out until the stream goes away. The answers are read by [`read_answers`] on a
/// task of its own, so nothing here can hold them up; the engine gives a stream only as many
/// unanswered triggers as its credit, so the buffer ahead of the stream never fills.
async fn send_triggers(
    mut triggers: Triggers,
    tx: mpsc::Sender<Result<WatchJobsResponse, Status>>,
    done: CancellationToken,
) {
    let mut batch = Vec::with_capacity(TRIGGER_BATCH);
    loop {
        batch.clear();
        let n = tokio::select! {
            () = done.cancelled() => break,
            () = tx.closed() => break,
            n = triggers.recv_many(&mut batch, TRIGGER_BATCH) => n,
        };
        if n == 0 {
            break;
        }
        for trigger in batch.drain(..) {
            let sent = tokio::select! {
                () = done.cancelled() => false,
                sent = tx.send(Ok(response_of(trigger))) => sent.is_ok(),
            };
            if !sent {
                done.cancel();
                return;
            }
        }
    }
    done.cancel();
}

/// Reads a stream's answers until it ends; each one gives the stream a credit back.
async fn read_answers(mut requests: ApiStream<WatchJobsRequest>, answers: Answers, done: CancellationToken) {
    let connected = metrics::gauge!("kairos_sidecars_connected");
    connected.increment(1.0);
    loop {
        let request = tokio::select! {
            () = done.cancelled() => break,
            request = requests.next() => request,
        };
        match request {
            Some(Ok(WatchJobsRequest {
                watch_job_request_type: Some(WatchJobRequestType::Result(result)),
            })) => {
                let outcome = match WatchJobsRequestResultStatus::try_from(result.status) {
                    Ok(WatchJobsRequestResultStatus::Success) => Outcome::Success,
                    _ => Outcome::Failed,
                };
                if !answers.complete(result.id, outcome) {
                    tracing::debug!(id = result.id, "result for an unknown trigger ignored");
                }
            }
            Some(Ok(_)) => tracing::debug!("unexpected WatchJobs message ignored"),
            Some(Err(status)) => {
                tracing::debug!(%status, "WatchJobs stream failed");
                break;
            }
            None => break,
        }
    }
    // Both halves stop; once both are gone the engine routes this stream's unanswered triggers
    // again.
    done.cancel();
    connected.decrement(1.0);
    tracing::info!("sidecar disconnected");
}

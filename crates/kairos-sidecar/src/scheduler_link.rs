//! The sidecar's link to the scheduler: CRUD calls spread over the scheduler hosts, and one
//! `WatchJobs` stream per host that brings triggers in and sends results back.
//!
//! Remote schedulers are reached over gRPC (`--scheduler-host-address`, a comma list). The
//! link asks `WatchHosts` for the live replica addresses and keeps one stream to each, reconnecting
//! with backoff; a scheduler that does not answer `WatchHosts` is streamed from at the configured
//! addresses. In `kairos run` the link holds the in-process scheduler service instead, through the
//! same [`SchedulerApi`] trait.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use kairos_core::Backoff;
use kairos_proto::admin::admin_client::AdminClient;
use kairos_proto::api::{ApiStream, SchedulerApi, SteerApi};
use kairos_proto::auth::{AddToken, TokenScheme};
use kairos_proto::scheduler::scheduler_client::SchedulerClient;
use kairos_proto::scheduler::watch_jobs_request::WatchJobRequestType;
use kairos_proto::scheduler::{
    WatchJobsRequest, WatchJobsRequestInitial, WatchJobsRequestResult, WatchJobsRequestResultStatus,
    WatchJobsResponse,
};
use kairos_proto::tls::{ClientTls, TlsConnector};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

/// First and longest wait between reconnection attempts.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Deliveries one stream runs at once, whatever `--app-max-concurrency` says: unbounded, a
/// 100,000-trigger burst took 3x the CPU per trigger, timed deliveries out into retries and
/// duplicates, and exhausted failure policies (kairos-bench burst, docs/BENCHMARKS.md). A kairos
/// scheduler sends a stream at most as many unanswered triggers as this (its credit), so
/// triggers rarely wait here.
pub const MAX_IN_FLIGHT: usize = 256;
/// How long deliveries in flight may still finish after a stop, unless told otherwise.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_millis(5_000);

/// What the sidecar does with a trigger: deliver it to the app and say how it went.
#[async_trait]
pub trait TriggerHandler: Send + Sync + 'static {
    /// Delivers one trigger; the status goes back to the scheduler.
    async fn handle(&self, trigger: &WatchJobsResponse) -> WatchJobsRequestResultStatus;
}

/// How the sidecar reaches its scheduler(s).
#[derive(Debug, Clone)]
pub struct SchedulerLink {
    inner: Arc<LinkInner>,
}

#[derive(Debug)]
struct LinkInner {
    mode: Mode,
    /// Sends `authorization: Bearer …` on every call to a remote scheduler.
    auth: AddToken,
    /// Remote schedulers are reached over TLS with this (reloading) client configuration.
    tls_ca: Option<Arc<ClientTls>>,
    /// How long in-flight deliveries may finish after a stop, in milliseconds.
    grace_ms: AtomicU64,
    /// Current APIs for CRUD and steering, by address (one entry, "", in process).
    apis: Mutex<Vec<Host>>,
    next: AtomicUsize,
    /// How many times a `WatchJobs` stream opened (any host), for [`SchedulerLink::streams_opened`].
    opened: watch::Sender<u64>,
}

/// One scheduler host: its Scheduler API and, when it offers one, its steering (Admin) API.
#[derive(Debug, Clone)]
struct Host {
    address: String,
    api: Arc<dyn SchedulerApi>,
    steer: Option<Arc<dyn SteerApi>>,
}

#[derive(Debug)]
enum Mode {
    Disabled,
    InProcess,
    Remote { configured: Vec<String> },
}

/// Why a call could not reach a scheduler.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// No `--scheduler-host-address` was given (daprd: "scheduler clients are disabled").
    #[error("scheduler clients are disabled")]
    Disabled,
    /// An address that is not a valid URI.
    #[error("invalid scheduler address {address:?}: {reason}")]
    BadAddress { address: String, reason: String },
    /// A scheduler API token that is not valid as gRPC metadata (e.g. a newline in it).
    #[error("the scheduler API token contains characters that cannot be sent as gRPC metadata")]
    BadToken,
    /// The scheduler in this process was given without a steering API.
    #[error("the scheduler does not offer job steering")]
    NoSteering,
}

impl SchedulerLink {
    /// No scheduler: every job call fails with "scheduler clients are disabled".
    pub fn disabled() -> Self {
        Self::with(Mode::Disabled, Vec::new())
    }

    /// The scheduler service in this process, without steering (steering calls fail as they do
    /// against an upstream scheduler).
    pub fn in_process(api: Arc<dyn SchedulerApi>) -> Self {
        Self::with(Mode::InProcess, vec![Host { address: String::new(), api, steer: None }])
    }

    /// The scheduler service in this process, with its steering API (`kairos run`).
    pub fn in_process_with_steering(api: Arc<dyn SchedulerApi>, steer: Arc<dyn SteerApi>) -> Self {
        Self::with(Mode::InProcess, vec![Host { address: String::new(), api, steer: Some(steer) }])
    }

    /// Remote schedulers at `addresses` (`host:port`, or a URI); connections are made lazily.
    ///
    /// # Errors
    /// [`LinkError::BadAddress`] for an address that is not a valid URI; [`LinkError::Disabled`]
    /// when the list is empty or only blanks and quotes (daprd disables the Scheduler then).
    pub fn remote(addresses: &[String]) -> Result<Self, LinkError> {
        Self::remote_with_token(addresses, None)
    }

    /// [`SchedulerLink::remote`] to schedulers that require the API token `token`.
    ///
    /// # Errors
    /// As [`SchedulerLink::remote`]; also [`LinkError::BadToken`] for a token that cannot be
    /// sent as gRPC metadata.
    pub fn remote_with_token(addresses: &[String], token: Option<String>) -> Result<Self, LinkError> {
        Self::remote_with(addresses, token, None)
    }

    /// [`SchedulerLink::remote_with_token`], over TLS with `tls_ca` when given (its CA verifies
    /// the schedulers, whose certificates must name the host of each address; its client
    /// certificate, if any, is presented to them).
    ///
    /// # Errors
    /// As [`SchedulerLink::remote_with_token`]; [`LinkError::BadAddress`] also when TLS cannot
    /// be set up for an address.
    pub fn remote_with(
        addresses: &[String],
        token: Option<String>,
        tls_ca: Option<Arc<ClientTls>>,
    ) -> Result<Self, LinkError> {
        let configured: Vec<String> = addresses
            .iter()
            .map(|a| crate::config::scheduler_address(a).to_owned())
            .filter(|a| !a.is_empty())
            .collect();
        if configured.is_empty() {
            return Err(LinkError::Disabled);
        }
        let auth = AddToken::new(TokenScheme::Bearer, token.as_deref()).map_err(|_| LinkError::BadToken)?;
        let mut apis = Vec::new();
        for address in &configured {
            apis.push(connect_lazy(address, auth.clone(), tls_ca.as_ref())?);
        }
        let mut link = Self::with(Mode::Remote { configured }, apis);
        if let Some(inner) = Arc::get_mut(&mut link.inner) {
            inner.auth = auth;
            inner.tls_ca = tls_ca;
        }
        Ok(link)
    }

    /// Lets deliveries in flight finish for up to `grace` once the streams are told to stop.
    #[must_use]
    pub fn with_shutdown_grace(self, grace: Duration) -> Self {
        let ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        self.inner.grace_ms.store(ms, Ordering::Relaxed);
        self
    }

    fn grace(&self) -> Duration {
        Duration::from_millis(self.inner.grace_ms.load(Ordering::Relaxed))
    }

    fn with(mode: Mode, apis: Vec<Host>) -> Self {
        SchedulerLink {
            inner: Arc::new(LinkInner {
                mode,
                auth: AddToken::none(TokenScheme::Bearer),
                tls_ca: None,
                grace_ms: AtomicU64::new(5_000),
                apis: Mutex::new(apis),
                next: AtomicUsize::new(0),
                opened: watch::Sender::new(0),
            }),
        }
    }

    /// A scheduler API for one CRUD call, rotating over the known hosts.
    ///
    /// # Errors
    /// [`LinkError::Disabled`] when there is no scheduler.
    pub fn api(&self) -> Result<Arc<dyn SchedulerApi>, LinkError> {
        self.host().map(|host| host.api)
    }

    /// A steering API for one call, rotating over the known hosts (any replica answers).
    ///
    /// # Errors
    /// [`LinkError::Disabled`] when there is no scheduler; [`LinkError::NoSteering`] when the
    /// scheduler in this process has no steering API.
    pub fn steer(&self) -> Result<Arc<dyn SteerApi>, LinkError> {
        self.host()?.steer.ok_or(LinkError::NoSteering)
    }

    fn host(&self) -> Result<Host, LinkError> {
        let apis = self.inner.apis.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if apis.is_empty() {
            return Err(LinkError::Disabled);
        }
        let i = self.inner.next.fetch_add(1, Ordering::Relaxed) % apis.len();
        Ok(apis[i].clone())
    }

    /// The remote schedulers CRUD calls currently go to (from `WatchHosts`, else as configured);
    /// empty in process or disabled.
    pub fn addresses(&self) -> Vec<String> {
        if !matches!(self.inner.mode, Mode::Remote { .. }) {
            return Vec::new();
        }
        let apis = self.inner.apis.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        apis.iter().map(|host| host.address.clone()).collect()
    }

    /// Counts the `WatchJobs` streams opened so far (to any host; reopenings included): the
    /// value changes each time one opens, so a watcher learns when triggers can flow.
    pub fn streams_opened(&self) -> watch::Receiver<u64> {
        self.inner.opened.subscribe()
    }

    /// Whether job calls can be made at all.
    pub fn is_enabled(&self) -> bool {
        !matches!(self.inner.mode, Mode::Disabled)
    }

    /// Keeps one `WatchJobs` stream per scheduler host open until `stop`, handing every trigger
    /// to `handler` (concurrently) and its status back to the scheduler. After `stop`, no new
    /// trigger is taken; deliveries in flight get the shutdown grace to finish and report.
    pub async fn run_streams(
        &self,
        initial: WatchJobsRequestInitial,
        handler: Arc<dyn TriggerHandler>,
        stop: CancellationToken,
    ) {
        match &self.inner.mode {
            Mode::Disabled => stop.cancelled().await,
            Mode::InProcess => {
                let api = self.api().ok();
                if let Some(api) = api {
                    let grace = self.grace();
                    let opened = self.inner.opened.clone();
                    stream_loop(String::from("in-process"), api, initial, handler, stop, grace, opened).await;
                }
            }
            Mode::Remote { configured } => {
                self.follow_hosts(configured.clone(), Some((initial, handler)), stop).await;
            }
        }
    }

    /// Follows `WatchHosts` without opening job streams (a sidecar with no app port, as daprd
    /// does): CRUD calls then go to the replicas that come and go. Returns at `stop`.
    pub async fn follow_hosts_only(&self, stop: CancellationToken) {
        let Mode::Remote { configured } = &self.inner.mode else { return };
        self.follow_hosts(configured.clone(), None, stop).await;
    }

    /// Follows the hosts the schedulers report for job calls and, given `jobs` (the stream's
    /// initial request and the trigger handler), streams from every one of them.
    async fn follow_hosts(
        &self,
        configured: Vec<String>,
        jobs: Option<(WatchJobsRequestInitial, Arc<dyn TriggerHandler>)>,
        stop: CancellationToken,
    ) {
        let mut streams: HashMap<String, (CancellationToken, tokio::task::JoinHandle<()>)> = HashMap::new();
        let (hosts_tx, mut hosts_rx) = mpsc::channel::<Vec<String>>(8);
        let auth = self.inner.auth.clone();
        let tls_ca = self.inner.tls_ca.clone();
        tokio::spawn(watch_hosts(configured.clone(), auth.clone(), tls_ca.clone(), hosts_tx, stop.clone()));
        loop {
            let Some(Some(hosts)) = stop.run_until_cancelled(hosts_rx.recv()).await else { break };
            let hosts = if hosts.is_empty() { configured.clone() } else { hosts };
            streams.retain(|address, (token, _)| {
                let keep = hosts.contains(address);
                if !keep {
                    tracing::info!(%address, "scheduler host gone; closing its stream");
                    token.cancel();
                }
                keep
            });
            let mut apis = Vec::new();
            for address in &hosts {
                let host = match connect_lazy(address, auth.clone(), tls_ca.as_ref()) {
                    Ok(host) => host,
                    Err(err) => {
                        tracing::warn!(%err, "skipping scheduler host");
                        continue;
                    }
                };
                let api = host.api.clone();
                apis.push(host);
                if let Some((initial, handler)) = &jobs
                    && !streams.contains_key(address)
                {
                    let token = stop.child_token();
                    let task = tokio::spawn(stream_loop(
                        address.clone(),
                        api,
                        initial.clone(),
                        handler.clone(),
                        token.clone(),
                        self.grace(),
                        self.inner.opened.clone(),
                    ));
                    streams.insert(address.clone(), (token, task));
                }
            }
            if !apis.is_empty() {
                *self.inner.apis.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = apis;
            }
        }
        // Wait for every stream to settle its deliveries (each bounded by the grace).
        for (token, task) in streams.into_values() {
            token.cancel();
            let _ = task.await;
        }
    }
}

/// The Scheduler and Admin clients of `address`, over one lazily connected channel (a kairos
/// scheduler serves both on its gRPC port; an upstream one answers Admin calls UNIMPLEMENTED).
fn connect_lazy(address: &str, auth: AddToken, tls_ca: Option<&Arc<ClientTls>>) -> Result<Host, LinkError> {
    // Over TLS the connector does the handshake (with the current, reloading configuration),
    // so tonic sees a plain `http` endpoint.
    let bare = address.split_once("://").map_or(address, |(_, rest)| rest);
    let uri = if tls_ca.is_some() || !address.contains("://") {
        format!("http://{bare}")
    } else {
        address.to_owned()
    };
    let bad = |e: tonic::transport::Error| LinkError::BadAddress {
        address: address.to_owned(),
        reason: e.to_string(),
    };
    let endpoint = tonic::transport::Endpoint::from_shared(uri)
        .map_err(bad)?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(3))
        .keep_alive_timeout(Duration::from_secs(5));
    let channel = match tls_ca {
        Some(tls) => endpoint.connect_with_connector_lazy(TlsConnector::new(Arc::clone(tls))),
        None => endpoint.connect_lazy(),
    };
    let steer = AdminClient::with_interceptor(channel.clone(), auth.clone())
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    let client = SchedulerClient::with_interceptor(channel, auth)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    Ok(Host { address: address.to_owned(), api: Arc::new(client), steer: Some(Arc::new(steer)) })
}

/// Sends the host list whenever a scheduler reports it; falls back to the configured list when
/// no scheduler answers `WatchHosts`.
async fn watch_hosts(
    configured: Vec<String>,
    auth: AddToken,
    tls_ca: Option<Arc<ClientTls>>,
    tx: mpsc::Sender<Vec<String>>,
    stop: CancellationToken,
) {
    let mut backoff = reconnect_backoff();
    let mut i = 0usize;
    // The hosts last reported, tried before the configured ones: when the replica this watch
    // went to dies, another live one tells what changed.
    let mut known: Vec<String> = Vec::new();
    loop {
        let candidates: Vec<&String> =
            known.iter().chain(configured.iter().filter(|c| !known.contains(c))).collect();
        let address = candidates[i % candidates.len()].clone();
        let address = &address;
        i += 1;
        let stream = match connect_lazy(address, auth.clone(), tls_ca.as_ref()) {
            Ok(host) => host.api.watch_hosts().await,
            Err(err) => Err(tonic::Status::invalid_argument(err.to_string())),
        };
        match stream {
            Ok(mut stream) => {
                backoff.reset();
                loop {
                    let Some(next) = stop.run_until_cancelled(stream.next()).await else { return };
                    match next {
                        Some(Ok(response)) => {
                            let hosts: Vec<String> = response.hosts.into_iter().map(|h| h.address).collect();
                            known.clone_from(&hosts);
                            if tx.send(hosts).await.is_err() {
                                return;
                            }
                        }
                        _ => break,
                    }
                }
            }
            Err(status) if known.is_empty() => {
                tracing::debug!(%address, %status, "WatchHosts unavailable; using the configured addresses");
                if tx.send(configured.clone()).await.is_err() {
                    return;
                }
            }
            Err(status) => {
                tracing::debug!(%address, %status, "WatchHosts unavailable there; trying another host")
            }
        }
        if stop.run_until_cancelled(tokio::time::sleep(backoff.next_delay())).await.is_none() {
            return;
        }
    }
}

/// The waits between reconnection attempts: jittered, so that sidecars that lost their
/// scheduler together do not all come back at the same instant.
fn reconnect_backoff() -> Backoff {
    Backoff::new(FIRST_BACKOFF, MAX_BACKOFF)
}

/// One host's stream, reopened with backoff until `stop`.
async fn stream_loop(
    address: String,
    api: Arc<dyn SchedulerApi>,
    initial: WatchJobsRequestInitial,
    handler: Arc<dyn TriggerHandler>,
    stop: CancellationToken,
    grace: Duration,
    opened: watch::Sender<u64>,
) {
    let mut backoff = reconnect_backoff();
    let in_flight = Arc::new(AtomicUsize::new(0));
    while !stop.is_cancelled() {
        // Unbounded, but never longer than the triggers the scheduler let this stream hold
        // unanswered (its credit): one answer per trigger.
        let (results_tx, results_rx) = mpsc::unbounded_channel::<WatchJobsRequest>();
        let first =
            WatchJobsRequest { watch_job_request_type: Some(WatchJobRequestType::Initial(initial.clone())) };
        if results_tx.send(first).is_err() {
            return;
        }
        let outbound: ApiStream<WatchJobsRequest> =
            Box::pin(futures::stream::unfold(results_rx, |mut rx| async move {
                rx.recv().await.map(|m| (Ok(m), rx))
            }));
        match api.watch_jobs(outbound).await {
            Ok(inbound) => {
                tracing::info!(%address, "job stream to scheduler open");
                opened.send_modify(|n| *n += 1);
                backoff.reset();
                let stream = StreamDeliveries {
                    handler: handler.clone(),
                    results: results_tx,
                    slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
                    dead: CancellationToken::new(),
                    stopping: stop.child_token(),
                    in_flight: in_flight.clone(),
                };
                if stream.run(&address, inbound, &stop, grace).await {
                    return;
                }
            }
            Err(status) => tracing::debug!(%address, %status, "cannot open job stream; retrying"),
        }
        if stop.run_until_cancelled(tokio::time::sleep(backoff.next_delay())).await.is_none() {
            return;
        }
    }
}

/// The deliveries of one open stream.
///
/// The stream is read on its own: a trigger is taken off the stream as soon as it arrives and
/// waits for a delivery slot in a task of its own, so reading never waits for the app and a
/// broken stream is noticed at once. A delivery frees its slot before it queues its answer, and
/// answers are queued without limit (the scheduler's credit bounds them), so the answer path
/// never waits for the trigger path either. When the stream breaks, triggers not yet handed to
/// the app are dropped (the scheduler routes them again) and answers of deliveries that finish
/// afterwards are dropped too.
struct StreamDeliveries {
    handler: Arc<dyn TriggerHandler>,
    results: mpsc::UnboundedSender<WatchJobsRequest>,
    slots: Arc<Semaphore>,
    /// Cancelled when the stream breaks.
    dead: CancellationToken,
    /// Cancelled when the link stops: no new delivery starts.
    stopping: CancellationToken,
    in_flight: Arc<AtomicUsize>,
}

impl StreamDeliveries {
    /// Reads triggers until the stream breaks (returns `false`: reconnect) or `stop` (returns
    /// `true`, after letting the deliveries in flight finish within `grace`).
    async fn run(
        self,
        address: &str,
        mut inbound: ApiStream<WatchJobsResponse>,
        stop: &CancellationToken,
        grace: Duration,
    ) -> bool {
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => {
                    self.stopping.cancel();
                    // Our own sender goes; once every delivery has sent its answer (or given
                    // up), the outbound stream ends and the scheduler closes the trigger stream.
                    drop(self.results);
                    settle(address, inbound, &self.in_flight, grace).await;
                    return true;
                }
                next = inbound.next() => next,
            };
            match next {
                Some(Ok(trigger)) => self.deliver(trigger),
                Some(Err(status)) => {
                    tracing::warn!(%address, %status, "job stream to scheduler failed");
                    break;
                }
                None => {
                    tracing::info!(%address, "job stream closed by scheduler");
                    break;
                }
            }
        }
        // The scheduler routes this stream's unanswered triggers again: deliver none of those
        // still waiting for a slot.
        self.dead.cancel();
        false
    }

    fn deliver(&self, trigger: WatchJobsResponse) {
        let handler = self.handler.clone();
        let results = self.results.clone();
        let slots = self.slots.clone();
        let dead = self.dead.clone();
        let stopping = self.stopping.clone();
        let in_flight = self.in_flight.clone();
        tokio::spawn(async move {
            let slot = tokio::select! {
                biased;
                () = dead.cancelled() => {
                    tracing::debug!(job = %trigger.name, id = trigger.id, "trigger of a broken stream not delivered");
                    return;
                }
                () = stopping.cancelled() => {
                    tracing::debug!(job = %trigger.name, id = trigger.id, "trigger not taken: stopping");
                    return;
                }
                slot = slots.acquire_owned() => slot,
            };
            let Ok(slot) = slot else { return };
            if dead.is_cancelled() || stopping.is_cancelled() {
                return;
            }
            in_flight.fetch_add(1, Ordering::AcqRel);
            let status = handler.handle(&trigger).await;
            drop(slot);
            in_flight.fetch_sub(1, Ordering::AcqRel);
            if dead.is_cancelled() {
                // The scheduler has routed this trigger again; an answer could not reach it.
                return;
            }
            let result = WatchJobsRequestResult { id: trigger.id, status: status as i32 };
            let _ = results
                .send(WatchJobsRequest { watch_job_request_type: Some(WatchJobRequestType::Result(result)) });
        });
    }
}

/// After a stop: takes no new trigger, and waits up to `grace` for the deliveries in flight to
/// report. Our end of the result stream is already dropped, so once the last delivery has sent
/// its result the outbound stream ends, the scheduler closes the trigger stream, and `inbound`
/// ends: then every result has reached the scheduler. Triggers that still arrive meanwhile are
/// not delivered; the scheduler redelivers them once the stream is gone.
async fn settle(
    address: &str,
    mut inbound: ApiStream<WatchJobsResponse>,
    in_flight: &AtomicUsize,
    grace: Duration,
) {
    let pending = in_flight.load(Ordering::Acquire);
    if pending > 0 {
        tracing::info!(%address, deliveries = pending, ?grace, "stopping: letting deliveries in flight finish");
    }
    let drained = tokio::time::timeout(grace, async {
        while let Some(item) = inbound.next().await {
            if let Ok(trigger) = item {
                tracing::debug!(job = %trigger.name, id = trigger.id, "trigger not taken: stopping");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            %address,
            deliveries = in_flight.load(Ordering::Acquire),
            ?grace,
            "shutdown grace exceeded; deliveries still in flight are abandoned (the scheduler redelivers them)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairos_proto::scheduler::{
        DeleteByMetadataRequest, DeleteByMetadataResponse, DeleteByNamePrefixRequest,
        DeleteByNamePrefixResponse, DeleteJobRequest, DeleteJobResponse, GetJobRequest, GetJobResponse,
        ListJobsRequest, ListJobsResponse, ScheduleJobRequest, ScheduleJobResponse, WatchHostsResponse,
    };
    use tonic::Status;

    /// A scheduler whose one stream sends `triggers` triggers at once and counts the results.
    #[derive(Debug)]
    struct Burst {
        triggers: u64,
        results: Arc<AtomicUsize>,
    }

    #[async_trait]
    impl SchedulerApi for Burst {
        async fn schedule_job(&self, _: ScheduleJobRequest) -> Result<ScheduleJobResponse, Status> {
            Err(Status::unimplemented("fake"))
        }
        async fn get_job(&self, _: GetJobRequest) -> Result<GetJobResponse, Status> {
            Err(Status::unimplemented("fake"))
        }
        async fn delete_job(&self, _: DeleteJobRequest) -> Result<DeleteJobResponse, Status> {
            Err(Status::unimplemented("fake"))
        }
        async fn list_jobs(&self, _: ListJobsRequest) -> Result<ListJobsResponse, Status> {
            Err(Status::unimplemented("fake"))
        }
        async fn delete_by_metadata(
            &self,
            _: DeleteByMetadataRequest,
        ) -> Result<DeleteByMetadataResponse, Status> {
            Err(Status::unimplemented("fake"))
        }
        async fn delete_by_name_prefix(
            &self,
            _: DeleteByNamePrefixRequest,
        ) -> Result<DeleteByNamePrefixResponse, Status> {
            Err(Status::unimplemented("fake"))
        }
        async fn watch_jobs(
            &self,
            mut requests: ApiStream<WatchJobsRequest>,
        ) -> Result<ApiStream<WatchJobsResponse>, Status> {
            let results = self.results.clone();
            tokio::spawn(async move {
                while let Some(Ok(request)) = requests.next().await {
                    if matches!(request.watch_job_request_type, Some(WatchJobRequestType::Result(_))) {
                        results.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
            let triggers = (0..self.triggers)
                .map(|id| Ok(WatchJobsResponse { id, name: format!("job-{id}"), ..Default::default() }));
            // Stays open after the burst, as a real stream does.
            Ok(Box::pin(futures::stream::iter(triggers).chain(futures::stream::pending())))
        }
        async fn watch_hosts(&self) -> Result<ApiStream<WatchHostsResponse>, Status> {
            Err(Status::unimplemented("fake"))
        }
    }

    /// Counts deliveries running at once.
    #[derive(Debug, Default)]
    struct SlowApp {
        running: AtomicUsize,
        most: AtomicUsize,
    }

    #[async_trait]
    impl TriggerHandler for SlowApp {
        async fn handle(&self, _: &WatchJobsResponse) -> WatchJobsRequestResultStatus {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(2)).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            WatchJobsRequestResultStatus::Success
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_is_delivered_with_at_most_max_in_flight_deliveries_at_once_and_every_result_returns() {
        let triggers = 4 * MAX_IN_FLIGHT as u64;
        let results = Arc::new(AtomicUsize::new(0));
        let link = SchedulerLink::in_process(Arc::new(Burst { triggers, results: results.clone() }));
        let app = Arc::new(SlowApp::default());
        let stop = CancellationToken::new();
        let run = tokio::spawn({
            let (link, app, stop) = (link.clone(), app.clone(), stop.clone());
            async move { link.run_streams(WatchJobsRequestInitial::default(), app, stop).await }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while results.load(Ordering::SeqCst) < triggers as usize && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The fake stream never ends, so a stop would wait out the grace: abort instead.
        run.abort();
        assert_eq!(results.load(Ordering::SeqCst), triggers as usize, "every trigger's result came back");
        let most = app.most.load(Ordering::SeqCst);
        assert!(most <= MAX_IN_FLIGHT, "{most} deliveries ran at once, more than {MAX_IN_FLIGHT}");
        assert!(most > 1, "deliveries ran concurrently ({most} at most)");
    }
}

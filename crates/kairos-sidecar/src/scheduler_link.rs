//! The sidecar's link to the scheduler: CRUD calls spread over the scheduler hosts, and one
//! `WatchJobs` stream per host that brings triggers in and sends results back.
//!
//! Remote schedulers are reached over gRPC (`--scheduler-host-address`, a comma list). The
//! link asks `WatchHosts` for the live replica addresses and keeps one stream to each, reconnecting
//! with backoff; a scheduler that does not answer `WatchHosts` is streamed from at the configured
//! addresses. In `kairos run` the link holds the in-process scheduler service instead, through the
//! same [`SchedulerApi`] trait.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use kairos_proto::api::{ApiStream, SchedulerApi};
use kairos_proto::scheduler::scheduler_client::SchedulerClient;
use kairos_proto::scheduler::watch_jobs_request::WatchJobRequestType;
use kairos_proto::scheduler::{
    WatchJobsRequest, WatchJobsRequestInitial, WatchJobsRequestResult, WatchJobsRequestResultStatus,
    WatchJobsResponse,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Results buffered per stream before delivery tasks wait.
const RESULT_BUFFER: usize = 1024;

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
    /// Current APIs for CRUD, by address (one entry, "", in process).
    apis: Mutex<Vec<(String, Arc<dyn SchedulerApi>)>>,
    next: AtomicUsize,
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
}

impl SchedulerLink {
    /// No scheduler: every job call fails with "scheduler clients are disabled".
    pub fn disabled() -> Self {
        Self::with(Mode::Disabled, Vec::new())
    }

    /// The scheduler service in this process.
    pub fn in_process(api: Arc<dyn SchedulerApi>) -> Self {
        Self::with(Mode::InProcess, vec![(String::new(), api)])
    }

    /// Remote schedulers at `addresses` (`host:port`, or a URI); connections are made lazily.
    ///
    /// # Errors
    /// [`LinkError::BadAddress`] for an address that is not a valid URI; [`LinkError::Disabled`]
    /// when the list is empty or only whitespace (daprd disables the Scheduler then).
    pub fn remote(addresses: &[String]) -> Result<Self, LinkError> {
        let configured: Vec<String> =
            addresses.iter().map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()).collect();
        if configured.is_empty() {
            return Err(LinkError::Disabled);
        }
        let mut apis = Vec::new();
        for address in &configured {
            apis.push((address.clone(), connect_lazy(address)?));
        }
        Ok(Self::with(Mode::Remote { configured }, apis))
    }

    fn with(mode: Mode, apis: Vec<(String, Arc<dyn SchedulerApi>)>) -> Self {
        SchedulerLink {
            inner: Arc::new(LinkInner { mode, apis: Mutex::new(apis), next: AtomicUsize::new(0) }),
        }
    }

    /// A scheduler API for one CRUD call, rotating over the known hosts.
    ///
    /// # Errors
    /// [`LinkError::Disabled`] when there is no scheduler.
    pub fn api(&self) -> Result<Arc<dyn SchedulerApi>, LinkError> {
        let apis = self.inner.apis.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if apis.is_empty() {
            return Err(LinkError::Disabled);
        }
        let i = self.inner.next.fetch_add(1, Ordering::Relaxed) % apis.len();
        Ok(apis[i].1.clone())
    }

    /// Whether job calls can be made at all.
    pub fn is_enabled(&self) -> bool {
        !matches!(self.inner.mode, Mode::Disabled)
    }

    /// Keeps one `WatchJobs` stream per scheduler host open until `stop`, handing every trigger
    /// to `handler` (concurrently) and its status back to the scheduler.
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
                    stream_loop(String::from("in-process"), api, initial, handler, stop).await;
                }
            }
            Mode::Remote { configured } => {
                self.follow_hosts(configured.clone(), initial, handler, stop).await;
            }
        }
    }

    /// Streams from every host the schedulers report, following changes.
    async fn follow_hosts(
        &self,
        configured: Vec<String>,
        initial: WatchJobsRequestInitial,
        handler: Arc<dyn TriggerHandler>,
        stop: CancellationToken,
    ) {
        let mut streams: HashMap<String, CancellationToken> = HashMap::new();
        let (hosts_tx, mut hosts_rx) = mpsc::channel::<Vec<String>>(8);
        tokio::spawn(watch_hosts(configured.clone(), hosts_tx, stop.clone()));
        loop {
            let hosts = tokio::select! {
                () = stop.cancelled() => break,
                hosts = hosts_rx.recv() => match hosts {
                    Some(hosts) => hosts,
                    None => break,
                },
            };
            let hosts = if hosts.is_empty() { configured.clone() } else { hosts };
            streams.retain(|address, token| {
                let keep = hosts.contains(address);
                if !keep {
                    tracing::info!(%address, "scheduler host gone; closing its stream");
                    token.cancel();
                }
                keep
            });
            let mut apis = Vec::new();
            for address in &hosts {
                let api = match connect_lazy(address) {
                    Ok(api) => api,
                    Err(err) => {
                        tracing::warn!(%err, "skipping scheduler host");
                        continue;
                    }
                };
                apis.push((address.clone(), api.clone()));
                if !streams.contains_key(address) {
                    let token = stop.child_token();
                    streams.insert(address.clone(), token.clone());
                    tokio::spawn(stream_loop(address.clone(), api, initial.clone(), handler.clone(), token));
                }
            }
            if !apis.is_empty() {
                *self.inner.apis.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = apis;
            }
        }
        for token in streams.values() {
            token.cancel();
        }
    }
}

fn connect_lazy(address: &str) -> Result<Arc<dyn SchedulerApi>, LinkError> {
    let uri = if address.contains("://") { address.to_owned() } else { format!("http://{address}") };
    let endpoint = tonic::transport::Endpoint::from_shared(uri)
        .map_err(|e| LinkError::BadAddress { address: address.to_owned(), reason: e.to_string() })?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(3))
        .keep_alive_timeout(Duration::from_secs(5));
    let client = SchedulerClient::new(endpoint.connect_lazy())
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    Ok(Arc::new(client))
}

/// Sends the host list whenever a scheduler reports it; falls back to the configured list when
/// no scheduler answers `WatchHosts`.
async fn watch_hosts(configured: Vec<String>, tx: mpsc::Sender<Vec<String>>, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    let mut i = 0usize;
    loop {
        let address = &configured[i % configured.len()];
        i += 1;
        let stream = match connect_lazy(address) {
            Ok(api) => api.watch_hosts().await,
            Err(err) => Err(tonic::Status::invalid_argument(err.to_string())),
        };
        match stream {
            Ok(mut stream) => {
                backoff = Duration::from_millis(100);
                loop {
                    let next = tokio::select! {
                        () = stop.cancelled() => return,
                        next = stream.next() => next,
                    };
                    match next {
                        Some(Ok(response)) => {
                            let hosts = response.hosts.into_iter().map(|h| h.address).collect();
                            if tx.send(hosts).await.is_err() {
                                return;
                            }
                        }
                        _ => break,
                    }
                }
            }
            Err(status) => {
                tracing::debug!(%address, %status, "WatchHosts unavailable; using the configured addresses");
                if tx.send(configured.clone()).await.is_err() {
                    return;
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One host's stream, reopened with backoff until `stop`.
async fn stream_loop(
    address: String,
    api: Arc<dyn SchedulerApi>,
    initial: WatchJobsRequestInitial,
    handler: Arc<dyn TriggerHandler>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    while !stop.is_cancelled() {
        let (tx, rx) = mpsc::channel::<WatchJobsRequest>(RESULT_BUFFER);
        let first =
            WatchJobsRequest { watch_job_request_type: Some(WatchJobRequestType::Initial(initial.clone())) };
        if tx.send(first).await.is_err() {
            return;
        }
        let outbound: ApiStream<WatchJobsRequest> = Box::pin(futures::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|m| (Ok(m), rx)) },
        ));
        match api.watch_jobs(outbound).await {
            Ok(mut inbound) => {
                tracing::info!(%address, "job stream to scheduler open");
                backoff = Duration::from_millis(100);
                loop {
                    let next = tokio::select! {
                        () = stop.cancelled() => return,
                        next = inbound.next() => next,
                    };
                    let trigger = match next {
                        Some(Ok(trigger)) => trigger,
                        Some(Err(status)) => {
                            tracing::warn!(%address, %status, "job stream to scheduler failed");
                            break;
                        }
                        None => {
                            tracing::info!(%address, "job stream closed by scheduler");
                            break;
                        }
                    };
                    let handler = handler.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let status = handler.handle(&trigger).await;
                        let result = WatchJobsRequestResult { id: trigger.id, status: status as i32 };
                        // The stream may be gone; the scheduler then redelivers the trigger.
                        let _ = tx
                            .send(WatchJobsRequest {
                                watch_job_request_type: Some(WatchJobRequestType::Result(result)),
                            })
                            .await;
                    });
                }
            }
            Err(status) => tracing::debug!(%address, %status, "cannot open job stream; retrying"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

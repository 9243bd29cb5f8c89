//! A kairos node as a library: what `kairos scheduler`, `kairos sidecar` and `kairos run`
//! start, on listeners the caller bound.
//!
//! [`Node::start`] takes a [`NodeConfig`], the already-bound [`Listeners`] (bind port 0 and the
//! ports are known before anything runs, so nothing races for a port) and a shutdown future;
//! it returns a [`RunningNode`] with its [`Addresses`], a readiness probe
//! ([`RunningNode::ready`]), the sidecar's job-stream events ([`RunningNode::streams_opened`])
//! and a graceful stop ([`RunningNode::stop`]). The subcommands only parse flags into a config,
//! bind, start, and print the [`ready line`](ReadyLine) (docs/operations.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use etcd_client::ConnectOptions;
use kairos_core::HistoryLimit;
use kairos_core::{Clock, SystemClock};
use kairos_engine::{Engine, EngineConfig};
use kairos_proto::api::{AdminInProcess, SchedulerApi, SteerApi};
use kairos_scheduler::cluster::{Cluster, ClusterConfig};
use kairos_scheduler::{SchedulerService, ServeOptions, TlsIdentity};
use kairos_sidecar::scheduler_link::SchedulerLink;
use kairos_sidecar::server::{Sidecar, SidecarConfig};
use kairos_store::etcd::EtcdStore;
use kairos_store::redb::RedbStore;
use kairos_store::{JobStore, StoreError};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::ops;

/// What a node runs.
#[derive(Debug)]
pub enum NodeConfig {
    /// The Scheduler service (`kairos scheduler`), on [`Listeners::scheduler`].
    Scheduler(SchedulerConfig),
    /// The Jobs API of one app (`kairos sidecar`, or `kairos run` with remote schedulers),
    /// on [`Listeners::http`] and [`Listeners::grpc`], reaching its schedulers through `link`.
    Sidecar { sidecar: SidecarConfig, link: SchedulerLink },
    /// A sidecar over a scheduler in this process on a local store (`kairos run`): the
    /// scheduler has no listener of its own.
    Embedded { sidecar: SidecarConfig, store: LocalStore },
}

/// A scheduler node's store and its gRPC server's options.
#[derive(Debug)]
pub struct SchedulerConfig {
    /// Where the jobs live.
    pub store: StoreConfig,
    /// Address sidecars should use to reach this scheduler (WatchHosts); default the bound
    /// address.
    pub advertise: Option<String>,
    /// Largest job payload accepted.
    pub max_job_data_size: usize,
    /// The API token every gRPC call must carry; `None` requires none.
    pub api_token: Option<String>,
    /// Serve the gRPC API over TLS.
    pub tls: Option<TlsIdentity>,
    /// How long triggers in flight may still be answered after the shutdown signal.
    pub grace: Duration,
}

/// The job store of a scheduler node.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// A redb file in a data dir: this scheduler owns every partition.
    Local(LocalStore),
    /// An etcd cluster shared by several replicas.
    Etcd(EtcdConfig),
}

/// A redb store in `data_dir` (created if missing).
#[derive(Debug, Clone)]
pub struct LocalStore {
    pub data_dir: PathBuf,
    /// Partition count of a new store (an existing one keeps its own).
    pub partitions: u32,
    /// Page cache of the store, in bytes.
    pub cache_size: usize,
    /// Trigger records kept per job.
    pub history: HistoryLimit,
}

/// How a replica joins an etcd cluster (`--etcd-*` flags).
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    pub prefix: String,
    pub replica_id: Option<String>,
    pub lease_ttl: Duration,
    /// Partition count of a new store (an existing one keeps its own).
    pub partitions: u32,
    /// Trigger records kept per job.
    pub history: HistoryLimit,
}

impl StoreConfig {
    /// The store as a log line names it.
    pub fn describe(&self) -> String {
        match self {
            StoreConfig::Local(local) => local.data_dir.display().to_string(),
            StoreConfig::Etcd(etcd) => format!("etcd {} under {}", etcd.endpoints.join(","), etcd.prefix),
        }
    }
}

/// One of each endpoint a node may serve: the listeners it serves on ([`Listeners`]) or where
/// it listens ([`Addresses`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints<T, D = T> {
    /// The Scheduler service's gRPC API (required by [`NodeConfig::Scheduler`]).
    pub scheduler: Option<T>,
    /// The sidecar's Dapr HTTP API (required by the sidecar roles).
    pub http: Option<T>,
    /// The sidecar's Dapr gRPC API (required by the sidecar roles).
    pub grpc: Option<T>,
    /// `GET /metrics`.
    pub metrics: Option<T>,
    /// The scheduler's `GET /healthz` and `GET /readyz` (scheduler role only).
    pub healthz: Option<T>,
    /// The web dashboard (scheduler and embedded roles; docs/dashboard.md).
    pub dashboard: Option<D>,
}

impl<T, D> Default for Endpoints<T, D> {
    fn default() -> Self {
        Endpoints { scheduler: None, http: None, grpc: None, metrics: None, healthz: None, dashboard: None }
    }
}

/// The listeners a node serves on, bound by the caller (port 0 picks a free port).
///
/// A node uses the ones its role needs ([`NodeConfig`]); an ops listener left `None` means
/// that route is not served.
pub type Listeners = Endpoints<TcpListener, DashboardListener>;

/// Where a running node listens.
pub type Addresses = Endpoints<SocketAddr>;

/// Where and how the web dashboard is served.
#[derive(Debug)]
pub struct DashboardListener {
    pub listener: TcpListener,
    /// Refuse pause, resume, trigger and delete.
    pub read_only: bool,
}

/// How long [`RunningNode::ready`] waits for the APIs to accept connections.
const API_READY: Duration = Duration::from_secs(10);
/// How long the gRPC server's connections may take to close after a graceful stop.
const SERVER_CLOSE: Duration = Duration::from_secs(2);
/// The embedded scheduler's grace at the end of `kairos run` (its sidecar stopped first).
const EMBEDDED_GRACE: Duration = Duration::from_secs(1);

/// Starts nodes.
#[derive(Debug)]
pub struct Node;

impl Node {
    /// Opens the store (or joins the etcd cluster), starts the engine and serves the role's
    /// APIs and ops routes on `listeners` until `shutdown` completes or [`RunningNode::stop`]
    /// is called; then stops gracefully. Must be called within a tokio runtime.
    ///
    /// # Errors
    /// When a listener the role needs is missing, the store cannot be opened (a corrupt one
    /// keeps its [`StoreError::Corrupt`] in the chain), etcd cannot be reached, or the sidecar
    /// is misconfigured.
    pub async fn start(
        config: NodeConfig,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<RunningNode> {
        // Installed before the store opens, so what the start records is kept.
        let _ = ops::metrics_handle();
        let Listeners { scheduler, http, grpc, metrics, healthz, dashboard } = listeners;
        let mut addresses = Addresses {
            metrics: local_addr(metrics.as_ref())?,
            healthz: local_addr(healthz.as_ref())?,
            dashboard: local_addr(dashboard.as_ref().map(|d| &d.listener))?,
            ..Addresses::default()
        };
        let stop = CancellationToken::new();
        let ops_stop = CancellationToken::new();
        let mut ops_tasks = Vec::new();
        let mut streams_opened = None;
        let mut service = None;
        let task: JoinHandle<anyhow::Result<()>> = match config {
            NodeConfig::Scheduler(config) => {
                let listener = scheduler.context("a scheduler node needs a scheduler listener")?;
                addresses.scheduler = Some(listener.local_addr()?);
                let mut started = start_scheduler(config, listener).await?;
                let served = started.service.clone();
                if let Some(l) = metrics {
                    ops_tasks.push(ops::spawn_server(
                        l,
                        ops::scheduler_metrics_router(served.clone()),
                        ops_stop.clone(),
                    ));
                }
                if let Some(l) = healthz {
                    ops_tasks.push(ops::spawn_server(
                        l,
                        ops::scheduler_health_router(served.clone()),
                        ops_stop.clone(),
                    ));
                }
                if let Some(d) = dashboard {
                    let tls = started.dashboard_tls.clone();
                    let token = started.options.api_token.clone();
                    ops_tasks.push(spawn_dashboard(d, &served, token, tls, ops_stop.clone()));
                }
                service = Some(served);
                started.options.admin =
                    Some(kairos_scheduler::admin::AdminService::new(started.service.engine().clone()));
                tokio::spawn(started.serve(stop.clone().cancelled_owned()))
            }
            NodeConfig::Sidecar { sidecar, link } => {
                let (http, grpc) = sidecar_listeners(http, grpc)?;
                let sidecar = Sidecar::start_on(sidecar, link.clone(), http, grpc)
                    .context("cannot start the sidecar")?;
                (addresses.http, addresses.grpc) = (Some(sidecar.http_addr()), Some(sidecar.grpc_addr()));
                streams_opened = Some(link.streams_opened());
                if let Some(l) = metrics {
                    ops_tasks.push(ops::spawn_server(l, ops::sidecar_metrics_router(), ops_stop.clone()));
                }
                let stop = stop.clone();
                tokio::spawn(async move {
                    stop.cancelled().await;
                    tracing::info!("shutting down: not ready, APIs closing, deliveries in flight finishing");
                    sidecar.shutdown().await;
                    Ok(())
                })
            }
            NodeConfig::Embedded { mut sidecar, store } => {
                let (http, grpc) = sidecar_listeners(http, grpc)?;
                let sidecar_token = sidecar.api_token.clone();
                let embedded = open_service(&store, "in-process".into())?;
                tracing::info!(data_dir = %store.data_dir.display(), "embedded scheduler started");
                // The app's health check then also says when the store is full or corrupt.
                sidecar.readiness = Some(Arc::new(ops::EmbeddedStoreReadiness(embedded.clone())));
                let api: Arc<dyn SchedulerApi> = embedded.clone();
                // The app's steering calls go to the same engine's Admin service, in process.
                let admin = kairos_scheduler::admin::AdminService::new(embedded.engine().clone());
                let steer: Arc<dyn SteerApi> = Arc::new(AdminInProcess(Arc::new(admin)));
                let link = SchedulerLink::in_process_with_steering(api, steer);
                let sidecar = Sidecar::start_on(sidecar, link.clone(), http, grpc)
                    .context("cannot start the sidecar")?;
                (addresses.http, addresses.grpc) = (Some(sidecar.http_addr()), Some(sidecar.grpc_addr()));
                streams_opened = Some(link.streams_opened());
                if let Some(l) = metrics {
                    // One registry: the sidecar's and the embedded scheduler's metrics.
                    let router = ops::scheduler_metrics_router(embedded.clone());
                    ops_tasks.push(ops::spawn_server(l, router, ops_stop.clone()));
                }
                if let Some(d) = dashboard {
                    // No scheduler token here: the app's DAPR_API_TOKEN guards it when set.
                    let token = sidecar_token.clone();
                    ops_tasks.push(spawn_dashboard(d, &embedded, token, None, ops_stop.clone()));
                }
                service = Some(embedded.clone());
                let stop = stop.clone();
                tokio::spawn(async move {
                    stop.cancelled().await;
                    sidecar.shutdown().await;
                    graceful_stop(&embedded, EMBEDDED_GRACE, None).await;
                    Ok(())
                })
            }
        };
        // The node's task stops the ops routes last, whatever ended it.
        let done = tokio::spawn(async move {
            let served = match task.await {
                Ok(result) => result,
                Err(err) => Err(anyhow::Error::new(err).context("the node's task panicked")),
            };
            ops_stop.cancel();
            for task in ops_tasks {
                let _ = task.await;
            }
            served
        });
        let on_shutdown = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown => on_shutdown.cancel(),
                () = on_shutdown.cancelled() => {}
            }
        });
        Ok(RunningNode { addresses, stop, done, streams_opened, service })
    }
}

/// A started node: its addresses, readiness and stop.
#[derive(Debug)]
pub struct RunningNode {
    addresses: Addresses,
    stop: CancellationToken,
    done: JoinHandle<anyhow::Result<()>>,
    streams_opened: Option<watch::Receiver<u64>>,
    service: Option<Arc<SchedulerService>>,
}

impl RunningNode {
    /// Where it listens (the actual bound addresses).
    pub fn addresses(&self) -> Addresses {
        self.addresses
    }

    /// The scheduler service it runs (scheduler and embedded roles).
    pub fn scheduler(&self) -> Option<&Arc<SchedulerService>> {
        self.service.as_ref()
    }

    /// Waits until every API it serves (scheduler gRPC, sidecar HTTP and gRPC) accepts a TCP
    /// connection, as `dapr run` waits for daprd's ports.
    ///
    /// # Errors
    /// When one does not within 10 s.
    pub async fn ready(&self) -> anyhow::Result<()> {
        let a = self.addresses;
        for addr in [a.scheduler, a.http, a.grpc].into_iter().flatten() {
            let probe = async {
                while TcpStream::connect(addr).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            tokio::time::timeout(API_READY, probe).await.with_context(|| {
                format!("the API on {addr} did not accept connections within {API_READY:?}")
            })?;
        }
        Ok(())
    }

    /// A sidecar's count of job streams opened to its schedulers (0 until the first opens;
    /// reopenings after a reconnect count too); `None` for a scheduler node.
    pub fn streams_opened(&self) -> Option<watch::Receiver<u64>> {
        self.streams_opened.clone()
    }

    /// The ready line of this node in `role` (see [`ReadyLine`]).
    pub fn ready_line(&self, role: &str, tls: bool) -> ReadyLine {
        let a = self.addresses;
        ReadyLine {
            kairos: ReadyLine::READY.into(),
            role: role.into(),
            pid: std::process::id(),
            grpc: a.scheduler.or(a.grpc),
            http: a.http,
            metrics: a.metrics,
            healthz: a.healthz,
            dashboard: a.dashboard.map(|addr| dashboard_url(addr, tls)),
            tls,
            streams_opened: None,
        }
    }

    /// Stops it gracefully (as when the shutdown future completes) and waits until it stopped.
    ///
    /// # Errors
    /// When a server failed.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.wait().await
    }

    /// Waits until it stopped: after the shutdown future completed and the graceful stop
    /// ended, or at once when its server failed by itself.
    ///
    /// # Errors
    /// When a server failed.
    pub async fn wait(self) -> anyhow::Result<()> {
        match self.done.await {
            Ok(result) => result,
            Err(err) => Err(anyhow::Error::new(err).context("the node panicked")),
        }
    }
}

/// The one JSON line a kairos process prints on stdout when it is ready, and the one it prints
/// each time its job stream to a scheduler opens (docs/operations.md, "Ready line"; a stable
/// API: fields may be added, none renamed or removed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyLine {
    /// `"ready"` or `"stream-open"`.
    pub kairos: String,
    /// `"scheduler"`, `"sidecar"` or `"run"`.
    pub role: String,
    pub pid: u32,
    /// The scheduler's gRPC API (scheduler), or the Dapr gRPC API (sidecar, run).
    pub grpc: Option<SocketAddr>,
    /// The Dapr HTTP API (sidecar, run).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub http: Option<SocketAddr>,
    /// `GET /metrics`; `null` when not served.
    pub metrics: Option<SocketAddr>,
    /// `GET /healthz` and `GET /readyz` (scheduler); `null` when not served.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub healthz: Option<SocketAddr>,
    /// The web dashboard's URL (`http://127.0.0.1:4102/`); absent when not served.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dashboard: Option<String>,
    /// Whether the APIs are served over TLS.
    pub tls: bool,
    /// In a `stream-open` line: the job streams opened so far.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub streams_opened: Option<u64>,
}

impl ReadyLine {
    /// The `kairos` value of the line printed once the APIs listen.
    pub const READY: &str = "ready";
    /// The `kairos` value of the line printed when a job stream to a scheduler opens.
    pub const STREAM_OPEN: &str = "stream-open";

    /// This line as one line of JSON (no newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The `stream-open` line that follows this ready line, with `count` streams opened.
    pub fn stream_open(&self, count: u64) -> ReadyLine {
        ReadyLine { kairos: Self::STREAM_OPEN.into(), streams_opened: Some(count), ..self.clone() }
    }
}

/// The URL of a dashboard listening on `addr`.
pub fn dashboard_url(addr: SocketAddr, tls: bool) -> String {
    format!("{}://{addr}/", if tls { "https" } else { "http" })
}

/// Serves the dashboard over `service`'s engine until `stop`; a failed server is logged (the
/// node keeps running without it).
fn spawn_dashboard(
    dashboard: DashboardListener,
    service: &SchedulerService,
    api_token: Option<String>,
    tls: Option<Arc<kairos_proto::tls::ServerTls>>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let metrics = ops::metrics_handle().map(|handle| {
        let source: kairos_dashboard::MetricsSource = Arc::new(move || handle.render());
        source
    });
    let config = kairos_dashboard::DashboardConfig {
        engine: service.engine().clone(),
        clock: Arc::new(SystemClock),
        default_tz: jiff::tz::TimeZone::UTC,
        api_token,
        read_only: dashboard.read_only,
        metrics,
    };
    let dash = kairos_dashboard::Dashboard::new(config, tls.is_some());
    tokio::spawn(async move {
        if let Err(err) = dash.serve(dashboard.listener, tls, stop.cancelled_owned()).await {
            tracing::error!(%err, "the dashboard's server failed");
        }
    })
}

fn local_addr(listener: Option<&TcpListener>) -> anyhow::Result<Option<SocketAddr>> {
    listener.map(TcpListener::local_addr).transpose().context("cannot read a listener's address")
}

fn sidecar_listeners(
    http: Option<TcpListener>,
    grpc: Option<TcpListener>,
) -> anyhow::Result<(TcpListener, TcpListener)> {
    Ok((
        http.context("a sidecar node needs an HTTP listener")?,
        grpc.context("a sidecar node needs a gRPC listener")?,
    ))
}

/// A scheduler started but not yet serving.
struct StartedScheduler {
    service: Arc<SchedulerService>,
    listener: TcpListener,
    cluster: Option<Cluster>,
    options: ServeOptions,
    grace: Duration,
    dashboard_tls: Option<Arc<kairos_proto::tls::ServerTls>>,
}

async fn start_scheduler(config: SchedulerConfig, listener: TcpListener) -> anyhow::Result<StartedScheduler> {
    let address = listener.local_addr()?;
    let advertise = config.advertise.unwrap_or_else(|| address.to_string());
    let (service, cluster) = match config.store {
        StoreConfig::Local(store) => (open_service(&store, advertise)?, None),
        StoreConfig::Etcd(etcd) => {
            let (service, cluster) = join_cluster(etcd, advertise).await?;
            (service, Some(cluster))
        }
    };
    let service = Arc::new((*service).clone().with_max_job_data_size(config.max_job_data_size));
    // The dashboard speaks HTTP/1.1 over the same certificate (and client CA) as the gRPC API.
    let dashboard_tls =
        config.tls.as_ref().map(|tls| tls.reloading_server_config(b"http/1.1")).transpose()?;
    let tls = config.tls.map(|tls| tls.reloading_server_config(b"h2")).transpose()?;
    let options = ServeOptions { api_token: config.api_token, tls, ..ServeOptions::default() };
    Ok(StartedScheduler { service, listener, cluster, options, grace: config.grace, dashboard_tls })
}

impl StartedScheduler {
    /// Serves until `shutdown` completes, then stops gracefully ([`graceful_stop`]).
    async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let api: Arc<dyn SchedulerApi> = self.service.clone();
        let server_stop = CancellationToken::new();
        let mut server = tokio::spawn(kairos_scheduler::serve_with(
            api,
            self.listener,
            self.options,
            server_stop.clone().cancelled_owned(),
        ));
        tokio::select! {
            () = shutdown => {}
            served = &mut server => {
                // The gRPC server ended by itself: nothing can reach this scheduler any more.
                if let Some(cluster) = self.cluster {
                    cluster.shutdown().await;
                }
                self.service.engine().shutdown().await;
                return match served {
                    Ok(result) => result.context("scheduler gRPC server failed"),
                    Err(err) => Err(anyhow::Error::new(err).context("scheduler gRPC server panicked")),
                };
            }
        }
        graceful_stop(&self.service, self.grace, self.cluster).await;
        server_stop.cancel();
        match tokio::time::timeout(SERVER_CLOSE, server).await {
            Ok(Ok(result)) => result.context("scheduler gRPC server failed")?,
            Ok(Err(err)) => return Err(anyhow::Error::new(err).context("scheduler gRPC server panicked")),
            Err(_) => tracing::warn!("gRPC server connections did not close in time; exiting anyway"),
        }
        Ok(())
    }
}

/// Connects to etcd and joins the replica cluster; partitions are claimed in the background
/// as the spread of live replicas says.
async fn join_cluster(
    etcd: EtcdConfig,
    advertise: String,
) -> anyhow::Result<(Arc<SchedulerService>, Cluster)> {
    let replica_id = etcd.replica_id.clone().unwrap_or_else(|| advertise.clone());
    // HTTP/2 pings notice a dead etcd member within seconds, so its streams are re-created
    // (on another member) instead of hanging.
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(3))
        .with_keep_alive(Duration::from_secs(1), Duration::from_secs(2))
        .with_keep_alive_while_idle(true);
    let client = etcd_client::Client::connect(&etcd.endpoints, Some(options))
        .await
        .with_context(|| format!("cannot connect to etcd at {}", etcd.endpoints.join(",")))?;
    // The process lives as long as this task; it needs no stop.
    tokio::spawn(kairos_scheduler::cluster::keep_endpoints_healthy(
        client.clone(),
        etcd.endpoints.clone(),
        CancellationToken::new(),
    ));
    let store = EtcdStore::with_client(client, &etcd.prefix, etcd.partitions)
        .await
        .with_context(|| format!("cannot open the job store in etcd under {}", etcd.prefix))?
        .with_fence(replica_id.clone());
    let partitions = store.partitions();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let engine = Engine::new(
        Arc::new(store.clone()),
        clock.clone(),
        EngineConfig {
            default_tz: jiff::tz::TimeZone::UTC,
            history: etcd.history,
            ..EngineConfig::default()
        },
    );
    let config = ClusterConfig {
        prefix: etcd.prefix,
        replica_id: replica_id.clone(),
        advertise,
        lease_ttl: etcd.lease_ttl,
        drain_timeout: Duration::from_secs(1),
        partitions,
    };
    let cluster = Cluster::start(store, engine.clone(), clock, config);
    let service = Arc::new(SchedulerService::new(engine, cluster.hosts()));
    tracing::info!(replica_id, partitions, "joined the etcd replica cluster");
    Ok((service, cluster))
}

/// Why the job store at `path` did not open, with what to do about it.
fn open_error(path: &std::path::Path, err: StoreError) -> anyhow::Error {
    let context = match &err {
        StoreError::Corrupt(_) => format!(
            "the job store {} is corrupt and kairos will not start on it; move it away and start \
             on a new --data-dir, then restore the jobs with `kairos jobs import` from a \
             `kairos jobs export` backup (or put back a copy of the file from a backup)",
            path.display()
        ),
        // Only a lock held by someone else earns the hint; other failures have their own cause.
        StoreError::InUse { .. } => format!(
            "cannot open the job store {} (is another kairos process using this data dir?)",
            path.display()
        ),
        _ => format!("cannot open the job store {}", path.display()),
    };
    anyhow::Error::new(err).context(context)
}

/// Opens (or creates) the job store in `store.data_dir` and starts a scheduler service over it
/// that owns every partition. Must be called within a tokio runtime.
///
/// # Errors
/// When the data dir or the store cannot be opened (e.g. another kairos process holds it).
pub fn open_service(store: &LocalStore, advertise: String) -> anyhow::Result<Arc<SchedulerService>> {
    let data_dir = &store.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    let path = data_dir.join("jobs.redb");
    let redb = RedbStore::open_with_cache(&path, store.partitions, store.cache_size)
        .map_err(|err| open_error(&path, err))?;
    let redb: Arc<dyn JobStore> = Arc::new(redb);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let engine = Engine::new(
        redb,
        clock,
        EngineConfig {
            default_tz: jiff::tz::TimeZone::UTC,
            history: store.history,
            ..EngineConfig::default()
        },
    );
    engine.own_all();
    // A single node's host list never changes: the sender can go at once (WatchHosts keeps
    // reporting the last list).
    let (_, hosts) = tokio::sync::watch::channel(vec![advertise]);
    Ok(Arc::new(SchedulerService::new(engine, hosts)))
}

/// The graceful stop of a scheduler: not ready and no writes first, then triggers in flight
/// get `grace` to be answered (logged when it runs out), then the partitions write what was
/// answered and stop (a replica first hands its partitions over to the others), and the
/// trigger streams end.
pub async fn graceful_stop(service: &SchedulerService, grace: Duration, cluster: Option<Cluster>) {
    tracing::info!(?grace, "shutting down: not ready, refusing writes, draining triggers in flight");
    service.stop_accepting();
    let left = service.engine().drain(grace).await;
    if left > 0 {
        tracing::warn!(
            triggers = left,
            ?grace,
            "shutdown grace exceeded; unanswered triggers fire again after restart"
        );
    } else {
        tracing::info!("triggers in flight drained");
    }
    if let Some(cluster) = cluster {
        // Hand every partition over before the engine stops, so the others take over now.
        cluster.shutdown().await;
    }
    service.engine().shutdown().await;
    service.close_streams();
}

/// Prints `line` on stdout as one line of JSON, flushed; a closed stdout is ignored (the
/// node keeps running without anyone reading it).
pub fn print_line(line: &ReadyLine) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.to_json());
    let _ = out.flush();
}

/// Prints a `stream-open` line (after `ready`) each time the node's job-stream count changes,
/// until the node's sidecar stops. Spawned; needs no stop.
pub fn print_stream_opens(node: &RunningNode, ready: ReadyLine) {
    let Some(mut opened) = node.streams_opened() else { return };
    tokio::spawn(async move {
        loop {
            let count = *opened.borrow_and_update();
            if count > 0 {
                print_line(&ready.stream_open(count));
            }
            if opened.changed().await.is_err() {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_round_trips_and_names_every_address() {
        let line = ReadyLine {
            kairos: ReadyLine::READY.into(),
            role: "sidecar".into(),
            pid: 7,
            grpc: Some("127.0.0.1:4101".parse().unwrap()),
            http: Some("127.0.0.1:4100".parse().unwrap()),
            metrics: None,
            healthz: None,
            dashboard: None,
            tls: false,
            streams_opened: None,
        };
        let json = line.to_json();
        assert_eq!(
            json,
            r#"{"kairos":"ready","role":"sidecar","pid":7,"grpc":"127.0.0.1:4101","http":"127.0.0.1:4100","metrics":null,"tls":false}"#
        );
        assert_eq!(serde_json::from_str::<ReadyLine>(&json).unwrap(), line);
        let open = line.stream_open(2).to_json();
        assert!(open.starts_with(r#"{"kairos":"stream-open","role":"sidecar""#), "{open}");
        assert!(open.ends_with(r#""streams_opened":2}"#), "{open}");
    }

    #[tokio::test]
    async fn a_scheduler_node_on_port_0_reports_its_addresses_is_ready_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let bind = || TcpListener::bind("127.0.0.1:0");
        let listeners = Listeners {
            scheduler: Some(bind().await.unwrap()),
            healthz: Some(bind().await.unwrap()),
            ..Listeners::default()
        };
        let config = NodeConfig::Scheduler(SchedulerConfig {
            store: StoreConfig::Local(LocalStore {
                data_dir: dir.path().to_path_buf(),
                partitions: 2,
                cache_size: 1 << 20,
                history: HistoryLimit::DEFAULT,
            }),
            advertise: None,
            max_job_data_size: 1 << 20,
            api_token: None,
            tls: None,
            grace: Duration::from_millis(100),
        });
        let node = Node::start(config, listeners, std::future::pending()).await.unwrap();
        node.ready().await.unwrap();
        let a = node.addresses();
        let grpc = a.scheduler.unwrap();
        assert_ne!(grpc.port(), 0);
        let line = node.ready_line("scheduler", false);
        assert_eq!(line.grpc, Some(grpc));
        assert_eq!(line.healthz, a.healthz);
        let healthz = a.healthz.unwrap();
        assert!(TcpStream::connect(healthz).await.is_ok());
        node.stop().await.unwrap();
        // Stopped: the store's lock is released and the listeners are closed.
        assert!(TcpStream::connect(grpc).await.is_err());
        assert!(RedbStore::open_with_cache(dir.path().join("jobs.redb"), 2, 1 << 20).is_ok());
    }
}

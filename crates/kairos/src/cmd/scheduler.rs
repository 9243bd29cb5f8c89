//! `kairos scheduler`: the Scheduler service on a durable local store, or, with
//! `--etcd-endpoints`, one of several replicas sharing an etcd cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use etcd_client::ConnectOptions;
use kairos_core::{Clock, SystemClock};
use kairos_engine::{Engine, EngineConfig};
use kairos_proto::api::SchedulerApi;
use kairos_scheduler::cluster::{Cluster, ClusterConfig};
use kairos_scheduler::{SchedulerService, ServeOptions};
use kairos_store::etcd::EtcdStore;
use kairos_store::redb::RedbStore;
use kairos_store::{JobStore, StoreError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::LogLevel;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// gRPC port of the Scheduler service (0 picks a free one).
    #[arg(long, default_value_t = 50006)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub listen_address: std::net::IpAddr,
    /// Address sidecars should use to reach this scheduler (WatchHosts); default the listen
    /// address and port.
    #[arg(long)]
    pub advertise_address: Option<String>,
    /// Where the job store lives (created if missing); default ~/.kairos/data.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Partition count of a new store; ignored (with a warning) for an existing one.
    #[arg(long, default_value_t = kairos_store::DEFAULT_PARTITIONS, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub partitions: u32,
    /// Page cache of the local store (e.g. 128Mi): it fills up to the smaller of this and the
    /// store file, and counts in the scheduler's memory; the OS page cache serves the rest.
    #[arg(long, default_value = "128Mi", value_parser = kairos_sidecar::config::parse_byte_size)]
    pub store_cache_size: usize,
    /// Log verbosity.
    #[arg(long, value_enum, default_value = "info")]
    pub log_level: LogLevel,
    /// etcd client URLs (comma-separated): run as one of several replicas on etcd instead of
    /// the local store (`--data-dir` is then unused).
    #[arg(long, value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// Root of kairos' keys in etcd.
    #[arg(long, default_value = "/kairos")]
    pub etcd_prefix: String,
    /// This replica's id, unique among live replicas; default the advertised address.
    #[arg(long)]
    pub replica_id: Option<String>,
    /// etcd lease TTL (a Go duration, whole seconds): how soon a crashed replica's partitions
    /// move to the others.
    #[arg(long, default_value = "5s", value_parser = parse_lease_ttl)]
    pub lease_ttl: std::time::Duration,
    /// Log one JSON object per line.
    #[arg(long)]
    pub log_as_json: bool,
    /// Port of GET /metrics (Prometheus text) [default: 9090; skipped with a warning when taken;
    /// an explicit port that cannot be bound is fatal; 0 picks a free one].
    #[arg(long)]
    pub metrics_port: Option<u16>,
    /// Port of GET /healthz (live) and GET /readyz (ready) [default: 8080; like --metrics-port].
    #[arg(long)]
    pub healthz_port: Option<u16>,
    /// File holding the API token every gRPC call must carry as `authorization: Bearer TOKEN`
    /// (else KAIROS_SCHEDULER_API_TOKEN; neither: no token required).
    #[arg(long)]
    pub api_token_file: Option<PathBuf>,
    /// Largest job payload (`data`) accepted, e.g. 4Mi; larger jobs fail with InvalidArgument.
    #[arg(long, default_value = "4Mi", value_parser = kairos_sidecar::config::parse_byte_size)]
    pub max_job_data_size: usize,
    /// On SIGINT/SIGTERM, how long triggers in flight may still be answered (seconds).
    #[arg(long, default_value_t = 5.0)]
    pub graceful_shutdown_seconds: f64,
    /// Serve the gRPC API over TLS with this PEM certificate chain (needs --tls-key-file).
    #[arg(long, requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// The PEM private key of --tls-cert-file.
    #[arg(long, requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
}

fn parse_lease_ttl(input: &str) -> Result<std::time::Duration, String> {
    let ttl = kairos_core::duration::parse_go_duration(input).map_err(|e| e.to_string())?;
    if ttl < jiff::SignedDuration::from_secs(1) {
        return Err(format!("lease ttl {input:?} must be at least 1s"));
    }
    Ok(ttl.unsigned_abs())
}

/// How a replica joins an etcd cluster (`--etcd-*` flags).
#[derive(Debug, Clone)]
pub struct EtcdArgs {
    pub endpoints: Vec<String>,
    pub prefix: String,
    pub replica_id: Option<String>,
    pub lease_ttl: std::time::Duration,
}

/// A running scheduler: its service, engine and address.
#[derive(Debug)]
pub struct Running {
    pub service: Arc<SchedulerService>,
    pub address: SocketAddr,
    listener: TcpListener,
    cluster: Option<Cluster>,
    /// API token and request timeout of the gRPC server.
    pub options: ServeOptions,
    /// How long triggers in flight may still be answered after the shutdown signal.
    pub grace: Duration,
}

impl Running {
    /// Opens the store in `data_dir`, starts the engine on every partition and binds the port.
    ///
    /// # Errors
    /// When the store cannot be opened or the port cannot be bound.
    pub async fn start(
        data_dir: &std::path::Path,
        partitions: u32,
        store_cache_size: usize,
        listen: SocketAddr,
        advertise: Option<String>,
    ) -> anyhow::Result<Running> {
        let listener =
            TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        let address = listener.local_addr()?;
        let service = open_service(
            data_dir,
            partitions,
            store_cache_size,
            advertise.unwrap_or_else(|| address.to_string()),
        )?;
        Ok(Running {
            service,
            address,
            listener,
            cluster: None,
            options: ServeOptions::default(),
            grace: Duration::from_secs(5),
        })
    }

    /// Connects to etcd, joins the replica cluster and binds the port; partitions are claimed
    /// in the background as the spread of live replicas says.
    ///
    /// # Errors
    /// When etcd cannot be reached or the port cannot be bound.
    pub async fn start_replica(
        etcd: EtcdArgs,
        partitions: u32,
        listen: SocketAddr,
        advertise: Option<String>,
    ) -> anyhow::Result<Running> {
        let listener =
            TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        let address = listener.local_addr()?;
        let advertise = advertise.unwrap_or_else(|| address.to_string());
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
        let store = EtcdStore::with_client(client, &etcd.prefix, partitions)
            .await
            .with_context(|| format!("cannot open the job store in etcd under {}", etcd.prefix))?
            .with_fence(replica_id.clone());
        let partitions = store.partitions();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let engine = Engine::new(
            Arc::new(store.clone()),
            clock.clone(),
            EngineConfig { default_tz: jiff::tz::TimeZone::UTC, ..EngineConfig::default() },
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
        Ok(Running {
            service,
            address,
            listener,
            cluster: Some(cluster),
            options: ServeOptions::default(),
            grace: Duration::from_secs(5),
        })
    }

    /// Serves until `shutdown` completes, then stops gracefully ([`graceful_stop`]).
    ///
    /// # Errors
    /// When the gRPC server fails.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()> + Send) -> anyhow::Result<()> {
        let api: Arc<dyn SchedulerApi> = self.service.clone();
        let mut options = self.options;
        options.admin = Some(kairos_scheduler::admin::AdminService::new(self.service.engine().clone()));
        let server_stop = CancellationToken::new();
        let mut server = tokio::spawn(kairos_scheduler::serve_with(
            api,
            self.listener,
            options,
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
        match tokio::time::timeout(Duration::from_secs(2), server).await {
            Ok(Ok(result)) => result.context("scheduler gRPC server failed")?,
            Ok(Err(err)) => return Err(anyhow::Error::new(err).context("scheduler gRPC server panicked")),
            Err(_) => tracing::warn!("gRPC server connections did not close in time; exiting anyway"),
        }
        Ok(())
    }
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

/// Opens (or creates) the job store in `data_dir` and starts a scheduler service over it that
/// owns every partition. Must be called within a tokio runtime.
///
/// # Errors
/// When the data dir or the store cannot be opened (e.g. another kairos process holds it).
pub fn open_service(
    data_dir: &std::path::Path,
    partitions: u32,
    store_cache_size: usize,
    advertise: String,
) -> anyhow::Result<Arc<SchedulerService>> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    let path = data_dir.join("jobs.redb");
    let store = RedbStore::open_with_cache(&path, partitions, store_cache_size)
        .map_err(|err| open_error(&path, err))?;
    let store: Arc<dyn JobStore> = Arc::new(store);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let engine = Engine::new(
        store,
        clock,
        EngineConfig { default_tz: jiff::tz::TimeZone::UTC, ..EngineConfig::default() },
    );
    engine.own_all();
    // A single node's host list never changes: the sender can go at once (WatchHosts keeps
    // reporting the last list).
    let (_, hosts) = tokio::sync::watch::channel(vec![advertise]);
    Ok(Arc::new(SchedulerService::new(engine, hosts)))
}

/// Runs `kairos scheduler`.
///
/// # Errors
/// When the scheduler cannot start or its server fails.
pub async fn run(args: Args) -> anyhow::Result<()> {
    super::init_logging_as(args.log_level, args.log_as_json);
    let _ = crate::ops::metrics_handle();
    let token = super::api_token(args.api_token_file.as_deref(), super::SCHEDULER_TOKEN_ENV)?;
    let grace = Duration::try_from_secs_f64(args.graceful_shutdown_seconds)
        .context("--graceful-shutdown-seconds must be a non-negative number")?;
    let metrics = crate::ops::bind("metrics", args.listen_address, args.metrics_port, 9090).await?;
    let healthz = crate::ops::bind("healthz", args.listen_address, args.healthz_port, 8080).await?;
    let listen = SocketAddr::new(args.listen_address, args.port);
    let (mut running, store) = if args.etcd_endpoints.is_empty() {
        let data_dir = match args.data_dir {
            Some(dir) => dir,
            None => super::default_data_dir()?,
        };
        let running =
            Running::start(&data_dir, args.partitions, args.store_cache_size, listen, args.advertise_address)
                .await?;
        (running, data_dir.display().to_string())
    } else {
        let etcd = EtcdArgs {
            endpoints: args.etcd_endpoints,
            prefix: args.etcd_prefix,
            replica_id: args.replica_id,
            lease_ttl: args.lease_ttl,
        };
        let store = format!("etcd {} under {}", etcd.endpoints.join(","), etcd.prefix);
        let running = Running::start_replica(etcd, args.partitions, listen, args.advertise_address).await?;
        (running, store)
    };
    running.service = Arc::new((*running.service).clone().with_max_job_data_size(args.max_job_data_size));
    running.options.api_token.clone_from(&token);
    running.grace = grace;
    if let (Some(cert), Some(key)) = (&args.tls_cert_file, &args.tls_key_file) {
        let read =
            |p: &std::path::Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
        running.options.tls =
            Some(kairos_scheduler::TlsIdentity { cert_pem: read(cert)?, key_pem: read(key)? });
    }
    let tls = running.options.tls.is_some();

    let signal = super::shutdown_signal_now()?;
    let ops_stop = CancellationToken::new();
    let mut ops_tasks = Vec::new();
    let addr_of = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
    let (metrics_addr, healthz_addr) = (addr_of(&metrics), addr_of(&healthz));
    if let Some(listener) = metrics {
        let router = crate::ops::scheduler_metrics_router(running.service.clone());
        ops_tasks.push(crate::ops::spawn_server(listener, router, ops_stop.clone()));
    }
    if let Some(listener) = healthz {
        let router = crate::ops::scheduler_health_router(running.service.clone());
        ops_tasks.push(crate::ops::spawn_server(listener, router, ops_stop.clone()));
    }
    tracing::info!(
        address = %running.address,
        store = %store,
        metrics = %metrics_addr.map_or_else(|| "none".to_owned(), |a| a.to_string()),
        healthz = %healthz_addr.map_or_else(|| "none".to_owned(), |a| a.to_string()),
        api_token = token.is_some(),
        tls,
        "kairos scheduler listening"
    );
    let served = running.serve(signal).await;
    ops_stop.cancel();
    for task in ops_tasks {
        let _ = task.await;
    }
    served?;
    tracing::info!("kairos scheduler stopped");
    Ok(())
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

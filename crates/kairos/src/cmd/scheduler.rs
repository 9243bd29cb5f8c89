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
use kairos_scheduler::SchedulerService;
use kairos_scheduler::cluster::{Cluster, ClusterConfig};
use kairos_store::JobStore;
use kairos_store::etcd::EtcdStore;
use kairos_store::redb::RedbStore;
use tokio::net::TcpListener;

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
}

impl Running {
    /// Opens the store in `data_dir`, starts the engine on every partition and binds the port.
    ///
    /// # Errors
    /// When the store cannot be opened or the port cannot be bound.
    pub async fn start(
        data_dir: &std::path::Path,
        partitions: u32,
        listen: SocketAddr,
        advertise: Option<String>,
    ) -> anyhow::Result<Running> {
        let listener =
            TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        let address = listener.local_addr()?;
        let service = open_service(data_dir, partitions, advertise.unwrap_or_else(|| address.to_string()))?;
        Ok(Running { service, address, listener, cluster: None })
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
            tokio_util::sync::CancellationToken::new(),
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
        Ok(Running { service, address, listener, cluster: Some(cluster) })
    }

    /// Serves until `shutdown` completes, then stops the engine.
    ///
    /// # Errors
    /// When the gRPC server fails.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()> + Send) -> anyhow::Result<()> {
        let api: Arc<dyn SchedulerApi> = self.service.clone();
        kairos_scheduler::serve(api, self.listener, shutdown)
            .await
            .context("scheduler gRPC server failed")?;
        if let Some(cluster) = self.cluster {
            // Hand every partition over before the engine stops, so the others take over now.
            cluster.shutdown().await;
        }
        self.service.engine().shutdown().await;
        Ok(())
    }
}

/// Opens (or creates) the job store in `data_dir` and starts a scheduler service over it that
/// owns every partition. Must be called within a tokio runtime.
///
/// # Errors
/// When the data dir or the store cannot be opened (e.g. another kairos process holds it).
pub fn open_service(
    data_dir: &std::path::Path,
    partitions: u32,
    advertise: String,
) -> anyhow::Result<Arc<SchedulerService>> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    let path = data_dir.join("jobs.redb");
    let store = RedbStore::open(&path, partitions).with_context(|| {
        format!(
            "cannot open the job store {} (is another kairos process using this data dir?)",
            path.display()
        )
    })?;
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
    super::init_logging(args.log_level);
    let listen = SocketAddr::new(args.listen_address, args.port);
    let running = if args.etcd_endpoints.is_empty() {
        let data_dir = match args.data_dir {
            Some(dir) => dir,
            None => super::default_data_dir()?,
        };
        let running = Running::start(&data_dir, args.partitions, listen, args.advertise_address).await?;
        tracing::info!(address = %running.address, data_dir = %data_dir.display(), "kairos scheduler listening");
        running
    } else {
        let etcd = EtcdArgs {
            endpoints: args.etcd_endpoints,
            prefix: args.etcd_prefix,
            replica_id: args.replica_id,
            lease_ttl: args.lease_ttl,
        };
        let running = Running::start_replica(etcd, args.partitions, listen, args.advertise_address).await?;
        tracing::info!(address = %running.address, "kairos scheduler listening");
        running
    };
    running.serve(super::shutdown_signal()).await?;
    tracing::info!("kairos scheduler stopped");
    Ok(())
}

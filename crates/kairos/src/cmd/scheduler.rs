//! `kairos scheduler`: the Scheduler service on a durable local store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use kairos_core::{Clock, SystemClock};
use kairos_engine::{Engine, EngineConfig};
use kairos_proto::api::SchedulerApi;
use kairos_scheduler::SchedulerService;
use kairos_store::JobStore;
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
}

/// A running scheduler: its service, engine and address.
#[derive(Debug)]
pub struct Running {
    pub service: Arc<SchedulerService>,
    pub address: SocketAddr,
    listener: TcpListener,
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
        Ok(Running { service, address, listener })
    }

    /// Serves until `shutdown` completes, then stops the engine.
    ///
    /// # Errors
    /// When the gRPC server fails.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()> + Send) -> anyhow::Result<()> {
        let api: Arc<dyn SchedulerApi> = self.service.clone();
        let admin = kairos_scheduler::admin::AdminService::new(self.service.engine().clone());
        kairos_scheduler::serve_with_admin(api, admin, self.listener, shutdown)
            .await
            .context("scheduler gRPC server failed")?;
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
    let data_dir = args.data_dir.unwrap_or_else(super::default_data_dir);
    let listen = SocketAddr::new(args.listen_address, args.port);
    let running = Running::start(&data_dir, args.partitions, listen, args.advertise_address).await?;
    tracing::info!(address = %running.address, data_dir = %data_dir.display(), "kairos scheduler listening");
    running.serve(super::shutdown_signal()).await?;
    tracing::info!("kairos scheduler stopped");
    Ok(())
}

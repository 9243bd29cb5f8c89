//! `kairos scheduler`: the Scheduler service on a durable local store, or, with
//! `--etcd-endpoints`, one of several replicas sharing an etcd cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use kairos::node::{
    DashboardListener, EtcdConfig, Listeners, LocalStore, Node, NodeConfig, SchedulerConfig, StoreConfig,
};
use tokio::net::TcpListener;

use super::{LogArgs, ServeTlsArgs, StoreArgs};

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
    #[command(flatten)]
    pub store: StoreArgs,
    /// Partition count of a new store; ignored (with a warning) for an existing one.
    #[arg(long, default_value_t = kairos_store::DEFAULT_PARTITIONS, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub partitions: u32,
    #[command(flatten)]
    pub log: LogArgs,
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
    /// Port of GET /metrics (Prometheus text) [default: 9090; skipped with a warning when taken;
    /// an explicit port that cannot be bound is fatal; 0 picks a free one].
    #[arg(long)]
    pub metrics_port: Option<u16>,
    /// Port of GET /healthz (live) and GET /readyz (ready) [default: 8080; like --metrics-port].
    #[arg(long)]
    pub healthz_port: Option<u16>,
    /// Serve the web dashboard on this port (0 picks a free one) of --listen-address, behind
    /// the API token and TLS of the gRPC API [default: no dashboard].
    #[arg(long)]
    pub dashboard_port: Option<u16>,
    /// The dashboard shows jobs but refuses pause, resume, trigger and delete.
    #[arg(long, requires = "dashboard_port")]
    pub dashboard_read_only: bool,
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
    #[command(flatten)]
    pub tls: ServeTlsArgs,
    /// Require client certificates signed by this PEM CA (mutual TLS; needs --tls-cert-file).
    /// Certificate, key and CA files are re-read when they change, without a restart.
    #[arg(long, requires = "tls_cert_file")]
    pub tls_client_ca_file: Option<PathBuf>,
}

fn parse_lease_ttl(input: &str) -> Result<std::time::Duration, String> {
    let ttl = kairos_core::duration::parse_go_duration(input).map_err(|e| e.to_string())?;
    if ttl < jiff::SignedDuration::from_secs(1) {
        return Err(format!("lease ttl {input:?} must be at least 1s"));
    }
    Ok(ttl.unsigned_abs())
}

/// Runs `kairos scheduler`: flags to a [`NodeConfig`], the listeners bound, [`Node::start`],
/// the ready line printed.
///
/// # Errors
/// When the scheduler cannot start or its server fails.
pub async fn run(args: Args) -> anyhow::Result<()> {
    args.log.init();
    let _ = kairos::ops::metrics_handle();
    let api_token = super::api_token(args.api_token_file.as_deref(), super::SCHEDULER_TOKEN_ENV)?;
    let grace = Duration::try_from_secs_f64(args.graceful_shutdown_seconds)
        .context("--graceful-shutdown-seconds must be a non-negative number")?;
    let tls = args.tls.identity(args.tls_client_ca_file.clone())?;
    let metrics = kairos::ops::bind("metrics", args.listen_address, args.metrics_port, 9090).await?;
    let healthz = kairos::ops::bind("healthz", args.listen_address, args.healthz_port, 8080).await?;
    let dashboard = match args.dashboard_port {
        Some(port) => {
            let at = SocketAddr::new(args.listen_address, port);
            let listener = TcpListener::bind(at)
                .await
                .with_context(|| format!("cannot listen on {at} for the dashboard"))?;
            if !at.ip().is_loopback() && api_token.is_none() && !args.dashboard_read_only {
                tracing::warn!(
                    address = %at,
                    "the dashboard is open to the network without an API token: anyone who reaches it can \
                     pause, trigger and delete jobs (set --api-token-file, or --dashboard-read-only)"
                );
            }
            Some(DashboardListener { listener, read_only: args.dashboard_read_only })
        }
        None => None,
    };
    let listen = SocketAddr::new(args.listen_address, args.port);
    let scheduler = TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let store = if args.etcd_endpoints.is_empty() {
        StoreConfig::Local(LocalStore {
            data_dir: args.store.data_dir()?,
            partitions: args.partitions,
            cache_size: args.store.store_cache_size,
            history: args.store.history_limit,
        })
    } else {
        StoreConfig::Etcd(EtcdConfig {
            endpoints: args.etcd_endpoints,
            prefix: args.etcd_prefix,
            replica_id: args.replica_id,
            lease_ttl: args.lease_ttl,
            partitions: args.partitions,
            history: args.store.history_limit,
        })
    };
    let described = store.describe();
    let (with_token, with_tls) = (api_token.is_some(), tls.is_some());
    let config = NodeConfig::Scheduler(SchedulerConfig {
        store,
        advertise: args.advertise_address,
        max_job_data_size: args.max_job_data_size,
        api_token,
        tls,
        grace,
    });
    let listeners =
        Listeners { scheduler: Some(scheduler), metrics, healthz, dashboard, ..Listeners::default() };
    let signal = super::shutdown_signal_now()?;
    let node = Node::start(config, listeners, signal).await?;
    node.ready().await?;
    let addresses = node.addresses();
    tracing::info!(
        address = %super::or_none(addresses.scheduler),
        store = %described,
        metrics = %super::or_none(addresses.metrics),
        healthz = %super::or_none(addresses.healthz),
        dashboard = %addresses.dashboard.map_or_else(|| "none".to_owned(), |a| kairos::node::dashboard_url(a, with_tls)),
        api_token = with_token,
        tls = with_tls,
        "kairos scheduler listening"
    );
    kairos::node::print_line(&node.ready_line("scheduler", with_tls));
    node.wait().await?;
    tracing::info!("kairos scheduler stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: super::Args,
    }

    #[test]
    fn flattened_store_flags_keep_their_names() {
        let cli =
            Cli::try_parse_from(["kairos", "--data-dir", "/tmp/x", "--store-cache-size", "1Mi"]).unwrap();
        assert_eq!(cli.args.store.data_dir.as_deref(), Some(std::path::Path::new("/tmp/x")));
        assert_eq!(cli.args.store.store_cache_size, 1 << 20);
    }
}

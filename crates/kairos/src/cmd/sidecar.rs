//! `kairos sidecar`: the Dapr Jobs API for one app, with daprd's flags (spec §9).

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use kairos::node::{Listeners, Node, NodeConfig};
use kairos_sidecar::app_channel::{AppChannelConfig, AppProtocol};
use kairos_sidecar::config::parse_byte_size;
use kairos_sidecar::scheduler_link::SchedulerLink;
use kairos_sidecar::server::SidecarConfig;
use tokio::net::TcpListener;

use super::{AppArgs, LogArgs, ServeTlsArgs};

/// daprd's flags that concern the Jobs API.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub app: AppArgs,
    /// Port of the HTTP API (0 picks a free port).
    #[arg(long, default_value_t = 3500)]
    pub dapr_http_port: u16,
    /// Port of the gRPC API (0 picks a free port).
    #[arg(long, default_value_t = 50001)]
    pub dapr_grpc_port: u16,
    /// Address the APIs listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub dapr_listen_addresses: IpAddr,
    /// Port of GET /metrics (Prometheus text); 0 picks a free one. When the default port is
    /// taken the sidecar runs without metrics (with a warning).
    #[arg(long, default_value_t = 9090)]
    pub metrics_port: u16,
    #[command(flatten)]
    pub log: LogArgs,
    /// Scheduler addresses, comma-separated host:port; empty (or quoted blanks such as "") disables
    /// the scheduler: Jobs API calls then fail with "scheduler clients are disabled".
    #[arg(long, value_delimiter = ',')]
    pub scheduler_host_address: Vec<String>,
    /// Largest job payload (`data`) accepted, e.g. 1Mi [default: --max-body-size]; larger
    /// jobs fail with 400 / InvalidArgument DAPR_SCHEDULER_SCHEDULE_JOB.
    #[arg(long, value_parser = parse_byte_size)]
    pub max_job_data_size: Option<usize>,
    /// On SIGINT/SIGTERM, how long deliveries in flight may still finish (seconds).
    #[arg(long, default_value_t = 5.0)]
    pub dapr_graceful_shutdown_seconds: f64,
    /// File holding the scheduler's API token, sent on every scheduler call (else
    /// KAIROS_SCHEDULER_API_TOKEN).
    #[arg(long)]
    pub scheduler_api_token_file: Option<std::path::PathBuf>,
    /// How long a Jobs API call waits for the scheduler (seconds); then 504 / DeadlineExceeded.
    #[arg(long, default_value_t = 30.0)]
    pub scheduler_request_timeout_seconds: f64,
    /// Reach the schedulers over TLS, verifying them against this PEM CA certificate.
    #[arg(long)]
    pub scheduler_tls_ca_file: Option<std::path::PathBuf>,
    /// Present this PEM client certificate chain to the schedulers (mutual TLS; needs
    /// --scheduler-tls-ca-file and --scheduler-tls-key-file). Re-read when it changes.
    #[arg(long, requires_all = ["scheduler_tls_key_file", "scheduler_tls_ca_file"])]
    pub scheduler_tls_cert_file: Option<std::path::PathBuf>,
    /// The PEM private key of --scheduler-tls-cert-file.
    #[arg(long, requires = "scheduler_tls_cert_file")]
    pub scheduler_tls_key_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub tls: ServeTlsArgs,
}

impl Args {
    /// The sidecar configuration these flags and the environment (`NAMESPACE`, `DAPR_API_TOKEN`,
    /// `APP_API_TOKEN`) describe.
    ///
    /// # Errors
    /// When `--app-protocol` is not one kairos speaks, or a TLS file cannot be read.
    pub fn config(&self) -> anyhow::Result<SidecarConfig> {
        let mut config = self.app.config()?;
        config.listen = self.dapr_listen_addresses;
        config.http_port = self.dapr_http_port;
        config.grpc_port = self.dapr_grpc_port;
        config.max_job_data_size = self.max_job_data_size.unwrap_or(self.app.max_body_size);
        config.shutdown_grace = std::time::Duration::try_from_secs_f64(self.dapr_graceful_shutdown_seconds)
            .context("--dapr-graceful-shutdown-seconds must be a non-negative number")?;
        config.scheduler_wait =
            std::time::Duration::try_from_secs_f64(self.scheduler_request_timeout_seconds)
                .context("--scheduler-request-timeout-seconds must be a non-negative number")?;
        config.tls = self.tls.identity(None)?;
        Ok(config)
    }
}

impl AppArgs {
    /// The sidecar configuration of this app with daprd's defaults otherwise, and the
    /// environment (`NAMESPACE`, `DAPR_API_TOKEN`, `APP_API_TOKEN`).
    ///
    /// # Errors
    /// When `--app-protocol` is not one kairos speaks.
    pub fn config(&self) -> anyhow::Result<SidecarConfig> {
        let protocol: AppProtocol = self.app_protocol.parse()?;
        let app = self.app_port.map(|port| AppChannelConfig {
            protocol,
            address: self.app_channel_address.clone(),
            port,
            api_token: AppChannelConfig::api_token_from_env(),
            max_concurrency: AppChannelConfig::max_concurrency_from_flag(self.app_max_concurrency),
            max_body_size: self.max_body_size,
            timeout: None,
            tls_ca_file: self.app_tls_ca_file.clone(),
        });
        let mut config = SidecarConfig::new(self.app_id.clone());
        config.namespace = env_nonempty("NAMESPACE").unwrap_or_else(|| "default".into());
        config.api_token = env_nonempty("DAPR_API_TOKEN");
        config.max_body_size = self.max_body_size;
        config.max_job_data_size = self.max_body_size;
        config.app_health = self.app_health.config()?;
        if config.app_health.is_some() && app.is_none() {
            tracing::warn!("--enable-app-health-check without --app-port: there is no app to probe");
        }
        config.app = app;
        Ok(config)
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The scheduler link for `--scheduler-host-address`.
///
/// # Errors
/// When an address is not a valid URI.
pub fn link_for(addresses: &[String]) -> anyhow::Result<SchedulerLink> {
    link_with_token(addresses, None)
}

/// [`link_for`], sending `token` to the schedulers.
///
/// # Errors
/// When an address is not a valid URI or the token cannot be sent as metadata.
pub fn link_with_token(addresses: &[String], token: Option<String>) -> anyhow::Result<SchedulerLink> {
    link_with(addresses, token, None)
}

/// [`link_with_token`], over TLS with `tls_ca` when given.
///
/// # Errors
/// When an address is not a valid URI or TLS cannot be set up.
pub fn link_with(
    addresses: &[String],
    token: Option<String>,
    tls_ca: Option<std::sync::Arc<kairos_proto::tls::ClientTls>>,
) -> anyhow::Result<SchedulerLink> {
    match SchedulerLink::remote_with(addresses, token, tls_ca) {
        Ok(link) => Ok(link),
        Err(kairos_sidecar::scheduler_link::LinkError::Disabled) => {
            tracing::warn!(
                "scheduler disabled (no --scheduler-host-address, or only blanks and quotes): Jobs API calls fail with \"scheduler clients are disabled\""
            );
            Ok(SchedulerLink::disabled())
        }
        Err(err) => Err(err.into()),
    }
}

/// Binds the sidecar's two APIs as its config says (port 0 picks a free one).
///
/// # Errors
/// When a port cannot be bound.
pub async fn bind_apis(config: &SidecarConfig) -> anyhow::Result<(TcpListener, TcpListener)> {
    let bind = |port| async move {
        let address = SocketAddr::new(config.listen, port);
        TcpListener::bind(address).await.with_context(|| format!("cannot listen on {address}"))
    };
    Ok((bind(config.http_port).await?, bind(config.grpc_port).await?))
}

/// Runs `kairos sidecar`: flags to a config, the listeners bound, [`Node::start`], the ready
/// line printed (and a `stream-open` line each time a job stream opens).
///
/// # Errors
/// When the sidecar cannot start.
pub async fn run(args: Args) -> anyhow::Result<()> {
    args.log.init();
    let _ = kairos::ops::metrics_handle();
    let config = args.config()?;
    let token = super::api_token(args.scheduler_api_token_file.as_deref(), super::SCHEDULER_TOKEN_ENV)?;
    let identity = args.scheduler_tls_cert_file.clone().zip(args.scheduler_tls_key_file.clone());
    let tls_ca = args
        .scheduler_tls_ca_file
        .clone()
        .map(|ca| kairos_proto::tls::ClientTls::from_files(ca, identity))
        .transpose()?;
    let link = link_with(&args.scheduler_host_address, token, tls_ca)?;
    let metrics_port = (args.metrics_port != 9090).then_some(args.metrics_port);
    let metrics = kairos::ops::bind("metrics", args.dapr_listen_addresses, metrics_port, 9090).await?;
    let signal = super::shutdown_signal_now()?;
    let tls = config.tls.is_some();
    // A bad certificate or app channel is reported before anything is bound.
    if let Some(identity) = &config.tls {
        identity.server_config().context("cannot start the sidecar")?;
    }
    if let Some(app) = &config.app {
        kairos_sidecar::app_channel::AppChannel::new(app.clone()).context("cannot start the sidecar")?;
    }
    let (http, grpc) = bind_apis(&config).await.context("cannot start the sidecar")?;
    let listeners = Listeners { http: Some(http), grpc: Some(grpc), metrics, ..Listeners::default() };
    let node = Node::start(NodeConfig::Sidecar { sidecar: config, link }, listeners, signal).await?;
    node.ready().await?;
    let addresses = node.addresses();
    tracing::info!(
        app_id = %args.app.app_id,
        http = %super::or_none(addresses.http),
        grpc = %super::or_none(addresses.grpc),
        metrics = %super::or_none(addresses.metrics),
        tls,
        "kairos sidecar listening"
    );
    let ready = node.ready_line("sidecar", tls);
    kairos::node::print_line(&ready);
    kairos::node::print_stream_opens(&node, ready);
    node.wait().await?;
    tracing::info!("kairos sidecar stopped");
    Ok(())
}

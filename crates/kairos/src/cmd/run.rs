//! `kairos run [flags] -- CMD ARGS…`: an app with its sidecar (and, unless told otherwise, an
//! embedded scheduler on a durable local store), like `dapr run` with no daemon to install.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use kairos_proto::api::SchedulerApi;
use kairos_sidecar::scheduler_link::SchedulerLink;
use kairos_sidecar::server::Sidecar;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use super::LogLevel;
use super::sidecar::link_for;

/// How long the app gets to exit after a forwarded signal before it is killed.
const APP_GRACE: Duration = Duration::from_secs(5);

/// `dapr run`'s flags that concern the Jobs API.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  kairos run --app-id myapp --app-port 50070 --app-protocol grpc -- ./my-app"
)]
pub struct Args {
    /// The app's id: the owner of its jobs.
    #[arg(long)]
    pub app_id: String,
    /// The port the app listens on; without it no jobs are delivered.
    #[arg(long)]
    pub app_port: Option<u16>,
    /// How to call the app: grpc (OnJobEvent) or http (POST /job/{name}).
    #[arg(long, default_value = "http")]
    pub app_protocol: String,
    /// Host or IP address of the app.
    #[arg(long, default_value = "127.0.0.1")]
    pub app_channel_address: String,
    /// Port of the HTTP API; a free port when not given.
    #[arg(long)]
    pub dapr_http_port: Option<u16>,
    /// Port of the gRPC API; a free port when not given.
    #[arg(long)]
    pub dapr_grpc_port: Option<u16>,
    /// Port of GET /metrics (Prometheus text), also passed to the app as DAPR_METRICS_PORT;
    /// no metrics endpoint when not given.
    #[arg(long)]
    pub metrics_port: Option<u16>,
    /// Log verbosity of the runtime.
    #[arg(long, value_enum, default_value = "info")]
    pub log_level: LogLevel,
    /// Use these schedulers (comma-separated host:port) instead of the embedded one.
    #[arg(long, value_delimiter = ',')]
    pub scheduler_host_address: Vec<String>,
    /// Where the embedded scheduler keeps its jobs; default ~/.kairos/data.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Largest request or app-channel message, e.g. 4Mi.
    #[arg(long, default_value = "4Mi", value_parser = kairos_sidecar::config::parse_byte_size)]
    pub max_body_size: usize,
    /// Most deliveries to the app at once; -1 is unlimited.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub app_max_concurrency: i64,
    /// The app to run, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Runs `kairos run` and returns the app's exit code.
///
/// # Errors
/// When the runtime cannot start or the app cannot be launched.
pub async fn run(args: Args) -> anyhow::Result<i32> {
    super::init_logging(args.log_level);
    let sidecar_args = super::sidecar::Args {
        app_id: args.app_id.clone(),
        app_port: args.app_port,
        app_protocol: args.app_protocol.clone(),
        app_channel_address: args.app_channel_address.clone(),
        dapr_http_port: args.dapr_http_port.unwrap_or(0),
        dapr_grpc_port: args.dapr_grpc_port.unwrap_or(0),
        dapr_listen_addresses: std::net::IpAddr::from([127, 0, 0, 1]),
        metrics_port: args.metrics_port.unwrap_or(0),
        log_level: args.log_level,
        scheduler_host_address: args.scheduler_host_address.clone(),
        max_body_size: args.max_body_size,
        app_max_concurrency: args.app_max_concurrency,
        log_as_json: false,
        max_job_data_size: None,
        dapr_graceful_shutdown_seconds: 5.0,
        scheduler_api_token_file: None,
        scheduler_request_timeout_seconds: 30.0,
        scheduler_tls_ca_file: None,
    };
    let config = sidecar_args.config()?;

    let (link, embedded) = if args.scheduler_host_address.iter().all(|a| a.trim().is_empty()) {
        let data_dir = args.data_dir.clone().unwrap_or_else(super::default_data_dir);
        let service =
            super::scheduler::open_service(&data_dir, kairos_store::DEFAULT_PARTITIONS, "in-process".into())?;
        tracing::info!(data_dir = %data_dir.display(), "embedded scheduler started");
        let api: Arc<dyn SchedulerApi> = service.clone();
        (SchedulerLink::in_process(api), Some(service))
    } else {
        (link_for(&args.scheduler_host_address)?, None)
    };

    // /metrics only when --metrics-port is given (one registry: sidecar and embedded scheduler).
    let _ = crate::ops::metrics_handle();
    let ops_stop = tokio_util::sync::CancellationToken::new();
    let metrics = match args.metrics_port {
        Some(port) => {
            crate::ops::bind("metrics", std::net::IpAddr::from([127, 0, 0, 1]), Some(port), port).await?
        }
        None => None,
    };
    let metrics_task = metrics.map(|listener| {
        let router = match &embedded {
            Some(service) => crate::ops::scheduler_metrics_router(service.clone()),
            None => crate::ops::sidecar_metrics_router(),
        };
        crate::ops::spawn_server(listener, router, ops_stop.clone())
    });

    let sidecar = Sidecar::start(config, link).await.context("cannot start the sidecar")?;
    tracing::info!(
        app_id = %args.app_id,
        http = %sidecar.http_addr(),
        grpc = %sidecar.grpc_addr(),
        "kairos sidecar listening"
    );

    let mut app = launch(&args, &sidecar)?;
    let status = supervise(&mut app).await?;

    tracing::info!(%status, "app exited; shutting down");
    sidecar.shutdown().await;
    if let Some(service) = embedded {
        super::scheduler::graceful_stop(&service, Duration::from_secs(1)).await;
    }
    ops_stop.cancel();
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    Ok(exit_code(status))
}

/// Starts the app with the environment `dapr run` gives it, its output prefixed.
fn launch(args: &Args, sidecar: &Sidecar) -> anyhow::Result<Child> {
    let Some((program, rest)) = args.command.split_first() else { bail!("no app command given after --") };
    let mut command = Command::new(program);
    command
        .args(rest)
        .env("APP_ID", &args.app_id)
        .env("APP_CHANNEL_ADDRESS", &args.app_channel_address)
        .env("APP_PROTOCOL", &args.app_protocol)
        .env("DAPR_HTTP_PORT", sidecar.http_addr().port().to_string())
        .env("DAPR_GRPC_PORT", sidecar.grpc_addr().port().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(port) = args.app_port {
        command.env("APP_PORT", port.to_string());
    }
    if let Some(port) = args.metrics_port.filter(|p| *p > 0) {
        command.env("DAPR_METRICS_PORT", port.to_string());
    }
    let mut child = command.spawn().with_context(|| format!("cannot start the app {program:?}"))?;
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(prefix_lines(stdout, false));
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(prefix_lines(stderr, true));
    }
    tracing::info!(command = ?args.command, pid = child.id(), "app started");
    Ok(child)
}

async fn prefix_lines(stream: impl AsyncRead + Unpin, to_stderr: bool) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if to_stderr {
            eprintln!("== APP == {line}");
        } else {
            println!("== APP == {line}");
        }
    }
}

/// Waits for the app to exit, forwarding SIGINT/SIGTERM to it; kills it if it does not exit
/// within the grace period after a forwarded signal.
async fn supervise(app: &mut Child) -> anyhow::Result<ExitStatus> {
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let signal = tokio::select! {
        status = app.wait() => return Ok(status?),
        _ = interrupt.recv() => Signal::SIGINT,
        _ = terminate.recv() => Signal::SIGTERM,
    };
    tracing::info!(%signal, "forwarding signal to the app");
    if let Some(pid) = app.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
    match tokio::time::timeout(APP_GRACE, app.wait()).await {
        Ok(status) => Ok(status?),
        Err(_) => {
            tracing::warn!(grace = ?APP_GRACE, "app did not exit in time; killing it");
            app.kill().await?;
            Ok(app.wait().await?)
        }
    }
}

/// The app's exit code, or 128 + the signal that ended it (the shell's convention).
fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

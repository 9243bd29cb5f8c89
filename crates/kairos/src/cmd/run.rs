//! `kairos run [flags] -- CMD ARGS…`: an app with its sidecar (and, unless told otherwise, an
//! embedded scheduler on a durable local store), like `dapr run` with no daemon to install.

use std::net::SocketAddr;
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
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal as unix_signal};
use tokio::task::JoinHandle;

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
    /// Where the embedded scheduler keeps its jobs (durable, redb); default ~/.kairos/data.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Page cache of the embedded scheduler's store (e.g. 128Mi); see `kairos scheduler
    /// --store-cache-size`.
    #[arg(long, default_value = "128Mi", value_parser = kairos_sidecar::config::parse_byte_size)]
    pub store_cache_size: usize,
    /// Largest request or app-channel message, e.g. 4Mi.
    #[arg(long, default_value = "4Mi", value_parser = kairos_sidecar::config::parse_byte_size)]
    pub max_body_size: usize,
    /// Most deliveries to the app at once; -1 is unlimited.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub app_max_concurrency: i64,
    #[command(flatten)]
    pub app_health: super::app_health::AppHealthArgs,
    /// The app to run, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Runs `kairos run` and returns the app's exit code.
///
/// # Contract
/// The app starts only once both APIs accept connections, with the environment `dapr run`
/// gives it (spec §9). Jobs reach it only once its `--app-port` accepts connections (the
/// sidecar waits, as daprd does). When the app exits, by itself or after a forwarded
/// SIGINT/SIGTERM, its remaining output is shown, the sidecar and the embedded scheduler stop,
/// and its exit code (128 + signal when a signal ended it) is returned.
///
/// # Errors
/// When the runtime cannot start (no data dir, store in use, port taken) or the app cannot be
/// launched.
pub async fn run(args: Args) -> anyhow::Result<i32> {
    super::init_logging(args.log_level);
    // Caught from the start, so that a signal during start-up cannot kill us and orphan the app.
    let signals = Signals {
        interrupt: unix_signal(SignalKind::interrupt())?,
        terminate: unix_signal(SignalKind::terminate())?,
    };
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
        // The app reaches its sidecar on loopback in plain text, as under dapr run.
        tls_cert_file: None,
        tls_key_file: None,
        app_health: args.app_health.clone(),
    };
    let mut config = sidecar_args.config()?;

    let (link, embedded) = if args
        .scheduler_host_address
        .iter()
        .all(|a| kairos_sidecar::config::scheduler_address(a).is_empty())
    {
        let data_dir = match &args.data_dir {
            Some(dir) => dir.clone(),
            None => super::default_data_dir()?,
        };
        let service = super::scheduler::open_service(
            &data_dir,
            kairos_store::DEFAULT_PARTITIONS,
            args.store_cache_size,
            "in-process".into(),
        )?;
        tracing::info!(data_dir = %data_dir.display(), "embedded scheduler started");
        // The app's health check then also says when the store is full or corrupt.
        config.readiness = Some(Arc::new(crate::ops::EmbeddedStoreReadiness(service.clone())));
        let api: Arc<dyn SchedulerApi> = service.clone();
        (SchedulerLink::in_process(api), Some(service))
    } else {
        if let Some(dir) = &args.data_dir {
            tracing::warn!(data_dir = %dir.display(), "--data-dir is ignored: jobs live in the schedulers of --scheduler-host-address");
        }
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
    wait_until_listening(sidecar.http_addr()).await?;
    wait_until_listening(sidecar.grpc_addr()).await?;
    tracing::info!(
        app_id = %args.app_id,
        http = %sidecar.http_addr(),
        grpc = %sidecar.grpc_addr(),
        "kairos sidecar listening"
    );

    let (mut app, output) = launch(&args, &sidecar)?;
    let status = supervise(&mut app, signals).await?;
    // The app's last lines are still in the pipes; show them before anything else.
    for forwarder in output {
        // A grandchild that inherited the pipes may keep them open; do not wait for it forever.
        let _ = tokio::time::timeout(OUTPUT_DRAIN, forwarder).await;
    }

    tracing::info!(%status, "app exited; shutting down");
    sidecar.shutdown().await;
    if let Some(service) = embedded {
        super::scheduler::graceful_stop(&service, Duration::from_secs(1), None).await;
    }
    ops_stop.cancel();
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    Ok(exit_code(status))
}

/// How long the app's output may take to drain after it exited.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);
/// How long the APIs may take to accept connections after binding.
const API_READY: Duration = Duration::from_secs(10);

/// Waits until `addr` accepts a TCP connection, as `dapr run` waits for daprd's ports.
async fn wait_until_listening(addr: SocketAddr) -> anyhow::Result<()> {
    let probe = async {
        loop {
            if TcpStream::connect(addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(API_READY, probe)
        .await
        .with_context(|| format!("the API on {addr} did not accept connections within {API_READY:?}"))
}

/// Starts the app with the environment `dapr run` gives it; its output is forwarded, prefixed,
/// by the returned tasks, which end when the app closes its stdout and stderr.
fn launch(args: &Args, sidecar: &Sidecar) -> anyhow::Result<(Child, Vec<JoinHandle<()>>)> {
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
    if let Some(port) = args.app_port.filter(|p| *p > 0) {
        command.env("APP_PORT", port.to_string());
    }
    if let Some(port) = args.metrics_port.filter(|p| *p > 0) {
        command.env("DAPR_METRICS_PORT", port.to_string());
    }
    let mut child = command.spawn().with_context(|| format!("cannot start the app {program:?}"))?;
    let mut output = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        output.push(tokio::spawn(prefix_lines(stdout, false)));
    }
    if let Some(stderr) = child.stderr.take() {
        output.push(tokio::spawn(prefix_lines(stderr, true)));
    }
    tracing::info!(command = ?args.command, pid = child.id(), "app started");
    Ok((child, output))
}

/// Copies the app's lines to our stdout (or stderr) behind `== APP == `, as `dapr run` does, so
/// they stand apart from the runtime's own log lines (timestamped, on stderr).
async fn prefix_lines(stream: impl AsyncRead + Unpin, to_stderr: bool) {
    use std::io::Write;
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        // Write errors (our own output closed) must not stop the reading: a full pipe would
        // block the app.
        if to_stderr {
            let _ = writeln!(std::io::stderr().lock(), "== APP == {line}");
        } else {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "== APP == {line}");
            let _ = out.flush();
        }
    }
}

/// SIGINT and SIGTERM, caught.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

/// Waits for the app to exit, forwarding SIGINT/SIGTERM to it; kills it if it does not exit
/// within the grace period after a forwarded signal, or at once on a second signal.
async fn supervise(app: &mut Child, signals: Signals) -> anyhow::Result<ExitStatus> {
    let Signals { mut interrupt, mut terminate } = signals;
    let signal = tokio::select! {
        status = app.wait() => return Ok(status?),
        _ = interrupt.recv() => Signal::SIGINT,
        _ = terminate.recv() => Signal::SIGTERM,
    };
    tracing::info!(%signal, "forwarding signal to the app");
    if let Some(pid) = app.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
    tokio::select! {
        status = app.wait() => return Ok(status?),
        () = tokio::time::sleep(APP_GRACE) => {
            tracing::warn!(grace = ?APP_GRACE, "app did not exit in time; killing it");
        }
        _ = interrupt.recv() => tracing::warn!("second signal; killing the app"),
        _ = terminate.recv() => tracing::warn!("second signal; killing the app"),
    }
    app.kill().await?;
    Ok(app.wait().await?)
}

/// The app's exit code, or 128 + the signal that ended it (the shell's convention).
fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

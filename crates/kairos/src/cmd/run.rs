//! `kairos run [flags] -- CMD ARGS…`: an app with its sidecar (and, unless told otherwise, an
//! embedded scheduler on a durable local store), like `dapr run` with no daemon to install.

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use kairos::node::{DashboardListener, Listeners, LocalStore, Node, NodeConfig};
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal as unix_signal};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::sidecar::link_for;
use super::{AppArgs, LogLevel, StoreArgs};

/// How long the app gets to exit after a forwarded signal before it is killed.
const APP_GRACE: Duration = Duration::from_secs(5);
/// How often the guard looks whether the app's process group is still there.
const GUARD_POLL: Duration = Duration::from_millis(500);

/// `dapr run`'s flags that concern the Jobs API.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  kairos run --app-id myapp --app-port 50070 --app-protocol grpc -- ./my-app"
)]
pub struct Args {
    #[command(flatten)]
    pub app: AppArgs,
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
    /// Port of the embedded scheduler's web dashboard on 127.0.0.1 [default: a free port; its
    /// URL is printed at start].
    #[arg(long, conflicts_with = "no_dashboard")]
    pub dashboard_port: Option<u16>,
    /// Do not serve the dashboard.
    #[arg(long)]
    pub no_dashboard: bool,
    /// The dashboard shows jobs but refuses pause, resume, trigger and delete.
    #[arg(long)]
    pub dashboard_read_only: bool,
    /// Log verbosity of the runtime.
    #[arg(long, value_enum, default_value = "info")]
    pub log_level: LogLevel,
    /// Use these schedulers (comma-separated host:port) instead of the embedded one.
    #[arg(long, value_delimiter = ',')]
    pub scheduler_host_address: Vec<String>,
    /// The embedded scheduler's store (unused with --scheduler-host-address).
    #[command(flatten)]
    pub store: StoreArgs,
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
    // The app reaches its sidecar on loopback in plain text, as under dapr run.
    let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
    let mut sidecar = args.app.config()?;
    sidecar.listen = loopback;
    sidecar.http_port = args.dapr_http_port.unwrap_or(0);
    sidecar.grpc_port = args.dapr_grpc_port.unwrap_or(0);
    let (http, grpc) = super::sidecar::bind_apis(&sidecar).await.context("cannot start the sidecar")?;

    let config = if args
        .scheduler_host_address
        .iter()
        .all(|a| kairos_sidecar::config::scheduler_address(a).is_empty())
    {
        let store = LocalStore {
            data_dir: args.store.data_dir()?,
            partitions: kairos_store::DEFAULT_PARTITIONS,
            cache_size: args.store.store_cache_size,
            history: args.store.history_limit,
        };
        NodeConfig::Embedded { sidecar, store }
    } else {
        if let Some(dir) = &args.store.data_dir {
            tracing::warn!(data_dir = %dir.display(), "--data-dir is ignored: jobs live in the schedulers of --scheduler-host-address");
        }
        NodeConfig::Sidecar { sidecar, link: link_for(&args.scheduler_host_address)? }
    };
    // /metrics only when --metrics-port is given (one registry: sidecar and embedded scheduler).
    let metrics = match args.metrics_port {
        Some(port) => kairos::ops::bind("metrics", loopback, Some(port), port).await?,
        None => None,
    };
    // The dashboard needs the engine in this process: only with the embedded scheduler.
    let dashboard = if args.no_dashboard || !matches!(config, NodeConfig::Embedded { .. }) {
        None
    } else {
        let at = SocketAddr::new(loopback, args.dashboard_port.unwrap_or(0));
        let listener = tokio::net::TcpListener::bind(at)
            .await
            .with_context(|| format!("cannot listen on {at} for the dashboard"))?;
        Some(DashboardListener { listener, read_only: args.dashboard_read_only })
    };
    let listeners =
        Listeners { http: Some(http), grpc: Some(grpc), metrics, dashboard, ..Listeners::default() };
    let stop = CancellationToken::new();
    let node = Node::start(config, listeners, stop.clone().cancelled_owned()).await?;
    node.ready().await?;
    let addresses = node.addresses();
    let (Some(http), Some(grpc)) = (addresses.http, addresses.grpc) else {
        bail!("the sidecar has no API addresses")
    };
    let dashboard =
        addresses.dashboard.map_or_else(|| "none".to_owned(), |a| kairos::node::dashboard_url(a, false));
    tracing::info!(app_id = %args.app.app_id, %http, %grpc, %dashboard, "kairos sidecar listening");
    let ready = node.ready_line("run", false);
    kairos::node::print_line(&ready);
    kairos::node::print_stream_opens(&node, ready);

    let (mut app, output) = launch(&args, http, grpc)?;
    let group = app_group(&app)?;
    // Held to the end: dropping it kills the guard, which must not outlive us either.
    let _guard = start_guard(group);
    let status = supervise(&mut app, group, signals).await?;
    // The app's last lines are still in the pipes; show them before anything else.
    for forwarder in output {
        // A grandchild that inherited the pipes may keep them open; do not wait for it forever.
        let _ = tokio::time::timeout(OUTPUT_DRAIN, forwarder).await;
    }

    tracing::info!(%status, "app exited; shutting down");
    node.stop().await?;
    Ok(exit_code(status))
}

/// How long the app's output may take to drain after it exited.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// Starts the app with the environment `dapr run` gives it; its output is forwarded, prefixed,
/// by the returned tasks, which end when the app closes its stdout and stderr.
fn launch(args: &Args, http: SocketAddr, grpc: SocketAddr) -> anyhow::Result<(Child, Vec<JoinHandle<()>>)> {
    let Some((program, rest)) = args.command.split_first() else { bail!("no app command given after --") };
    let mut command = app_command(program);
    command
        .args(rest)
        .env("APP_ID", &args.app.app_id)
        .env("APP_CHANNEL_ADDRESS", &args.app.app_channel_address)
        .env("APP_PROTOCOL", &args.app.app_protocol)
        .env("DAPR_HTTP_PORT", http.port().to_string())
        .env("DAPR_GRPC_PORT", grpc.port().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a stop reaches every process the app starts (a shell
        // that does not exec its command, npm and its node), not only the first.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(port) = args.app.app_port.filter(|p| *p > 0) {
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

/// The command that starts `program`. Where util-linux's `setpriv` is found (every Debian has
/// it), the app is started through it with a parent-death signal: should `kairos run` be killed
/// outright (SIGKILL, the OOM killer), the app gets SIGTERM instead of living on without its
/// sidecar, holding its port. `setpriv` execs the app, so the pid, arguments and environment are
/// the app's own. A program that cannot be found is started directly, so that the error is ours.
fn app_command(program: &str) -> Command {
    match (which::which("setpriv"), which::which(program)) {
        (Ok(setpriv), Ok(_)) => with_parent_death_signal(setpriv.as_os_str(), program.as_ref()),
        _ => Command::new(program),
    }
}

/// `setpriv --pdeathsig TERM -- program`: `program`, sent SIGTERM when its parent dies.
fn with_parent_death_signal(setpriv: &std::ffi::OsStr, program: &std::ffi::OsStr) -> Command {
    let mut command = Command::new(setpriv);
    command.args(["--pdeathsig".as_ref(), "TERM".as_ref(), "--".as_ref(), program]);
    command
}

/// The app's process group: its own pid (it was started as the leader of a new group).
fn app_group(app: &Child) -> anyhow::Result<Pid> {
    let pid = app.id().context("the app exited before it could be watched")?;
    Ok(Pid::from_raw(i32::try_from(pid).context("app pid out of range")?))
}

/// Starts the guard of the app's process group (`kairos guard-app`, see [`guard`]): the
/// parent-death signal reaches only the app's first process, and a shell that gets it dies
/// without passing it on, so a process of our own must end the rest of the group should
/// `kairos run` be killed outright. `None` (the app's own parent-death signal still holds)
/// when `setpriv` or our own binary cannot be found, or the guard cannot start.
fn start_guard(group: Pid) -> Option<Child> {
    let setpriv = which::which("setpriv").ok()?;
    let kairos = std::env::current_exe().ok()?;
    let mut command = with_parent_death_signal(setpriv.as_os_str(), kairos.as_os_str());
    command
        .args(["guard-app", "--group", &group.to_string()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true);
    match command.spawn() {
        Ok(guard) => Some(guard),
        Err(err) => {
            tracing::warn!(%err, "cannot start the guard of the app's process group");
            None
        }
    }
}

/// `kairos guard-app --group PGID` (hidden; started by `kairos run` only).
#[derive(Debug, clap::Args)]
pub struct GuardArgs {
    /// The app's process group.
    #[arg(long)]
    pub group: i32,
}

/// The guard of an app's process group. `kairos run` starts it with a parent-death signal
/// (SIGTERM), and kills it when it ends normally. Should `kairos run` die first, the guard
/// gets SIGTERM and stops the whole group as a stop signal would: SIGTERM, then SIGKILL after
/// the grace period. It ignores SIGINT and SIGHUP (a terminal sends them to `kairos run`'s
/// group, which the guard shares: `kairos run` forwards them), and ends by itself once the
/// group has no process left.
///
/// # Errors
/// When its signal handlers cannot be installed.
pub async fn guard(args: GuardArgs) -> anyhow::Result<()> {
    let group = Pid::from_raw(args.group);
    let mut terminate = unix_signal(SignalKind::terminate())?;
    let mut interrupt = unix_signal(SignalKind::interrupt())?;
    let mut hangup = unix_signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => {}
            _ = hangup.recv() => {}
            () = tokio::time::sleep(GUARD_POLL) => if !group_alive(group) { return Ok(()) },
        }
    }
    tracing::warn!(%group, "kairos run is gone; stopping its app");
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + APP_GRACE;
    while group_alive(group) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = killpg(group, Signal::SIGKILL);
    Ok(())
}

/// Whether any process of `group` is left.
fn group_alive(group: Pid) -> bool {
    killpg(group, None) != Err(Errno::ESRCH)
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

/// Waits for the app to exit, forwarding SIGINT/SIGTERM to its process group; kills the group
/// if the app does not exit within the grace period after a forwarded signal, or at once on a
/// second signal.
async fn supervise(app: &mut Child, group: Pid, signals: Signals) -> anyhow::Result<ExitStatus> {
    let Signals { mut interrupt, mut terminate } = signals;
    let signal = tokio::select! {
        status = app.wait() => return Ok(status?),
        _ = interrupt.recv() => Signal::SIGINT,
        _ = terminate.recv() => Signal::SIGTERM,
    };
    tracing::info!(%signal, "forwarding signal to the app");
    let _ = killpg(group, signal);
    tokio::select! {
        status = app.wait() => return Ok(status?),
        () = tokio::time::sleep(APP_GRACE) => {
            tracing::warn!(grace = ?APP_GRACE, "app did not exit in time; killing it");
        }
        _ = interrupt.recv() => tracing::warn!("second signal; killing the app"),
        _ = terminate.recv() => tracing::warn!("second signal; killing the app"),
    }
    let _ = killpg(group, Signal::SIGKILL);
    Ok(app.wait().await?)
}

/// The app's exit code, or 128 + the signal that ended it (the shell's convention).
fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

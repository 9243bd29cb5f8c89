//! The full path under test: `kairos scheduler` and `kairos sidecar` as child processes on
//! loopback, known ready by their ready line (`kairos_testing::process`), killed when dropped.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use kairos_testing::process::Kairos as Proc;

/// A running `kairos scheduler` on a fixed loopback port (so a restart keeps its address).
#[derive(Debug)]
pub struct Scheduler {
    pub proc: Proc,
    pub address: String,
    pub port: u16,
    /// When it printed its ready line.
    pub listening: Instant,
}

impl Scheduler {
    /// Starts `kairos scheduler --port PORT --data-dir DIR [extra]` (PORT 0 picks a free one)
    /// and waits for it to listen.
    ///
    /// # Errors
    /// When it does not listen within `timeout`.
    pub fn start(
        kairos: &Path,
        data_dir: &Path,
        port: u16,
        extra: &[String],
        timeout: Duration,
    ) -> anyhow::Result<Scheduler> {
        let mut args: Vec<OsString> =
            ["scheduler", "--log-level", "info", "--port"].map(OsString::from).to_vec();
        args.push(port.to_string().into());
        args.push("--data-dir".into());
        args.push(data_dir.as_os_str().to_owned());
        args.extend(extra.iter().map(OsString::from));
        let proc = Proc::spawn("scheduler", kairos, &args, &[], timeout)?;
        let address = proc.grpc();
        let port = address.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(port);
        Ok(Scheduler { listening: proc.ready_at, proc, address, port })
    }
}

/// A running `kairos sidecar` for app `bench-app`.
#[derive(Debug)]
pub struct Sidecar {
    pub proc: Proc,
    /// `HOST:PORT` of its gRPC and HTTP APIs.
    pub grpc: String,
    pub http: String,
}

/// The app id every bench job belongs to.
pub const APP_ID: &str = "bench-app";

impl Sidecar {
    /// Starts `kairos sidecar` against `scheduler`, delivering over gRPC to `app_port` when
    /// given, with `extra` flags, and waits for its APIs to listen.
    ///
    /// # Errors
    /// When it does not listen within `timeout`.
    pub fn start(
        kairos: &Path,
        scheduler: &str,
        app_port: Option<u16>,
        extra: &[String],
        timeout: Duration,
    ) -> anyhow::Result<Sidecar> {
        let mut args: Vec<OsString> = [
            "sidecar",
            "--app-id",
            APP_ID,
            "--app-protocol",
            "grpc",
            "--dapr-http-port",
            "0",
            "--dapr-grpc-port",
            "0",
            "--metrics-port",
            "0",
            "--log-level",
            "info",
            "--scheduler-host-address",
        ]
        .map(OsString::from)
        .to_vec();
        args.push(scheduler.into());
        if let Some(port) = app_port {
            args.push("--app-port".into());
            args.push(port.to_string().into());
        }
        args.extend(extra.iter().map(OsString::from));
        let proc = Proc::spawn("sidecar", kairos, &args, &[], timeout)?;
        let (grpc, http) = (proc.grpc(), proc.http());
        Ok(Sidecar { proc, grpc, http })
    }

    /// Waits until its job stream to the scheduler is open (first time only).
    ///
    /// # Errors
    /// When it does not open within `timeout`.
    pub fn wait_stream(&mut self, timeout: Duration) -> anyhow::Result<Instant> {
        self.proc.wait_stream_open(timeout)
    }
}

/// The `kairos` binary to run.
///
/// # Errors
/// When none is found.
pub fn kairos_bin(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    crate::process::find_kairos(explicit)
}

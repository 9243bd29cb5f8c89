//! The full path under test, as child processes on loopback known ready by their ready line
//! (`kairos_testing::process`) and killed when dropped: either `kairos scheduler` and `kairos
//! sidecar` ([`Topology::Split`]) or one `kairos run` with its embedded scheduler
//! ([`Topology::Embedded`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use kairos_testing::process::Kairos as Proc;

/// `TOKIO_WORKER_THREADS` for every kairos process started (`--kairos-workers`); unset leaves
/// tokio's default, one worker per CPU.
static KAIROS_WORKERS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Starts every later kairos process with `workers` tokio worker threads.
pub fn set_kairos_workers(workers: usize) {
    let _ = KAIROS_WORKERS.set(workers.max(1).to_string());
}

/// Spawns `kairos ARGS` with the environment the options ask for.
fn spawn(name: &str, kairos: &Path, args: &[OsString], timeout: Duration) -> anyhow::Result<Proc> {
    let env: Vec<(&str, &str)> =
        KAIROS_WORKERS.get().map(|w| ("TOKIO_WORKER_THREADS", w.as_str())).into_iter().collect();
    Proc::spawn(name, kairos, args, &env, timeout)
}

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
        let proc = spawn("scheduler", kairos, &args, timeout)?;
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

/// `kairos COMMAND` (`sidecar` or `run`) for app [`APP_ID`] over gRPC on `app_port` if given,
/// its APIs on free ports, logging at info.
fn front_args(command: &str, app_port: Option<u16>) -> Vec<OsString> {
    let mut args: Vec<OsString> =
        [command, "--app-id", APP_ID, "--app-protocol", "grpc", "--log-level", "info"]
            .map(OsString::from)
            .to_vec();
    args.extend(["--dapr-http-port", "0", "--dapr-grpc-port", "0"].map(OsString::from));
    if let Some(port) = app_port {
        args.push("--app-port".into());
        args.push(port.to_string().into());
    }
    args
}

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
        let mut args = front_args("sidecar", app_port);
        args.extend(["--metrics-port", "0", "--scheduler-host-address", scheduler].map(OsString::from));
        args.extend(extra.iter().map(OsString::from));
        let proc = spawn("sidecar", kairos, &args, timeout)?;
        let (grpc, http) = (proc.grpc(), proc.http());
        Ok(Sidecar { proc, grpc, http })
    }
}

/// How the runtime under test is laid out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, strum::IntoStaticStr)]
#[strum(serialize_all = "kebab-case")] // clap's names for a ValueEnum
pub enum Topology {
    /// Client -> `kairos sidecar` -> `kairos scheduler`: three processes, as Dapr on Kubernetes.
    #[default]
    Split,
    /// Client -> `kairos run` (sidecar and scheduler in one process, redb): the main job's shape.
    Embedded,
}

impl Topology {
    /// Its name on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The path a create takes, for report parameters.
    pub fn create_path(self) -> &'static str {
        match self {
            Topology::Split => "client -> kairos sidecar -> kairos scheduler (redb, fsync per commit)",
            Topology::Embedded => "client -> kairos run (embedded scheduler, redb, fsync per commit)",
        }
    }

    /// The path a trigger takes, for report parameters.
    pub fn delivery_path(self) -> &'static str {
        match self {
            Topology::Split => "kairos scheduler -> kairos sidecar -> gRPC app (OnJobEvent, acks at once)",
            Topology::Embedded => "kairos run (embedded scheduler) -> gRPC app (OnJobEvent, acks at once)",
        }
    }
}

/// The app `kairos run` launches in the embedded topology: it does nothing (the receiving app
/// is this process, on `--app-port`) and exits within a second of its parent, so a killed
/// `kairos run` leaves nothing behind.
const IDLE_APP: &str = "while kill -0 $PPID 2>/dev/null; do sleep 1; done";

/// The kairos processes that serve the app, in either [`Topology`].
/// Fields drop in order: the process with the APIs goes first, so a split sidecar logs no
/// broken stream.
#[derive(Debug)]
pub struct Runtime {
    /// `kairos sidecar` (split) or `kairos run` (embedded).
    pub front: Proc,
    /// `kairos scheduler` (split only).
    pub scheduler: Option<Scheduler>,
    /// `HOST:PORT` of the gRPC and HTTP APIs.
    pub grpc: String,
    pub http: String,
    app_port: Option<u16>,
}

impl Runtime {
    /// Starts the runtime on `data_dir`, delivering over gRPC to `app_port` when given, and
    /// waits for its APIs to listen. With `apis` the APIs take those ports (a restart keeps
    /// its addresses), else free ones.
    ///
    /// # Errors
    /// When a process does not listen within `timeout`.
    pub fn start(
        kairos: &Path,
        topology: Topology,
        data_dir: &Path,
        app_port: Option<u16>,
        args: &crate::cli::SchedulerArgs,
        timeout: Duration,
    ) -> anyhow::Result<Runtime> {
        match topology {
            Topology::Split => {
                let scheduler = Scheduler::start(kairos, data_dir, 0, &args.extra_flags(), timeout)?;
                let sidecar =
                    Sidecar::start(kairos, &scheduler.address, app_port, &args.sidecar_args, timeout)?;
                Ok(Runtime {
                    front: sidecar.proc,
                    scheduler: Some(scheduler),
                    grpc: sidecar.grpc,
                    http: sidecar.http,
                    app_port,
                })
            }
            Topology::Embedded => {
                if args.partitions.is_some() {
                    eprintln!(
                        "note: --partitions applies to the split topology only (kairos run uses its default)"
                    );
                }
                let mut flags = front_args("run", app_port);
                flags.push("--data-dir".into());
                flags.push(data_dir.as_os_str().to_owned());
                flags.extend(args.sidecar_args.iter().map(OsString::from));
                flags.extend(["--", "sh", "-c", IDLE_APP].map(OsString::from));
                let front = spawn("run", kairos, &flags, timeout)?;
                let (grpc, http) = (front.grpc(), front.http());
                Ok(Runtime { front, scheduler: None, grpc, http, app_port })
            }
        }
    }

    /// Waits until the job stream to the scheduler is open (first time only).
    ///
    /// # Errors
    /// When it does not open within `timeout`.
    pub fn wait_stream(&mut self, timeout: Duration) -> anyhow::Result<Instant> {
        self.front.wait_stream_open(timeout)
    }

    /// The processes, named, in a fixed order (the scheduler, then the front).
    pub fn procs(&self) -> Vec<(&'static str, &Proc)> {
        match &self.scheduler {
            Some(s) => vec![("scheduler", &s.proc), ("sidecar", &self.front)],
            None => vec![("run", &self.front)],
        }
    }

    /// CPU used so far by each process of [`Runtime::procs`].
    ///
    /// # Errors
    /// When `/proc` cannot be read.
    pub fn cpu(&self) -> anyhow::Result<Vec<Duration>> {
        self.procs().iter().map(|(_, p)| p.cpu()).collect()
    }

    /// The process that holds the scheduler.
    pub fn scheduler_proc(&self) -> &Proc {
        self.scheduler.as_ref().map_or(&self.front, |s| &s.proc)
    }

    /// SIGKILLs the process that holds the scheduler (`kairos scheduler`, or `kairos run`).
    pub fn kill_scheduler(&mut self) {
        match &mut self.scheduler {
            Some(s) => s.proc.kill9(),
            None => self.front.kill9(),
        }
    }

    /// Starts again what [`Runtime::kill_scheduler`] killed, on the same data dir (split: on
    /// the same port, so the sidecar reconnects); returns when it was spawned and when it
    /// printed its ready line.
    ///
    /// # Errors
    /// When it does not listen within `timeout`.
    pub fn restart_scheduler(
        &mut self,
        kairos: &Path,
        data_dir: &Path,
        args: &crate::cli::SchedulerArgs,
        timeout: Duration,
    ) -> anyhow::Result<(Instant, Instant)> {
        match &mut self.scheduler {
            Some(s) => {
                let again = Scheduler::start(kairos, data_dir, s.port, &args.extra_flags(), timeout)?;
                let times = (again.proc.spawned, again.listening);
                *s = again;
                Ok(times)
            }
            None => {
                let again =
                    Runtime::start(kairos, Topology::Embedded, data_dir, self.app_port, args, timeout)?;
                let times = (again.front.spawned, again.front.ready_at);
                *self = again;
                Ok(times)
            }
        }
    }
}

/// The `kairos` binary to run.
///
/// # Errors
/// When none is found.
pub fn kairos_bin(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    crate::process::find_kairos(explicit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn topology_names_in_reports_are_the_flag_values() {
        assert_eq!((Topology::Split.as_str(), Topology::Embedded.as_str()), ("split", "embedded"));
        for topology in Topology::value_variants() {
            assert_eq!(topology.to_possible_value().unwrap().get_name(), topology.as_str());
        }
    }
}

//! The `kairos scheduler` child process: found, started on port 0, known ready by its ready
//! line, stopped.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use kairos_testing::process::{Kairos, proc_status_kib};

/// Finds the `kairos` binary: `explicit` if given, else `kairos` next to this executable
/// (where `cargo build --release -p kairos -p kairos-bench` puts both).
///
/// # Errors
/// When no binary is there.
pub fn find_kairos(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        if path.is_file() {
            return Ok(path.to_path_buf());
        }
        bail!("--kairos {}: no such file", path.display());
    }
    let exe = std::env::current_exe().context("cannot locate the kairos-bench executable")?;
    let sibling = exe.with_file_name("kairos");
    if sibling.is_file() {
        return Ok(sibling);
    }
    bail!(
        "no kairos binary next to {} (build it with `cargo build --release -p kairos`, or pass --kairos PATH)",
        exe.display()
    )
}

/// A running `kairos scheduler`, killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct SchedulerProcess {
    process: Kairos,
    /// `HOST:PORT` of its gRPC service.
    pub address: String,
    /// When [`SchedulerProcess::start`] spawned it and when it printed its ready line.
    pub spawned: std::time::Instant,
    pub listening: std::time::Instant,
}

impl SchedulerProcess {
    /// Starts `kairos scheduler --port 0 --data-dir DIR [extra]` and waits (up to `timeout`)
    /// for its ready line. Its warnings and errors are echoed on stderr.
    ///
    /// # Errors
    /// When it cannot be spawned, exits, or is not ready in time.
    pub fn start(
        kairos: &Path,
        data_dir: &Path,
        extra: &[String],
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut args: Vec<OsString> =
            ["scheduler", "--port", "0", "--log-level", "info", "--data-dir"].map(OsString::from).to_vec();
        args.push(data_dir.into());
        args.extend(extra.iter().map(OsString::from));
        let process = Kairos::spawn("scheduler", kairos, &args, &[], timeout)?;
        Ok(SchedulerProcess {
            address: process.grpc(),
            spawned: process.spawned,
            listening: process.ready_at,
            process,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Its resident set size now and at its peak (`VmRSS`, `VmHWM`), in bytes.
    ///
    /// # Errors
    /// When `/proc/<pid>/status` cannot be read or lacks the fields.
    pub fn memory(&self) -> anyhow::Result<Memory> {
        let kib = |field| proc_status_kib(self.pid(), field);
        Ok(Memory { rss: kib("VmRSS:")? * 1024, peak: kib("VmHWM:")? * 1024 })
    }

    /// Asks it to stop (SIGTERM) and waits up to `grace` for it to exit, then kills it.
    ///
    /// # Errors
    /// When the signal cannot be sent or the process cannot be reaped.
    pub fn stop(&mut self, grace: Duration) -> anyhow::Result<bool> {
        self.process.stop(grace)
    }
}

/// Resident memory of a process, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub rss: u64,
    pub peak: u64,
}

/// Bytes of every file under `dir` (the store's footprint on disk).
///
/// # Errors
/// When the directory cannot be read.
pub fn dir_size(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let meta = entry.metadata().with_context(|| format!("cannot stat {}", entry.path().display()))?;
        total += if meta.is_dir() { dir_size(&entry.path())? } else { meta.len() };
    }
    Ok(total)
}

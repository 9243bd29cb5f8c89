//! The `kairos scheduler` child process: found, started on a free port, watched, stopped.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::timing;

/// Scheduler log lines kept to explain a failed start.
const KEPT_LINES: usize = 20;

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
    child: Child,
    /// `HOST:PORT` of its gRPC service.
    pub address: String,
    /// When [`SchedulerProcess::start`] spawned it and when it logged that it listens.
    pub spawned: std::time::Instant,
    pub listening: std::time::Instant,
}

impl SchedulerProcess {
    /// Starts `kairos scheduler --port 0 --data-dir DIR [extra]` and waits (up to `timeout`)
    /// for its "listening" log line. Its warnings and errors are echoed on stderr.
    ///
    /// # Errors
    /// When it cannot be spawned, exits, or does not listen in time.
    pub fn start(
        kairos: &Path,
        data_dir: &Path,
        extra: &[String],
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let spawned = timing::now();
        let mut child = Command::new(kairos)
            .args(["scheduler", "--port", "0", "--log-level", "info", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {} scheduler", kairos.display()))?;
        let stderr = child.stderr.take().context("scheduler stderr was not captured")?;
        let recent: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let (address_tx, address_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("scheduler-log".into())
            .spawn({
                let recent = recent.clone();
                move || read_log(stderr, &address_tx, &recent)
            })
            .context("cannot start the scheduler log reader")?;

        let mut process = SchedulerProcess { child, address: String::new(), spawned, listening: spawned };
        let deadline = spawned + timeout;
        loop {
            match address_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(address) => {
                    process.address = address;
                    process.listening = timing::now();
                    return Ok(process);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // The log closed without a listening line: the process is exiting.
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            if let Some(status) = process.child.try_wait().context("cannot poll the scheduler")? {
                bail!("kairos scheduler exited ({status}) before listening; its log:\n{}", tail(&recent));
            }
            if timing::now() > deadline {
                bail!("kairos scheduler did not listen within {timeout:?}; its log:\n{}", tail(&recent));
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its resident set size now and at its peak (`VmRSS`, `VmHWM`), in bytes.
    ///
    /// # Errors
    /// When `/proc/<pid>/status` cannot be read or lacks the fields.
    pub fn memory(&self) -> anyhow::Result<Memory> {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .with_context(|| format!("{path} has no {name} line"))?;
            let kib: u64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("cannot parse {line:?} in {path}"))?;
            Ok(kib * 1024)
        };
        Ok(Memory { rss: field("VmRSS:")?, peak: field("VmHWM:")? })
    }

    /// Asks it to stop (SIGTERM) and waits up to `grace` for it to exit, then kills it.
    ///
    /// # Errors
    /// When the signal cannot be sent or the process cannot be reaped.
    pub fn stop(&mut self, grace: Duration) -> anyhow::Result<bool> {
        // std cannot send SIGTERM and the workspace forbids unsafe (libc); kill(1) can.
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .context("cannot run kill -TERM")?;
        if !status.success() {
            bail!("kill -TERM {} failed ({status})", self.pid());
        }
        let deadline = timing::now() + grace;
        while timing::now() < deadline {
            if self.child.try_wait().context("cannot poll the scheduler")?.is_some() {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        Ok(false)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SchedulerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Resident memory of a process, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub rss: u64,
    pub peak: u64,
}

/// Reads the scheduler's log until it closes: reports the listening address once, keeps the
/// latest lines, echoes warnings and errors.
fn read_log(
    stderr: std::process::ChildStderr,
    address_tx: &mpsc::Sender<String>,
    recent: &Mutex<VecDeque<String>>,
) {
    let mut reported = false;
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if !reported
            && line.contains("kairos scheduler listening")
            && let Some(rest) = line.split("address=").nth(1)
        {
            let address = rest.split_whitespace().next().unwrap_or_default().to_owned();
            reported = address_tx.send(address).is_ok();
        }
        if line.contains(" WARN ") || line.contains(" ERROR ") {
            eprintln!("scheduler: {line}");
        }
        let mut recent = recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if recent.len() == KEPT_LINES {
            recent.pop_front();
        }
        recent.push_back(line);
    }
}

fn tail(recent: &Mutex<VecDeque<String>>) -> String {
    let recent = recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    recent.iter().cloned().collect::<Vec<_>>().join("\n")
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

//! The full path under test: `kairos scheduler` and `kairos sidecar` as child processes on
//! loopback, watched through their logs, killed when dropped.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::timing;

/// Log lines kept to explain a failure.
const KEPT_LINES: usize = 30;

/// A `kairos` child process whose stderr log is read by a thread: the latest lines are kept and
/// the first line containing each of the `markers` given at spawn is remembered.
#[derive(Debug)]
pub struct Proc {
    name: &'static str,
    child: Child,
    log: Arc<Mutex<Log>>,
    /// When it was spawned.
    pub spawned: Instant,
}

#[derive(Debug, Default)]
struct Log {
    recent: VecDeque<String>,
    /// (marker, first line containing it, when it was read).
    seen: Vec<(&'static str, Option<(String, Instant)>)>,
    closed: bool,
}

impl Proc {
    /// Spawns `kairos ARGS` with its stdout discarded and its stderr watched for `markers`.
    /// Warnings and errors in its log are echoed on our stderr, prefixed with `name`.
    ///
    /// # Errors
    /// When it cannot be spawned.
    pub fn spawn(
        name: &'static str,
        kairos: &Path,
        args: &[OsString],
        markers: &[&'static str],
    ) -> anyhow::Result<Proc> {
        let spawned = timing::now();
        let mut child = Command::new(kairos)
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {} {name}", kairos.display()))?;
        let stderr = child.stderr.take().context("stderr was not captured")?;
        let log = Arc::new(Mutex::new(Log {
            seen: markers.iter().map(|m| (*m, None)).collect(),
            ..Log::default()
        }));
        std::thread::Builder::new()
            .name(format!("{name}-log"))
            .spawn({
                let log = log.clone();
                move || read_log(name, stderr, &log)
            })
            .context("cannot start a log reader thread")?;
        Ok(Proc { name, child, log, spawned })
    }

    /// Waits up to `timeout` for the first log line containing `marker` (one given at spawn);
    /// returns it and when it was read.
    ///
    /// # Errors
    /// When the process exits or the time runs out first.
    pub fn wait_for(&mut self, marker: &str, timeout: Duration) -> anyhow::Result<(String, Instant)> {
        let deadline = timing::now() + timeout;
        loop {
            {
                let log = lock(&self.log);
                if let Some((_, Some(found))) = log.seen.iter().find(|(m, _)| *m == marker) {
                    return Ok(found.clone());
                }
            }
            if let Some(status) = self.child.try_wait().context("cannot poll a child process")? {
                // Let the reader drain the last lines before quoting them.
                std::thread::sleep(Duration::from_millis(100));
                bail!(
                    "kairos {} exited ({status}) before logging {marker:?}; its log:\n{}",
                    self.name,
                    self.tail()
                );
            }
            if timing::now() > deadline {
                bail!(
                    "kairos {} did not log {marker:?} within {timeout:?}; its log:\n{}",
                    self.name,
                    self.tail()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The latest log lines.
    pub fn tail(&self) -> String {
        lock(&self.log).recent.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size now, in bytes (`VmRSS`).
    ///
    /// # Errors
    /// When `/proc/<pid>/status` cannot be read.
    pub fn rss(&self) -> anyhow::Result<u64> {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .with_context(|| format!("no VmRSS in {path}"))
    }

    /// CPU time it has used so far (user + system).
    ///
    /// # Errors
    /// When `/proc/<pid>/stat` cannot be read.
    pub fn cpu(&self) -> anyhow::Result<Duration> {
        cpu_time(&format!("/proc/{}/stat", self.pid()))
    }

    /// SIGKILL, and reap it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then up to `grace` for it to exit, then SIGKILL. True when it exited by itself.
    ///
    /// # Errors
    /// When `kill(1)` cannot be run.
    pub fn stop(&mut self, grace: Duration) -> anyhow::Result<bool> {
        // std cannot send SIGTERM and the workspace forbids unsafe (libc); kill(1) can.
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .context("cannot run kill -TERM")?;
        let deadline = timing::now() + grace;
        while timing::now() < deadline {
            if self.child.try_wait().context("cannot poll a child process")?.is_some() {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill9();
        Ok(false)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn lock(log: &Mutex<Log>) -> std::sync::MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read_log(name: &str, stderr: std::process::ChildStderr, log: &Mutex<Log>) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if line.contains(" WARN ") || line.contains(" ERROR ") {
            eprintln!("{name}: {line}");
        }
        let now = timing::now();
        let mut log = lock(log);
        for (marker, found) in &mut log.seen {
            if found.is_none() && line.contains(*marker) {
                *found = Some((line.clone(), now));
            }
        }
        if log.recent.len() == KEPT_LINES {
            log.recent.pop_front();
        }
        log.recent.push_back(line);
    }
    lock(log).closed = true;
}

/// User + system CPU time from a `/proc/…/stat` file (fields 14 and 15, in clock ticks).
///
/// # Errors
/// When the file cannot be read or parsed.
pub fn cpu_time(path: &str) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).with_context(|| format!("cannot parse {path}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    // After the name, field 3 is at index 0, so utime (14) and stime (15) are at 11 and 12.
    let total =
        ticks(11).zip(ticks(12)).map(|(u, s)| u + s).with_context(|| format!("cannot parse {path}"))?;
    Ok(Duration::from_millis(total * 1000 / clock_ticks()))
}

/// `getconf CLK_TCK` (100 on Linux unless told otherwise); read once.
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// The value of `key=` in a tracing log line.
pub fn field(line: &str, key: &str) -> Option<String> {
    let pattern = format!("{key}=");
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&pattern))
        .map(|v| v.trim_matches('"').to_owned())
}

/// A free loopback port: bound, read and released (another process could take it meanwhile;
/// on loopback in a benchmark that is a risk worth taking for a port that survives restarts).
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?.port())
}

const SCHEDULER_LISTENING: &str = "kairos scheduler listening";
const SIDECAR_LISTENING: &str = "kairos sidecar listening";
/// Logged by the sidecar once its `WatchJobs` stream is open (triggers can flow).
pub const STREAM_OPEN: &str = "job stream to scheduler open";

/// A running `kairos scheduler` on a fixed loopback port (so a restart keeps its address).
#[derive(Debug)]
pub struct Scheduler {
    pub proc: Proc,
    pub address: String,
    pub port: u16,
    /// When it logged that it listens.
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
        let port = if port == 0 { free_port()? } else { port };
        let mut args: Vec<OsString> =
            ["scheduler", "--log-level", "info", "--port"].map(OsString::from).to_vec();
        args.push(port.to_string().into());
        args.push("--data-dir".into());
        args.push(data_dir.as_os_str().to_owned());
        args.extend(extra.iter().map(OsString::from));
        let mut proc = Proc::spawn("scheduler", kairos, &args, &[SCHEDULER_LISTENING])?;
        let (line, listening) = proc.wait_for(SCHEDULER_LISTENING, timeout)?;
        let address = field(&line, "address").unwrap_or_else(|| format!("127.0.0.1:{port}"));
        Ok(Scheduler { proc, address, port, listening })
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
        let mut proc = Proc::spawn("sidecar", kairos, &args, &[SIDECAR_LISTENING, STREAM_OPEN])?;
        let (line, _) = proc.wait_for(SIDECAR_LISTENING, timeout)?;
        let grpc = field(&line, "grpc").context("the sidecar's listening line has no grpc=")?;
        let http = field(&line, "http").context("the sidecar's listening line has no http=")?;
        Ok(Sidecar { proc, grpc, http })
    }

    /// Waits until its job stream to the scheduler is open (first time only).
    ///
    /// # Errors
    /// When it does not open within `timeout`.
    pub fn wait_stream(&mut self, timeout: Duration) -> anyhow::Result<Instant> {
        Ok(self.proc.wait_for(STREAM_OPEN, timeout)?.1)
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

    #[test]
    fn fields_are_read_from_tracing_lines() {
        let line = "2026-12-01T19:00:00Z  INFO kairos::cmd::sidecar: kairos sidecar listening \
                    app_id=bench-app http=127.0.0.1:4100 grpc=127.0.0.1:4101";
        assert_eq!(field(line, "http").as_deref(), Some("127.0.0.1:4100"));
        assert_eq!(field(line, "grpc").as_deref(), Some("127.0.0.1:4101"));
        assert_eq!(field(line, "address"), None);
    }

    #[test]
    fn cpu_time_of_this_process_is_read_and_grows() {
        let before = cpu_time("/proc/self/stat").unwrap();
        let start = timing::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(300) {
            x = x.wrapping_mul(31).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = cpu_time("/proc/self/stat").unwrap();
        assert!(after > before, "{before:?} -> {after:?}");
    }
}

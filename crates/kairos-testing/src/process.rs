//! `kairos` child processes, known ready by the JSON ready line they print on stdout (never by
//! a log line), with their stderr log kept to explain a failure; SIGKILLed when dropped.
//!
//! Every listener is started on port 0 where the caller does not say otherwise; the actual
//! addresses come from the ready line ([`Ready`]). A sidecar's `stream-open` lines are counted
//! ([`Kairos::wait_stream_open`]).

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Deserialize;

/// Log lines kept per process to explain a failure or answer [`Kairos::log_has`].
const KEPT_LINES: usize = 5_000;
/// Lines quoted from the log when a process fails.
const QUOTED_LINES: usize = 30;
/// How long a process may take to print its ready line, unless told otherwise.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The ready line of a kairos process (docs/operations.md, "Ready line").
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Ready {
    /// `scheduler`, `sidecar` or `run`.
    pub role: String,
    pub pid: u32,
    /// The scheduler's gRPC API, or the sidecar's Dapr gRPC API.
    pub grpc: Option<String>,
    /// The sidecar's Dapr HTTP API.
    #[serde(default)]
    pub http: Option<String>,
    /// `GET /metrics`, when served.
    pub metrics: Option<String>,
    /// The scheduler's `GET /healthz` and `/readyz`, when served.
    #[serde(default)]
    pub healthz: Option<String>,
    /// The web dashboard's URL, when served.
    #[serde(default)]
    pub dashboard: Option<String>,
    pub tls: bool,
    /// The line as printed.
    #[serde(skip)]
    pub line: String,
}

impl Ready {
    /// Parses a ready line; `None` for any other line (e.g. `kairos run`'s `== APP ==` lines).
    pub fn parse(line: &str) -> Option<Ready> {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        if value.get("kairos")?.as_str()? != "ready" {
            return None;
        }
        let mut ready: Ready = serde_json::from_value(value).ok()?;
        ready.line = line.to_owned();
        Some(ready)
    }
}

/// What the stdout reader saw.
#[derive(Debug, Default)]
struct Stdout {
    ready: Option<(Ready, Instant)>,
    /// The latest `streams_opened` count, and when the first `stream-open` line came.
    streams_opened: u64,
    first_stream: Option<Instant>,
    /// Other lines (e.g. `kairos run`'s app output).
    other: Vec<String>,
    closed: bool,
}

#[derive(Debug, Default)]
struct Log {
    recent: VecDeque<String>,
}

/// A `kairos` child process, SIGKILLed (and reaped) when dropped.
#[derive(Debug)]
pub struct Kairos {
    name: String,
    pub child: Child,
    /// Its ready line.
    pub ready: Ready,
    /// When it was spawned, and when its ready line was read.
    pub spawned: Instant,
    pub ready_at: Instant,
    stdout: Arc<(Mutex<Stdout>, Condvar)>,
    log: Arc<Mutex<Log>>,
}

/// The current monotonic instant: a harness measures wall time (when a process got ready),
/// which the workspace's clock rule keeps out of the product only.
#[allow(clippy::disallowed_methods)]
pub fn now() -> Instant {
    Instant::now()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Kairos {
    /// Spawns `kairos ARGS` (with `envs` set, and `RUST_LOG`, `DAPR_API_TOKEN`, `APP_API_TOKEN`,
    /// `NAMESPACE` and `KAIROS_SCHEDULER_API_TOKEN` removed unless `envs` sets them) and waits
    /// up to `timeout` for its ready line. Its warnings and errors are echoed on our stderr
    /// prefixed with `name`; every log line is when `KAIROS_TEST_LOGS` is set.
    ///
    /// # Errors
    /// When it cannot be spawned, exits before it is ready, or is not ready in time (with the
    /// tail of its log).
    pub fn spawn<S: AsRef<OsStr>>(
        name: &str,
        bin: &Path,
        args: &[S],
        envs: &[(&str, &str)],
        timeout: Duration,
    ) -> anyhow::Result<Kairos> {
        let spawned = now();
        let mut command = Command::new(bin);
        command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        for var in ["RUST_LOG", "DAPR_API_TOKEN", "APP_API_TOKEN", "NAMESPACE", "KAIROS_SCHEDULER_API_TOKEN"]
        {
            command.env_remove(var);
        }
        for (k, v) in envs {
            command.env(k, v);
        }
        let mut child = command.spawn().with_context(|| format!("cannot start {} {name}", bin.display()))?;
        let stdout = child.stdout.take().context("stdout was not captured")?;
        let stderr = child.stderr.take().context("stderr was not captured")?;
        let log = Arc::new(Mutex::new(Log::default()));
        let out = Arc::new((Mutex::new(Stdout::default()), Condvar::new()));
        let tag = name.to_owned();
        std::thread::Builder::new()
            .name(format!("{name}-log"))
            .spawn({
                let log = log.clone();
                move || read_log(&tag, stderr, &log)
            })
            .context("cannot start a log reader")?;
        std::thread::Builder::new()
            .name(format!("{name}-stdout"))
            .spawn({
                let out = out.clone();
                move || read_stdout(stdout, &out)
            })
            .context("cannot start a stdout reader")?;
        let mut process = Kairos {
            name: name.to_owned(),
            child,
            ready: Ready::parse(
                r#"{"kairos":"ready","role":"","pid":0,"grpc":null,"metrics":null,"tls":false}"#,
            )
            .context("the placeholder ready line")?,
            spawned,
            ready_at: spawned,
            stdout: out,
            log,
        };
        let (ready, at) = process.wait_until(timeout, "print its ready line", |s| s.ready.clone())?;
        process.ready = ready;
        process.ready_at = at;
        Ok(process)
    }

    /// Waits up to `timeout` until `found` gives something from what stdout said.
    fn wait_until<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        found: impl Fn(&Stdout) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = now() + timeout;
        let (state, changed) = &*self.stdout;
        let mut out = lock(state);
        loop {
            if let Some(value) = found(&out) {
                return Ok(value);
            }
            let exited = self.child.try_wait().context("cannot poll a child process")?;
            if out.closed || exited.is_some() {
                drop(out);
                // Let the log reader take the last lines before quoting them.
                std::thread::sleep(Duration::from_millis(100));
                bail!("kairos {} exited before it did {what}; its log:\n{}", self.name, self.tail());
            }
            let now = now();
            if now >= deadline {
                drop(out);
                bail!("kairos {} did not {what} within {timeout:?}; its log:\n{}", self.name, self.tail());
            }
            let wait = (deadline - now).min(Duration::from_millis(100));
            out = changed.wait_timeout(out, wait).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    /// The scheduler's (or sidecar's) gRPC address from the ready line.
    pub fn grpc(&self) -> String {
        self.ready.grpc.clone().unwrap_or_else(|| panic!("no grpc in {}", self.ready.line))
    }

    /// The sidecar's HTTP address from the ready line.
    pub fn http(&self) -> String {
        self.ready.http.clone().unwrap_or_else(|| panic!("no http in {}", self.ready.line))
    }

    /// The metrics address from the ready line.
    pub fn metrics(&self) -> String {
        self.ready.metrics.clone().unwrap_or_else(|| panic!("no metrics in {}", self.ready.line))
    }

    /// The scheduler's health address from the ready line.
    pub fn healthz(&self) -> String {
        self.ready.healthz.clone().unwrap_or_else(|| panic!("no healthz in {}", self.ready.line))
    }

    /// The dashboard's URL from the ready line (ends with `/`).
    pub fn dashboard(&self) -> String {
        self.ready.dashboard.clone().unwrap_or_else(|| panic!("no dashboard in {}", self.ready.line))
    }

    /// Waits up to `timeout` for its first job stream to a scheduler to open (its first
    /// `stream-open` line) and says when that line was read.
    ///
    /// # Errors
    /// When it exits first or the time runs out.
    pub fn wait_stream_open(&mut self, timeout: Duration) -> anyhow::Result<Instant> {
        self.wait_until(timeout, "open a job stream to a scheduler", |s| s.first_stream)
    }

    /// Waits until it has opened at least `count` job streams (a sidecar linked to several
    /// scheduler replicas opens one to each).
    ///
    /// # Errors
    /// When it exits first, or has not opened them within `timeout`.
    pub fn wait_streams_open(&mut self, count: u64, timeout: Duration) -> anyhow::Result<()> {
        let what = format!("open {count} job streams");
        self.wait_until(timeout, &what, |s| (s.streams_opened >= count).then_some(()))
    }

    /// How many job streams it has opened so far (its latest `stream-open` line).
    pub fn streams_opened(&self) -> u64 {
        lock(&self.stdout.0).streams_opened
    }

    /// The stdout lines that were neither its ready line nor `stream-open` lines.
    pub fn other_stdout(&self) -> Vec<String> {
        lock(&self.stdout.0).other.clone()
    }

    /// Whether a kept log line contains `text`.
    pub fn log_has(&self, text: &str) -> bool {
        lock(&self.log).recent.iter().any(|l| l.contains(text))
    }

    /// The kept log lines.
    pub fn log_lines(&self) -> Vec<String> {
        lock(&self.log).recent.iter().cloned().collect()
    }

    /// The latest log lines.
    pub fn tail(&self) -> String {
        let log = lock(&self.log);
        let skip = log.recent.len().saturating_sub(QUOTED_LINES);
        log.recent.iter().skip(skip).cloned().collect::<Vec<_>>().join("\n")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal`.
    ///
    /// # Errors
    /// When the signal cannot be sent.
    pub fn signal(&self, signal: nix::sys::signal::Signal) -> anyhow::Result<()> {
        let pid = i32::try_from(self.pid()).context("pid out of range")?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).context("cannot signal kairos")
    }

    /// SIGTERM.
    ///
    /// # Panics
    /// When the signal cannot be sent.
    pub fn sigterm(&self) {
        self.signal(nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    }

    /// Waits up to `limit` for it to exit; its exit status, `None` when it is still running.
    ///
    /// # Errors
    /// When it cannot be polled.
    pub fn wait_exit(&mut self, limit: Duration) -> anyhow::Result<Option<std::process::ExitStatus>> {
        let deadline = now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().context("cannot poll a child process")? {
                return Ok(Some(status));
            }
            if now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then up to `grace` for it to exit, then SIGKILL. True when it exited by itself.
    ///
    /// # Errors
    /// When it cannot be signalled or polled.
    pub fn stop(&mut self, grace: Duration) -> anyhow::Result<bool> {
        if self.child.try_wait().context("cannot poll a child process")?.is_some() {
            return Ok(true);
        }
        self.signal(nix::sys::signal::Signal::SIGTERM)?;
        if self.wait_exit(grace)?.is_some() {
            return Ok(true);
        }
        self.kill9();
        Ok(false)
    }

    /// SIGKILL, and reap it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Resident set size now, in KiB (`VmRSS`).
    ///
    /// # Errors
    /// When `/proc/PID/status` cannot be read.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    /// Resident set size now, in bytes (`VmRSS`).
    ///
    /// # Errors
    /// When `/proc/PID/status` cannot be read.
    pub fn rss(&self) -> anyhow::Result<u64> {
        Ok(self.rss_kib()? * 1024)
    }

    /// CPU time it has used so far (user + system).
    ///
    /// # Errors
    /// When `/proc/PID/stat` cannot be read.
    pub fn cpu(&self) -> anyhow::Result<Duration> {
        cpu_time(&format!("/proc/{}/stat", self.pid()))
    }
}

impl Drop for Kairos {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn read_stdout(stdout: ChildStdout, out: &(Mutex<Stdout>, Condvar)) {
    let (state, changed) = out;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let now = now();
        let mut s = lock(state);
        if let Some(ready) = Ready::parse(&line) {
            if s.ready.is_none() {
                s.ready = Some((ready, now));
            }
        } else if let Some(count) = stream_open_count(&line) {
            s.streams_opened = s.streams_opened.max(count);
            s.first_stream.get_or_insert(now);
        } else {
            s.other.push(line);
        }
        changed.notify_all();
    }
    lock(state).closed = true;
    changed.notify_all();
}

/// The `streams_opened` of a `stream-open` line.
fn stream_open_count(line: &str) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    if value.get("kairos")?.as_str()? != "stream-open" {
        return None;
    }
    value.get("streams_opened")?.as_u64()
}

fn read_log(name: &str, stderr: std::process::ChildStderr, log: &Mutex<Log>) {
    let echo_all = std::env::var_os("KAIROS_TEST_LOGS").is_some();
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if echo_all || line.contains(" WARN ") || line.contains(" ERROR ") {
            eprintln!("[{name}] {line}");
        }
        let mut log = lock(log);
        if log.recent.len() == KEPT_LINES {
            log.recent.pop_front();
        }
        log.recent.push_back(line);
    }
}

/// A `kB` field of `/proc/PID/status` (e.g. `VmRSS:`, `VmHWM:`), in KiB.
///
/// # Errors
/// When the file cannot be read or lacks the field.
pub fn proc_status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in {path}"))
}

/// The fields of a `/proc/…/stat` line: the command name (field 2) and the fields after it
/// (field 3, the state, at index 0). The name is in parentheses and may hold spaces and
/// parentheses itself, so the line is split at its last `)`.
fn stat_fields(stat: &str) -> Option<(&str, Vec<&str>)> {
    let (head, rest) = stat.rsplit_once(')')?;
    let (_, comm) = head.split_once('(')?;
    Some((comm, rest.split_whitespace().collect()))
}

/// User + system CPU time from a `/proc/…/stat` file (fields 14 and 15, in clock ticks).
///
/// # Errors
/// When the file cannot be read or parsed.
pub fn cpu_time(path: &str) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    let (_, fields) = stat_fields(&stat).with_context(|| format!("cannot parse {path}"))?;
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    // Field 3 is at index 0, so utime (14) and stime (15) are at 11 and 12.
    let total =
        ticks(11).zip(ticks(12)).map(|(u, s)| u + s).with_context(|| format!("cannot parse {path}"))?;
    Ok(Duration::from_millis(total * 1000 / clock_ticks()))
}

/// The live processes whose parent is `parent`, as `(pid, command name)`, from `/proc`.
pub fn children_of(parent: u32) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (comm, fields) = stat_fields(&stat)?;
            // Field 4, the parent's pid.
            let ppid: u32 = fields.get(1)?.parse().ok()?;
            (ppid == parent).then(|| (pid, comm.to_owned()))
        })
        .collect()
}

/// Whether process `pid` has died: gone, or a zombie that its parent has not reaped (an
/// orphan's new parent may never reap it).
pub fn is_dead(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_or(true, |stat| stat_fields(&stat).is_none_or(|(_, fields)| fields.first() == Some(&"Z")))
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

fn strings(words: &[&str]) -> Vec<OsString> {
    words.iter().map(OsString::from).collect()
}

/// Starts `kairos scheduler --port 0 --data-dir DIR [extra]` and waits until it is ready
/// (a later `--port` in `extra` wins).
///
/// # Errors
/// As [`Kairos::spawn`].
pub fn scheduler<S: AsRef<OsStr>>(bin: &Path, data_dir: &Path, extra: &[S]) -> anyhow::Result<Kairos> {
    let mut args = strings(&["scheduler", "--port", "0", "--data-dir"]);
    args.push(data_dir.into());
    args.extend(extra.iter().map(|s| s.as_ref().to_owned()));
    Kairos::spawn("scheduler", bin, &args, &[], START_TIMEOUT)
}

/// Starts `kairos sidecar --app-id APP` with both APIs on port 0 against `scheduler`, with
/// `extra` flags and `envs`, and waits until its APIs listen.
///
/// # Errors
/// As [`Kairos::spawn`].
pub fn sidecar<S: AsRef<OsStr>>(
    bin: &Path,
    app_id: &str,
    scheduler: &str,
    extra: &[S],
    envs: &[(&str, &str)],
) -> anyhow::Result<Kairos> {
    let mut args =
        strings(&["sidecar", "--app-id", app_id, "--dapr-http-port", "0", "--dapr-grpc-port", "0"]);
    args.extend(strings(&["--scheduler-host-address", scheduler]));
    args.extend(extra.iter().map(|s| s.as_ref().to_owned()));
    Kairos::spawn("sidecar", bin, &args, envs, START_TIMEOUT)
}

/// Starts `kairos run --app-id APP --app-port PORT --data-dir DIR [extra]` (embedded scheduler,
/// sidecar APIs on free ports) and waits until its APIs listen.
///
/// The app that `kairos run` launches is a placeholder shell that exits once `kairos run` is
/// gone (the real app is the test's own server on `app_port`), so that a SIGKILL on drop leaves
/// nothing behind.
///
/// # Errors
/// As [`Kairos::spawn`].
pub fn run<S: AsRef<OsStr>>(
    bin: &Path,
    app_id: &str,
    app_port: u16,
    data_dir: &Path,
    extra: &[S],
) -> anyhow::Result<Kairos> {
    let mut args = strings(&["run", "--app-id", app_id, "--app-port", &app_port.to_string(), "--data-dir"]);
    args.push(data_dir.into());
    args.extend(extra.iter().map(|s| s.as_ref().to_owned()));
    args.extend(strings(&["--", "sh", "-c", "while kill -0 $PPID 2>/dev/null; do sleep 1; done"]));
    Kairos::spawn("run", bin, &args, &[], START_TIMEOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_lines_parse_and_other_lines_do_not() {
        let line = r#"{"kairos":"ready","role":"sidecar","pid":7,"grpc":"127.0.0.1:4101","http":"127.0.0.1:4100","metrics":null,"tls":false}"#;
        let ready = Ready::parse(line).unwrap();
        assert_eq!(ready.http.as_deref(), Some("127.0.0.1:4100"));
        assert_eq!(ready.grpc.as_deref(), Some("127.0.0.1:4101"));
        assert_eq!(ready.metrics, None);
        assert_eq!(ready.line, line);
        assert_eq!(Ready::parse("== APP == {\"kairos\":\"ready\"}"), None);
        let open = r#"{"kairos":"stream-open","role":"sidecar","pid":7,"grpc":null,"metrics":null,"tls":false,"streams_opened":3}"#;
        assert_eq!(Ready::parse(open), None);
        assert_eq!(stream_open_count(open), Some(3));
        assert_eq!(stream_open_count(line), None);
    }

    #[test]
    fn stat_lines_split_at_the_last_parenthesis_of_the_name() {
        let (comm, fields) = stat_fields("42 (a (b) c) S 7 42 42 0").unwrap();
        assert_eq!((comm, fields[0], fields[1]), ("a (b) c", "S", "7"));
        assert_eq!(stat_fields("garbled"), None);
    }

    #[test]
    fn a_child_is_listed_by_its_parent_and_dead_once_killed() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let children = children_of(std::process::id());
        assert!(children.contains(&(child.id(), "sleep".to_owned())), "{children:?}");
        assert!(!is_dead(child.id()));
        child.kill().unwrap();
        // Not reaped yet: a zombie.
        while !is_dead(child.id()) {
            std::thread::sleep(Duration::from_millis(5));
        }
        child.wait().unwrap();
        assert!(is_dead(child.id()), "gone once reaped");
    }

    #[test]
    fn cpu_time_of_this_process_is_read_and_grows() {
        let before = cpu_time("/proc/self/stat").unwrap();
        let start = now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(300) {
            x = x.wrapping_mul(31).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = cpu_time("/proc/self/stat").unwrap();
        assert!(after > before, "{before:?} -> {after:?}");
    }
}

//! Helpers for tests that run the real `kairos` binary.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A `kairos` child process, killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
    pub address: String,
    pub log: mpsc::Receiver<String>,
    /// The log line that said it listens.
    pub ready_line: String,
}

impl Proc {
    /// A `name=value` field of the line that said it listens (e.g. `healthz`).
    pub fn field(&self, name: &str) -> String {
        field(&self.ready_line, name)
    }

    /// Kills the process the hard way (SIGKILL) and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Starts `kairos scheduler` on a free port over `data_dir` and waits until it listens.
pub fn start_scheduler(data_dir: &Path, extra: &[&str]) -> Proc {
    let mut args: Vec<String> = vec!["scheduler".into(), "--port".into(), "0".into(), "--data-dir".into()];
    args.push(data_dir.display().to_string());
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let (child, log, line) = spawn_kairos(&args, &[], "kairos scheduler listening");
    Proc { child, address: field(&line, "address"), log, ready_line: line }
}

/// The `kairos` binary under test: `KAIROS_BIN` when set (e.g. a release build, to run the
/// process tests against the binary users run), else the one cargo built with the tests.
pub fn kairos_bin() -> std::path::PathBuf {
    std::env::var_os("KAIROS_BIN").map_or_else(|| env!("CARGO_BIN_EXE_kairos").into(), Into::into)
}

/// Spawns `kairos ARGS…` and waits for a stderr line containing `ready` (returning it).
// The child is returned to a guard (`Proc`, `SidecarProc`) that kills and waits on drop.
#[allow(clippy::zombie_processes)]
pub fn spawn_kairos(
    args: &[String],
    envs: &[(&str, &str)],
    ready: &str,
) -> (Child, mpsc::Receiver<String>, String) {
    let mut command = Command::new(kairos_bin());
    command.args(args).env_remove("RUST_LOG").stdout(Stdio::null()).stderr(Stdio::piped());
    for var in ["DAPR_API_TOKEN", "APP_API_TOKEN", "NAMESPACE"] {
        command.env_remove(var);
    }
    for (k, v) in envs {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("spawn kairos");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if std::env::var_os("KAIROS_TEST_LOGS").is_some() {
                eprintln!("[kairos] {line}");
            }
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) if line.contains(ready) => return (child, rx, line),
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("kairos {args:?} did not start");
            }
        }
    }
}

/// A `name=value` field of a log line.
pub fn field(line: &str, name: &str) -> String {
    line.split(&format!("{name}="))
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
        .to_owned()
}

/// A `kairos sidecar` child process, killed when dropped.
#[derive(Debug)]
pub struct SidecarProc {
    pub child: Child,
    pub http: String,
    pub grpc: String,
    pub log: mpsc::Receiver<String>,
}

impl Drop for SidecarProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `kairos sidecar --app-id APP` on free ports against `scheduler`, with `extra` flags
/// and environment variables.
pub fn start_sidecar(app_id: &str, scheduler: &str, extra: &[&str], envs: &[(&str, &str)]) -> SidecarProc {
    let mut args: Vec<String> =
        ["sidecar", "--app-id", app_id, "--dapr-http-port", "0", "--dapr-grpc-port", "0"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
    args.push("--scheduler-host-address".into());
    args.push(scheduler.to_owned());
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let (child, log, line) = spawn_kairos(&args, envs, "kairos sidecar listening");
    SidecarProc { child, http: field(&line, "http"), grpc: field(&line, "grpc"), log }
}

/// Starts `kairos run --app-id APP --app-port PORT --data-dir DIR` (embedded scheduler and
/// sidecar on free ports) with `extra` flags, and waits until its APIs listen.
///
/// The app that `kairos run` launches is a placeholder shell that exits once `kairos run` is
/// gone (the real app is the test's own server on `app_port`), so that a SIGKILL on drop
/// leaves nothing behind.
pub fn start_run(app_id: &str, app_port: u16, data_dir: &Path, extra: &[&str]) -> SidecarProc {
    let mut args: Vec<String> = vec![
        "run".into(),
        "--app-id".into(),
        app_id.into(),
        "--app-port".into(),
        app_port.to_string(),
        "--data-dir".into(),
        data_dir.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args.extend(
        ["--", "sh", "-c", "while kill -0 $PPID 2>/dev/null; do sleep 1; done"]
            .iter()
            .map(|s| (*s).to_owned()),
    );
    let (child, log, line) = spawn_kairos(&args, &[], "kairos sidecar listening");
    SidecarProc { child, http: field(&line, "http"), grpc: field(&line, "grpc"), log }
}

/// Waits up to `limit` for a line containing `needle` in a process's log; false when none came.
pub fn wait_for_log(log: &mpsc::Receiver<String>, needle: &str, limit: Duration) -> bool {
    let watch = kairos_core::Stopwatch::start();
    loop {
        let Some(left) = limit.checked_sub(watch.elapsed()) else { return false };
        match log.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}

/// The resident set size of process `pid` in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// A free TCP port on loopback (for an app that the test starts later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The Python of the venv that `scripts/ensure-deps` creates, with the official Dapr SDK.
pub fn python() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("KAIROS_PYTHON") {
        return p.into();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/ensure-deps (it creates the venv with the Dapr Python SDK)",
        python.display()
    );
    python
}

/// A script under tests/python.
pub fn python_script(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(name)
}

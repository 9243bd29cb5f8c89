//! Helpers for tests that run the real `kairos` binary: thin wrappers over
//! `kairos_testing::process` (ready line on stdout, never a log line) with the binary cargo
//! built for these tests.

#![allow(dead_code)]

pub mod certs;
pub mod crash;

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[allow(unused_imports)]
pub use kairos_testing::grpc::{all_jobs, connect, job_metadata, repeating_job};
pub use kairos_testing::process::Kairos;

/// A `kairos scheduler` child process (SIGKILLed when dropped), with its gRPC address.
#[derive(Debug)]
pub struct Proc {
    pub kairos: Kairos,
    /// `host:port` of its gRPC API, from its ready line.
    pub address: String,
}

/// A `kairos sidecar` or `kairos run` child process (SIGKILLed when dropped), with its APIs.
#[derive(Debug)]
pub struct SidecarProc {
    pub kairos: Kairos,
    pub http: String,
    pub grpc: String,
}

macro_rules! deref_kairos {
    ($($t:ty),*) => {$(
        impl Deref for $t {
            type Target = Kairos;
            fn deref(&self) -> &Kairos {
                &self.kairos
            }
        }
        impl DerefMut for $t {
            fn deref_mut(&mut self) -> &mut Kairos {
                &mut self.kairos
            }
        }
    )*};
}
deref_kairos!(Proc, SidecarProc);

impl From<Kairos> for Proc {
    fn from(kairos: Kairos) -> Proc {
        Proc { address: kairos.grpc(), kairos }
    }
}

impl From<Kairos> for SidecarProc {
    fn from(kairos: Kairos) -> SidecarProc {
        SidecarProc { http: kairos.http(), grpc: kairos.grpc(), kairos }
    }
}

/// Starts `kairos scheduler` on port 0 over `data_dir` and waits until it is ready.
pub fn start_scheduler(data_dir: &Path, extra: &[&str]) -> Proc {
    kairos_testing::process::scheduler(&kairos_bin(), data_dir, extra).expect("start kairos scheduler").into()
}

/// [`start_scheduler`] over a new temporary data dir, which lives as long as the returned guard.
pub fn start_scheduler_in_tempdir(extra: &[&str]) -> (tempfile::TempDir, Proc) {
    let dir = tempfile::tempdir().expect("a temporary data dir");
    let scheduler = start_scheduler(dir.path(), extra);
    (dir, scheduler)
}

/// Starts `kairos sidecar --app-id APP` on port 0 against `scheduler`, with `extra` flags and
/// environment variables, and waits until its APIs listen.
pub fn start_sidecar(app_id: &str, scheduler: &str, extra: &[&str], envs: &[(&str, &str)]) -> SidecarProc {
    kairos_testing::process::sidecar(&kairos_bin(), app_id, scheduler, extra, envs)
        .expect("start kairos sidecar")
        .into()
}

/// Starts `kairos run --app-id APP --app-port PORT --data-dir DIR` (embedded scheduler and
/// sidecar on free ports) with `extra` flags, and waits until its APIs listen.
pub fn start_run(app_id: &str, app_port: u16, data_dir: &Path, extra: &[&str]) -> SidecarProc {
    kairos_testing::process::run(&kairos_bin(), app_id, app_port, data_dir, extra)
        .expect("start kairos run")
        .into()
}

/// Spawns `kairos ARGS…` with `envs` and waits for its ready line.
pub fn spawn_kairos(args: &[&str], envs: &[(&str, &str)]) -> Kairos {
    kairos_testing::process::Kairos::spawn(
        "kairos",
        &kairos_bin(),
        args,
        envs,
        kairos_testing::process::START_TIMEOUT,
    )
    .unwrap_or_else(|err| panic!("kairos {args:?} did not start: {err:#}"))
}

/// The `kairos` binary under test: `KAIROS_BIN` when set (e.g. a release build, to run the
/// process tests against the binary users run), else the one cargo built with the tests.
pub fn kairos_bin() -> std::path::PathBuf {
    std::env::var_os("KAIROS_BIN").map_or_else(|| env!("CARGO_BIN_EXE_kairos").into(), Into::into)
}

/// Binary `bin` of workspace package `package`, built with the cargo that built these tests
/// (`cargo build` is a no-op when it is fresh). Cargo gives `CARGO_BIN_EXE_*` only for binaries
/// of this package, so another package's binary is built here.
pub fn cargo_bin(package: &str, bin: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| option_env!("CARGO").unwrap_or("cargo").into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new(cargo)
        .args(["build", "-p", package, "--bin", bin, "--message-format=json-render-diagnostics"])
        .current_dir(&workspace)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run cargo build -p {package}: {e}"));
    assert!(output.status.success(), "cargo build -p {package} --bin {bin} failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact" && message["target"]["name"] == bin)
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo reported no {bin} executable"))
}

/// The resident set size of process `pid` in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> u64 {
    kairos_testing::process::proc_status_kib(pid, "VmRSS:").expect("read VmRSS")
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

/// Waits until `kairos` has logged a line containing `needle` (an assertion about what it
/// says, never a readiness signal: readiness comes from the ready line), for at most `limit`.
pub fn wait_log(kairos: &Kairos, needle: &str, limit: std::time::Duration) -> bool {
    let deadline = kairos_testing::process::now() + limit;
    loop {
        if kairos.log_has(needle) {
            return true;
        }
        if kairos_testing::process::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Asserts that `kairos` logs a line containing `needle` within `secs` seconds (its log tail in
/// the failure message).
pub fn assert_log(kairos: &Kairos, needle: &str, secs: u64) {
    assert!(
        wait_log(kairos, needle, std::time::Duration::from_secs(secs)),
        "{needle:?} not logged:\n{}",
        kairos.tail()
    );
}

/// Runs `kairos jobs --scheduler SCHEDULER ARGS…` to completion.
pub fn jobs_cli(scheduler: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(kairos_bin())
        .arg("jobs")
        .arg("--scheduler")
        .arg(scheduler)
        .args(args)
        .env_remove("KAIROS_SCHEDULER")
        .output()
        .expect("run kairos jobs")
}

/// The stdout of a `kairos jobs` run that must have succeeded.
pub fn ok(output: std::process::Output) -> String {
    assert!(
        output.status.success(),
        "kairos jobs failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// `kairos jobs VERB NAME --app-id APP [extra…]` (status, history, pause, resume, trigger), which
/// must succeed; its stdout.
pub fn steer(scheduler: &str, verb: &str, name: &str, app: &str, extra: &[&str]) -> String {
    let mut args = vec![verb, name, "--app-id", app];
    args.extend_from_slice(extra);
    ok(jobs_cli(scheduler, &args))
}

/// `kairos jobs status NAME --app-id APP --json`.
pub fn job_status(scheduler: &str, name: &str, app: &str) -> serde_json::Value {
    serde_json::from_str(&steer(scheduler, "status", name, app, &["--json"])).unwrap()
}

/// `kairos jobs history NAME --app-id APP --json`: one record per line.
pub fn job_history(scheduler: &str, name: &str, app: &str) -> Vec<serde_json::Value> {
    steer(scheduler, "history", name, app, &["--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

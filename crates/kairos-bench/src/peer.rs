//! The peer: BullMQ (npm `bullmq`, pinned by `peer/package-lock.json`) on Debian's
//! `redis-server` with `appendonly yes` and `appendfsync always`, so that a job is on disk
//! before Redis answers, as a kairos job is before ScheduleJob returns.
//!
//! The harness installs what is missing (`apt-get install redis-server nodejs npm` as root,
//! `npm ci` in `peer/`), starts a fresh Redis on a free loopback port in a temp dir for each
//! scenario, runs `peer/bench.mjs MODE …` and reads the JSON result from its last stdout line.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::timing;
use kairos_testing::free_port;

/// Where `package.json`, `package-lock.json` and `bench.mjs` are.
pub fn peer_dir() -> PathBuf {
    std::env::var_os("KAIROS_BENCH_PEER_DIR")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("peer"), PathBuf::from)
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs redis-server, node and npm (apt, as root) and the peer's npm packages, where
/// missing.
///
/// # Errors
/// When something is missing and cannot be installed.
pub fn ensure() -> anyhow::Result<()> {
    let mut apt = Vec::new();
    if !have("redis-server") {
        apt.push("redis-server");
    }
    if !have("node") {
        apt.push("nodejs");
    }
    if !have("npm") {
        apt.push("npm");
    }
    if !apt.is_empty() {
        let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"));
        if !root {
            bail!(
                "the peer needs {} (as root: apt-get update && apt-get install -y {})",
                apt.join(" "),
                apt.join(" ")
            );
        }
        eprintln!("peer: installing {} (apt-get)", apt.join(" "));
        let update =
            Command::new("apt-get").args(["update", "-qq"]).status().context("cannot run apt-get")?;
        if !update.success() {
            bail!("apt-get update failed ({update})");
        }
        let install = Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&apt)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("cannot run apt-get install")?;
        if !install.success() {
            bail!("apt-get install {} failed ({install})", apt.join(" "));
        }
    }
    let dir = peer_dir();
    if !dir.join("node_modules/bullmq/package.json").is_file() {
        eprintln!("peer: npm ci in {}", dir.display());
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .context("cannot run npm ci")?;
        if !status.success() {
            bail!("npm ci in {} failed ({status})", dir.display());
        }
    }
    Ok(())
}

/// The versions the peer runs, for the report.
pub fn versions() -> String {
    let redis = Command::new("redis-server")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().find_map(|w| w.strip_prefix("v=").map(str::to_owned)))
        .unwrap_or_else(|| "?".into());
    let bullmq = std::fs::read_to_string(peer_dir().join("node_modules/bullmq/package.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .and_then(|v| v["version"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "?".into());
    let node = Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "?".into(), |s| s.trim().to_owned());
    format!("bullmq {bullmq}, redis-server {redis} (appendonly yes, appendfsync always), node {node}")
}

/// A running `redis-server`, killed when dropped.
#[derive(Debug)]
pub struct Redis {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Redis {
    /// Starts a durable Redis on a free loopback port with its data in a fresh temp dir.
    ///
    /// # Errors
    /// When it does not accept connections within 20 s.
    pub fn start(work_dir: Option<&Path>) -> anyhow::Result<Redis> {
        let dir = crate::scenario::temp_dir(work_dir)?;
        let port = free_port()?;
        let mut child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--dir"])
            .arg(dir.path())
            .args(["--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no"])
            .args(["--protected-mode", "yes", "--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start redis-server")?;
        let deadline = timing::now() + Duration::from_secs(20);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(Redis { child, port, _dir: dir });
            }
            if let Some(status) = child.try_wait()? {
                bail!("redis-server exited ({status}) before listening on {port}");
            }
            if timing::now() > deadline {
                let _ = child.kill();
                bail!("redis-server did not listen on {port} within 20 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs `node bench.mjs MODE --port P ARGS…` against a fresh Redis and returns its result.
///
/// # Errors
/// When Redis or the script fails, or it prints no JSON result.
pub async fn run(mode: &str, args: &[(&str, String)], work_dir: Option<&Path>) -> anyhow::Result<Value> {
    let redis = Redis::start(work_dir)?;
    let script = peer_dir().join("bench.mjs");
    let mut command = tokio::process::Command::new("node");
    command.arg(&script).arg(mode).arg("--port").arg(redis.port.to_string());
    for (name, value) in args {
        command.arg(format!("--{name}")).arg(value);
    }
    eprintln!("peer: bullmq {mode} on redis :{}", redis.port);
    let output = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .output()
        .await
        .context("cannot run node")?;
    drop(redis);
    if !output.status.success() {
        bail!("node {} {mode} failed ({})", script.display(), output.status);
    }
    let last = BufReader::new(output.stdout.as_slice())
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.starts_with('{'))
        .last()
        .context("the peer script printed no result")?;
    serde_json::from_str(&last).with_context(|| format!("cannot parse the peer's result {last:?}"))
}

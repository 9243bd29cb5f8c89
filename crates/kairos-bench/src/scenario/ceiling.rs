//! `ceiling`: bare tonic unary calls between two processes on loopback, with the concurrency of
//! the other scenarios: the most any gRPC delivery path on this machine can do, against which
//! the burst and steady delivery rates are read.
//!
//! The far end is `kairos-bench serve-app` (the receiving app without recording, in a process
//! of its own); C clients call its `OnJobEvent` with a job-sized request over K connections.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use super::full::Headline;
use super::sized;
use crate::report::Report;
use crate::{clients, drive};

/// Options of `ceiling`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    /// Concurrent clients, one call in flight each [default: 64].
    #[arg(long)]
    pub clients: Option<usize>,
    /// HTTP/2 connections they share [default: 1, as the sidecar's one connection to its app].
    #[arg(long)]
    pub connections: Option<usize>,
    /// Seconds [default: 10; --quick: 3].
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
}

/// A child process killed when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `ceiling`.
///
/// # Errors
/// When the echo server cannot start or every call fails.
pub async fn run(args: &Args, quick: bool) -> anyhow::Result<(Report, Headline)> {
    let clients_n = args.clients.unwrap_or(64);
    let connections = args.connections.unwrap_or(1);
    let duration = Duration::from_secs_f64(sized(args.duration, 10.0, 3.0, quick));
    let exe = std::env::current_exe().context("cannot locate kairos-bench")?;
    let mut child = Command::new(&exe)
        .args(["serve-app", "--port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start kairos-bench serve-app")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let child = Killed(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).context("cannot read serve-app's address")?;
    let Some(address) = line.trim().strip_prefix("listening on ") else {
        bail!("serve-app printed {line:?} instead of its address");
    };
    let calls = clients::echo(address, clients_n, connections, 64).await?;
    eprintln!("ceiling: {clients_n} clients over {connections} connection(s) to {address}");
    let result = drive::drive(calls, None, Some(duration), "ceiling").await?;
    drop(child);
    if result.ok == 0 {
        bail!("no echo call succeeded: {:?}", result.first_error);
    }
    let s = result.latencies.summary();
    let mut report = Report::new("ceiling");
    report.param("what", "bare tonic unary (AppCallback/OnJobEvent, 64-byte payload) between two processes");
    report.param("clients", clients_n as u64);
    report.param("connections", connections as u64);
    report.param("duration_s", duration.as_secs_f64());
    let table = report.table(
        "tonic unary ceiling",
        &["calls", "errors", "secs", "calls_per_s", "p50_ms", "p90_ms", "p99_ms", "max_ms"],
    );
    table.row(vec![
        Value::from(result.ok),
        Value::from(result.errors),
        Value::from(result.elapsed.as_secs_f64()),
        Value::from(result.rate()),
        Value::from(s.p50_ms),
        Value::from(s.p90_ms),
        Value::from(s.p99_ms),
        Value::from(s.max_ms),
    ]);
    report.finish();
    let mut headline = Headline::new();
    headline.insert("ceiling_per_s", result.rate());
    Ok((report, headline))
}

//! `ceiling`: bare tonic unary calls between two processes on loopback, with the concurrency of
//! the other scenarios: the most any gRPC delivery path on this machine can do, against which
//! the burst and steady delivery rates are read.
//!
//! The far end is `kairos-bench serve-app` (the receiving app without recording, in a process
//! of its own); C clients call its `OnJobEvent` with a job-sized request over K connections.
//! Like `shared/tools/grpc-ceiling/run`, it runs once per tokio worker count (both processes
//! get that many workers; default 1, then 2), so the two read side by side.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use super::full::Headline;
use crate::drive::{CallArgs, Counted};
use crate::report::Report;
use crate::{clients, drive};

/// Options of `ceiling`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub calls: CallArgs,
    /// Tokio worker threads of each process, one run per value [default: 1,2].
    #[arg(long, value_delimiter = ',')]
    pub threads: Option<Vec<usize>>,
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
    let calls = args.calls.resolve(10.0, quick);
    let threads = args.threads.clone().unwrap_or_else(|| vec![1, 2]);
    let mut report = Report::new("ceiling");
    report.param("what", "bare tonic unary (AppCallback/OnJobEvent, 64-byte payload) between two processes");
    calls.params(&mut report);
    let mut rows = Vec::new();
    let mut best: f64 = 0.0;
    for &n in &threads {
        let result = one_run(n.max(1), calls.clients, calls.connections, calls.duration).await?;
        best = best.max(result.rate());
        rows.push(result.row([Value::from(n as u64)]));
    }
    let table = report.table(
        "tonic unary ceiling (workers = tokio worker threads of the client and of the server process)",
        &drive::columns(&["workers"], Counted::Calls),
    );
    for row in rows {
        table.row(row);
    }
    report.note("ceiling_per_s (for compare) is the best row");
    report.finish();
    let mut headline = Headline::new();
    headline.insert("ceiling_per_s", best);
    Ok((report, headline))
}

/// One run with `workers` tokio workers in the server process and in the clients' own runtime
/// (on a thread of its own, so this process's runtime does not count).
async fn one_run(
    workers: usize,
    clients_n: usize,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<drive::Driven> {
    let exe = std::env::current_exe().context("cannot locate kairos-bench")?;
    let mut child = Command::new(&exe)
        .args(["serve-app", "--port", "0", "--threads", &workers.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start kairos-bench serve-app")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let child = Killed(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).context("cannot read serve-app's address")?;
    let Some(address) = line.trim().strip_prefix("listening on ").map(str::to_owned) else {
        bail!("serve-app printed {line:?} instead of its address");
    };
    eprintln!(
        "ceiling: {clients_n} clients over {connections} connection(s) to {address}, {workers} worker(s)"
    );
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("ceiling-clients".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()
                .context("cannot start the clients' runtime")
                .and_then(|rt| {
                    rt.block_on(async {
                        let calls = clients::echo(&address, clients_n, connections, 64).await?;
                        drive::drive(calls, None, Some(duration), "ceiling").await
                    })
                });
            let _ = tx.send(result);
        })
        .context("cannot start the clients' thread")?;
    let result = rx.await.context("the clients' thread died")??;
    drop(child);
    if result.ok == 0 {
        bail!("no echo call succeeded: {:?}", result.first_error);
    }
    Ok(result)
}

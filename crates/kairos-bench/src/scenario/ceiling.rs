//! `ceiling`: bare tonic unary calls between two processes on loopback, with the concurrency of
//! the other scenarios: the most any gRPC delivery path on this machine can do, against which
//! the burst and steady delivery rates are read.
//!
//! The far end is `kairos-bench serve-app` (the receiving app without recording, in a process
//! of its own); C clients call its `OnJobEvent` over K connections. It measures what
//! `shared/tools/grpc-ceiling/run` measures, the same way: one run per tokio worker count (both
//! processes get that many workers; default 1, then 2), each client task a plain loop of one
//! call at a time (no per-call boxing, no shared counters), a warm-up before the measured
//! window, a 100-byte payload, and the CPU per call of each process over the measured window.
//! What still differs from the tool: the message is kairos's `JobEventRequest` (the payload in
//! an `Any`), and the build is the workspace's release profile.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use kairos_proto::runtime::JobEventRequest;
use kairos_proto::runtime::app_callback_client::AppCallbackClient;
use kairos_testing::process::cpu_time;
use serde_json::Value;

use super::full::Headline;
use super::sized;
use crate::app::job_name;
use crate::drive::{self, CallArgs, Calls, Counted, Driven};
use crate::hist::Latencies;
use crate::report::Report;
use crate::{clients, timing};

/// Options of `ceiling`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    /// Clients, connections, measured seconds per worker count [default: 64, 1, 10; --quick: 3].
    #[command(flatten)]
    pub calls: CallArgs,
    /// Seconds of calls before the measured window [default: 2; --quick: 1].
    #[arg(long, value_name = "SECS")]
    pub warmup: Option<f64>,
    /// Bytes of each call's payload [default: 100, as shared/tools/grpc-ceiling].
    #[arg(long)]
    pub payload_bytes: Option<usize>,
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
    let load = Load {
        calls,
        payload_bytes: args.payload_bytes.unwrap_or(100),
        warmup: Duration::from_secs_f64(sized(args.warmup, 2.0, 1.0, quick)),
    };
    let threads = args.threads.clone().unwrap_or_else(|| vec![1, 2]);
    let mut report = Report::new("ceiling");
    report.param("what", "bare tonic unary (AppCallback/OnJobEvent) between two processes");
    calls.params(&mut report);
    report.param("payload_bytes", load.payload_bytes as u64);
    report.param("warmup_s", load.warmup.as_secs_f64());
    let mut runs = Vec::new();
    for &n in &threads {
        runs.push(one_run(n.max(1), load).await?);
    }
    let best = runs.iter().map(Measured::rate).fold(0.0, f64::max);
    let table = report.table(
        "tonic unary ceiling (workers = tokio worker threads of the client and of the server process)",
        &[drive::columns(&["workers"], Counted::Calls), vec!["client_us", "server_us", "total_us"]].concat(),
    );
    for m in &runs {
        let driven = Driven {
            ok: m.calls,
            errors: m.errors,
            first_error: None,
            elapsed: m.elapsed,
            latencies: m.latencies.clone(),
        };
        let mut row = driven.row([Value::from(m.workers as u64)]);
        row.extend([m.client_us, m.server_us, m.client_us + m.server_us].map(Value::from));
        table.row(row);
    }
    report.note("ceiling_per_s (for compare) is the best row; *_us = CPU per call over the measured window");
    report.finish();
    let mut headline = Headline::new();
    headline.insert("ceiling_per_s", best);
    Ok((report, headline))
}

/// What one run measured.
struct Measured {
    workers: usize,
    calls: u64,
    errors: u64,
    elapsed: Duration,
    latencies: Latencies,
    /// CPU per call over the measured window: the clients' process, then the server's.
    client_us: f64,
    server_us: f64,
}

impl Measured {
    fn rate(&self) -> f64 {
        timing::rate(self.calls, self.elapsed)
    }
}

/// The clients' phase: warming up, measuring, or stopping.
#[derive(Debug, Default)]
struct Phase {
    measuring: AtomicBool,
    stop: AtomicBool,
}

/// One run with `workers` tokio workers in the server process and in the clients' own runtime
/// (on a thread of its own, so this process's runtime does not count).
async fn one_run(workers: usize, load: Load) -> anyhow::Result<Measured> {
    let exe = std::env::current_exe().context("cannot locate kairos-bench")?;
    let mut child = Command::new(&exe)
        .args(["serve-app", "--port", "0", "--threads", &workers.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start kairos-bench serve-app")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let server_stat = format!("/proc/{}/stat", child.id());
    let child = Killed(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).context("cannot read serve-app's address")?;
    let Some(address) = line.trim().strip_prefix("listening on ").map(str::to_owned) else {
        bail!("serve-app printed {line:?} instead of its address");
    };
    eprintln!(
        "ceiling: {} clients over {} connection(s) to {address}, {workers} worker(s), {:.0} s warm-up",
        load.calls.clients,
        load.calls.connections,
        load.warmup.as_secs_f64()
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
                .and_then(|rt| rt.block_on(measure(&address, load, &server_stat)));
            let _ = tx.send(result);
        })
        .context("cannot start the clients' thread")?;
    let (calls, errors, elapsed, latencies, cpu) = rx.await.context("the clients' thread died")??;
    drop(child);
    if calls == 0 {
        bail!("no echo call succeeded");
    }
    let per_call = |d: Duration| d.as_secs_f64() * 1e6 / calls as f64;
    Ok(Measured {
        workers,
        calls,
        errors,
        elapsed,
        latencies,
        client_us: per_call(cpu[0]),
        server_us: per_call(cpu[1]),
    })
}

/// The load of one run.
#[derive(Debug, Clone, Copy)]
struct Load {
    calls: Calls,
    payload_bytes: usize,
    warmup: Duration,
}

type Window = (u64, u64, Duration, Latencies, [Duration; 2]);

/// Runs the clients (in the current runtime): warm-up, then the measured window, then stop.
/// Returns the calls and errors of the window, its length, latencies, and the CPU this process
/// and the server (`server_stat`) used in it.
async fn measure(address: &str, load: Load, server_stat: &str) -> anyhow::Result<Window> {
    let channels = clients::channels(address, load.calls.connections).await?;
    let phase = Arc::new(Phase::default());
    let payload = Arc::new(vec![b'x'; load.payload_bytes]);
    let tasks: Vec<_> = (0..load.calls.clients.max(1))
        .map(|i| {
            let mut client = AppCallbackClient::new(channels[i % channels.len()].clone());
            let (phase, payload) = (phase.clone(), payload.clone());
            tokio::spawn(async move {
                let mut latencies = Latencies::new()?;
                let (mut calls, mut errors) = (0_u64, 0_u64);
                let mut index = i as u64 * 1_000_000_000;
                while !phase.stop.load(Ordering::Relaxed) {
                    let request = JobEventRequest {
                        name: job_name("echo-", index),
                        data: Some(prost_types::Any { type_url: String::new(), value: payload.to_vec() }),
                        method: "job/echo".into(),
                        ..Default::default()
                    };
                    index += 1;
                    let sent = timing::now();
                    let answer = client.on_job_event(request).await;
                    if phase.measuring.load(Ordering::Relaxed) {
                        if answer.is_ok() {
                            calls += 1;
                            latencies.record(sent.elapsed());
                        } else {
                            errors += 1;
                        }
                    }
                }
                Ok::<_, anyhow::Error>((calls, errors, latencies))
            })
        })
        .collect();
    let cpu =
        || -> anyhow::Result<[Duration; 2]> { Ok([cpu_time("/proc/self/stat")?, cpu_time(server_stat)?]) };
    tokio::time::sleep(load.warmup).await;
    let (cpu0, start) = (cpu()?, timing::now());
    phase.measuring.store(true, Ordering::SeqCst);
    tokio::time::sleep(load.calls.duration).await;
    phase.measuring.store(false, Ordering::SeqCst);
    let (cpu1, elapsed) = (cpu()?, start.elapsed());
    phase.stop.store(true, Ordering::SeqCst);
    let (mut calls, mut errors, mut latencies) = (0, 0, Latencies::new()?);
    for task in tasks {
        let (c, e, l) = task.await.context("a client task failed")??;
        calls += c;
        errors += e;
        latencies.merge(&l)?;
    }
    Ok((calls, errors, elapsed, latencies, [cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]]))
}

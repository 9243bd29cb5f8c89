//! `scheduler-rss`: memory and disk per stored job, and restart time, of `kairos scheduler`.
//!
//! Starts the scheduler on an empty temp data dir, notes its RSS, stores M far-future jobs
//! through gRPC as fast as it takes them (bounded by `--max-load-secs`: the figures are then
//! for the jobs stored by then), lets it settle, and reads its RSS, peak RSS and the store
//! size. Then stops it (SIGTERM, or SIGKILL with `--kill9`), starts it again on the same data
//! dir, and measures the time until it answers gRPC and its RSS once settled.

use std::time::Duration;

use anyhow::{Context, bail};
use kairos_proto::scheduler::GetJobRequest;
use kairos_proto::scheduler::scheduler_client::SchedulerClient;

use super::fill::{FillArgs, FillDefaults};
use super::sized;
use crate::load;
use crate::process::{dir_size, find_kairos, memory};
use crate::report::Report;
use crate::stack::Scheduler;
use crate::timing;

/// Options of `scheduler-rss`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub fill: FillArgs,
    /// Seconds to wait before reading the RSS [default: 3; --quick: 1].
    #[arg(long, value_name = "SECS")]
    pub settle: Option<f64>,
}

/// `scheduler-rss`'s sizes: a million jobs, or as many as 5 minutes of loading store.
const DEFAULTS: FillDefaults = FillDefaults { jobs: (1_000_000, 20_000), max_load_secs: (300.0, 20.0) };

/// Runs the scenario.
///
/// # Errors
/// When the scheduler cannot start, be loaded, or restart.
pub async fn run(args: &Args, quick: bool) -> anyhow::Result<Report> {
    let fill = args.fill.resolve(&DEFAULTS, quick);
    let settle = Duration::from_secs_f64(sized(args.settle, 3.0, 1.0, quick));
    let kairos = find_kairos(args.fill.scheduler.kairos.as_deref())?;
    let flags = args.fill.scheduler.extra_flags();
    let data = args.fill.scheduler.temp_dir()?;

    let mut report = Report::new("scheduler-rss");
    fill.params(&mut report);
    report.param("settle_s", settle.as_secs_f64());
    report.param("data_dir", data.path().display().to_string());
    if let Some(p) = args.fill.scheduler.partitions {
        report.param("partitions", p);
    }

    let mut first = Scheduler::start(&kairos, data.path(), 0, &flags, Duration::from_secs(30))?;
    tokio::time::sleep(settle).await;
    let empty = memory(first.proc.pid())?;
    eprintln!("scheduler-rss: loading {} jobs into pid {} at {}", fill.jobs, first.proc.pid(), first.address);
    let loaded = fill.load(&first.address, "rss-", &mut report).await?;
    tokio::time::sleep(settle).await;
    let full = memory(first.proc.pid())?;
    let store_bytes = dir_size(data.path())?;

    let (graceful, stopped_in) = fill.stop(&mut first.proc, Duration::from_secs(60))?;
    drop(first);
    let store_bytes_closed = dir_size(data.path())?;

    eprintln!("scheduler-rss: restarting on the same data dir");
    let second = Scheduler::start(&kairos, data.path(), 0, &flags, Duration::from_secs(600))?;
    let serving = first_answer(&second.address, "rss-0000000000").await?;
    let to_listen = second.listening - second.proc.spawned;
    let to_serve = serving - second.proc.spawned;
    let after_start = memory(second.proc.pid())?;
    tokio::time::sleep(settle).await;
    let restarted = memory(second.proc.pid())?;
    drop(second);

    let per_job = |bytes: u64| bytes as f64 / loaded.ok as f64;
    let s = loaded.latencies.summary();
    let table = report.metric_table("memory and store size");
    table.metric("jobs stored", loaded.ok, "jobs");
    table.metric("load time", loaded.elapsed.as_secs_f64(), "s");
    table.metric("load rate", timing::rate(loaded.ok, loaded.elapsed), "jobs/s");
    table.metric("load latency p50", s.p50_ms, "ms");
    table.metric("load latency p99", s.p99_ms, "ms");
    table.metric("RSS empty", timing::mib(empty.rss), "MiB");
    table.metric("RSS loaded (settled)", timing::mib(full.rss), "MiB");
    table.metric("peak RSS while loading", timing::mib(full.peak), "MiB");
    table.metric("RSS growth per job", per_job(full.rss.saturating_sub(empty.rss)), "bytes/job");
    table.metric("store size (running)", store_bytes, "bytes");
    table.metric("store size (stopped)", store_bytes_closed, "bytes");
    table.metric("store bytes per job", per_job(store_bytes_closed), "bytes/job");
    table.metric(
        if graceful { "stop (SIGTERM) took" } else { "stop (SIGKILL or SIGTERM timeout) took" },
        timing::ms(stopped_in),
        "ms",
    );
    table.metric("restart: spawn to listening", timing::ms(to_listen), "ms");
    table.metric("restart: spawn to first GetJob OK", timing::ms(to_serve), "ms");
    table.metric("restart: RSS at first answer", timing::mib(after_start.rss), "MiB");
    table.metric("restart: RSS settled", timing::mib(restarted.rss), "MiB");
    table.metric("restart: peak RSS", timing::mib(restarted.peak), "MiB");
    report.note("RSS includes the store's page cache (redb's own cache), not only the engine's windows");
    report.finish();
    Ok(report)
}

/// Polls GetJob for `name` until it answers OK; returns when it did.
async fn first_answer(address: &str, name: &str) -> anyhow::Result<std::time::Instant> {
    let deadline = timing::now() + Duration::from_secs(600);
    let mut last_error = String::new();
    while timing::now() < deadline {
        match load::connect(address, 1).await {
            Ok(channels) => {
                let channel = channels.into_iter().next().context("no connection was opened")?;
                let mut client = SchedulerClient::new(channel);
                let request = GetJobRequest { name: name.into(), metadata: Some(load::metadata()) };
                match client.get_job(request).await {
                    Ok(_) => return Ok(timing::now()),
                    Err(status) => last_error = crate::drive::status_text(&status),
                }
            }
            Err(err) => last_error = format!("{err:#}"),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bail!("the restarted scheduler at {address} did not answer GetJob {name} within 600 s: {last_error}")
}

//! `scale`: M far-future jobs in `kairos scheduler` → its RSS and the bytes on disk per job;
//! then a restart → the time until a job that came due while it was down reaches the app.
//!
//! The jobs are loaded over the Scheduler gRPC API directly (64 clients over 8 connections;
//! this measures storage, not the sidecar). One more job, due a second later, is created while
//! no sidecar is connected, so it is staged; the scheduler is stopped (SIGTERM, or SIGKILL with
//! `--kill9`), started again on the same data dir and port, and as soon as it listens a
//! sidecar and the recording app are started: "first trigger" is from the restart's spawn to
//! that job's arrival at the app.

use std::time::Duration;

use anyhow::{Context, bail};
use kairos_core::{Clock, SystemClock};
use kairos_proto::scheduler::scheduler_client::SchedulerClient;
use kairos_proto::scheduler::{Job, ScheduleJobRequest};

use super::fill::{FillArgs, FillDefaults};
use super::full::Headline;
use crate::app::{self, Recorder};
use crate::load;
use crate::process::dir_size;
use crate::report::Report;
use crate::stack::{Scheduler, Sidecar, kairos_bin};
use crate::timing;

/// Options of `scale`.
pub type Args = FillArgs;

/// `scale`'s sizes: ten million jobs, or as many as 30 minutes of loading store.
const DEFAULTS: FillDefaults = FillDefaults { jobs: (10_000_000, 20_000), max_load_secs: (1800.0, 15.0) };

/// Runs `scale`.
///
/// # Errors
/// When the scheduler cannot be loaded or restarted, or the due job never arrives.
pub async fn run(args: &Args, quick: bool) -> anyhow::Result<(Report, Headline)> {
    let fill = args.resolve(&DEFAULTS, quick);
    let jobs = fill.jobs;
    let kairos = kairos_bin(args.scheduler.kairos.as_deref())?;
    let flags = args.scheduler.extra_flags();
    let data = args.scheduler.temp_dir()?;
    let mut report = Report::new("scale");
    fill.params(&mut report);

    let mut first = Scheduler::start(&kairos, data.path(), 0, &flags, Duration::from_secs(60))?;
    let port = first.port;
    let empty_rss = first.proc.rss()?;
    eprintln!("scale: loading {jobs} far-future jobs into {}", first.address);
    let loaded = fill.load(&first.address, "scale-", &mut report).await?;
    // The job that comes due while nobody listens, and while the scheduler is down.
    let due =
        SystemClock.now().saturating_add(jiff::SignedDuration::from_secs(1)).context("time out of range")?;
    let channel = load::connect(&first.address, 1).await?.remove(0);
    SchedulerClient::new(channel)
        .schedule_job(ScheduleJobRequest {
            name: app::job_name("due-", 0),
            job: Some(Job { due_time: Some(due.to_string()), ..Job::default() }),
            metadata: Some(load::metadata()),
            overwrite: false,
        })
        .await
        .context("cannot schedule the due job")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loaded_rss = first.proc.rss()?;
    let (graceful, stopped_in) = fill.stop(&mut first.proc, Duration::from_secs(120))?;
    drop(first);
    let store_bytes = dir_size(data.path())?;

    eprintln!("scale: restarting on the same data dir");
    let recorder = Recorder::new("due-", 1, timing::now());
    let app = app::serve(0, Some(recorder.clone())).await?;
    let second = Scheduler::start(&kairos, data.path(), port, &flags, Duration::from_secs(1200))?;
    let _sidecar = Sidecar::start(
        &kairos,
        &second.address,
        Some(app.address.port()),
        &args.scheduler.sidecar_args,
        Duration::from_secs(60),
    )?;
    if !recorder.wait_for(1, Duration::from_secs(120), "scale restart").await {
        bail!("the job due during the restart did not arrive within 120 s");
    }
    let arrived = recorder.arrival(0).context("no arrival time")?;
    let to_listen = second.listening - second.proc.spawned;
    let to_trigger = arrived - second.proc.spawned;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let restarted_rss = second.proc.rss()?;

    #[allow(clippy::cast_precision_loss)]
    let per_job = |bytes: u64| bytes as f64 / loaded.ok as f64;
    let s = loaded.latencies.summary();
    let table = report.metric_table("stored jobs: memory, disk, restart");
    table.metric("jobs stored", loaded.ok, "jobs");
    table.metric(
        &format!("load rate (scheduler gRPC, {} clients)", fill.clients),
        timing::rate(loaded.ok, loaded.elapsed),
        "jobs/s",
    );
    table.metric("load latency p99", s.p99_ms, "ms");
    table.metric("RSS empty", timing::mib(empty_rss), "MiB");
    table.metric("RSS loaded", timing::mib(loaded_rss), "MiB");
    table.metric("RSS per job (growth)", per_job(loaded_rss.saturating_sub(empty_rss)), "bytes/job");
    table.metric("store on disk", timing::mib(store_bytes), "MiB");
    table.metric("store bytes per job", per_job(store_bytes), "bytes/job");
    table.metric(if graceful { "stop (SIGTERM)" } else { "stop (SIGKILL)" }, timing::ms(stopped_in), "ms");
    table.metric("restart: spawn to listening", timing::ms(to_listen), "ms");
    table.metric("restart: spawn to first due trigger at the app", timing::ms(to_trigger), "ms");
    table.metric("restart: RSS", timing::mib(restarted_rss), "MiB");
    report.note("first due trigger: a job that came due while the scheduler was down; includes starting the sidecar once the scheduler listens");
    report.finish();
    let mut headline = Headline::new();
    #[allow(clippy::cast_precision_loss)]
    headline.insert("scale_jobs", loaded.ok as f64);
    headline.insert("scale_rss_mib", timing::mib(loaded_rss));
    headline.insert("scale_bytes_per_job", per_job(store_bytes));
    headline.insert("scale_first_trigger_ms", to_trigger.as_secs_f64() * 1000.0);
    drop(app);
    Ok((report, headline))
}

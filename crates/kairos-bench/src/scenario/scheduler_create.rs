//! `scheduler-create`: durable ScheduleJob calls per second.
//!
//! For each (clients, channels) pair, a fresh `kairos scheduler` on an empty temp data dir (or
//! the scheduler at `--address`) takes far-future one-shot jobs from C concurrent client tasks
//! sharing K HTTP/2 connections, for D seconds or N jobs. A call counts once it returned OK,
//! which kairos answers only after the job is fsynced.

use std::time::Duration;

use serde_json::Value;

use super::sized;
use crate::cli::{PayloadArgs, SchedulerArgs};
use crate::drive::{self, Counted};
use crate::load::{self, LoadConfig};
use crate::process::find_kairos;
use crate::report::Report;
use crate::stack::Scheduler;

/// Options of `scheduler-create`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub scheduler: SchedulerArgs,
    /// Concurrent client tasks, one call in flight each; a list runs each [default: 64].
    #[arg(long, value_delimiter = ',')]
    pub clients: Option<Vec<usize>>,
    /// HTTP/2 connections the clients share; a list runs each [default: 1,8].
    #[arg(long, value_delimiter = ',')]
    pub channels: Option<Vec<usize>>,
    /// Seconds each run lasts [default: 20; --quick: 3].
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Stop each run after this many jobs (also bounded by --duration).
    #[arg(long)]
    pub jobs: Option<u64>,
    #[command(flatten)]
    pub payload: PayloadArgs,
    /// Load an already running Scheduler (any implementation of Dapr's Scheduler gRPC API,
    /// plaintext) at HOST:PORT instead of starting `kairos scheduler`.
    #[arg(long, value_name = "HOST:PORT")]
    pub address: Option<String>,
}

/// Runs the scenario.
///
/// # Errors
/// When the scheduler cannot start or be reached.
pub async fn run(args: &Args, quick: bool) -> anyhow::Result<crate::report::Report> {
    let clients = args.clients.clone().unwrap_or_else(|| vec![64]);
    let channels = args.channels.clone().unwrap_or_else(|| vec![1, 8]);
    let duration = Duration::from_secs_f64(sized(args.duration, 20.0, 3.0, quick));
    let payload_bytes = args.payload.bytes();
    if args.address.is_none() {
        // Fail before any work when the binary is missing.
        find_kairos(args.scheduler.kairos.as_deref())?;
    }

    let mut report = Report::new("scheduler-create");
    report.param("target", args.address.clone().unwrap_or_else(|| "kairos scheduler (fresh per run)".into()));
    report.param("duration_s", duration.as_secs_f64());
    if let Some(jobs) = args.jobs {
        report.param("jobs_limit", jobs);
    }
    report.param("payload_bytes", payload_bytes as u64);
    report.param("due_time", load::FAR_DUE_TIME);
    if let Some(p) = args.scheduler.partitions {
        report.param("partitions", p);
    }

    let mut rows = Vec::new();
    for (run, (&c, &k)) in clients.iter().flat_map(|c| channels.iter().map(move |k| (c, k))).enumerate() {
        // A fresh scheduler and store per run, so no run pays for another's data.
        let data = args.scheduler.temp_dir()?;
        let (process, address) = match &args.address {
            Some(address) => (None, address.clone()),
            None => {
                let kairos = find_kairos(args.scheduler.kairos.as_deref())?;
                let flags = args.scheduler.extra_flags();
                let process = Scheduler::start(&kairos, data.path(), 0, &flags, Duration::from_secs(30))?;
                let address = process.address.clone();
                (Some(process), address)
            }
        };
        eprintln!("scheduler-create: {c} clients over {k} connection(s) to {address}");
        let result = load::run(LoadConfig {
            address,
            clients: c,
            channels: k,
            jobs: args.jobs,
            duration: Some(duration),
            payload_bytes,
            // Unique per run, so runs against one external scheduler do not collide.
            name_prefix: format!("create-{}-{run}-", std::process::id()),
            label: format!("C={c} K={k}"),
        })
        .await?;
        drop(process);
        if let Some(error) = &result.first_error {
            report.note(format!("C={c} K={k}: {} calls failed; first: {error}", result.errors));
        }
        rows.push(result.row([Value::from(c as u64), Value::from(k as u64)]));
    }
    let table = report.table(
        "durable creates (ScheduleJob returned OK)",
        &drive::columns(&["clients", "channels"], Counted::Jobs),
    );
    for row in rows {
        table.row(row);
    }
    report.finish();
    Ok(report)
}

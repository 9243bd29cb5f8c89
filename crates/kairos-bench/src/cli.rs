//! The command line: global flags, one subcommand per scenario, and `all`.

use std::path::PathBuf;

use crate::report::{self, Report};
use crate::scenario::fill::FillArgs;
use crate::scenario::full::{self, BurstArgs, CreateArgs, SteadyArgs};
use crate::scenario::{ceiling, compare, engine_fire, replicas, scale, scheduler_create, scheduler_rss};
use crate::stack::Topology;

/// Measures kairos (and BullMQ, its peer): create rate, delivery rate and lateness, memory,
/// restart and crash recovery.
#[derive(Debug, clap::Parser)]
#[command(name = "kairos-bench", version)]
pub struct Cli {
    /// Scale every scenario down so that it finishes in well under a minute.
    #[arg(long, global = true)]
    pub quick: bool,
    /// Also write the results as JSON to FILE.
    #[arg(long, global = true, value_name = "FILE")]
    pub json: Option<PathBuf>,
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// The scenarios.
#[derive(Debug, clap::Subcommand)]
pub enum Scenario {
    /// kairos vs BullMQ on create, burst and steady (alternating), the tonic ceiling, then
    /// scale and recovery: the full table, with kairos/peer ratios.
    Compare(compare::Args),
    /// Full path: C clients schedule far-future jobs through `kairos sidecar`'s gRPC API, then
    /// its HTTP API; jobs/s and latency quantiles.
    Create(CreateArgs),
    /// Full path: N jobs due at one instant, delivered by the sidecar to a gRPC app that
    /// acknowledges at once; time until all arrived, triggers/s.
    Burst(BurstArgs),
    /// Full path: R jobs/s coming due for T s; delivered rate and lateness quantiles.
    Steady(SteadyArgs),
    /// Full path: `steady` with the scheduler killed (SIGKILL) and restarted part way; lost
    /// jobs, duplicates, catch-up time.
    Recovery(SteadyArgs),
    /// M far-future jobs: scheduler RSS, bytes on disk per job; restart to first due trigger.
    Scale(scale::Args),
    /// Bare tonic unary calls between two processes on loopback: the delivery ceiling.
    Ceiling(ceiling::Args),
    /// The receiving app alone, acknowledging every OnJobEvent (the far end of `ceiling`).
    #[command(hide = true)]
    ServeApp {
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Tokio worker threads [default: one per CPU].
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Durable ScheduleJob calls per second against a `kairos scheduler` (or any Dapr
    /// Scheduler at --address), with latency quantiles.
    SchedulerCreate(scheduler_create::Args),
    /// In-process engine: N one-shot jobs due at the same instant, acknowledged at once;
    /// triggers per second until every completion is durable.
    EngineFire(engine_fire::Args),
    /// Resident memory and store size of a `kairos scheduler` holding M jobs, then restart time.
    SchedulerRss(scheduler_rss::Args),
    /// 3 `kairos scheduler` replicas on one etcd member: etcd's own durable put ceiling, then
    /// durable creates spread over the replicas, as a fraction of it.
    Replicas(replicas::Args),
    /// Every scenario in turn with its default sizes (or the --quick ones).
    All(AllArgs),
}

impl Scenario {
    /// The options of the kairos processes, for the scenarios that start them.
    fn scheduler_args(&self) -> Option<&SchedulerArgs> {
        match self {
            Scenario::Compare(a) => Some(&a.scheduler),
            Scenario::Create(a) => Some(&a.scheduler),
            Scenario::Burst(a) => Some(&a.scheduler),
            Scenario::Steady(a) | Scenario::Recovery(a) => Some(&a.scheduler),
            Scenario::Scale(a) => Some(&a.scheduler),
            Scenario::SchedulerCreate(a) => Some(&a.scheduler),
            Scenario::SchedulerRss(a) => Some(&a.fill.scheduler),
            Scenario::Replicas(a) => Some(&a.scheduler),
            Scenario::All(a) => Some(&a.scheduler),
            Scenario::Ceiling(_) | Scenario::ServeApp { .. } | Scenario::EngineFire(_) => None,
        }
    }
}

/// Options of `all`: those the scenarios share.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AllArgs {
    #[command(flatten)]
    pub scheduler: SchedulerArgs,
}

/// How to start `kairos scheduler`; shared by the scenarios that run it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SchedulerArgs {
    /// The `kairos` binary [default: `kairos` next to this executable].
    #[arg(long, env = "KAIROS_BIN", value_name = "PATH")]
    pub kairos: Option<PathBuf>,
    /// Partition count of the scheduler's new store [default: the scheduler's own default].
    #[arg(long)]
    pub partitions: Option<u32>,
    /// Directory under which temporary data dirs are made [default: the system temp dir].
    /// Put it on the disk you want to measure: every ScheduleJob waits for an fsync.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// An extra flag for `kairos sidecar` in the full-path scenarios, e.g.
    /// `--sidecar-arg=--app-max-concurrency --sidecar-arg=256`; repeatable.
    #[arg(long = "sidecar-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub sidecar_args: Vec<String>,
    /// The full-path scenarios' runtime: `split` (kairos sidecar + kairos scheduler, three
    /// processes with the client) or `embedded` (one `kairos run`, the main job's shape; its
    /// `--sidecar-arg`s go to `kairos run`) [default: split; compare: both].
    #[arg(long, value_enum)]
    pub topology: Option<Topology>,
    /// Tokio worker threads of each kairos process (its `TOKIO_WORKER_THREADS`) [default:
    /// tokio's, one per CPU].
    #[arg(long, value_name = "N")]
    pub kairos_workers: Option<usize>,
}

impl SchedulerArgs {
    /// Extra `kairos scheduler` flags these options ask for.
    pub fn extra_flags(&self) -> Vec<String> {
        self.partitions.map(|p| vec!["--partitions".into(), p.to_string()]).unwrap_or_default()
    }

    /// A fresh temporary directory under `--work-dir`.
    ///
    /// # Errors
    /// When it cannot be created.
    pub fn temp_dir(&self) -> anyhow::Result<tempfile::TempDir> {
        crate::scenario::temp_dir(self.work_dir.as_deref())
    }
}

/// `--payload-bytes`, one flag with one default for every scenario that creates jobs
/// (`create`, `scheduler-create`, `replicas`, `scale`, `scheduler-rss`); `ceiling`'s calls have a
/// payload default of their own.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PayloadArgs {
    /// Bytes of each job's payload [default: 64].
    #[arg(long)]
    pub payload_bytes: Option<usize>,
}

impl PayloadArgs {
    /// `--payload-bytes`, else its default.
    pub fn bytes(&self) -> usize {
        self.payload_bytes.unwrap_or(64)
    }
}

/// Runs the chosen scenario(s), prints their reports, writes the JSON if asked.
///
/// # Errors
/// When a scenario fails or the JSON cannot be written.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let quick = cli.quick;
    if let Some(n) = cli.scenario.scheduler_args().and_then(|a| a.kairos_workers) {
        crate::stack::set_kairos_workers(n);
    }
    let mut reports: Vec<Report> = Vec::new();
    match cli.scenario {
        Scenario::Compare(args) => reports.extend(compare::run(&args, quick).await?),
        Scenario::Create(args) => reports.push(print(full::create(&args, quick).await?.0)),
        Scenario::Burst(args) => reports.push(print(full::burst(&args, quick).await?.0)),
        Scenario::Steady(args) => reports.push(print(full::steady(&args, quick, false).await?.0)),
        Scenario::Recovery(args) => reports.push(print(full::steady(&args, quick, true).await?.0)),
        Scenario::Scale(args) => reports.push(print(scale::run(&args, quick).await?.0)),
        Scenario::Ceiling(args) => reports.push(print(ceiling::run(&args, quick).await?.0)),
        Scenario::ServeApp { port, .. } => crate::app::serve_forever(port).await?,
        Scenario::SchedulerCreate(args) => reports.push(print(scheduler_create::run(&args, quick).await?)),
        Scenario::EngineFire(args) => reports.push(print(engine_fire::run(&args, quick).await?)),
        Scenario::SchedulerRss(args) => reports.push(print(scheduler_rss::run(&args, quick).await?)),
        Scenario::Replicas(args) => reports.push(print(replicas::run(&args, quick).await?)),
        Scenario::All(all) => {
            let create = scheduler_create::Args { scheduler: all.scheduler.clone(), ..Default::default() };
            reports.push(print(scheduler_create::run(&create, quick).await?));
            let fire = engine_fire::Args { work_dir: all.scheduler.work_dir.clone(), ..Default::default() };
            reports.push(print(engine_fire::run(&fire, quick).await?));
            let fill = FillArgs { scheduler: all.scheduler, ..Default::default() };
            let rss = scheduler_rss::Args { fill, ..Default::default() };
            reports.push(print(scheduler_rss::run(&rss, quick).await?));
        }
    }
    if let Some(path) = &cli.json {
        report::write_json(path, quick, &reports)?;
        eprintln!("results written to {}", path.display());
    }
    Ok(())
}

fn print(report: Report) -> Report {
    println!("{}", report.render());
    report
}

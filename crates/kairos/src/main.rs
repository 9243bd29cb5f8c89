//! The `kairos` binary: CLI wiring only (flags, logging, signals); the node it starts is
//! [`kairos::node`], the behaviour lives in the library crates.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: profiles of the create and trigger paths spend ~14 % of
/// the scheduler's CPU in glibc malloc/free (many small, short-lived allocations per request
/// across tonic, h2, prost and redb).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// kairos: the Dapr Jobs building block (schedule named jobs, get them back at their trigger
/// time).
#[derive(Debug, Parser)]
#[command(name = "kairos", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an app with its sidecar and (unless --scheduler-host-address is given) an embedded
    /// scheduler on a durable local store, like `dapr run`.
    Run(cmd::run::Args),
    /// Print when a job would fire: the next ticks of a schedule, due time, repeats and ttl,
    /// computed exactly as the scheduler computes them.
    SchedulePreview(cmd::preview::Args),
    /// Run the Scheduler service (dapr.proto.scheduler.v1) on a durable local store.
    Scheduler(cmd::scheduler::Args),
    /// Run the Dapr Jobs API for one app (the jobs part of daprd), connected to a scheduler.
    Sidecar(cmd::sidecar::Args),
    /// Operate a running scheduler's jobs: list, get, delete, export and import (with progress);
    /// see and steer them: status, history, pause, resume, trigger.
    Jobs(cmd::jobs::Args),
    /// Stops an app's process group should `kairos run` die (started by `kairos run` only).
    #[command(hide = true)]
    GuardApp(cmd::run::GuardArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => match runtime().and_then(|rt| rt.block_on(cmd::run::run(args))) {
            // The app's own exit code (128 + signal when a signal ended it).
            Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            Err(err) => failure(&err),
        },
        Command::SchedulePreview(args) => done(cmd::preview::run(&args, &mut std::io::stdout().lock())),
        Command::Scheduler(args) => done(runtime().and_then(|rt| rt.block_on(cmd::scheduler::run(args)))),
        Command::Sidecar(args) => done(runtime().and_then(|rt| rt.block_on(cmd::sidecar::run(args)))),
        Command::Jobs(args) => {
            done(runtime().and_then(|rt| rt.block_on(cmd::jobs::run(args, &mut std::io::stdout().lock()))))
        }
        Command::GuardApp(args) => {
            cmd::init_logging(cmd::LogLevel::Warn);
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            done(runtime.map_err(Into::into).and_then(|rt| rt.block_on(cmd::run::guard(args))))
        }
    }
}

fn done(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => failure(&err),
    }
}

/// The exit code of a start refused because the job store is corrupt (sysexits' `EX_DATAERR`),
/// so that a supervisor can tell it from a failure a restart may cure.
const EXIT_STORE_CORRUPT: u8 = 65;

fn failure(err: &anyhow::Error) -> ExitCode {
    eprintln!("kairos: {err:#}");
    let corrupt =
        err.chain().any(|cause| matches!(cause.downcast_ref(), Some(kairos_store::StoreError::Corrupt(_))));
    if corrupt { ExitCode::from(EXIT_STORE_CORRUPT) } else { ExitCode::FAILURE }
}

/// Threads of tokio's blocking pool, where the store's reads run. Tokio's default (512) let the
/// partitions' first scans start ≈ 150 threads, each keeping its own stack and allocator heap:
/// ≈ 30 MB of RSS that bought no throughput (a read is a short CPU-bound walk of cached pages).
const BLOCKING_THREADS: usize = 16;

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_all()
        .build()?)
}

//! The `kairos` binary: CLI wiring only; the behaviour lives in the library crates.

mod cmd;

use clap::{Parser, Subcommand};

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
    /// Print when a job would fire: the next ticks of a schedule, due time, repeats and ttl,
    /// computed exactly as the scheduler computes them.
    SchedulePreview(cmd::preview::Args),
    /// Run the Scheduler service (dapr.proto.scheduler.v1) on a durable local store.
    Scheduler(cmd::scheduler::Args),
    /// Run the Dapr Jobs API for one app (the jobs part of daprd), connected to a scheduler.
    Sidecar(cmd::sidecar::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::SchedulePreview(args) => cmd::preview::run(&args, &mut std::io::stdout().lock()),
        Command::Scheduler(args) => runtime().and_then(|rt| rt.block_on(cmd::scheduler::run(args))),
        Command::Sidecar(args) => runtime().and_then(|rt| rt.block_on(cmd::sidecar::run(args))),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kairos: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

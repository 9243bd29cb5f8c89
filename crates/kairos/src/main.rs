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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::SchedulePreview(args) => cmd::preview::run(&args, &mut std::io::stdout().lock()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kairos: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

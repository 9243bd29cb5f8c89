//! `kairos-bench`: the load generator and measurement harness of kairos.
//!
//! Each subcommand is one scenario (see `scenario/`); it prints a results table and, with
//! `--json FILE`, writes the same figures as JSON. Scenarios drive either the real
//! `kairos scheduler` binary over gRPC, the full path (`kairos scheduler` + `kairos sidecar`
//! processes and a receiving gRPC app), the BullMQ peer, or the engine in-process. This is a binary crate: it may
//! depend on every kairos crate, and nothing depends on it.

mod app;
mod cli;
mod clients;
mod drive;
mod hist;
mod load;
mod peer;
mod process;
mod report;
mod scenario;
mod stack;
mod timing;

use anyhow::Context;
use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let cli::Scenario::ServeApp { threads: Some(n), .. } = &cli.scenario {
        builder.worker_threads((*n).max(1));
    }
    let runtime = builder.enable_all().build().context("cannot start the tokio runtime")?;
    runtime.block_on(cli::run(cli))
}

//! The `kairos` binary: CLI wiring only; the behaviour lives in the library crates.

use clap::Parser;

/// kairos: the Dapr Jobs building block.
#[derive(Debug, Parser)]
#[command(name = "kairos", version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}

//! What `scale` and `scheduler-rss` share: filling a fresh `kairos scheduler` with far-future
//! jobs over its Scheduler gRPC API (not the sidecar: these measure storage), then stopping it
//! for the restart they time.

use std::time::Duration;

use anyhow::bail;

use super::sized;
use crate::cli::{PayloadArgs, SchedulerArgs};
use crate::load::{self, LoadConfig, LoadResult};
use crate::report::Report;
use crate::stack::Proc;
use crate::timing;

/// Options of the scheduler, of the fill and of the stop before the restart.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FillArgs {
    #[command(flatten)]
    pub scheduler: SchedulerArgs,
    /// Far-future jobs to store [default: scale 10000000, scheduler-rss 1000000; --quick: 20000].
    #[arg(long)]
    pub jobs: Option<u64>,
    /// Stop loading after this many seconds and measure what was stored [default: scale 1800,
    /// scheduler-rss 300; --quick: scale 15, scheduler-rss 20].
    #[arg(long, value_name = "SECS")]
    pub max_load_secs: Option<f64>,
    /// Concurrent client tasks loading the jobs [default: 64].
    #[arg(long)]
    pub clients: Option<usize>,
    /// HTTP/2 connections they share [default: 8].
    #[arg(long)]
    pub channels: Option<usize>,
    #[command(flatten)]
    pub payload: PayloadArgs,
    /// Stop the loaded scheduler with SIGKILL instead of SIGTERM (the restart then recovers an
    /// uncleanly closed store).
    #[arg(long)]
    pub kill9: bool,
}

/// A scenario's full and `--quick` defaults of `--jobs` and `--max-load-secs`.
pub struct FillDefaults {
    pub jobs: (u64, u64),
    pub max_load_secs: (f64, f64),
}

/// [`FillArgs`] with every default applied.
#[derive(Debug, Clone)]
pub struct Fill {
    pub jobs: u64,
    pub max_load: Duration,
    pub clients: usize,
    pub channels: usize,
    pub payload_bytes: usize,
    pub kill9: bool,
}

impl FillArgs {
    /// These options with the scenario's `defaults` (full or `quick`) for what was not given.
    pub fn resolve(&self, defaults: &FillDefaults, quick: bool) -> Fill {
        let (jobs, quick_jobs) = defaults.jobs;
        let (secs, quick_secs) = defaults.max_load_secs;
        Fill {
            jobs: sized(self.jobs, jobs, quick_jobs, quick),
            max_load: Duration::from_secs_f64(sized(self.max_load_secs, secs, quick_secs, quick)),
            clients: self.clients.unwrap_or(64),
            channels: self.channels.unwrap_or(8),
            payload_bytes: self.payload.bytes(),
            kill9: self.kill9,
        }
    }
}

impl Fill {
    /// Writes the fill's parameters into `report`.
    pub fn params(&self, report: &mut Report) {
        report.param("jobs_target", self.jobs);
        report.param("max_load_s", self.max_load.as_secs_f64());
        report.param("clients", self.clients as u64);
        report.param("channels", self.channels as u64);
        report.param("payload_bytes", self.payload_bytes as u64);
        report.param("stop", if self.kill9 { "SIGKILL" } else { "SIGTERM" });
    }

    /// Stores the jobs (named `prefix` and a number) in the scheduler at `address`; notes in
    /// `report` the failed calls and a load cut short by `--max-load-secs`.
    ///
    /// # Errors
    /// When no job at all was stored.
    pub async fn load(&self, address: &str, prefix: &str, report: &mut Report) -> anyhow::Result<LoadResult> {
        let loaded = load::run(LoadConfig {
            address: address.to_owned(),
            clients: self.clients,
            channels: self.channels,
            jobs: Some(self.jobs),
            duration: Some(self.max_load),
            payload_bytes: self.payload_bytes,
            name_prefix: prefix.into(),
            label: format!("{} load", prefix.trim_end_matches('-')),
        })
        .await?;
        if loaded.ok == 0 {
            bail!("no job was stored: {}", loaded.first_error.as_deref().unwrap_or("no error reported"));
        }
        if let Some(error) = &loaded.first_error {
            report.note(format!("{} calls failed while loading; first: {error}", loaded.errors));
        }
        if loaded.ok < self.jobs {
            report.note(format!(
                "stopped loading at --max-load-secs: {} of {} jobs stored; figures are for {}",
                loaded.ok, self.jobs, loaded.ok
            ));
        }
        Ok(loaded)
    }

    /// Stops the loaded scheduler: SIGKILL with `--kill9`, else SIGTERM and up to `grace` to
    /// exit. Whether it exited by itself, and how long the stop took.
    ///
    /// # Errors
    /// When it cannot be signalled or polled.
    pub fn stop(&self, proc: &mut Proc, grace: Duration) -> anyhow::Result<(bool, Duration)> {
        let start = timing::now();
        let graceful = if self.kill9 {
            proc.kill9();
            false
        } else {
            proc.stop(grace)?
        };
        Ok((graceful, start.elapsed()))
    }
}

//! One module per scenario: its `Args`, its defaults (full and `--quick`), and `run`, which
//! measures and returns a [`Report`](crate::report::Report).

pub mod ceiling;
pub mod compare;
pub mod engine_fire;
pub mod fill;
pub mod full;
pub mod replicas;
pub mod scale;
pub mod scheduler_create;
pub mod scheduler_rss;

use std::path::Path;

use anyhow::Context;

/// A fresh temporary directory, under `parent` if given (else the system temp dir); removed
/// when dropped.
///
/// # Errors
/// When it cannot be created.
pub fn temp_dir(parent: Option<&Path>) -> anyhow::Result<tempfile::TempDir> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("kairos-bench-");
    match parent {
        Some(parent) => builder
            .tempdir_in(parent)
            .with_context(|| format!("cannot create a temp dir under {}", parent.display())),
        None => builder.tempdir().context("cannot create a temp dir"),
    }
}

/// `value` if given, else the full or the quick default.
pub fn sized<T>(value: Option<T>, full: T, quick_value: T, quick: bool) -> T {
    value.unwrap_or(if quick { quick_value } else { full })
}

/// Time left between the expected end of creation and the first due instant, by default.
pub const MIN_LEAD_S: f64 = 2.0;

/// The lead before the first due instant: `given`, else [`MIN_LEAD_S`] after creation is
/// expected to end, at `creates_per_s`.
pub fn lead_for(jobs: u64, given: Option<f64>, creates_per_s: f64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    given.unwrap_or(MIN_LEAD_S + jobs as f64 / creates_per_s)
}

/// Runs tried when creation overruns the (first) due instant.
pub const ATTEMPTS: usize = 3;

/// After creation of `jobs` jobs, which took `created`, ended past the (first) due instant on
/// attempt `attempt` of [`ATTEMPTS`]: the next attempt's lead, sized from `created`.
///
/// # Errors
/// On the last attempt.
pub fn overrun(
    scenario: &str,
    jobs: u64,
    created: std::time::Duration,
    attempt: usize,
) -> anyhow::Result<f64> {
    let took = created.as_secs_f64();
    if attempt >= ATTEMPTS {
        anyhow::bail!(
            "creating {jobs} jobs took {took:.1} s and overran the due instant {ATTEMPTS} times; pass a larger --lead"
        );
    }
    let longer = MIN_LEAD_S + took * 1.5;
    eprintln!("{scenario}: creation took {took:.1} s, past the due instant; again with a {longer:.0} s lead");
    Ok(longer)
}

/// A burst of one-shot jobs all due at one instant: the options `burst` and `engine-fire` share.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BurstSize {
    /// One-shot jobs all due at one instant [default: 100000; --quick: 10000].
    #[arg(long)]
    pub jobs: Option<u64>,
    /// Seconds from the start of creation to the due instant [default: 2 s after creation is
    /// expected to end, assuming 4,000 creates/s (burst) or 5,000 (engine-fire); when creation
    /// overruns it, the run is repeated afresh with a lead sized from the measured creation time].
    #[arg(long, value_name = "SECS")]
    pub lead: Option<f64>,
    /// Give up waiting for the burst after this many seconds [default: burst 120, engine-fire 600].
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
}

impl BurstSize {
    /// The job count, the first lead (creation assumed at `creates_per_s`) and the timeout
    /// (`timeout_secs` unless given).
    pub fn resolve(
        &self,
        creates_per_s: f64,
        timeout_secs: f64,
        quick: bool,
    ) -> (u64, f64, std::time::Duration) {
        let jobs = sized(self.jobs, 100_000, 10_000, quick);
        let timeout = std::time::Duration::from_secs_f64(self.timeout.unwrap_or(timeout_secs));
        (jobs, lead_for(jobs, self.lead, creates_per_s), timeout)
    }
}

/// Microseconds of CPU per operation between two readings of the same processes' CPU times,
/// per process, then their total.
pub fn cpu_per_op_us(after: &[std::time::Duration], before: &[std::time::Duration], ops: u64) -> Vec<f64> {
    #[allow(clippy::cast_precision_loss)]
    let ops = ops.max(1) as f64;
    let mut us: Vec<f64> =
        after.iter().zip(before).map(|(a, b)| a.saturating_sub(*b).as_secs_f64() * 1e6 / ops).collect();
    us.push(us.iter().sum());
    us
}

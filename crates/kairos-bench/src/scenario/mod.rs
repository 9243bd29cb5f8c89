//! One module per scenario: its `Args`, its defaults (full and `--quick`), and `run`, which
//! measures and returns a [`Report`](crate::report::Report).

pub mod ceiling;
pub mod compare;
pub mod engine_fire;
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

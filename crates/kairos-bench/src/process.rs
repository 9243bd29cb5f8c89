//! Finding the `kairos` binary; memory and disk figures of its processes.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use kairos_testing::process::proc_status_kib;

/// Finds the `kairos` binary: `explicit` if given, else `kairos` next to this executable
/// (where `cargo build --release -p kairos -p kairos-bench` puts both).
///
/// # Errors
/// When no binary is there.
pub fn find_kairos(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        if path.is_file() {
            return Ok(path.to_path_buf());
        }
        bail!("--kairos {}: no such file", path.display());
    }
    let exe = std::env::current_exe().context("cannot locate the kairos-bench executable")?;
    let sibling = exe.with_file_name("kairos");
    if sibling.is_file() {
        return Ok(sibling);
    }
    bail!(
        "no kairos binary next to {} (build it with `cargo build --release -p kairos`, or pass --kairos PATH)",
        exe.display()
    )
}

/// Resident memory of process `pid` now and at its peak (`VmRSS`, `VmHWM`), in bytes.
///
/// # Errors
/// When `/proc/<pid>/status` cannot be read or lacks the fields.
pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let kib = |field| proc_status_kib(pid, field);
    Ok(Memory { rss: kib("VmRSS:")? * 1024, peak: kib("VmHWM:")? * 1024 })
}

/// Resident memory of a process, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub rss: u64,
    pub peak: u64,
}

/// Bytes of every file under `dir` (the store's footprint on disk).
///
/// # Errors
/// When the directory cannot be read.
pub fn dir_size(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let meta = entry.metadata().with_context(|| format!("cannot stat {}", entry.path().display()))?;
        total += if meta.is_dir() { dir_size(&entry.path())? } else { meta.len() };
    }
    Ok(total)
}

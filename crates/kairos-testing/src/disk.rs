//! A small disk that fills up: a tmpfs of a fixed size mounted by the test (it needs root, as in
//! the CI container; where mounting is not allowed the caller is told and skips, saying so).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of a fixed size, unmounted when dropped.
#[derive(Debug)]
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `8m`), or says why it cannot (on stderr, `SKIPPED: …`)
    /// and returns `None`.
    ///
    /// # Panics
    /// When no temporary directory can be made.
    pub fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match mounted {
            Ok(out) if out.status.success() => Some(Tmpfs { dir }),
            Ok(out) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs (needs root): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy, so that a file still open (a failed test, a process still exiting) cannot keep
        // the mount.
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Fills the file system of `dir` with a filler file until not even a page is left; returns
/// the file (delete it to free the space).
///
/// # Panics
/// When the file cannot be created.
pub fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("create the filler file");
    let chunk = vec![0x5a_u8; 64 << 10];
    while file.write_all(&chunk).is_ok() {}
    // The last partial chunks, so that not even a page is left.
    while file.write_all(&chunk[..4096]).is_ok() {}
    path
}

//! Helpers for tests that run the real `kairos` binary.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A `kairos` child process, killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
    pub address: String,
    pub log: mpsc::Receiver<String>,
}

impl Proc {
    /// Kills the process the hard way (SIGKILL) and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Starts `kairos scheduler` on a free port over `data_dir` and waits until it listens.
pub fn start_scheduler(data_dir: &Path, extra: &[&str]) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kairos"))
        .args(["scheduler", "--port", "0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kairos scheduler");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let address = loop {
        let line = rx.recv_timeout(Duration::from_secs(60)).expect("kairos scheduler did not start");
        if line.contains("kairos scheduler listening")
            && let Some(rest) = line.split("address=").nth(1)
        {
            break rest.split_whitespace().next().unwrap_or_default().to_owned();
        }
    };
    Proc { child, address, log: rx }
}

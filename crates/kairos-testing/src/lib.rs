//! Test harnesses of kairos, for tests and benchmarks only (never a normal dependency of a
//! crate that ships): the [`JobStore`](kairos_store::JobStore) conformance suite
//! ([`job_store_conformance!`]), damaged store files ([`damage`]), real etcd processes
//! ([`etcd`]), and `kairos` child processes known ready by the JSON line they print on stdout
//! ([`process`], docs/operations.md), with the gRPC and HTTP helpers the process tests share
//! ([`grpc`], [`http`], [`wait_until`]), and the receiving app of the app-protocol tests
//! ([`app`], the `kairos-test-app` binary).
//!
//! It sits above `kairos-store` and `kairos-proto` and must never be imported by a library
//! crate's normal dependencies.

pub mod app;
pub mod conformance;
pub mod damage;
pub mod disk;
pub mod etcd;
pub mod grpc;
pub mod http;
pub mod process;
pub mod webdriver;

/// A loopback port that was free a moment ago (bound, read, released; another process may take
/// it before the caller binds it). Only for what cannot take port 0: a real `etcd`'s ports, and
/// a port that must stay the same across a restart.
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Polls `done` every 50 ms until it is true.
///
/// # Panics
/// When it is still false after `seconds` (it is for tests): "timed out waiting for {what}".
pub async fn wait_until(what: &str, seconds: u64, mut done: impl FnMut() -> bool) {
    for _ in 0..seconds * 20 {
        if done() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

//! Test harnesses of kairos, for tests and benchmarks only (never a normal dependency of a
//! crate that ships): the [`JobStore`](kairos_store::JobStore) conformance suite
//! ([`job_store_conformance!`]), real etcd processes ([`etcd`]), and `kairos` child processes
//! known ready by the JSON line they print on stdout ([`process`], docs/operations.md), with the
//! gRPC helpers the process tests share ([`grpc`]).
//!
//! It sits above `kairos-store` and `kairos-proto` and must never be imported by a library
//! crate's normal dependencies.

pub mod conformance;
pub mod disk;
pub mod etcd;
pub mod grpc;
pub mod process;

/// A loopback port that was free a moment ago (bound, read, released; another process may take
/// it before the caller binds it). Only for what cannot take port 0: a real `etcd`'s ports, and
/// a port that must stay the same across a restart.
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

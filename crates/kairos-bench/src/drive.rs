//! A closed-loop load of any call: C tasks, each with one call in flight, taking indexes from a
//! shared counter until a count or a deadline is reached. Latency histograms are per task and
//! merged at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::hist::Latencies;
use crate::timing;

/// The load stops when this many calls failed (the target is gone or the load is wrong).
const MAX_ERRORS: u64 = 100;

/// One client's call of index `i`; `Err` carries the reason.
pub type Call = Box<dyn FnMut(u64) -> BoxFuture<'static, Result<(), String>> + Send>;

/// A gRPC call as a [`Call`] result: its answer dropped, a failure as `CODE: message`.
pub fn grpc<T, F>(call: F) -> BoxFuture<'static, Result<(), String>>
where
    F: Future<Output = Result<T, tonic::Status>> + Send + 'static,
{
    Box::pin(async move { call.await.map(|_| ()).map_err(|s| status_text(&s)) })
}

/// A gRPC status as `CODE: message`.
pub fn status_text(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// What happened.
#[derive(Debug)]
pub struct Driven {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    pub latencies: Latencies,
}

impl Driven {
    /// Successful calls per second.
    pub fn rate(&self) -> f64 {
        timing::rate(self.ok, self.elapsed)
    }

    /// A results row after `keys` (what the row is of): successful calls, errors, seconds, calls
    /// per second, latency p50, p90, p99 and max in ms; headed by [`columns`].
    pub fn row(&self, keys: impl IntoIterator<Item = Value>) -> Vec<Value> {
        let s = self.latencies.summary();
        let mut row: Vec<Value> = keys.into_iter().collect();
        row.extend([
            Value::from(self.ok),
            Value::from(self.errors),
            Value::from(self.elapsed.as_secs_f64()),
            Value::from(self.rate()),
            Value::from(s.p50_ms),
            Value::from(s.p90_ms),
            Value::from(s.p99_ms),
            Value::from(s.max_ms),
        ]);
        row
    }
}

/// The columns of [`Driven::row`]: `keys`, then the count and the rate of `what` (e.g. "jobs").
pub fn columns(keys: &[&'static str], what: Counted) -> Vec<&'static str> {
    let (count, per_s) = match what {
        Counted::Calls => ("calls", "calls_per_s"),
        Counted::Jobs => ("jobs", "jobs_per_s"),
    };
    let mut columns = keys.to_vec();
    columns.extend([count, "errors", "secs", per_s, "p50_ms", "p90_ms", "p99_ms", "max_ms"]);
    columns
}

/// What a load's successful calls count, for the columns of its table.
#[derive(Debug, Clone, Copy)]
pub enum Counted {
    Calls,
    Jobs,
}

/// The closed-loop load options of the call-rate scenarios (`ceiling`, `create`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CallArgs {
    /// Concurrent clients, one call in flight each [default: 64].
    #[arg(long)]
    pub clients: Option<usize>,
    /// HTTP/2 connections they share [default: 1, as the sidecar's one connection to its app;
    /// create: those of the gRPC clients].
    #[arg(long)]
    pub connections: Option<usize>,
    /// Seconds each run lasts (ceiling: per worker count; create: per API) [default: ceiling 10,
    /// create 20; --quick: 3].
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
}

/// [`CallArgs`] with every default applied.
#[derive(Debug, Clone, Copy)]
pub struct Calls {
    pub clients: usize,
    pub connections: usize,
    pub duration: Duration,
}

impl CallArgs {
    /// These options with the defaults for what was not given (`full_secs` the scenario's full
    /// duration).
    pub fn resolve(&self, full_secs: f64, quick: bool) -> Calls {
        Calls {
            clients: self.clients.unwrap_or(64),
            connections: self.connections.unwrap_or(1),
            duration: Duration::from_secs_f64(crate::scenario::sized(self.duration, full_secs, 3.0, quick)),
        }
    }
}

impl Calls {
    /// Writes the load's parameters into `report`.
    pub fn params(&self, report: &mut crate::report::Report) {
        report.param("clients", self.clients as u64);
        report.param("connections", self.connections as u64);
        report.param("duration_s", self.duration.as_secs_f64());
    }
}

struct Shared {
    next: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
    done: AtomicBool,
    first_error: std::sync::Mutex<Option<String>>,
}

/// Runs one task per entry of `clients` until `jobs` indexes were taken or `duration` passed.
///
/// # Errors
/// When a client task panics.
pub async fn drive(
    clients: Vec<Call>,
    jobs: Option<u64>,
    duration: Option<Duration>,
    label: &str,
) -> anyhow::Result<Driven> {
    let shared = Arc::new(Shared {
        next: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        done: AtomicBool::new(false),
        first_error: std::sync::Mutex::new(None),
    });
    let start = timing::now();
    let deadline = duration.map(|d| start + d);
    let progress = tokio::spawn(progress(shared.clone(), label.to_owned(), jobs));
    let mut tasks = Vec::with_capacity(clients.len());
    for mut call in clients {
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Latencies::new()?;
            loop {
                if deadline.is_some_and(|d| timing::now() >= d)
                    || shared.errors.load(Ordering::Relaxed) >= MAX_ERRORS
                {
                    break;
                }
                let index = shared.next.fetch_add(1, Ordering::Relaxed);
                if jobs.is_some_and(|n| index >= n) {
                    break;
                }
                let sent = timing::now();
                match call(index).await {
                    Ok(()) => {
                        latencies.record(sent.elapsed());
                        shared.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                        let mut first =
                            shared.first_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        first.get_or_insert(error);
                    }
                }
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Latencies::new()?;
    for task in tasks {
        latencies.merge(&task.await.context("a load task failed")??)?;
    }
    let elapsed = start.elapsed();
    shared.done.store(true, Ordering::Relaxed);
    let _ = progress.await;
    let first_error = shared.first_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    Ok(Driven {
        ok: shared.ok.load(Ordering::Relaxed),
        errors: shared.errors.load(Ordering::Relaxed),
        first_error,
        elapsed,
        latencies,
    })
}

async fn progress(shared: Arc<Shared>, label: String, jobs: Option<u64>) {
    let start = timing::now();
    let mut last = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        if shared.done.load(Ordering::Relaxed) {
            return;
        }
        let ok = shared.ok.load(Ordering::Relaxed);
        let of = jobs.map(|n| format!("/{n}")).unwrap_or_default();
        eprintln!(
            "  [{label} {:>4.0}s] {ok}{of} calls OK, {}/s, {} errors",
            start.elapsed().as_secs_f64(),
            ok - last,
            shared.errors.load(Ordering::Relaxed)
        );
        last = ok;
    }
}

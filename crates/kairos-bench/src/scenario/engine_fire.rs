//! `engine-fire`: how fast the engine fires a burst, in-process, without gRPC.
//!
//! An [`Engine`] on [`SystemClock`] over a store in a temp dir (redb) or in memory; one
//! subscriber acknowledges every trigger at once (`Outcome::Success`). N one-shot jobs are
//! created first, all due at the same whole second, far enough ahead that creation ends before
//! it; then the clock runs. Measured from the due instant: the first trigger, the last
//! acknowledgement, and the moment every completion is durable (the store count reaches 0,
//! since a one-shot job is deleted after its tick). The in-memory store separates the cost of
//! storage from the cost of the engine.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jiff::Timestamp;
use kairos_core::{Clock, JobKey, JobSpec, Payload, SystemClock};
use kairos_engine::{Engine, EngineConfig, Outcome, Registration};
use kairos_store::memory::MemoryStore;
use kairos_store::redb::RedbStore;
use kairos_store::{JobStore, PutMode};
use serde_json::Value;

use super::{BurstSize, overrun, temp_dir};
use crate::hist::Latencies;
use crate::report::Report;
use crate::stack::APP_ID;
use crate::timing::{self, ms};

/// Creation rate assumed when choosing the first due instant.
const ASSUMED_CREATES_PER_S: f64 = 5_000.0;

/// The stores to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, strum::IntoStaticStr)]
#[strum(serialize_all = "kebab-case")] // clap's names for a ValueEnum
pub enum StoreKind {
    /// `RedbStore` in a temp dir: durable, group-committed.
    Redb,
    /// `MemoryStore`: nothing durable; isolates the engine's own cost.
    Memory,
}

/// Options of `engine-fire`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub burst: BurstSize,
    /// Stores to run on, in order [default: redb,memory].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub stores: Option<Vec<StoreKind>>,
    /// Concurrent tasks creating the jobs [default: 64].
    #[arg(long)]
    pub writers: Option<usize>,
    /// Partitions of the store [default: the store's default].
    #[arg(long)]
    pub partitions: Option<u32>,
    /// Directory under which the redb temp dir is made [default: the system temp dir].
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<std::path::PathBuf>,
}

/// One attempt's end.
#[derive(Debug)]
enum Attempt {
    Fired(Box<Fired>),
    /// Creation took this long and ended after the due instant.
    Overran(Duration),
}

/// One run's figures.
#[derive(Debug)]
struct Fired {
    lead: f64,
    create: Duration,
    /// Store commits and the operations in them while creating.
    create_commits: u64,
    create_ops: Option<u64>,
    slack: Duration,
    first: Duration,
    all_acked: Duration,
    durable: Duration,
    lateness: Latencies,
    /// Store commits and the operations in them, from the due instant to the end.
    commits: u64,
    ops: Option<u64>,
}

/// Runs the scenario.
///
/// # Errors
/// When a store cannot be opened, creation fails or overruns the due instant, or the burst
/// does not complete in time.
pub async fn run(args: &Args, quick: bool) -> anyhow::Result<Report> {
    let (jobs, lead, timeout) = args.burst.resolve(ASSUMED_CREATES_PER_S, 600.0, quick);
    let stores = args.stores.clone().unwrap_or_else(|| vec![StoreKind::Redb, StoreKind::Memory]);
    let writers = args.writers.unwrap_or(64).max(1);
    let partitions = args.partitions.unwrap_or(kairos_store::DEFAULT_PARTITIONS);

    let mut report = Report::new("engine-fire");
    report.param("jobs", jobs);
    report.param("writers", writers as u64);
    report.param("partitions", partitions);
    report.param("window", EngineConfig::default().window as u64);

    let mut rows = Vec::new();
    for kind in stores {
        let name: &str = kind.into();
        let mut lead = lead;
        let mut attempt = 0;
        let fired = loop {
            attempt += 1;
            let dir = temp_dir(args.work_dir.as_deref())?;
            let (store, counters) = open_store(kind, dir.path(), partitions)?;
            eprintln!("engine-fire: {jobs} jobs on the {name} store, due {lead:.1} s after the start");
            match fire(store, &counters, jobs, writers, lead, timeout).await? {
                Attempt::Fired(fired) => break *fired,
                Attempt::Overran(create) => lead = overrun("engine-fire", jobs, create, attempt)?,
            }
        };
        let l = fired.lateness.summary();
        rows.push(vec![
            Value::from(name),
            Value::from(jobs),
            Value::from(fired.lead),
            Value::from(fired.create.as_secs_f64()),
            Value::from(timing::rate(jobs, fired.create)),
            per_commit(fired.create_ops.unwrap_or(jobs), fired.create_commits),
            Value::from(fired.slack.as_secs_f64()),
            Value::from(ms(fired.first)),
            Value::from(fired.all_acked.as_secs_f64()),
            Value::from(fired.durable.as_secs_f64()),
            Value::from(timing::rate(jobs, fired.durable)),
            Value::from(l.p50_ms),
            Value::from(l.p99_ms),
            Value::from(fired.commits),
            fired.ops.map_or(Value::from("-"), |ops| per_commit(ops, fired.commits)),
        ]);
    }
    let table = report.table(
        "one burst: create N jobs, then all due at once (times from the due instant)",
        &[
            "store",
            "jobs",
            "lead_s",
            "create_s",
            "creates_per_s",
            "creates_per_commit",
            "slack_s",
            "first_ms",
            "acked_s",
            "durable_s",
            "triggers_per_s",
            "late_p50_ms",
            "late_p99_ms",
            "commits",
            "ops_per_commit",
        ],
    );
    for row in rows {
        table.row(row);
    }
    report.note("triggers_per_s = jobs / durable_s; late_* = trigger received minus due instant");
    report.note(
        "lead_s = due instant after the start of creation; slack_s = its distance from the end of creation",
    );
    report.note(
        "commits, ops_per_commit: store commits from the due instant on; an op is one store call \
         (a partition's batch of completions is one); memory: one commit per call, no group commit",
    );
    report.finish();
    Ok(report)
}

/// Reads a store's commit count and (if known) operation count.
type Counters = Box<dyn Fn() -> (u64, Option<u64>) + Send>;

fn open_store(kind: StoreKind, dir: &Path, partitions: u32) -> anyhow::Result<(Arc<dyn JobStore>, Counters)> {
    Ok(match kind {
        StoreKind::Redb => {
            let path = dir.join("jobs.redb");
            let store = RedbStore::open(&path, partitions)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let stats = store.clone();
            let counters: Counters = Box::new(move || {
                let s = stats.stats();
                (s.commits, Some(s.ops))
            });
            (Arc::new(store), counters)
        }
        StoreKind::Memory => {
            let store = MemoryStore::new(partitions);
            let faults = store.faults();
            (Arc::new(store), Box::new(move || (faults.commits(), None)))
        }
    })
}

#[allow(clippy::cast_precision_loss)]
fn per_commit(ops: u64, commits: u64) -> Value {
    Value::from(ops as f64 / commits.max(1) as f64)
}

async fn fire(
    store: Arc<dyn JobStore>,
    counters: &Counters,
    jobs: u64,
    writers: usize,
    lead: f64,
    timeout: Duration,
) -> anyhow::Result<Attempt> {
    let clock = SystemClock;
    let config = EngineConfig { default_tz: jiff::tz::TimeZone::UTC, ..EngineConfig::default() };
    let engine = Engine::new(store.clone(), Arc::new(clock), config);
    engine.own_all();
    let mut subscription = engine.subscribe(&Registration {
        namespace: "default".into(),
        app_id: Some(APP_ID.into()),
        actor_types: vec![],
    });

    // The due instant: a whole second (so its RFC 3339 text is exact), mapped onto the
    // monotonic clock the measurements use.
    let wall_start = clock.now();
    let start = timing::now();
    let due = Timestamp::from_second(wall_start.as_second() + lead.ceil() as i64)
        .context("due instant out of range")?;
    let due_at = start + due.duration_since(wall_start).unsigned_abs();

    let (commits_start, ops_start) = counters();
    create(&engine, jobs, writers, &due.to_string()).await?;
    let created = timing::now();
    let create = created - start;
    let (commits_created, ops_created) = counters();
    if created >= due_at {
        engine.shutdown().await;
        return Ok(Attempt::Overran(create));
    }
    let slack = due_at - created;

    // Acknowledge every trigger at once and note when each arrives.
    let acker = tokio::spawn(async move {
        let mut lateness = Latencies::new()?;
        let mut first: Option<Instant> = None;
        let mut acked = 0;
        while acked < jobs {
            let Some(trigger) = subscription.recv().await else {
                bail!("the engine stopped after {acked} of {jobs} triggers");
            };
            let now = timing::now();
            first.get_or_insert(now);
            lateness.record(now.saturating_duration_since(due_at));
            subscription.complete(trigger.id, Outcome::Success);
            acked += 1;
        }
        Ok((first, timing::now(), lateness, subscription))
    });

    tokio::time::sleep_until(due_at.into()).await;
    let (commits_before, ops_before) = counters();
    let (first, last_ack, lateness, subscription) = tokio::time::timeout(timeout, acker)
        .await
        .with_context(|| format!("not every trigger was acknowledged within {timeout:?}"))?
        .context("the acknowledging task failed")??;
    let first = first.context("no trigger arrived")?;

    // Every one-shot job is deleted once its completion is durable.
    let deadline = timing::now() + timeout;
    loop {
        let left = store.count().await.context("cannot count the stored jobs")?;
        if left == 0 {
            break;
        }
        if timing::now() > deadline {
            bail!("{left} jobs still stored {timeout:?} after the last acknowledgement");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let durable = timing::now();
    let (commits_after, ops_after) = counters();
    drop(subscription);
    engine.shutdown().await;

    Ok(Attempt::Fired(Box::new(Fired {
        lead,
        create,
        create_commits: commits_created - commits_start,
        create_ops: ops_created.zip(ops_start).map(|(a, b)| a - b),
        slack,
        first: first.saturating_duration_since(due_at),
        all_acked: last_ack.saturating_duration_since(due_at),
        durable: durable.saturating_duration_since(due_at),
        lateness,
        commits: commits_after - commits_before,
        ops: ops_after.zip(ops_before).map(|(a, b)| a - b),
    })))
}

/// Creates `jobs` one-shot jobs due at `due_time` with `writers` concurrent tasks.
async fn create(engine: &Engine, jobs: u64, writers: usize, due_time: &str) -> anyhow::Result<()> {
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let engine = engine.clone();
            let next = next.clone();
            let due_time = due_time.to_owned();
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= jobs {
                        return Ok::<_, anyhow::Error>(());
                    }
                    let key = JobKey::app("default", APP_ID, format!("fire-{i:010}"));
                    let spec = JobSpec {
                        due_time: Some(due_time.clone()),
                        data: Some(Payload {
                            type_url: "kairos-bench/payload".into(),
                            value: vec![b'x'; 64],
                        }),
                        ..JobSpec::default()
                    };
                    engine
                        .schedule(key, spec, PutMode::CreateOnly)
                        .await
                        .with_context(|| format!("cannot schedule job {i} due at {due_time}"))?;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.context("a creating task failed")??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn store_names_in_reports_are_the_flag_values() {
        for kind in StoreKind::value_variants() {
            let name: &str = (*kind).into();
            assert_eq!(kind.to_possible_value().unwrap().get_name(), name);
        }
    }
}

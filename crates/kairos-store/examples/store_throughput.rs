//! Durable puts per second with 64 concurrent writers against `RedbStore` in a temporary
//! directory, or against `EtcdStore` on an etcd the example starts (a measurement, not a test).
//!
//! `cargo run --release -p kairos-store --example store_throughput [-- <puts> [<writers> [redb|etcd]]]`
//! (defaults: 200000 puts, 64 writers, redb).
//!
//! With `etcd` it then measures `apply` too: every writer records progress of its own jobs, one
//! mutation per call (the writer task groups concurrent calls), then 40 mutations per call.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use kairos_core::JobKey;
use kairos_core::timeline::Progress;
use kairos_store::etcd::{EtcdConfig, EtcdStore};
use kairos_store::redb::RedbStore;
use kairos_store::{JobStore, Mutation, PutMode, StoredJob};
use kairos_testing::conformance::job;
use kairos_testing::etcd::EtcdProcess;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let total: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(200_000);
    let writers: usize = std::env::args().nth(2).map(|s| s.parse()).transpose()?.unwrap_or(64);
    let backend = std::env::args().nth(3).unwrap_or_else(|| "redb".into());
    let per_writer = total.div_ceil(writers);
    match backend.as_str() {
        "redb" => {
            let dir = tempfile::tempdir()?;
            let store =
                Arc::new(RedbStore::open(dir.path().join("jobs.redb"), kairos_store::DEFAULT_PARTITIONS)?);
            let (puts, elapsed) = put_all(store.clone(), writers, per_writer).await?;
            let stats = store.stats();
            println!(
                "redb: {puts} durable puts by {writers} writers in {:.2?}: {:.0} puts/s, {} commits, {:.1} ops/commit (largest {})",
                elapsed,
                puts as f64 / elapsed.as_secs_f64(),
                stats.commits,
                stats.ops as f64 / stats.commits.max(1) as f64,
                stats.largest_batch,
            );
            assert_eq!(store.count().await?, stats.ops);
        }
        "etcd" => {
            let etcd = EtcdProcess::start().await?;
            let store = Arc::new(EtcdStore::connect(EtcdConfig::new(etcd.endpoints())).await?);
            let (puts, elapsed) = put_all(store.clone(), writers, per_writer).await?;
            println!(
                "etcd: {puts} puts by {writers} writers in {:.2?}: {:.0} puts/s",
                elapsed,
                puts as f64 / elapsed.as_secs_f64()
            );
            assert_eq!(store.count().await?, puts as u64);
            for batch in [1, 40] {
                let (mutations, elapsed) = apply_all(store.clone(), writers, per_writer, batch).await?;
                println!(
                    "etcd: {mutations} progress mutations by {writers} writers, {batch} per apply call, in {:.2?}: {:.0} mutations/s",
                    elapsed,
                    mutations as f64 / elapsed.as_secs_f64()
                );
            }
        }
        other => return Err(format!("unknown backend {other:?} (redb or etcd)").into()),
    }
    Ok(())
}

fn key(w: usize, i: usize) -> JobKey {
    JobKey::app("default", format!("app-{w}"), format!("job-{i:08}"))
}

/// `writers` tasks each put `per_writer` new jobs; the puts done and the wall time.
async fn put_all<S: JobStore>(
    store: Arc<S>,
    writers: usize,
    per_writer: usize,
) -> Result<(usize, std::time::Duration), Box<dyn std::error::Error>> {
    // Measuring wall time is this example's whole point; the store itself never reads a clock.
    #[allow(clippy::disallowed_methods)]
    let start = std::time::Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..per_writer {
                    store.put(job(key(w, i), Timestamp::UNIX_EPOCH), PutMode::CreateOnly).await?;
                }
                Ok::<_, kairos_store::StoreError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok((writers * per_writer, start.elapsed()))
}

/// `writers` tasks each record progress of their own jobs, `batch` mutations per `apply` call.
async fn apply_all<S: JobStore>(
    store: Arc<S>,
    writers: usize,
    per_writer: usize,
    batch: usize,
) -> Result<(usize, std::time::Duration), Box<dyn std::error::Error>> {
    let mut owned: Vec<Vec<StoredJob>> = Vec::with_capacity(writers);
    for w in 0..writers {
        let mut jobs = Vec::with_capacity(per_writer);
        for i in 0..per_writer {
            jobs.push(store.get(&key(w, i)).await?.ok_or("job missing")?);
        }
        owned.push(jobs);
    }
    #[allow(clippy::disallowed_methods)]
    let start = std::time::Instant::now();
    let tasks: Vec<_> = owned
        .into_iter()
        .map(|jobs| {
            let store = store.clone();
            tokio::spawn(async move {
                for chunk in jobs.chunks(batch) {
                    let mutations = chunk
                        .iter()
                        .map(|j| Mutation::Progress {
                            key: j.key.clone(),
                            incarnation: j.incarnation,
                            progress: Progress {
                                count: j.progress.count + 1,
                                last_scheduled: Some(j.next_due),
                                attempts: 0,
                            },
                            next_due: j.next_due + SignedDuration::from_secs(1),
                        })
                        .collect();
                    store.apply(mutations).await?;
                }
                Ok::<_, kairos_store::StoreError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok((writers * per_writer, start.elapsed()))
}

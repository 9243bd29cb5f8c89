//! Durable puts per second with 64 concurrent writers against `RedbStore` in a temporary
//! directory (a measurement, not a test).
//!
//! `cargo run --release -p kairos-store --example store_throughput [-- <puts> [<writers>]]`
//! (defaults: 200000 puts, 64 writers).

use std::sync::Arc;

use jiff::Timestamp;
use kairos_core::JobKey;
use kairos_store::conformance::job;
use kairos_store::redb::RedbStore;
use kairos_store::{JobStore, PutMode};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let total: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(200_000);
    let writers: usize = std::env::args().nth(2).map(|s| s.parse()).transpose()?.unwrap_or(64);
    let per_writer = total.div_ceil(writers);
    let dir = tempfile::tempdir()?;
    let store = Arc::new(RedbStore::open(dir.path().join("jobs.redb"), kairos_store::DEFAULT_PARTITIONS)?);

    // Measuring wall time is this example's whole point; the store itself never reads a clock.
    #[allow(clippy::disallowed_methods)]
    let start = std::time::Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..per_writer {
                    let key = JobKey::app("default", format!("app-{w}"), format!("job-{i:08}"));
                    store.put(job(key, Timestamp::UNIX_EPOCH), PutMode::CreateOnly).await?;
                }
                Ok::<_, kairos_store::StoreError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let elapsed = start.elapsed();

    let stats = store.stats();
    let puts = stats.ops;
    println!(
        "{puts} durable puts by {writers} writers in {:.2?}: {:.0} puts/s, {} commits, {:.1} ops/commit (largest {})",
        elapsed,
        puts as f64 / elapsed.as_secs_f64(),
        stats.commits,
        puts as f64 / stats.commits.max(1) as f64,
        stats.largest_batch,
    );
    assert_eq!(store.count().await?, puts);
    Ok(())
}

//! Fills a data dir's job store with many jobs, fast, for measuring the dashboard against a big
//! store (docs/dashboard.md, "Performance"):
//!
//! ```text
//! cargo run --release -p kairos-dashboard --example load_jobs -- DATA_DIR COUNT [APPS]
//! kairos scheduler --data-dir DATA_DIR --dashboard-port 8088
//! ```
//!
//! Writes straight into the redb store (the scheduler must not be running): `COUNT` jobs named
//! `job-0000001`… spread over `APPS` apps (default 10), `@every 1h` with their first ticks spread
//! over the next hour, many puts at once so that the store groups them into few commits.

use std::sync::Arc;

use futures::StreamExt;
use jiff::SignedDuration;
use kairos_core::{Clock, JobKey, JobSpec, JobStats, Progress, SystemClock};
use kairos_store::redb::RedbStore;
use kairos_store::{JobStore, PutMode, StoredJob};

/// Puts under way at once.
const IN_FLIGHT: usize = 2048;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: load_jobs DATA_DIR COUNT [APPS]";
    let dir = std::path::PathBuf::from(args.next().ok_or(usage)?);
    let count: u64 = args.next().ok_or(usage)?.parse()?;
    let apps: u64 = args.next().map_or(Ok(10), |a| a.parse())?;
    std::fs::create_dir_all(&dir)?;
    let store: Arc<dyn JobStore> =
        Arc::new(RedbStore::open(dir.join("jobs.redb"), kairos_store::DEFAULT_PARTITIONS)?);
    let now = SystemClock.now();
    let started = kairos_core::Stopwatch::start();
    let spec = JobSpec { schedule: Some("@every 1h".into()), ..JobSpec::default() }.with_default_policy();
    let mut puts = futures::stream::iter(0..count)
        .map(|i| {
            let store = store.clone();
            let spec = spec.clone();
            async move {
                let key = JobKey::app("default", format!("load-app-{}", i % apps), format!("job-{i:07}"));
                // First ticks spread over the hour, to the millisecond.
                let offset = SignedDuration::from_millis(i64::try_from((i * 7919) % 3_600_000).unwrap_or(0));
                let job = StoredJob {
                    key,
                    spec,
                    created: now,
                    incarnation: i,
                    version: 0,
                    progress: Progress::default(),
                    next_due: now + offset,
                    staged: false,
                    paused: false,
                    stats: JobStats::default(),
                    manual: Vec::new(),
                };
                store.put(job, PutMode::Overwrite).await
            }
        })
        .buffer_unordered(IN_FLIGHT);
    let mut done = 0u64;
    while let Some(put) = puts.next().await {
        put?;
        done += 1;
        if done.is_multiple_of(100_000) {
            eprintln!("{done} jobs stored ({:.0?})", started.elapsed());
        }
    }
    println!("{done} jobs stored in {:.1?}; the store holds {}", started.elapsed(), store.count().await?);
    Ok(())
}

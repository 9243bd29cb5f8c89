//! The conformance suite on the redb store, plus what is specific to it: group commit.

use std::sync::Arc;

use kairos_core::JobKey;
use kairos_store::redb::RedbStore;
use kairos_store::{JobStore, PutMode};
use tempfile::TempDir;

/// A fresh store in a temporary directory that lives as long as the guard.
fn fresh(partitions: u32) -> (RedbStore, TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = RedbStore::open(dir.path().join("jobs.redb"), partitions).expect("open store");
    (store, dir)
}

kairos_testing::job_store_conformance!(redb_store, || async { fresh(8) });

kairos_testing::job_store_conformance!(redb_store_default_partitions, || async {
    fresh(kairos_store::DEFAULT_PARTITIONS)
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits() {
    const WRITERS: usize = 400;
    let (store, _dir) = fresh(8);
    let store = Arc::new(store);
    let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|i| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let job = kairos_testing::conformance::job(
                    JobKey::app("ns", "app", format!("job-{i}")),
                    jiff::Timestamp::UNIX_EPOCH,
                );
                barrier.wait().await;
                store.put(job, PutMode::CreateOnly).await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(store.count().await.unwrap(), WRITERS as u64);
    let stats = store.stats();
    assert_eq!(stats.ops, WRITERS as u64);
    assert_eq!(stats.failed_commits, 0);
    assert!(stats.commits * 4 <= stats.ops, "expected grouped commits, got {stats:?}");
    assert!(stats.largest_batch > 1, "{stats:?}");
}

#[tokio::test]
async fn refused_operation_in_a_batch_fails_alone() {
    let (store, _dir) = fresh(8);
    let store = Arc::new(store);
    let key = JobKey::app("ns", "app", "taken");
    let first = kairos_testing::conformance::job(key.clone(), jiff::Timestamp::UNIX_EPOCH);
    store.put(first.clone(), PutMode::CreateOnly).await.unwrap();
    // Queue a refused create and good writes together; whatever batches they share, only the
    // refused one fails.
    let refused = {
        let store = store.clone();
        let job = kairos_testing::conformance::job(key.clone(), jiff::Timestamp::UNIX_EPOCH);
        tokio::spawn(async move { store.put(job, PutMode::CreateOnly).await })
    };
    let good: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            let job = kairos_testing::conformance::job(
                JobKey::app("ns", "app", format!("ok-{i}")),
                jiff::Timestamp::UNIX_EPOCH,
            );
            tokio::spawn(async move { store.put(job, PutMode::CreateOnly).await })
        })
        .collect();
    assert!(matches!(refused.await.unwrap(), Err(kairos_store::StoreError::AlreadyExists(_))));
    for g in good {
        g.await.unwrap().unwrap();
    }
    assert_eq!(store.get(&key).await.unwrap(), Some(first));
    assert_eq!(store.count().await.unwrap(), 21);
}

//! The redb store on a disk that fills up and is freed again, without a restart: writes fail at
//! once with the cause, reads go on, writes resume by themselves, and no acknowledged job is
//! lost. The disk is a small tmpfs mounted by the test (it needs root, as in the CI container);
//! where mounting is not allowed the test says so and returns (skipped, not failed).

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kairos_core::{JobKey, Payload};
use kairos_store::redb::RedbStore;
use kairos_store::{JobStore, PutMode, StoreError, StoreFault, StoredJob};
use kairos_testing::conformance::job;
use kairos_testing::disk::{Tmpfs, fill};

fn a_job(i: usize) -> StoredJob {
    let mut job = job(
        JobKey::app("ns", "app", format!("job-{i:06}")),
        Timestamp::UNIX_EPOCH + SignedDuration::from_secs(i as i64),
    );
    job.spec.data = Some(Payload { type_url: "t".into(), value: vec![7; 512] });
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_at_once_and_writes_resume_once_space_is_freed() {
    let Some(disk) = Tmpfs::mount("8m") else { return };
    let path = disk.path().join("jobs.redb");
    let store = RedbStore::open(&path, 16).unwrap();
    let mut acked = Vec::new();
    for i in 0..100 {
        store.put(a_job(i), PutMode::CreateOnly).await.unwrap();
        acked.push(i);
    }

    let filler = fill(disk.path());
    // redb may still have room inside its file; write until the disk says no.
    let mut next = 100;
    let first_failure = loop {
        assert!(next < 20_000, "the disk never filled up");
        let watch = kairos_core::Stopwatch::start();
        match store.put(a_job(next), PutMode::CreateOnly).await {
            Ok(_) => acked.push(next),
            Err(err) => break (err, watch.elapsed()),
        }
        next += 1;
    };
    let (err, took) = first_failure;
    assert!(matches!(err, StoreError::Full { .. }), "{err:?}");
    assert!(err.to_string().contains("no space left on device"), "{err}");
    assert!(took < Duration::from_secs(2), "the failed write took {took:?}");
    assert!(matches!(store.fault().await, Some(StoreFault::Full(_))), "{:?}", store.fault().await);

    // Later writes are refused at once with the same cause, and nothing of them is stored.
    for i in next..next + 20 {
        let watch = kairos_core::Stopwatch::start();
        let err = store.put(a_job(i), PutMode::CreateOnly).await.unwrap_err();
        assert!(matches!(err, StoreError::Full { .. }), "{err:?}");
        assert!(watch.elapsed() < Duration::from_millis(500), "a refusal took {:?}", watch.elapsed());
    }
    // Reads go on.
    assert_eq!(store.count().await.unwrap(), acked.len() as u64);
    assert!(store.get(&a_job(0).key).await.unwrap().is_some());
    assert_eq!(store.scan_all(None, usize::MAX).await.unwrap().len(), acked.len());

    // Space comes back: writes resume by themselves, without a restart.
    std::fs::remove_file(filler).unwrap();
    let watch = kairos_core::Stopwatch::start();
    let resumed = next + 20;
    loop {
        match store.put(a_job(resumed), PutMode::CreateOnly).await {
            Ok(_) => break,
            Err(StoreError::Full { .. }) if watch.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("writes did not resume after {:?}: {err:?}", watch.elapsed()),
        }
    }
    acked.push(resumed);
    assert_eq!(store.fault().await, None);
    assert!(store.stats().reopens >= 1, "{:?}", store.stats());
    for i in resumed + 1..resumed + 50 {
        store.put(a_job(i), PutMode::CreateOnly).await.unwrap();
        acked.push(i);
    }

    // Every acknowledged job is there, now and after a reopen; no refused one is.
    let stored = |jobs: Vec<StoredJob>| jobs.into_iter().map(|j| j.key).collect::<Vec<_>>();
    let expected: Vec<JobKey> = acked.iter().map(|&i| a_job(i).key).collect();
    assert_eq!(stored(store.scan_all(None, usize::MAX).await.unwrap()), expected);
    drop(store);
    let store = RedbStore::open(&path, 16).unwrap();
    assert_eq!(stored(store.scan_all(None, usize::MAX).await.unwrap()), expected);
}

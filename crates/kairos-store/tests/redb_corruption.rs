//! A damaged redb file: found at open (refused as corrupt, naming the file) or at run time
//! (the call fails, later writes are refused with the cause), never a panic.

use std::path::PathBuf;

use jiff::Timestamp;
use kairos_core::JobKey;
use kairos_store::redb::RedbStore;
use kairos_store::{JobStore, PutMode, StoreError, StoreFault};
use kairos_testing::conformance::job;
use kairos_testing::damage::{compacted_store_file, damaged};

fn at(secs: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(secs)
}

/// A temporary directory holding a closed, compacted store file of a few MiB (6000 jobs, so
/// that corruption at any offset lands in live pages): the directory, the file, its bytes.
async fn clean_store() -> (tempfile::TempDir, PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.redb");
    let jobs = (0..6000).map(|i| {
        let mut job = job(JobKey::app("ns", "app", format!("job-{i:06}")), at(i));
        job.spec.data =
            Some(kairos_core::Payload { type_url: "t".into(), value: vec![(i % 251) as u8; 200] });
        job
    });
    let clean = compacted_store_file(&path, jobs).await;
    (dir, path, clean)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_file_fails_open_as_corrupt_and_names_the_file() {
    let (_dir, path, clean) = clean_store().await;
    for (what, bytes) in damaged(&clean) {
        std::fs::write(&path, &bytes).unwrap();
        let err = RedbStore::open(&path, 16).unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt(why) if why.contains(&path.display().to_string())),
            "{what}: {err:?}"
        );
    }
    // The undamaged bytes open again, with every job.
    std::fs::write(&path, &clean).unwrap();
    assert_eq!(RedbStore::open(&path, 16).unwrap().count().await.unwrap(), 6000);
}

/// Reads every job in key order, then every partition's due index.
async fn read_everything(store: &RedbStore) -> Result<(), StoreError> {
    let mut after = None;
    loop {
        let page = store.scan_all(after.as_ref(), 100).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
    }
    for partition in 0..store.partitions() {
        let mut cursor = None;
        loop {
            let page = store.scan_due(partition, cursor.as_ref(), 100).await?;
            let Some(last) = page.last() else { break };
            cursor = Some(kairos_store::DueCursor { due: last.next_due, key: last.key.clone() });
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corruption_found_at_run_time_fails_the_call_and_refuses_later_writes() {
    use std::os::unix::fs::FileExt;
    let (_dir, path, clean) = clean_store().await;
    for (what, bytes) in damaged(&clean) {
        std::fs::write(&path, &clean).unwrap();
        let store = RedbStore::open(&path, 16).unwrap();
        assert_eq!(store.fault().await, None, "{what}");
        // Damaged while open, behind redb's back (the file is written in place).
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().write_all_at(&bytes, 0).unwrap();
        // Reading every job and every due entry runs into the damage (it may land in either
        // table): an error, never a panic.
        let err = match read_everything(&store).await {
            Ok(()) => panic!("{what}: every page read back"),
            Err(err) => err,
        };
        assert!(matches!(err, StoreError::Corrupt(_)), "{what}: {err:?}");
        assert!(matches!(store.fault().await, Some(StoreFault::Corrupt(_))), "{what}");
        // A create is now refused with the cause, not accepted.
        let job = job(JobKey::app("ns", "app", "late"), at(1));
        let err = store.put(job, PutMode::CreateOnly).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{what}: {err:?}");
        let stats = store.stats();
        drop(store);
        assert_eq!(stats.commits, 0, "{what}: nothing was written");
    }
}

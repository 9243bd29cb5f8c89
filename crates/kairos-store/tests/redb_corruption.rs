//! A damaged redb file: found at open (refused as corrupt, naming the file) or at run time
//! (the call fails, later writes are refused with the cause), never a panic.

use std::path::Path;

use jiff::Timestamp;
use kairos_core::JobKey;
use kairos_store::redb::RedbStore;
use kairos_store::{JobStore, PutMode, StoreError, StoreFault};
use kairos_testing::conformance::job;
use redb::Database;

fn at(secs: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(secs)
}

/// A closed store file of a few MiB, so that corruption at any offset lands in live pages.
async fn store_file(path: &Path, jobs: usize) -> Vec<u8> {
    let store = RedbStore::open(path, 16).unwrap();
    let mut puts = Vec::new();
    for i in 0..jobs {
        let mut job = job(JobKey::app("ns", "app", format!("job-{i:06}")), at(i as i64));
        job.spec.data =
            Some(kairos_core::Payload { type_url: "t".into(), value: vec![(i % 251) as u8; 200] });
        let store = store.clone();
        puts.push(tokio::spawn(async move { store.put(job, PutMode::CreateOnly).await }));
    }
    for put in puts {
        put.await.unwrap().unwrap();
    }
    drop(store);
    // Compacted, so that no free page is left for the damage to land in harmlessly.
    let mut db = Database::open(path).unwrap();
    while db.compact().unwrap() {}
    drop(db);
    std::fs::read(path).unwrap()
}

/// One byte flipped every 64 KiB, and 4 KiB of garbage in the middle of the file.
fn damaged(clean: &[u8]) -> [(&'static str, Vec<u8>); 2] {
    let mut flipped = clean.to_vec();
    for offset in (4096..flipped.len()).step_by(64 << 10) {
        flipped[offset] ^= 0xff;
    }
    let mut garbage = clean.to_vec();
    let middle = (garbage.len() / 2) & !4095;
    for (i, byte) in garbage[middle..middle + 4096].iter_mut().enumerate() {
        *byte = (i * 7 + 13) as u8;
    }
    [("a byte flipped every 64 KiB", flipped), ("4 KiB of garbage mid-file", garbage)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_file_fails_open_as_corrupt_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.redb");
    let clean = store_file(&path, 6000).await;
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
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.redb");
    let clean = store_file(&path, 6000).await;
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

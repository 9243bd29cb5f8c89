//! The etcd store when etcd's space quota is used up (a real etcd with a small
//! `--quota-backend-bytes`): writes fail with the cause, reads go on, the fault is reported, and
//! writes work again once an operator compacts, defragments and disarms the NOSPACE alarm.

use jiff::{SignedDuration, Timestamp};
use kairos_core::timeline::Progress;
use kairos_core::{JobKey, Owner, Payload};
use kairos_store::etcd::{EtcdConfig, EtcdStore};
use kairos_store::{JobStore, OwnerScope, PutMode, StoreError, StoreFault, StoredJob};
use kairos_testing::conformance::{job, progress_of};
use kairos_testing::etcd::EtcdProcess;

fn at(secs: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + SignedDuration::from_secs(secs)
}

fn small(i: usize) -> StoredJob {
    job(JobKey::app("ns", "app", format!("job-{i:03}")), at(i as i64))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_up_quota_fails_writes_with_the_cause_keeps_reads_and_recovers_once_freed() {
    let etcd = EtcdProcess::start_with_args(&["--quota-backend-bytes", &(2u32 << 20).to_string()])
        .await
        .expect("start etcd (scripts/ensure-deps installs it)");
    let config = EtcdConfig::new(etcd.endpoints()).with_prefix("/quota").with_partitions(4);
    let store = EtcdStore::connect(config).await.unwrap();
    for i in 0..10 {
        store.put(small(i), PutMode::CreateOnly).await.unwrap();
    }
    assert_eq!(store.fault().await, None);

    // One large job written over and over: every version stays in etcd's history until a
    // compaction, as progress writes do.
    let mut churn = job(JobKey::app("ns", "app", "churn"), at(100));
    churn.spec.data = Some(Payload { type_url: "t".into(), value: vec![0x42; 64 << 10] });
    let mut writes = 0;
    let err = loop {
        assert!(writes < 1000, "the quota was never reached");
        match store.put(churn.clone(), PutMode::Overwrite).await {
            Ok(_) => writes += 1,
            Err(err) => break err,
        }
    };
    assert!(matches!(err, StoreError::Full { .. }), "after {writes} writes: {err:?}");
    let message = err.to_string();
    assert!(message.contains("no space left on device"), "{message}");
    assert!(message.contains("database space exceeded"), "{message}");
    assert!(matches!(store.fault().await, Some(StoreFault::Full(why)) if why.contains("NOSPACE")));

    // Reads go on: single gets, lists, counts, and the due index the partitions page from.
    assert!(store.get(&small(0).key).await.unwrap().is_some());
    assert_eq!(
        store.list(&OwnerScope::owner("ns", &Owner::app("app"), ""), None, 100).await.unwrap().len(),
        11
    );
    assert_eq!(store.count().await.unwrap(), 11);
    let mut due = 0;
    for p in 0..store.partitions() {
        due += store.scan_due(p, None, 100).await.unwrap().len();
    }
    assert_eq!(due, 11);

    // Every kind of write is refused with the cause.
    let err = store.put(small(10), PutMode::CreateOnly).await.unwrap_err();
    assert!(matches!(err, StoreError::Full { .. }), "{err:?}");
    let first = store.get(&small(0).key).await.unwrap().unwrap();
    let progress =
        progress_of(&first, Progress { count: 1, last_scheduled: Some(at(0)), attempts: 0 }, at(50));
    let err = store.apply(vec![progress.clone()]).await.unwrap_err();
    assert!(matches!(err, StoreError::Full { .. }), "{err:?}");

    // The operator frees space: writes work again, and the fault is gone.
    etcd.free_space().await.unwrap();
    assert_eq!(store.fault().await, None);
    store.put(small(10), PutMode::CreateOnly).await.unwrap();
    store.apply(vec![progress]).await.unwrap();
    assert_eq!(store.get(&small(0).key).await.unwrap().unwrap().next_due, at(50));
    assert_eq!(store.count().await.unwrap(), 12);
}

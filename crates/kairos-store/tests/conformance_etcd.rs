//! The conformance suite on the etcd store against a real etcd (each test starts its own, see
//! `kairos_testing::etcd`), plus what is specific to etcd: the recorded partition count,
//! prefixes, surviving a `kill -9` of etcd, fencing, the change feed, and large applies and bulk
//! deletes that need more than one transaction.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kairos_core::timeline::Progress;
use kairos_core::{JobKey, Owner};
use kairos_store::etcd::{EtcdConfig, EtcdStore, JobChange, JobWatchError, owner_key};
use kairos_store::{JobStore, Mutation, OwnerScope, PutMode, StoreError, StoredJob};
use kairos_testing::conformance::{job, progress_of, put_concurrently};
use kairos_testing::etcd::EtcdProcess;

/// A store under `prefix` on a fresh etcd; the etcd lives as long as the guard.
async fn fresh(prefix: &str, partitions: u32) -> (EtcdStore, EtcdProcess) {
    let etcd = EtcdProcess::start().await.expect("start etcd (scripts/ensure-deps installs it)");
    let store = EtcdStore::connect(config(&etcd, prefix, partitions)).await.expect("connect to etcd");
    (store, etcd)
}

kairos_testing::job_store_conformance!(etcd_store, || fresh("/conformance", 8));

fn at(secs: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + SignedDuration::from_secs(secs)
}

fn config(etcd: &EtcdProcess, prefix: &str, partitions: u32) -> EtcdConfig {
    EtcdConfig::new(etcd.endpoints()).with_prefix(prefix).with_partitions(partitions)
}

/// The progress of `count` ticks, the last at `at(0)`.
fn counted(count: u32) -> Progress {
    Progress { count, last_scheduled: Some(at(0)), attempts: 0 }
}

/// Creates every job at once, each from its own task; the answers in order.
async fn creates(store: &EtcdStore, jobs: &[StoredJob]) -> Vec<Result<Option<StoredJob>, StoreError>> {
    let store: std::sync::Arc<dyn JobStore> = std::sync::Arc::new(store.clone());
    put_concurrently(&store, jobs.iter().map(|j| (j.clone(), PutMode::CreateOnly)).collect()).await
}

/// Every due entry of every partition, as `(due, key)`, sorted.
async fn due_entries(store: &EtcdStore) -> Vec<(Timestamp, JobKey)> {
    let mut out = Vec::new();
    for p in 0..store.partitions() {
        for j in store.scan_due(p, None, usize::MAX).await.unwrap() {
            out.push((j.next_due, j.key));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_with_another_partition_count_keeps_the_recorded_one() {
    let etcd = EtcdProcess::start().await.unwrap();
    let first = EtcdStore::connect(config(&etcd, "/p", 16)).await.unwrap();
    assert_eq!(first.partitions(), 16);
    let again = EtcdStore::connect(config(&etcd, "/p", 64)).await.unwrap();
    assert_eq!(again.partitions(), 16, "the recorded partition count wins");
    let other = EtcdStore::connect(config(&etcd, "/q", 64)).await.unwrap();
    assert_eq!(other.partitions(), 64, "another prefix is another store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_holding_garbage_meta_is_corrupt() {
    let etcd = EtcdProcess::start().await.unwrap();
    let mut client = etcd.client().await.unwrap();
    client.put("/g/meta/partitions", "many", None).await.unwrap();
    client.put("/g/meta/format", "kairos-store/1", None).await.unwrap();
    let err = EtcdStore::connect(config(&etcd, "/g", 8)).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    client.put("/h/meta/partitions", "8", None).await.unwrap();
    client.put("/h/meta/format", "something-else", None).await.unwrap();
    let err = EtcdStore::connect(config(&etcd, "/h", 8)).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_with_different_prefixes_on_one_etcd_do_not_see_each_other() {
    let etcd = EtcdProcess::start().await.unwrap();
    let a = EtcdStore::connect(config(&etcd, "/a", 4)).await.unwrap();
    // "/ab" starts with "/a": the separator keeps them apart.
    let ab = EtcdStore::connect(config(&etcd, "/ab", 4)).await.unwrap();
    let key = JobKey::app("ns", "app", "job");
    let ja = job(key.clone(), at(1));
    let jab = job(key.clone(), at(2));
    a.put(ja.clone(), PutMode::CreateOnly).await.unwrap();
    ab.put(jab.clone(), PutMode::CreateOnly).await.expect("the same key in another prefix is free");
    assert_eq!(a.get(&key).await.unwrap(), Some(ja.clone()));
    assert_eq!(ab.get(&key).await.unwrap(), Some(jab.clone()));
    assert_eq!((a.count().await.unwrap(), ab.count().await.unwrap()), (1, 1));
    assert_eq!(a.scan_all(None, 100).await.unwrap(), vec![ja.clone()]);
    assert_eq!(due_entries(&ab).await, vec![(at(2), key.clone())]);
    let app = OwnerScope::owner("ns", &Owner::app("app"), "");
    assert_eq!(ab.delete_by_scope(&app).await.unwrap(), vec![key.clone()]);
    assert_eq!(a.get(&key).await.unwrap(), Some(ja), "a bulk delete stays in its prefix");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_etcd_makes_calls_unavailable_then_the_same_store_recovers_with_every_acknowledged_write() {
    let mut etcd = EtcdProcess::start().await.unwrap();
    let mut cfg = config(&etcd, "/crash", 8);
    cfg.request_timeout = Duration::from_secs(2);
    cfg.connect_timeout = Duration::from_millis(500);
    let store = EtcdStore::connect(cfg).await.unwrap();
    let mut acknowledged = Vec::new();
    for i in 0..50 {
        let j = job(JobKey::app("ns", "app", format!("job-{i:02}")), at(i));
        store.put(j.clone(), PutMode::CreateOnly).await.unwrap();
        acknowledged.push(j);
    }
    let first = acknowledged[0].clone();
    store.apply(vec![progress_of(&first, counted(1), at(100))]).await.unwrap();
    acknowledged[0].progress = counted(1);
    acknowledged[0].next_due = at(100);

    let mut watch = store.watch_jobs(store.current_revision().await.unwrap()).await.unwrap();
    etcd.kill9().unwrap();
    // A watch does not survive the kill: it reports it, so the caller watches again.
    let ended =
        tokio::time::timeout(Duration::from_secs(10), watch.next()).await.expect("watch ends in time");
    assert!(matches!(ended, Some(Err(JobWatchError::Unavailable(_)))), "{ended:?}");
    let later = job(JobKey::app("ns", "app", "later"), at(1));
    let err = store.put(later.clone(), PutMode::CreateOnly).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }) && err.is_retryable(), "{err:?}");
    let err = store.get(&first.key).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    let err = store.apply(vec![progress_of(&acknowledged[1], counted(1), at(200))]).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    let err = store.scan_due(0, None, 10).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");

    etcd.restart().await.unwrap();
    // The client reconnects by itself; retry as a caller would, for a bounded time.
    let mut recovered = false;
    for _ in 0..100 {
        match store.put(later.clone(), PutMode::CreateOnly).await {
            Ok(_) => {
                recovered = true;
                break;
            }
            Err(e) => assert!(e.is_retryable(), "{e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the store did not recover within 10 s of etcd's restart");
    store.apply(vec![progress_of(&acknowledged[1], counted(1), at(200))]).await.unwrap();
    acknowledged[1].progress = counted(1);
    acknowledged[1].next_due = at(200);
    acknowledged.push(later);
    // A new watch on the same store works again.
    let mut watch = store.watch_jobs(store.current_revision().await.unwrap()).await.unwrap();
    let after = job(JobKey::app("ns", "app", "after-restart"), at(1));
    store.put(after.clone(), PutMode::CreateOnly).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), watch.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(event.change, JobChange::Put(Box::new(after.clone())));
    acknowledged.push(after);
    acknowledged.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(store.scan_all(None, usize::MAX).await.unwrap(), acknowledged, "acknowledged writes survive");
    assert_eq!(due_entries(&store).await.len(), acknowledged.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_apply_writes_nothing_of_a_partition_owned_by_another_replica() {
    let (store, etcd) = fresh("/f", 4).await;
    let store = store.with_fence("replica-a");
    let mut client = etcd.client().await.unwrap();
    assert_eq!(store.fence().as_deref(), Some("replica-a"));
    // Two jobs in different partitions.
    let mut jobs: Vec<StoredJob> = Vec::new();
    for i in 0.. {
        let j = job(JobKey::app("ns", "app", format!("j{i}")), at(1));
        if jobs.iter().all(|o| store.partition_of(&o.key) != store.partition_of(&j.key)) {
            jobs.push(j);
        }
        if jobs.len() == 2 {
            break;
        }
    }
    let (mine, theirs) = (jobs[0].clone(), jobs[1].clone());
    let (pm, pt) = (store.partition_of(&mine.key), store.partition_of(&theirs.key));
    // put/get/delete are never fenced.
    for j in [&mine, &theirs] {
        store.put(j.clone(), PutMode::CreateOnly).await.unwrap();
    }
    // No owner key at all: fenced.
    let err = store.apply(vec![progress_of(&mine, counted(1), at(5))]).await.unwrap_err();
    assert!(matches!(err, StoreError::Fenced { partition } if partition == pm), "{err:?}");
    assert!(!err.is_retryable());
    client.put(owner_key("/f", pm), "replica-a", None).await.unwrap();
    client.put(owner_key("/f", pt), "replica-b", None).await.unwrap();
    store.apply(vec![progress_of(&mine, counted(1), at(5))]).await.expect("own partition");
    let err = store.apply(vec![progress_of(&theirs, counted(1), at(5))]).await.unwrap_err();
    assert!(matches!(err, StoreError::Fenced { partition } if partition == pt), "{err:?}");
    // A call spanning both partitions writes nothing at all.
    let err = store
        .apply(vec![progress_of(&mine, counted(2), at(6)), progress_of(&theirs, counted(2), at(6))])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Fenced { partition } if partition == pt), "{err:?}");
    // Even a call whose mutations are all skipped learns it is fenced.
    let err =
        store.apply(vec![Mutation::Complete { key: theirs.key.clone(), incarnation: 0 }]).await.unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err:?}");
    let stored_mine = store.get(&mine.key).await.unwrap().unwrap();
    assert_eq!((stored_mine.progress.count, stored_mine.next_due), (1, at(5)));
    assert_eq!(store.get(&theirs.key).await.unwrap(), Some(theirs.clone()), "fenced partition untouched");
    // Concurrent calls grouped by the writer: the fenced ones fail alone.
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            let j = if i % 2 == 0 { mine.clone() } else { theirs.clone() };
            tokio::spawn(async move { store.apply(vec![progress_of(&j, counted(10 + i), at(10))]).await })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        let result = call.await.unwrap();
        if i % 2 == 0 {
            result.expect("own partition, grouped with fenced calls");
        } else {
            assert!(matches!(result, Err(StoreError::Fenced { partition }) if partition == pt), "{result:?}");
        }
    }
    assert_eq!(store.get(&theirs.key).await.unwrap(), Some(theirs.clone()));
    // The other replica takes over: the unfenced store of replica-b writes, replica-a is fenced.
    client.put(owner_key("/f", pm), "replica-b", None).await.unwrap();
    let err = store.apply(vec![progress_of(&mine, counted(99), at(99))]).await.unwrap_err();
    assert!(matches!(err, StoreError::Fenced { partition } if partition == pm), "{err:?}");
    store.set_fence(Some("replica-b".into()));
    store.apply(vec![progress_of(&theirs, counted(3), at(7))]).await.expect("replica-b owns it");
    store.delete(&mine.key).await.unwrap().expect("delete is not fenced");
    store.set_fence(None);
    store
        .apply(vec![Mutation::Complete { key: theirs.key.clone(), incarnation: theirs.incarnation }])
        .await
        .unwrap();
    assert_eq!(store.count().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_the_records_mod_revisions_in_reads_and_in_the_feed() {
    let (store, _etcd) = fresh("/v", 4).await;
    let mut watch = store.watch_jobs(store.current_revision().await.unwrap()).await.unwrap();
    let stamp = u64::MAX / 2;
    let j = StoredJob { version: stamp, ..job(JobKey::app("ns", "app", "j"), at(1)) };
    store.put(j.clone(), PutMode::CreateOnly).await.unwrap();
    let revision = u64::try_from(store.current_revision().await.unwrap()).unwrap();
    let read = store.get(&j.key).await.unwrap().unwrap().version;
    assert_eq!(read, revision, "the create's revision, not the stamp put ({stamp})");
    let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("watch event in time")
        .expect("watch open")
        .expect("no watch error");
    assert_eq!(u64::try_from(event.revision).unwrap(), revision);
    match event.change {
        JobChange::Put(job) => assert_eq!(job.version, revision),
        other => panic!("expected the put, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_watch_reports_puts_overwrites_deletes_in_order_then_compaction() {
    let (store, etcd) = fresh("/w", 4).await;
    let other = EtcdStore::connect(config(&etcd, "/w2", 4)).await.unwrap();
    let start = store.current_revision().await.unwrap();
    let mut watch = store.watch_jobs(start).await.unwrap();
    let a = job(JobKey::app("ns", "app", "a"), at(1));
    let a2 = job(a.key.clone(), at(2));
    let b = job(JobKey::app("ns", "app", "b"), at(3));
    store.put(a.clone(), PutMode::CreateOnly).await.unwrap();
    other.put(b.clone(), PutMode::CreateOnly).await.unwrap(); // another prefix: not seen
    store.put(a2.clone(), PutMode::Overwrite).await.unwrap();
    store.put(b.clone(), PutMode::CreateOnly).await.unwrap();
    store.apply(vec![progress_of(&b, counted(1), at(4))]).await.unwrap();
    store.delete(&a.key).await.unwrap();
    let mut b_progressed = b.clone();
    b_progressed.progress = counted(1);
    b_progressed.next_due = at(4);
    let expected = vec![
        JobChange::Put(Box::new(a.clone())),
        JobChange::Put(Box::new(a2.clone())),
        JobChange::Put(Box::new(b.clone())),
        JobChange::Put(Box::new(b_progressed.clone())),
        JobChange::Deleted(a.key.clone()),
    ];
    let mut seen = Vec::new();
    let mut revisions = Vec::new();
    while seen.len() < expected.len() {
        let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("watch event in time")
            .expect("watch open")
            .expect("no watch error");
        revisions.push(event.revision);
        seen.push(event.change);
    }
    assert_eq!(seen, expected);
    assert!(revisions.windows(2).all(|w| w[0] < w[1]) && revisions[0] > start, "{revisions:?}");
    let last = *revisions.last().unwrap();
    assert!(store.current_revision().await.unwrap() >= last);

    // Resume after a revision: only what came later.
    let mut resumed = store.watch_jobs(revisions[2]).await.unwrap();
    let next = resumed.next().await.unwrap().unwrap();
    assert_eq!((next.revision, next.change), (revisions[3], JobChange::Put(Box::new(b_progressed))));

    // A resync reads at one revision.
    let (rev, jobs) = store.scan_all_at(0, None, 100).await.unwrap();
    assert!(rev >= last);
    assert_eq!(jobs.len(), 1);

    // Compaction past the start revision: a distinct error.
    let mut client = etcd.client().await.unwrap();
    client.compact(last, None).await.unwrap();
    let mut stale = store.watch_jobs(start).await.unwrap();
    let err =
        tokio::time::timeout(Duration::from_secs(10), stale.next()).await.unwrap().unwrap().unwrap_err();
    assert!(
        matches!(err, JobWatchError::Compacted { compact_revision } if compact_revision == last),
        "{err:?}"
    );
    assert!(stale.next().await.is_none(), "the watch ends after its error");
    let err = store.scan_all_at(start, None, 10).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_applies_and_bulk_deletes_span_several_transactions() {
    let (store, _etcd) = fresh("/big", 8).await;
    let jobs: Vec<StoredJob> =
        (0..300).map(|i| job(JobKey::app("ns", "bulk", format!("job-{i:03}")), at(i))).collect();
    for answer in creates(&store, &jobs).await {
        answer.unwrap();
    }
    store.put(job(JobKey::app("ns", "other", "keep"), at(1)), PutMode::CreateOnly).await.unwrap();
    // 300 jobs in one call: more than one transaction (40 jobs each).
    let mutations: Vec<Mutation> = jobs.iter().map(|j| progress_of(j, counted(1), at(1000))).collect();
    store.apply(mutations).await.unwrap();
    let stored =
        store.list(&OwnerScope::owner("ns", &Owner::app("bulk"), ""), None, usize::MAX).await.unwrap();
    assert_eq!(stored.len(), 300);
    assert!(stored.iter().all(|j| j.progress.count == 1 && j.next_due == at(1000)));
    assert_eq!(due_entries(&store).await.iter().filter(|(d, _)| *d == at(1000)).count(), 300);
    // 300 jobs deleted in chunks of at most 127; the other owner stays.
    let mut deleted = store.delete_by_scope(&OwnerScope::owner("ns", &Owner::app("bulk"), "")).await.unwrap();
    deleted.sort();
    assert_eq!(deleted, jobs.iter().map(|j| j.key.clone()).collect::<Vec<_>>());
    assert_eq!(store.count().await.unwrap(), 1);
    assert_eq!(due_entries(&store).await.len(), 1);
    let scope = OwnerScope::owner("ns", &Owner::app("other"), "");
    assert_eq!(store.delete_by_scope(&scope).await.unwrap().len(), 1);
    assert_eq!(store.count().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_applies_are_grouped_and_all_land() {
    let (store, _etcd) = fresh("/g", 8).await;
    let jobs: Vec<StoredJob> =
        (0..64).map(|i| job(JobKey::app("ns", "app", format!("j{i}")), at(i))).collect();
    for j in &jobs {
        store.put(j.clone(), PutMode::CreateOnly).await.unwrap();
    }
    // Several rounds of progress per job, from concurrent callers; the last one per job wins.
    let calls: Vec<_> = jobs
        .iter()
        .cloned()
        .map(|j| {
            let store = store.clone();
            tokio::spawn(async move {
                for round in 1..=5 {
                    store.apply(vec![progress_of(&j, counted(round), at(1000 + i64::from(round)))]).await?;
                }
                Ok::<_, StoreError>(())
            })
        })
        .collect();
    for c in calls {
        c.await.unwrap().unwrap();
    }
    for j in &jobs {
        let stored = store.get(&j.key).await.unwrap().unwrap();
        assert_eq!((stored.progress.count, stored.next_due), (5, at(1005)), "{}", j.key);
    }
    assert_eq!(due_entries(&store).await.len(), 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_overwrites_applies_and_deletes_of_one_job_leave_job_and_due_index_consistent() {
    let (store, etcd) = fresh("/race", 4).await;
    let key = JobKey::app("ns", "app", "hot");
    let first = job(key.clone(), at(0));
    store.put(first.clone(), PutMode::CreateOnly).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..8i64 {
        let store = store.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..15i64 {
                let n = w * 100 + i;
                match n % 3 {
                    // Overwrites move the due entry and change the incarnation.
                    0 => drop(store.put(job(key.clone(), at(n)), PutMode::Overwrite).await.unwrap()),
                    // Progress of whatever incarnation is stored now (it may be replaced meanwhile).
                    1 => {
                        if let Some(current) = store.get(&key).await.unwrap() {
                            store
                                .apply(vec![progress_of(&current, counted(1), at(10_000 + n))])
                                .await
                                .unwrap();
                        }
                    }
                    _ if i % 5 == 2 => drop(store.delete(&key).await.unwrap()),
                    _ => drop(store.put(job(key.clone(), at(n)), PutMode::Overwrite).await.unwrap()),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stored = store.get(&key).await.unwrap();
    let due = due_entries(&store).await;
    match stored {
        Some(j) => {
            assert_eq!(due, vec![(j.next_due, key.clone())], "exactly one due entry, at the job's time")
        }
        None => assert!(due.is_empty(), "a deleted job left due entries {due:?}"),
    }
    // And nothing else is left under the due prefix (scan_due skips stale entries, etcd must not hold any).
    let mut client = etcd.client().await.unwrap();
    let raw = client
        .get("/race/due/", Some(etcd_client::GetOptions::new().with_prefix().with_count_only()))
        .await
        .unwrap();
    assert_eq!(raw.count(), i64::try_from(due.len()).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_applies_of_large_jobs_are_split_into_transactions_under_the_request_limit() {
    let (store, _etcd) = fresh("/large", 8).await;
    // 24 jobs of 300 KB: about 7 MB in all, far above etcd's 1.5 MiB request limit and the
    // client's default 4 MiB response limit.
    let mut jobs = Vec::new();
    for i in 0..24u8 {
        let mut j = job(JobKey::app("ns", "app", format!("big-{i:02}")), at(1));
        j.spec.data = Some(kairos_core::Payload { type_url: "t".into(), value: vec![i; 300 * 1024] });
        store.put(j.clone(), PutMode::CreateOnly).await.unwrap();
        jobs.push(j);
    }
    let calls: Vec<_> = jobs
        .iter()
        .cloned()
        .map(|j| {
            let store = store.clone();
            tokio::spawn(async move { store.apply(vec![progress_of(&j, counted(1), at(50))]).await })
        })
        .collect();
    for c in calls {
        c.await.unwrap().unwrap();
    }
    let stored = store.scan_all(None, usize::MAX).await.unwrap();
    assert_eq!(stored.len(), 24);
    for (s, j) in stored.iter().zip(&jobs) {
        assert_eq!((s.progress.count, s.next_due, &s.spec.data), (1, at(50), &j.spec.data));
    }
    assert_eq!(
        store
            .scan_due(store.partition_of(&jobs[0].key), None, 100)
            .await
            .unwrap()
            .iter()
            .filter(|j| j.key == jobs[0].key)
            .count(),
        1
    );
}

/// A job named `name` whose payload has `bytes` bytes.
fn sized(name: &str, bytes: usize) -> StoredJob {
    let mut j = job(JobKey::app("ns", "app", name), at(1));
    j.spec.data = Some(kairos_core::Payload { type_url: "t".into(), value: vec![7; bytes] });
    j
}

/// Creates `puts` at once: every one lands but `refused`, which etcd refuses as invalid; then
/// the store holds exactly the others, whole, with their due entries.
async fn creates_land_but_one(store: &EtcdStore, puts: &[StoredJob], refused: &JobKey) {
    let mut stored = Vec::new();
    for (answer, j) in creates(store, puts).await.into_iter().zip(puts) {
        if j.key == *refused {
            assert!(matches!(answer, Err(StoreError::Invalid { .. })), "{answer:?}");
        } else {
            assert_eq!(answer.unwrap(), None, "{}", j.key);
            stored.push(j.clone());
        }
    }
    stored.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(
        store.scan_all(None, usize::MAX).await.unwrap(),
        stored,
        "every job but the refused one, whole"
    );
    let mut expected: Vec<(Timestamp, JobKey)> = stored.iter().map(|j| (j.next_due, j.key.clone())).collect();
    expected.sort();
    assert_eq!(due_entries(store).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_large_jobs_span_transactions_and_a_job_too_large_fails_alone() {
    let (store, _etcd) = fresh("/largeputs", 8).await;
    // 16 jobs of 400 KB (two fit one transaction's byte budget), one of 1.3 MiB (alone, under
    // etcd's 1.5 MiB request limit), one of 1.8 MiB (etcd refuses it) and small ones around them.
    let mut puts: Vec<StoredJob> = (0..16).map(|i| sized(&format!("big-{i:02}"), 400 * 1024)).collect();
    puts.push(sized("huge", 1300 * 1024));
    puts.extend((0..40).map(|i| sized(&format!("small-{i:02}"), 10)));
    let too_large = sized("too-large", 1800 * 1024);
    puts.insert(20, too_large.clone());
    creates_land_but_one(&store, &puts, &too_large.key).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_still_land_one_by_one_when_etcd_refuses_their_shared_transaction() {
    // An etcd with limits far below its defaults refuses the grouped transactions as invalid:
    // each job is then written alone, and only the one too large for etcd fails.
    let etcd = EtcdProcess::start_with_args(&["--max-txn-ops", "16", "--max-request-bytes", "200000"])
        .await
        .expect("start etcd (scripts/ensure-deps installs it)");
    let store = EtcdStore::connect(config(&etcd, "/strict", 8)).await.unwrap();
    // 30 small jobs (one transaction by our limits: too many operations for this etcd), 5 of
    // 100 KB (one transaction by bytes: too large for it) and one of 250 KB (too large alone).
    let mut puts: Vec<StoredJob> = (0..30).map(|i| sized(&format!("small-{i:02}"), 10)).collect();
    puts.extend((0..5).map(|i| sized(&format!("mid-{i}"), 100 * 1000)));
    let too_large = sized("too-large", 250 * 1000);
    puts.push(too_large.clone());
    creates_land_but_one(&store, &puts, &too_large.key).await;
}

/// The writer commits the transactions of the calls queued together at once when no job is in
/// two of them, and one after the other when one is: every partition's call lands, and the calls
/// of one job land in the order they were queued, whatever else is in the batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_queued_together_all_land_and_one_jobs_calls_keep_their_order() {
    let (store, _etcd) = fresh("/together", 64).await;
    let jobs: Vec<StoredJob> =
        (0..200).map(|i| job(JobKey::app("ns", "app", format!("j{i:03}")), at(1))).collect();
    let same = job(JobKey::app("ns", "app", "same"), at(1));
    assert!(creates(&store, &jobs).await.iter().all(Result::is_ok));
    store.put(same.clone(), PutMode::CreateOnly).await.unwrap();
    let mut same_count = 0;
    for round in 0..4u32 {
        // Queued in this order (join_all polls each call once, in order, before any answer):
        // a call per job and, in even rounds, a call on `same` after every tenth, each with a
        // higher count. Odd rounds touch no job twice, so their transactions go together.
        let mut calls = Vec::new();
        for (i, j) in jobs.iter().enumerate() {
            let count = round * 1000 + u32::try_from(i).unwrap() + 1;
            calls.push(vec![progress_of(j, counted(count), at(10 + i64::from(count)))]);
            if round % 2 == 0 && i % 10 == 9 {
                calls.push(vec![progress_of(&same, counted(count), at(10 + i64::from(count)))]);
                same_count = count;
            }
        }
        let answers = futures::future::join_all(calls.into_iter().map(|m| store.apply(m))).await;
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        for (i, j) in jobs.iter().enumerate() {
            let count = round * 1000 + u32::try_from(i).unwrap() + 1;
            let stored = store.get(&j.key).await.unwrap().expect("stored");
            assert_eq!(stored.progress, counted(count), "{} in round {round}", j.key.name);
        }
        let stored = store.get(&same.key).await.unwrap().expect("stored");
        assert_eq!(stored.progress, counted(same_count), "the last call on one job wins, round {round}");
        assert_eq!(stored.next_due, at(10 + i64::from(same_count)));
    }
    assert_eq!(due_entries(&store).await.len(), 201, "one due entry per job");
}

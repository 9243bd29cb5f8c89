//! The redb store keeps what it acknowledged: across a clean reopen, and across a `kill -9`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kairos_core::timeline::Progress;
use kairos_core::{JobKey, Owner};
use kairos_store::redb::RedbStore;
use kairos_store::{DueCursor, JobStore, PutMode, StoredJob};
use kairos_testing::conformance::{job, progress_of};

/// Set in the child process of [`acknowledged_writes_survive_kill_9`]: the store file to write.
const CHILD_ENV: &str = "KAIROS_STORE_CRASH_CHILD";

fn at(secs: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + SignedDuration::from_secs(secs)
}

/// Every due entry of every partition, in due order.
async fn due_index(store: &RedbStore) -> Vec<DueCursor> {
    let mut out = Vec::new();
    for p in 0..store.partitions() {
        out.extend(
            store
                .scan_due(p, None, usize::MAX)
                .await
                .unwrap()
                .into_iter()
                .map(|j| DueCursor { due: j.next_due, key: j.key }),
        );
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopened_store_has_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.redb");
    let (jobs, due) = {
        let store = RedbStore::open(&path, 16).unwrap();
        for i in 0..200 {
            store
                .put(
                    job(JobKey::app("ns", format!("app-{}", i % 7), format!("job-{i}")), at(i)),
                    PutMode::CreateOnly,
                )
                .await
                .unwrap();
        }
        let first = store.get(&JobKey::app("ns", "app-0", "job-0")).await.unwrap().unwrap();
        let progress = Progress { count: 1, last_scheduled: Some(at(0)), attempts: 0 };
        store.apply(vec![progress_of(&first, progress, at(1000))]).await.unwrap();
        store.delete(&JobKey::app("ns", "app-1", "job-1")).await.unwrap().unwrap();
        let app_2 = kairos_store::OwnerScope::owner("ns", &Owner::app("app-2"), "");
        assert_eq!(store.delete_by_scope(&app_2).await.unwrap().len(), 29);
        (store.scan_all(None, usize::MAX).await.unwrap(), due_index(&store).await)
        // The store is dropped here: its writer stops and the file closes.
    };
    assert_eq!(jobs.len(), 200 - 1 - 29);

    let store = RedbStore::open(&path, 64).unwrap();
    assert_eq!(store.partitions(), 16, "the recorded partition count wins");
    assert_eq!(store.scan_all(None, usize::MAX).await.unwrap(), jobs);
    assert_eq!(due_index(&store).await, due);
    let first = store.get(&JobKey::app("ns", "app-0", "job-0")).await.unwrap().unwrap();
    assert_eq!((first.progress.count, first.next_due), (1, at(1000)));
    assert_eq!(store.count().await.unwrap(), jobs.len() as u64);
}

/// The child's side of [`acknowledged_writes_survive_kill_9`]: writes until killed, printing
/// `PUT <name>` once a put is acknowledged and `PROG <name>` once its progress is. Does nothing
/// unless started by the parent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child_writes_until_killed() {
    let Ok(path) = std::env::var(CHILD_ENV) else { return };
    let store = Arc::new(RedbStore::open(Path::new(&path), 8).unwrap());
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let name = format!("w{w}-{i}");
                    let j = job(JobKey::app("ns", "app", name.clone()), at(i));
                    store.put(j.clone(), PutMode::CreateOnly).await.unwrap();
                    println!("PUT {name}");
                    let progress = Progress { count: 1, last_scheduled: Some(at(i)), attempts: 0 };
                    let m = progress_of(&j, progress, at(i + 1));
                    store.apply(vec![m]).await.unwrap();
                    println!("PROG {name}");
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    const ACKS_BEFORE_KILL: usize = 400;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.redb");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child_writes_until_killed", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while lines.iter().filter(|l: &&String| l.starts_with("PUT ")).count() < ACKS_BEFORE_KILL {
        match line_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => lines.push(line),
            Err(e) => {
                let _ = child.kill();
                panic!("child stopped acknowledging after {} lines: {e}", lines.len());
            }
        }
    }
    // SIGKILL, in the middle of the writes.
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    // Everything the child printed before it died was acknowledged.
    lines.extend(line_rx.try_iter());

    let store = RedbStore::open(&path, 8).unwrap();
    let (mut puts, mut progs) = (0, 0);
    for line in &lines {
        let (what, name) = match line.split_once(' ') {
            Some((what @ ("PUT" | "PROG"), name)) => (what, name),
            _ => continue,
        };
        let stored: Option<StoredJob> = store.get(&JobKey::app("ns", "app", name)).await.unwrap();
        let stored = stored.unwrap_or_else(|| panic!("acknowledged job {name} lost"));
        if what == "PROG" {
            progs += 1;
            assert_eq!(stored.progress.count, 1, "acknowledged progress of {name} lost");
        } else {
            puts += 1;
        }
    }
    assert!(puts >= ACKS_BEFORE_KILL && progs > 0, "{puts} puts, {progs} progress writes checked");
    assert!(store.count().await.unwrap() >= puts as u64);
}

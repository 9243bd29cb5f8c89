//! A replica on a real etcd (started by the test on loopback ports), with the change feed
//! played by the test as the scheduler's mirror plays it, but late: the feed lags the owner's
//! own writes by more than a tick interval, as a busy or slow watch can. The engine and the etcd
//! store are the real ones; only the lag is the test's. Real time, a few seconds.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{config, every, key};
use kairos_core::SystemClock;
use kairos_engine::{Engine, Outcome, Registration, Subscription, Trigger};
use kairos_store::etcd::{EtcdConfig, EtcdStore, JobChange, JobEvent};
use kairos_store::{JobStore, PutMode};
use kairos_testing::etcd::EtcdProcess;

/// Longest wait for a trigger that is due.
const PATIENCE: Duration = Duration::from_secs(10);

/// The change feed, collected as it comes and handed to the engine only when the test says.
#[derive(Clone, Default)]
struct LateFeed {
    held: Arc<Mutex<Vec<JobEvent>>>,
}

impl LateFeed {
    /// Collects every job event after `revision`.
    async fn watch(store: &EtcdStore, revision: i64) -> LateFeed {
        let feed = LateFeed::default();
        let mut watch = store.watch_jobs(revision).await.expect("watch the jobs");
        let held = feed.held.clone();
        tokio::spawn(async move {
            while let Some(Ok(event)) = watch.next().await {
                held.lock().unwrap().push(event);
            }
        });
        feed
    }

    /// Waits until `n` events are held.
    async fn wait_for(&self, n: usize) {
        tokio::time::timeout(PATIENCE, async {
            while self.held.lock().unwrap().len() < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{n} feed events within {PATIENCE:?}"));
    }

    /// Hands the oldest held event to `engine`, as the scheduler's mirror does.
    async fn pass_one(&self, engine: &Engine) -> JobEvent {
        let event = self.held.lock().unwrap().remove(0);
        let revision = u64::try_from(event.revision).unwrap();
        match event.change.clone() {
            JobChange::Put(job) => engine.upsert_from_store(*job).await,
            JobChange::Deleted(key) => engine.remove(&key, revision).await,
        }
        engine.feed_queued(revision);
        event
    }
}

async fn next_trigger(sub: &mut Subscription) -> Trigger {
    tokio::time::timeout(PATIENCE, sub.recv()).await.expect("a trigger in time").expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_echo_of_the_owners_own_progress_write_does_not_deliver_the_last_tick_again() {
    let etcd = EtcdProcess::start().await.expect("start etcd (scripts/ensure-deps installs it)");
    let store = EtcdStore::connect(EtcdConfig::new(etcd.endpoints()).with_prefix("/feed").with_partitions(1))
        .await
        .expect("connect to etcd");
    let start = store.current_revision().await.unwrap();
    let feed = LateFeed::watch(&store, start).await;
    let shared: Arc<dyn JobStore> = Arc::new(store.clone());
    let owner = Engine::new(shared.clone(), Arc::new(SystemClock), config(64));
    owner.follow_store_feed();
    owner.own_all();
    let mut sub = owner.subscribe(&Registration {
        namespace: "default".into(),
        app_id: Some("app".into()),
        actor_types: vec![],
    });
    let writer = Engine::new(shared.clone(), Arc::new(SystemClock), config(64));
    writer.schedule(key("r"), every("@every 1s", Some(2)), PutMode::CreateOnly).await.unwrap();
    // The create reaches the owner on time ...
    feed.wait_for(1).await;
    assert!(matches!(feed.pass_one(&owner).await.change, JobChange::Put(_)));

    let first = next_trigger(&mut sub).await;
    assert!(sub.complete(first.id, Outcome::Success));
    // ... its own writes from here on come late: the first tick's progress ...
    feed.wait_for(1).await;
    let second = next_trigger(&mut sub).await;
    assert!(second.due > first.due, "the second tick: {second:?} after {first:?}");
    assert!(sub.complete(second.id, Outcome::Success));
    // ... and the delete of the done job.
    feed.wait_for(2).await;
    assert!(shared.get(&key("r")).await.unwrap().is_none(), "both ticks done: deleted");

    // The first tick's progress comes now, a while before the delete.
    let echo = feed.pass_one(&owner).await;
    let JobChange::Put(progressed) = &echo.change else { panic!("the progress write: {echo:?}") };
    assert_eq!(progressed.progress.count, 1, "{progressed:?}");
    let again = tokio::time::timeout(Duration::from_millis(1500), sub.recv()).await;
    assert!(again.is_err(), "the echo of its own write delivered a tick again: {again:?}");
    assert!(matches!(feed.pass_one(&owner).await.change, JobChange::Deleted(_)));
    let again = tokio::time::timeout(Duration::from_millis(500), sub.recv()).await;
    assert!(again.is_err(), "nothing after the delete either: {again:?}");
}

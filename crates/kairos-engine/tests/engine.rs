//! Engine behaviour on a `ManualClock` and the in-memory store (spec §4.3, §7.4–7.6).
//!
//! Every test runs on tokio's paused clock (see `common`): deterministic, never sleeping.

mod common;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Harness, at, config, drain, every, key, one_shot, settle};
use jiff::{SignedDuration, Timestamp};
use kairos_core::{Clock, FailurePolicy, JobKey, JobSpec, Owner, Payload};
use kairos_engine::{Engine, EngineConfig, EngineError, Outcome, Subscription, Trigger};
use kairos_store::memory::{Delay, MemoryStore};
use kairos_store::{JobStore, OwnerScope, PutMode, StoredJob};

fn harness() -> Harness {
    harness_with(Arc::new(MemoryStore::new(4)), 64)
}

/// [`harness`] with a subscriber of "app".
fn subscribed() -> (Harness, Subscription) {
    let h = harness();
    let sub = h.subscribe("app");
    (h, sub)
}

fn harness_with(store: Arc<MemoryStore>, window: usize) -> Harness {
    harness_with_config(store, config(window))
}

fn harness_with_config(store: Arc<MemoryStore>, config: EngineConfig) -> Harness {
    Harness::on(store, Harness::start_clock(), config)
}

/// One partition, a window of `window` jobs, `credit` triggers per subscriber.
fn bounded(window: usize, credit: usize) -> Harness {
    harness_with_config(Arc::new(MemoryStore::new(1)), EngineConfig { window, credit, ..config(window) })
}

impl Harness {
    /// Advances `secs`, then receives exactly one trigger, answers it and returns it.
    async fn answer_after(&self, sub: &mut Subscription, secs: i64, outcome: Outcome) -> Trigger {
        self.advance(secs).await;
        answer_one(sub, outcome).await
    }

    /// Advances `secs`; true when no trigger arrived.
    async fn quiet_for(&self, sub: &mut Subscription, secs: i64) -> bool {
        self.advance(secs).await;
        drain(sub).is_empty()
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// Receives exactly one trigger now, answers it, and returns it.
async fn answer_one(sub: &mut Subscription, outcome: Outcome) -> Trigger {
    settle().await;
    let got = drain(sub);
    assert_eq!(got.len(), 1, "expected exactly one trigger, got {got:?}");
    let trigger = got.into_iter().next().unwrap();
    assert!(sub.complete(trigger.id, outcome));
    settle().await;
    trigger
}

#[tokio::test(start_paused = true)]
async fn fires_one_shot_job_at_due_time() {
    let (h, mut sub) = subscribed();
    let data = Payload {
        type_url: "type.googleapis.com/google.protobuf.StringValue".into(),
        value: b"\x0a\x02hi".to_vec(),
    };
    h.schedule("once", JobSpec { data: Some(data.clone()), ..one_shot("10s") }).await;

    assert!(h.quiet_for(&mut sub, 9).await, "never before the due time");
    let trigger = h.answer_after(&mut sub, 1, Outcome::Success).await;
    assert_eq!(trigger.key, key("once"));
    assert_eq!(trigger.data, Some(data));
    assert_eq!(trigger.due, at(10));
    assert!(h.stored("once").await.is_none(), "a one-shot job is deleted after its tick");
    assert!(h.quiet_for(&mut sub, 60).await);
}

#[tokio::test(start_paused = true)]
async fn repeats_n_delivers_exactly_n_ticks_then_deletes() {
    let (h, mut sub) = subscribed();
    h.schedule("backup", every("@every 1s", Some(10))).await;
    let mut dues = Vec::new();
    for _ in 0..10 {
        dues.push(h.answer_after(&mut sub, 1, Outcome::Success).await.due);
    }
    assert_eq!(dues, (1..=10).map(at).collect::<Vec<_>>());
    assert!(h.stored("backup").await.is_none());
    assert!(h.quiet_for(&mut sub, 5).await, "nothing after the last repeat");
}

#[tokio::test(start_paused = true)]
async fn schedule_without_due_time_never_fires_at_creation() {
    let (h, mut sub) = subscribed();
    h.schedule("cron", every("*/10 * * * * *", Some(2))).await;
    assert!(h.quiet_for(&mut sub, 0).await);
    assert!(h.quiet_for(&mut sub, 9).await);
    assert_eq!(h.answer_after(&mut sub, 1, Outcome::Success).await.due, at(10));
    assert_eq!(h.answer_after(&mut sub, 10, Outcome::Success).await.due, at(20));
}

#[tokio::test(start_paused = true)]
async fn schedule_with_due_time_fires_first_at_due_time() {
    let (h, mut sub) = subscribed();
    h.schedule("due", JobSpec { due_time: Some("3s".into()), ..every("@every 10s", Some(2)) }).await;
    assert_eq!(h.answer_after(&mut sub, 3, Outcome::Success).await.due, at(3));
    assert!(h.quiet_for(&mut sub, 9).await);
    assert_eq!(h.answer_after(&mut sub, 1, Outcome::Success).await.due, at(13));
    assert!(h.stored("due").await.is_none(), "two repeats done");
}

#[tokio::test(start_paused = true)]
async fn ttl_deletes_the_job_after_its_last_tick() {
    let (h, mut sub) = subscribed();
    h.schedule("ttl", JobSpec { ttl: Some("25s".into()), ..every("@every 10s", None) }).await;
    h.answer_after(&mut sub, 10, Outcome::Success).await;
    h.answer_after(&mut sub, 10, Outcome::Success).await;
    assert!(h.stored("ttl").await.is_none(), "the tick at 30s would be after the ttl");
    assert!(h.quiet_for(&mut sub, 30).await);
}

#[tokio::test(start_paused = true)]
async fn default_failure_policy_gives_a_failing_one_shot_4_attempts() {
    let (h, mut sub) = subscribed();
    h.schedule("fail", one_shot("5s")).await;
    let stored = h.stored("fail").await.unwrap();
    assert_eq!(stored.spec.failure_policy, Some(FailurePolicy::DEFAULT), "the default is stored");
    let mut dues = vec![h.answer_after(&mut sub, 5, Outcome::Failed).await.due];
    for _ in 0..3 {
        dues.push(h.answer_after(&mut sub, 1, Outcome::Failed).await.due);
    }
    assert_eq!(dues, vec![at(5), at(6), at(7), at(8)]);
    assert!(h.stored("fail").await.is_none(), "given up after 4 attempts, then deleted");
    assert!(h.quiet_for(&mut sub, 10).await, "exactly 4 attempts");
}

#[tokio::test(start_paused = true)]
async fn constant_policy_without_interval_retries_at_once() {
    let (h, mut sub) = subscribed();
    let policy = FailurePolicy::Constant { interval: None, max_retries: Some(4) };
    h.schedule("fail", JobSpec { failure_policy: Some(policy), ..one_shot("1s") }).await;
    h.advance(1).await;
    let mut count = 0;
    loop {
        settle().await;
        let got = drain(&mut sub);
        if got.is_empty() {
            break;
        }
        for t in got {
            assert_eq!(t.due, at(1), "no interval: every retry is due at once");
            sub.complete(t.id, Outcome::Failed);
            count += 1;
        }
    }
    assert_eq!(count, 5, "max_retries 4 means 5 deliveries");
    assert!(h.stored("fail").await.is_none());
}

#[tokio::test(start_paused = true)]
async fn drop_policy_counts_the_failed_tick_and_moves_on() {
    let (h, mut sub) = subscribed();
    h.schedule("drop", JobSpec { failure_policy: Some(FailurePolicy::Drop), ..every("@every 10s", Some(2)) })
        .await;
    h.answer_after(&mut sub, 10, Outcome::Failed).await;
    assert!(h.quiet_for(&mut sub, 1).await, "no retry");
    assert_eq!(h.answer_after(&mut sub, 9, Outcome::Success).await.due, at(20));
    assert!(h.stored("drop").await.is_none(), "the dropped tick counted toward repeats");
}

#[tokio::test(start_paused = true)]
async fn failed_tick_keeps_the_cadence() {
    let (h, mut sub) = subscribed();
    let policy =
        FailurePolicy::Constant { interval: Some(SignedDuration::from_secs(3)), max_retries: Some(1) };
    h.schedule("cadence", JobSpec { failure_policy: Some(policy), ..every("@every 10s", None) }).await;
    h.answer_after(&mut sub, 10, Outcome::Failed).await;
    assert_eq!(h.answer_after(&mut sub, 3, Outcome::Success).await.due, at(13));
    let stored = h.stored("cadence").await.unwrap();
    assert_eq!(stored.progress.last_scheduled, Some(at(10)));
    assert_eq!(stored.progress.attempts, 0);
    assert_eq!(stored.next_due, at(20), "the next tick follows the schedule, not the retry");
}

/// A harness whose one-shot job "staged", due at 1 s, had no subscriber for `secs`: it is staged.
async fn staged_after(secs: i64) -> Harness {
    let h = harness();
    h.schedule("staged", one_shot("1s")).await;
    h.advance(secs).await;
    assert_eq!(h.engine.staged_count().await.unwrap(), 1);
    h
}

#[tokio::test(start_paused = true)]
async fn staged_trigger_fires_when_a_subscriber_connects_and_costs_no_retry() {
    let h = staged_after(30).await;
    let stored = h.stored("staged").await.unwrap();
    assert_eq!(stored.progress.attempts, 0, "staging costs no retry");

    let mut other = h.subscribe("other-app");
    settle().await;
    assert!(drain(&mut other).is_empty(), "another app never gets it");

    let mut sub = h.subscribe("app");
    let trigger = answer_one(&mut sub, Outcome::Success).await;
    assert_eq!(trigger.due, at(1));
    assert_eq!(h.engine.staged_count().await.unwrap(), 0);
    assert!(h.stored("staged").await.is_none());
}

#[tokio::test(start_paused = true)]
async fn in_flight_trigger_is_redelivered_when_its_subscriber_goes_away() {
    let h = harness();
    let mut first = h.subscribe("app");
    h.schedule("job", one_shot("1s")).await;
    h.advance(1).await;
    assert_eq!(drain(&mut first).len(), 1);
    drop(first);
    settle().await;
    assert_eq!(h.engine.staged_count().await.unwrap(), 1, "staged until someone connects");
    let mut second = h.subscribe("app");
    let trigger = answer_one(&mut second, Outcome::Success).await;
    assert_eq!(trigger.due, at(1));
    assert!(h.stored("job").await.is_none());
}

#[tokio::test(start_paused = true)]
async fn subscribers_of_one_app_share_triggers_round_robin() {
    let h = harness();
    let mut a = h.subscribe("app");
    let mut b = h.subscribe("app");
    for i in 0..10 {
        h.schedule(&format!("job-{i}"), one_shot("1s")).await;
    }
    h.advance(1).await;
    let (got_a, got_b) = (drain(&mut a), drain(&mut b));
    assert_eq!(got_a.len() + got_b.len(), 10);
    assert_eq!(got_a.len(), 5, "round robin");
    assert!(!a.complete(got_b[0].id, Outcome::Success), "a subscriber cannot answer another's trigger");
}

#[tokio::test(start_paused = true)]
async fn catch_up_after_downtime_fires_missed_ticks_in_order_one_at_a_time() {
    let store = Arc::new(MemoryStore::new(4));
    let h = harness_with(store.clone(), 64);
    h.schedule("cu", every("@every 10s", None)).await;
    h.engine.shutdown().await;

    // 65 s of downtime, then a new engine on the same store.
    h.clock.advance(SignedDuration::from_secs(65));
    let h = Harness::on(store, h.clock.clone(), config(64));
    let mut sub = h.subscribe("app");
    let mut dues = Vec::new();
    for _ in 0..6 {
        settle().await;
        let got = drain(&mut sub);
        assert_eq!(got.len(), 1, "serial: one trigger of a job in flight at a time");
        dues.push(got[0].due);
        sub.complete(got[0].id, Outcome::Success);
    }
    assert_eq!(dues, (1..=6).map(|i| at(i * 10)).collect::<Vec<_>>(), "every missed tick, in order");
    settle().await;
    assert!(drain(&mut sub).is_empty(), "caught up: the 70 s tick is not due yet");
}

#[tokio::test(start_paused = true)]
async fn overwrite_resets_progress() {
    let (h, mut sub) = subscribed();
    h.schedule("ow", every("@every 10s", Some(3))).await;
    h.answer_after(&mut sub, 10, Outcome::Success).await;
    assert_eq!(h.stored("ow").await.unwrap().progress.count, 1);

    let err =
        h.engine.schedule(key("ow"), every("@every 5s", Some(2)), PutMode::CreateOnly).await.unwrap_err();
    assert!(matches!(err, EngineError::AlreadyExists(_)), "{err:?}");
    assert_eq!(h.stored("ow").await.unwrap().spec.schedule.as_deref(), Some("@every 10s"), "unchanged");

    h.engine.schedule(key("ow"), every("@every 5s", Some(2)), PutMode::Overwrite).await.unwrap();
    settle().await;
    let stored = h.stored("ow").await.unwrap();
    assert_eq!(stored.progress.count, 0);
    assert_eq!(stored.next_due, at(15), "restarts from the overwrite time");
    assert_eq!(h.answer_after(&mut sub, 5, Outcome::Success).await.due, at(15));
    assert_eq!(h.answer_after(&mut sub, 5, Outcome::Success).await.due, at(20));
    assert!(h.stored("ow").await.is_none(), "the new job's 2 repeats");
}

#[tokio::test(start_paused = true)]
async fn late_result_for_an_overwritten_job_is_ignored() {
    let (h, mut sub) = subscribed();
    h.schedule("ow", one_shot("1s")).await;
    h.advance(1).await;
    let old = drain(&mut sub).pop().unwrap();
    h.engine.schedule(key("ow"), one_shot("100s"), PutMode::Overwrite).await.unwrap();
    settle().await;
    sub.complete(old.id, Outcome::Success);
    settle().await;
    let stored = h.stored("ow").await.expect("the new job survives the old trigger's ack");
    assert_eq!(stored.next_due, at(101));
}

#[tokio::test(start_paused = true)]
async fn delete_during_retries_cancels_them() {
    let (h, mut sub) = subscribed();
    h.schedule("del", one_shot("1s")).await;
    h.answer_after(&mut sub, 1, Outcome::Failed).await;
    assert!(h.engine.delete(&key("del")).await.unwrap());
    assert!(h.quiet_for(&mut sub, 10).await, "no retry after delete");
    assert!(!h.engine.delete(&key("del")).await.unwrap(), "deleting an absent job succeeds");
}

#[tokio::test(start_paused = true)]
async fn delete_while_staged_drops_the_staged_trigger() {
    let h = staged_after(2).await;
    h.engine.delete(&key("staged")).await.unwrap();
    settle().await;
    assert_eq!(h.engine.staged_count().await.unwrap(), 0);
    let mut sub = h.subscribe("app");
    settle().await;
    assert!(drain(&mut sub).is_empty());
}

#[tokio::test(start_paused = true)]
async fn jobs_beyond_the_window_are_paged_in_from_the_store() {
    // Created latest first: each new job is due before those in memory and pushes one out.
    forty_jobs_through_a_window_of_four((0..40).rev().collect()).await;
}

#[tokio::test(start_paused = true)]
async fn new_jobs_past_the_window_are_read_from_the_store_in_due_order() {
    // Created in due order: once the window is full, each new job lies past it and is left to
    // the partition's scans of the store, so memory holds no more than the window.
    forty_jobs_through_a_window_of_four((0..40).collect()).await;
}

/// Window of 4 per partition, 1 partition: jobs `job-00` … `job-39` due 1 s apart, created in
/// `order`, all fire in due order and leave the store.
async fn forty_jobs_through_a_window_of_four(order: Vec<u32>) {
    let h = harness_with(Arc::new(MemoryStore::new(1)), 4);
    let mut sub = h.subscribe("app");
    let in_due_order = order.windows(2).all(|w| w[0] < w[1]);
    for i in order {
        h.schedule(&format!("job-{i:02}"), one_shot(&format!("{}s", i + 1))).await;
    }
    if in_due_order {
        assert!(h.engine.resident_jobs() <= 4, "{} jobs in memory, window 4", h.engine.resident_jobs());
    }
    let mut fired = Vec::new();
    for _ in 0..40 {
        fired.push(h.answer_after(&mut sub, 1, Outcome::Success).await.key.name);
    }
    let want: Vec<String> = (0..40).map(|i| format!("job-{i:02}")).collect();
    assert_eq!(fired, want);
    assert_eq!(h.store.count().await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn overwriting_a_job_past_the_window_moves_it_into_the_window() {
    let h = harness_with(Arc::new(MemoryStore::new(1)), 4);
    let mut sub = h.subscribe("app");
    for i in 0..4 {
        h.schedule(&format!("near-{i}"), one_shot(&format!("{}h", i + 1))).await;
    }
    h.schedule("far", one_shot("100h")).await;
    // Now due before everything in memory.
    h.engine.schedule(key("far"), one_shot("30m"), PutMode::Overwrite).await.unwrap();
    h.advance(30 * 60).await;
    assert_eq!(answer_one(&mut sub, Outcome::Success).await.key.name, "far");
    for i in 0..4 {
        h.advance(60 * 60).await;
        assert_eq!(answer_one(&mut sub, Outcome::Success).await.key.name, format!("near-{i}"));
    }
    h.advance(100 * 60 * 60).await;
    assert!(drain(&mut sub).is_empty(), "the overwritten due time never fires");
}

/// One partition with a window of two jobs, and a subscriber of "app": a and b in memory, c
/// only in the store, all three due at 10 s.
async fn window_of_two() -> (Harness, Subscription) {
    let h = harness_with(Arc::new(MemoryStore::new(1)), 2);
    let sub = h.subscribe("app");
    for name in ["a", "b", "c"] {
        h.schedule(name, one_shot("10s")).await;
    }
    (h, sub)
}

/// Answers every trigger the subscriber holds now with success.
fn answer_all(sub: &mut Subscription) {
    for trigger in drain(sub) {
        assert!(sub.complete(trigger.id, Outcome::Success));
    }
}

/// [`window_of_two`] plus "late", due at 11 s: stored at once, but its creating task hears back
/// (and tells the partition) only `reply_secs` of tokio time later, after the scans that read
/// it. Runs until c and late have both fired (unanswered); returns the create's task and them.
async fn a_late_notice_of_a_create(
    reply_secs: u64,
) -> (Harness, Subscription, tokio::task::JoinHandle<Result<(), EngineError>>, Vec<Trigger>) {
    let (h, mut sub) = window_of_two().await;
    let create = delayed_reply(&h, reply_secs, |engine| async move {
        engine.schedule(key("late"), one_shot("11s"), PutMode::CreateOnly).await
    })
    .await;
    h.advance(10).await;
    answer_all(&mut sub);
    // The window refilled from the store with c and late: both fire.
    h.advance(1).await;
    let fired = drain(&mut sub);
    let names: Vec<&str> = fired.iter().map(|t| t.key.name.as_str()).collect();
    assert_eq!(names, ["c", "late"]);
    (h, sub, create, fired)
}

#[tokio::test(start_paused = true)]
async fn a_create_read_by_a_scan_before_its_notice_arrives_fires_once() {
    let (h, mut sub, create, fired) = a_late_notice_of_a_create(1).await;
    // The notice arrives while late is still in flight.
    assert!(sub.complete(fired[0].id, Outcome::Success));
    create.await.unwrap().unwrap();
    settle().await;
    assert!(drain(&mut sub).is_empty(), "the late notice of the create fired it again");
    assert!(sub.complete(fired[1].id, Outcome::Success));
    settle().await;
    assert_eq!(h.store.count().await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_create_done_before_its_late_notice_arrives_is_not_fired_again() {
    let (h, mut sub, create, fired) = a_late_notice_of_a_create(60).await;
    // The notice arrives a minute late: late is done and deleted by then.
    for trigger in &fired {
        assert!(sub.complete(trigger.id, Outcome::Success));
    }
    settle().await;
    assert_eq!(h.store.count().await.unwrap(), 0, "every job is done");
    assert!(!create.is_finished(), "the notice is still on its way");
    h.advance(60).await;
    create.await.unwrap().unwrap();
    assert!(h.quiet_for(&mut sub, 60).await, "the late notice of a done job fired it again");
    assert_eq!(h.store.count().await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_notice_older_than_the_version_a_scan_read_is_ignored() {
    let (h, mut sub) = window_of_two().await;
    h.schedule("p", one_shot("100h")).await;
    // a and b fire; once they are done the partition scans for more, and that scan takes a
    // second (of tokio's clock) to read.
    h.advance(10).await;
    h.store.faults().set_delay(Delay::Read, Duration::from_secs(1));
    answer_all(&mut sub);
    settle().await;
    h.store.faults().set_delay(Delay::Read, Duration::ZERO);
    // Meanwhile p is overwritten twice: the first notice waits for the scan to end, the second
    // comes a minute late. The scan reads the second version.
    h.engine.schedule(key("p"), one_shot("11s"), PutMode::Overwrite).await.unwrap();
    let second = delayed_reply(&h, 60, |engine| async move {
        engine.schedule(key("p"), one_shot("100h"), PutMode::Overwrite).await
    })
    .await;
    // The scan reads now (its delay is on tokio's clock).
    tokio::time::sleep(Duration::from_secs(1)).await;
    h.advance(1).await;
    let fired = drain(&mut sub);
    let names: Vec<&str> = fired.iter().map(|t| t.key.name.as_str()).collect();
    assert_eq!(names, ["c"]);
    assert!(sub.complete(fired[0].id, Outcome::Success));
    // The first version would fire at 21 s.
    assert!(h.quiet_for(&mut sub, 30).await, "a version the store no longer held fired");
    h.advance(30).await;
    second.await.unwrap().unwrap();
    assert!(h.quiet_for(&mut sub, 60).await);
    assert_eq!(h.stored("p").await.unwrap().spec.due_time.as_deref(), Some("100h"));
}

/// An engine started on a store holding job "j" (due at +10 s) as written before a restart by a
/// process whose clock was a year ahead, with a subscriber; and that job.
async fn a_job_stamped_by_a_clock_that_was_ahead() -> (Harness, Subscription, StoredJob) {
    let store = Arc::new(MemoryStore::new(1));
    let ahead = at(365 * 24 * 3600);
    let old = StoredJob {
        version: u64::try_from(ahead.as_nanosecond()).unwrap(),
        ..StoredJob::new(key("j"), one_shot("10s").with_default_policy(), at(0), 7, at(10))
    };
    store.put(old.clone(), PutMode::CreateOnly).await.unwrap();
    let h = harness_with(store, 64);
    let sub = h.subscribe("app");
    settle().await;
    (h, sub, old)
}

#[tokio::test(start_paused = true)]
async fn an_overwrite_of_a_job_stamped_by_a_clock_that_was_ahead_still_reaches_its_partition() {
    let (h, mut sub, old) = a_job_stamped_by_a_clock_that_was_ahead().await;
    h.engine.schedule(key("j"), one_shot("20s"), PutMode::Overwrite).await.unwrap();
    let stored = h.stored("j").await.unwrap();
    assert!(h.quiet_for(&mut sub, 15).await, "the replaced version fired");
    let trigger = h.answer_after(&mut sub, 5, Outcome::Success).await;
    assert_eq!((trigger.key, trigger.due), (key("j"), at(20)));
    assert!(stored.version > old.version, "the versions of a key only grow");
}

#[tokio::test(start_paused = true)]
async fn an_overwrite_whose_second_put_above_a_clock_that_was_ahead_fails_still_replaces_the_old_version() {
    let (h, mut sub, _) = a_job_stamped_by_a_clock_that_was_ahead().await;
    // The overwrite is stored; the store fails the put that stores it again above `old`.
    let overwrite = delayed_reply(&h, 1, |engine| async move {
        engine.schedule(key("j"), one_shot("20s"), PutMode::Overwrite).await
    })
    .await;
    h.store.faults().fail_next_commits(1);
    h.advance(1).await;
    overwrite.await.unwrap().expect("the overwrite is stored, so it succeeds");
    assert_eq!(h.stored("j").await.unwrap().spec.due_time.as_deref(), Some("20s"));
    assert!(h.quiet_for(&mut sub, 14).await, "the replaced version fired");
    let trigger = h.answer_after(&mut sub, 5, Outcome::Success).await;
    assert_eq!((trigger.key, trigger.due), (key("j"), at(20)));
}

/// The overwrite of a job stamped by a clock that was ahead is stored twice (the second time
/// above the replaced version) and its notice carries the higher stamp. Should a scan read the
/// new job, fire it and complete it before that, neither the second write nor the notice may
/// bring it back: its one tick is delivered once.
#[tokio::test(start_paused = true)]
async fn a_job_completed_before_the_notice_of_its_overwrite_above_a_clock_that_was_ahead_does_not_fire_again()
{
    let store = Arc::new(MemoryStore::new(1));
    let ahead = at(365 * 24 * 3600);
    let old = StoredJob {
        version: u64::try_from(ahead.as_nanosecond()).unwrap(),
        ..StoredJob::new(key("j"), one_shot("100s").with_default_policy(), at(0), 7, at(100))
    };
    store.put(old, PutMode::CreateOnly).await.unwrap();
    // Three jobs due before the overwrite, so that the partition, holding two, scans again while
    // the overwrite's write is under way.
    for (i, due) in [5, 6, 7].into_iter().enumerate() {
        let filler = StoredJob::new(
            key(&format!("f{due}")),
            one_shot(&format!("{due}s")).with_default_policy(),
            at(0),
            100 + i as u64,
            at(due),
        );
        store.put(filler, PutMode::CreateOnly).await.unwrap();
    }
    let h = harness_with_config(store, EngineConfig { window: 2, ..config(2) });
    let mut sub = h.subscribe("app");
    settle().await;

    // The overwrite (due at +10 s) is stored at once; its call is answered 20 s later.
    let overwrite = delayed_reply(&h, 20, |engine| async move {
        engine.schedule(key("j"), one_shot("10s"), PutMode::Overwrite).await
    })
    .await;
    let mut delivered = acknowledge_for(&h, &mut sub, 25).await;
    overwrite.await.unwrap().expect("the overwrite is stored");
    delivered.extend(acknowledge_for(&h, &mut sub, 10).await);
    assert_eq!(delivered, ["f5", "f6", "f7", "j"], "each job once, the overwrite's at +10 s");
    assert!(h.stored("j").await.is_none(), "the job is done and stays deleted");
}

/// Advances `secs` one second at a time, acknowledging every trigger as it comes; the names of
/// the jobs delivered, in order.
async fn acknowledge_for(h: &Harness, sub: &mut Subscription, secs: u32) -> Vec<String> {
    let mut delivered = Vec::new();
    for _ in 0..secs {
        h.advance(1).await;
        settle().await;
        for trigger in drain(sub) {
            assert!(sub.complete(trigger.id, Outcome::Success));
            delivered.push(trigger.key.name);
        }
        settle().await;
    }
    delivered
}

/// Starts `write` with its store reply held back `secs` of tokio time (the write applies at
/// once), so that its notice reaches the partition that much later.
async fn delayed_reply<F>(
    h: &Harness,
    secs: u64,
    write: impl FnOnce(Engine) -> F,
) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    h.store.faults().set_delay(Delay::Reply, Duration::from_secs(secs));
    let task = tokio::spawn(write(h.engine.clone()));
    settle().await;
    h.store.faults().set_delay(Delay::Reply, Duration::ZERO);
    task
}

#[tokio::test(start_paused = true)]
async fn overwrites_racing_for_one_name_fire_the_version_stored_last() {
    let h = harness_with(Arc::new(MemoryStore::new(1)), 64);
    let mut sub = h.subscribe("app");
    h.schedule("j", one_shot("10s")).await;
    let first = delayed_reply(&h, 1, |engine| async move {
        engine.schedule(key("j"), one_shot("20s"), PutMode::Overwrite).await
    })
    .await;
    h.engine.schedule(key("j"), one_shot("30s"), PutMode::Overwrite).await.unwrap();
    first.await.unwrap().unwrap();
    settle().await;
    let stored = h.stored("j").await.unwrap();
    assert_eq!(stored.spec.due_time.as_deref(), Some("30s"), "the write stored last");
    h.advance(25).await;
    assert!(drain(&mut sub).is_empty(), "an overwritten version fired");
    h.advance(10).await;
    let fired = drain(&mut sub);
    assert_eq!(fired.len(), 1);
    assert!(sub.complete(fired[0].id, Outcome::Success));
    settle().await;
    assert_eq!(h.store.count().await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_delete_racing_a_create_leaves_nothing_to_fire() {
    let h = harness_with(Arc::new(MemoryStore::new(1)), 64);
    let mut sub = h.subscribe("app");
    let create = delayed_reply(&h, 1, |engine| async move {
        engine.schedule(key("k"), one_shot("10s"), PutMode::CreateOnly).await
    })
    .await;
    assert!(h.engine.delete(&key("k")).await.unwrap(), "the create was stored");
    create.await.unwrap().unwrap();
    settle().await;
    assert_eq!(h.store.count().await.unwrap(), 0);
    h.advance(15).await;
    assert!(drain(&mut sub).is_empty(), "a deleted job fired");
}

#[tokio::test(start_paused = true)]
async fn a_job_created_while_a_bulk_delete_tells_its_partitions_still_fires() {
    let h = harness_with(Arc::new(MemoryStore::new(1)), 64);
    let mut sub = h.subscribe("app");
    h.schedule("k", one_shot("10s")).await;
    // The bulk delete applies at once; its caller tells the partitions a second later.
    let scope = OwnerScope::owner("default", &kairos_core::Owner::app("app"), "");
    let bulk = delayed_reply(&h, 1, |engine| async move { engine.delete_by_scope(&scope).await }).await;
    assert_eq!(h.store.count().await.unwrap(), 0);
    h.engine.schedule(key("k"), one_shot("20s"), PutMode::CreateOnly).await.unwrap();
    assert_eq!(bulk.await.unwrap().unwrap(), 1);
    settle().await;
    assert!(h.quiet_for(&mut sub, 15).await, "the deleted version fired");
    let trigger = h.answer_after(&mut sub, 5, Outcome::Success).await;
    assert_eq!((trigger.key, trigger.due), (key("k"), at(20)), "the job created since");
}

#[tokio::test(start_paused = true)]
async fn a_pause_racing_an_overwrite_loses_neither() {
    let h = harness_with(Arc::new(MemoryStore::new(1)), 64);
    let mut sub = h.subscribe("app");
    h.schedule("p", every("@every 10s", None)).await;
    let pause = delayed_reply(&h, 1, |engine| async move { engine.pause(&key("p")).await }).await;
    h.engine.schedule(key("p"), every("@every 20s", None), PutMode::Overwrite).await.unwrap();
    pause.await.unwrap().unwrap();
    settle().await;
    // The overwrite came second: a new job, not paused, with its own schedule.
    let stored = h.stored("p").await.unwrap();
    assert_eq!(stored.spec.schedule.as_deref(), Some("@every 20s"));
    assert!(!stored.paused);
    h.advance(25).await;
    let fired = drain(&mut sub);
    assert_eq!(fired.len(), 1, "the new version fires at 20 s, not the paused one");
    assert_eq!(fired[0].due, stored.next_due);
}

#[tokio::test(start_paused = true)]
async fn earlier_job_arriving_rearms_the_timer() {
    let h = harness_with(Arc::new(MemoryStore::new(1)), 64);
    let mut sub = h.subscribe("app");
    h.schedule("late", one_shot("1h")).await;
    h.schedule("early", one_shot("500ms")).await;
    h.advance_ms(500).await;
    assert_eq!(answer_one(&mut sub, Outcome::Success).await.key.name, "early");
}

#[tokio::test(start_paused = true)]
async fn wall_clock_jump_forward_is_noticed() {
    let (h, mut sub) = subscribed();
    h.schedule("jump", one_shot("1h")).await;
    settle().await;
    h.clock.set(at(3600));
    settle().await;
    assert_eq!(answer_one(&mut sub, Outcome::Success).await.due, at(3600));
}

#[tokio::test(start_paused = true)]
async fn failed_progress_write_is_retried_and_nothing_is_lost() {
    let store = Arc::new(MemoryStore::new(1));
    let h = harness_with(store.clone(), 64);
    let mut sub = h.subscribe("app");
    h.schedule("flaky", every("@every 10s", Some(2))).await;
    h.advance(10).await;
    store.faults().fail_next_commits(3);
    answer_one(&mut sub, Outcome::Success).await;
    assert_eq!(h.stored("flaky").await.unwrap().progress.count, 0, "the write failed");
    // Retries back off 50 ms, 100 ms, 200 ms.
    for _ in 0..4 {
        h.advance_ms(250).await;
    }
    let stored = h.stored("flaky").await.unwrap();
    assert_eq!(stored.progress.count, 1, "the progress write went through on a later try");
    assert_eq!(h.answer_after(&mut sub, 9, Outcome::Success).await.due, at(20));
    assert!(h.stored("flaky").await.is_none());
}

#[tokio::test(start_paused = true)]
async fn bad_input_is_rejected_and_nothing_is_stored() {
    let h = harness();
    let err = h.engine.schedule(key("a/b"), one_shot("1s"), PutMode::CreateOnly).await.unwrap_err();
    assert!(matches!(err, EngineError::Name(_)), "{err:?}");
    let err = h.engine.schedule(key("bad"), every("* * * * *", None), PutMode::CreateOnly).await.unwrap_err();
    assert!(err.to_string().contains("expected exactly 6 fields"), "{err}");
    let err = h.engine.schedule(key("bad"), JobSpec::default(), PutMode::CreateOnly).await.unwrap_err();
    assert!(matches!(err, EngineError::Invalid(_)), "{err:?}");
    assert_eq!(h.store.count().await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn job_whose_first_tick_is_past_its_ttl_is_never_stored() {
    let h = harness();
    h.engine
        .schedule(
            key("gone"),
            JobSpec { ttl: Some("30s".into()), ..every("@every 1m", None) },
            PutMode::CreateOnly,
        )
        .await
        .unwrap();
    assert!(h.stored("gone").await.is_none());
}

#[tokio::test(start_paused = true)]
async fn delete_by_scope_by_name_prefix_or_whole_owner_touches_only_that_owner() {
    let h = harness();
    for name in ["a-1", "a-2", "b-1"] {
        h.schedule(name, one_shot("1h")).await;
    }
    h.engine
        .schedule(JobKey::app("default", "other", "a-1"), one_shot("1h"), PutMode::CreateOnly)
        .await
        .unwrap();
    let prefix = OwnerScope::owner("default", &Owner::app("app"), "a-");
    assert_eq!(h.engine.delete_by_scope(&prefix).await.unwrap(), 2);
    assert!(h.stored("b-1").await.is_some());
    assert!(h.store.get(&JobKey::app("default", "other", "a-1")).await.unwrap().is_some());
    let scope = OwnerScope::owner("default", &Owner::app("app"), "");
    assert_eq!(h.engine.delete_by_scope(&scope).await.unwrap(), 1);
    assert_eq!(h.store.count().await.unwrap(), 1);
    let _ = h.now();
}

/// Two engines on one store, as two replicas: `writer` takes API calls and owns nothing,
/// `owner` owns every partition and learns of writes only from the (hand-fed) change feed.
fn two_replicas() -> (Engine, Harness) {
    let store = Arc::new(MemoryStore::new(4));
    let clock = Harness::start_clock();
    let writer = Engine::new(store.clone(), Arc::new(clock.clone()), config(64));
    let owner = Engine::new(store.clone(), Arc::new(clock.clone()), config(64));
    owner.follow_store_feed();
    owner.own_all();
    (writer, Harness { engine: owner, clock, store })
}

/// Lets the owner's partitions load their (empty) due index before the test writes.
async fn two_loaded_replicas() -> (Engine, Harness) {
    let replicas = two_replicas();
    settle().await;
    replicas
}

#[tokio::test(start_paused = true)]
async fn job_created_through_another_replica_fires_on_the_owner_via_the_feed() {
    let (writer, h) = two_loaded_replicas().await;
    let mut sub = h.subscribe("app");
    writer.schedule(key("remote"), every("@every 1s", Some(3)), PutMode::CreateOnly).await.unwrap();
    assert!(h.quiet_for(&mut sub, 1).await, "the owner has not heard of the job yet");
    h.engine.upsert_from_store(h.stored("remote").await.unwrap()).await;
    // Its first tick (at +1 s) is already due: it fires at once.
    assert_eq!(answer_one(&mut sub, Outcome::Success).await.due, at(1));
}

#[tokio::test(start_paused = true)]
async fn own_progress_write_seen_on_the_feed_does_not_rearm_the_job() {
    let (writer, h) = two_loaded_replicas().await;
    let mut sub = h.subscribe("app");
    writer.schedule(key("tick"), every("@every 10s", None), PutMode::CreateOnly).await.unwrap();
    let created = h.stored("tick").await.unwrap();
    h.engine.upsert_from_store(created.clone()).await;
    assert_eq!(h.answer_after(&mut sub, 10, Outcome::Success).await.due, at(10));
    let progressed = h.stored("tick").await.unwrap();
    assert_eq!(progressed.next_due, at(20), "the owner wrote its progress");
    // The feed now reports the creation (late) and the owner's own progress write: same
    // incarnation, so neither re-arms the job at an old position.
    h.engine.upsert_from_store(created).await;
    h.engine.upsert_from_store(progressed).await;
    assert!(h.quiet_for(&mut sub, 5).await, "no refire of the settled tick");
    assert_eq!(h.answer_after(&mut sub, 5, Outcome::Success).await.due, at(20));
}

#[tokio::test(start_paused = true)]
async fn overwrite_and_delete_through_another_replica_reach_the_owner_via_the_feed() {
    let (writer, h) = two_loaded_replicas().await;
    let mut sub = h.subscribe("app");
    writer.schedule(key("job"), one_shot("10s"), PutMode::CreateOnly).await.unwrap();
    h.engine.upsert_from_store(h.stored("job").await.unwrap()).await;
    writer.schedule(key("job"), one_shot("20s"), PutMode::Overwrite).await.unwrap();
    let overwritten = h.stored("job").await.unwrap();
    h.engine.upsert_from_store(overwritten.clone()).await;
    assert!(h.quiet_for(&mut sub, 10).await, "the overwrite moved the due time");
    writer.delete(&key("job")).await.unwrap();
    // The feed's versions grow with every write, as etcd's revisions do.
    h.engine.remove(&key("job"), overwritten.version + 1).await;
    assert!(h.quiet_for(&mut sub, 20).await, "the delete reached the owner");
}

/// A replica that starts after `writer`'s writes and reads them from the store (its scans),
/// learning of later writes only from the (hand-fed) feed; and the writer. The store versions
/// writes as etcd does (a revision each).
async fn a_replica_after(writes: impl AsyncFnOnce(&Engine)) -> (Engine, Harness) {
    let store = Arc::new(MemoryStore::with_revisions(1));
    let clock = Harness::start_clock();
    let writer = Engine::new(store.clone(), Arc::new(clock.clone()), config(64));
    writes(&writer).await;
    let owner = Engine::new(store.clone(), Arc::new(clock.clone()), config(64));
    owner.follow_store_feed();
    owner.own_all();
    settle().await;
    (writer, Harness { engine: owner, clock, store })
}

#[tokio::test(start_paused = true)]
async fn a_feed_event_older_than_the_version_a_scan_read_is_ignored() {
    let first = Arc::new(Mutex::new(None));
    let seen = first.clone();
    let (_writer, h) = a_replica_after(async move |writer: &Engine| {
        writer.schedule(key("j"), one_shot("10s"), PutMode::CreateOnly).await.unwrap();
        *seen.lock().unwrap() = writer.get(&key("j")).await.unwrap();
        writer.schedule(key("j"), one_shot("100s"), PutMode::Overwrite).await.unwrap();
    })
    .await;
    let mut sub = h.subscribe("app");
    // The owner's first scan read the overwrite; the feed's events of both writes come after,
    // the second one late.
    let first = first.lock().unwrap().take().unwrap();
    h.engine.upsert_from_store(first).await;
    assert!(h.quiet_for(&mut sub, 50).await, "the overwritten version fired");
    h.engine.upsert_from_store(h.stored("j").await.unwrap()).await;
    assert_eq!(h.answer_after(&mut sub, 50, Outcome::Success).await.due, at(100));
}

#[tokio::test(start_paused = true)]
async fn a_feed_event_of_a_create_after_the_job_was_done_does_not_fire_it_again() {
    let (_writer, h) = a_replica_after(async |writer: &Engine| {
        writer.schedule(key("o"), one_shot("10s"), PutMode::CreateOnly).await.unwrap();
    })
    .await;
    let mut sub = h.subscribe("app");
    let created = h.stored("o").await.unwrap();
    assert_eq!(h.answer_after(&mut sub, 10, Outcome::Success).await.key, key("o"));
    assert!(h.stored("o").await.is_none(), "done and deleted");
    // The feed is slow: the create's event comes only now, and the delete's later still.
    h.engine.upsert_from_store(created.clone()).await;
    assert!(h.quiet_for(&mut sub, 30).await, "the late create event fired a done job again");
    h.engine.remove(&key("o"), created.version + 1).await;
    assert!(h.quiet_for(&mut sub, 30).await);
}

#[tokio::test(start_paused = true)]
async fn the_late_echo_of_the_owners_own_progress_write_does_not_fire_the_last_tick_again() {
    let (_writer, h) = a_replica_after(async |writer: &Engine| {
        writer.schedule(key("r"), every("@every 10s", Some(2)), PutMode::CreateOnly).await.unwrap();
    })
    .await;
    let mut sub = h.subscribe("app");
    // The feed has passed the create (which the owner's scan read) ...
    h.engine.feed_queued(h.store.revision());
    assert_eq!(h.answer_after(&mut sub, 10, Outcome::Success).await.due, at(10));
    // ... but from here on it lags the owner's own writes by more than a tick.
    let progressed = h.stored("r").await.unwrap();
    assert_eq!(progressed.progress.count, 1, "the owner wrote the first tick's progress");
    assert_eq!(h.answer_after(&mut sub, 10, Outcome::Success).await.due, at(20));
    assert!(h.stored("r").await.is_none(), "both ticks done: deleted");
    // The echo of the first progress write comes only now, the delete's after it.
    h.engine.upsert_from_store(progressed.clone()).await;
    h.engine.feed_queued(progressed.version);
    assert!(h.quiet_for(&mut sub, 30).await, "the echo of its own write fired the last tick again");
    h.engine.remove(&key("r"), h.store.revision()).await;
    h.engine.feed_queued(h.store.revision());
    assert!(h.quiet_for(&mut sub, 30).await);
}

#[tokio::test(start_paused = true)]
async fn drain_waits_for_the_delivered_trigger_and_fires_nothing_new() {
    let (h, mut sub) = subscribed();
    h.schedule("a", every("@every 1s", None)).await;
    h.advance(1).await;
    let held = drain(&mut sub);
    assert_eq!(held.len(), 1);
    let partition = h.store.partition_of(&key("a"));
    let engine = h.engine.clone();
    let drained =
        tokio::spawn(async move { engine.drain_partition(partition, SignedDuration::from_secs(30)).await });
    h.advance(3).await;
    assert!(!drained.is_finished(), "a delivered trigger is unanswered");
    assert!(sub.complete(held[0].id, Outcome::Success));
    settle().await;
    assert!(drained.await.unwrap(), "drained once the result was written");
    assert_eq!(h.stored("a").await.unwrap().progress.count, 1, "its progress is durable");
    assert!(h.quiet_for(&mut sub, 5).await, "a draining partition fires nothing new");
    h.engine.release(partition).await;
}

#[tokio::test(start_paused = true)]
async fn drain_gives_up_after_its_timeout() {
    let (h, mut sub) = subscribed();
    h.schedule("a", every("@every 1s", None)).await;
    h.advance(1).await;
    assert_eq!(drain(&mut sub).len(), 1);
    let partition = h.store.partition_of(&key("a"));
    let engine = h.engine.clone();
    let drained =
        tokio::spawn(async move { engine.drain_partition(partition, SignedDuration::from_secs(2)).await });
    h.advance(1).await;
    h.advance(2).await;
    assert!(!drained.await.unwrap(), "the unanswered trigger outlived the timeout");
}

/// Lets the engine run `rounds` times, answering every trigger that arrived with success: the
/// names of their jobs, in arrival order.
async fn answer_rounds(sub: &mut Subscription, rounds: usize) -> Vec<String> {
    let mut names = Vec::new();
    for _ in 0..rounds {
        settle().await;
        for t in drain(sub) {
            names.push(t.key.name.clone());
            assert!(sub.complete(t.id, Outcome::Success));
        }
    }
    names
}

/// Schedules `n` one-shot jobs of `app` named `{prefix}-{i:04}`, due at `due` (a duration),
/// straight through the engine.
async fn schedule_many(h: &Harness, app: &str, prefix: &str, n: usize, due: &str) {
    for i in 0..n {
        let key = JobKey::app("default", app, format!("{prefix}-{i:04}"));
        h.engine.schedule(key, one_shot(due), PutMode::CreateOnly).await.expect("schedule");
    }
    settle().await;
}

/// [`bounded`], with a subscriber of "app" and `jobs` one-shot jobs of it due at 1 s, 1 s on:
/// the harness, the subscriber and the triggers it holds.
async fn holding(window: usize, credit: usize, jobs: usize) -> (Harness, Subscription, Vec<Trigger>) {
    let h = bounded(window, credit);
    let mut sub = h.subscribe("app");
    schedule_many(&h, "app", "j", jobs, "1s").await;
    h.advance(1).await;
    let held = drain(&mut sub);
    (h, sub, held)
}

#[tokio::test(start_paused = true)]
async fn a_silent_subscriber_holds_at_most_its_credit_and_memory_stays_within_the_window() {
    let (h, mut sub, mut held) = holding(8, 3, 100).await;
    h.advance(5).await;
    held.extend(drain(&mut sub));
    assert_eq!(held.len(), 3, "a subscriber that answers nothing holds its credit, no more");
    let stats = h.engine.router_stats();
    assert_eq!(stats.sent, 3);
    assert!(stats.queued <= 5, "at most the window is fired: {stats:?}");
    assert!(h.engine.resident_jobs() <= 8, "{} jobs in memory, window 8", h.engine.resident_jobs());

    // Answering lets the rest through, each exactly once, never more than 3 at a time.
    let mut seen = std::collections::BTreeSet::new();
    let mut pending = held;
    while !pending.is_empty() {
        for t in pending.drain(..) {
            assert!(seen.insert(t.key.name.clone()), "{} delivered twice", t.key.name);
            assert!(sub.complete(t.id, Outcome::Success));
        }
        settle().await;
        assert!(h.engine.resident_jobs() <= 8);
        pending = drain(&mut sub);
        assert!(pending.len() <= 3, "{} at once", pending.len());
    }
    assert_eq!(seen.len(), 100);
    assert_eq!(h.store.count().await.unwrap(), 0, "every one-shot job completed");
}

#[tokio::test(start_paused = true)]
async fn jobs_due_without_a_subscriber_are_staged_in_the_store_not_in_memory() {
    let h = bounded(8, 4);
    schedule_many(&h, "app", "j", 100, "1s").await;
    for _ in 0..10 {
        h.advance(1).await;
    }
    assert_eq!(h.engine.staged_count().await.unwrap(), 100, "every due job is staged");
    assert_eq!(h.engine.resident_jobs(), 0, "staged jobs are not held in memory");
    assert_eq!(h.engine.router_stats().in_flight(), 0);
    for i in 0..100 {
        let stored = h.stored(&format!("j-{i:04}")).await.unwrap();
        assert!(stored.staged);
        assert_eq!(stored.progress.attempts, 0, "staging costs no retry");
    }

    // The app connects: all go out, in due order within the partition, paged through the window.
    let mut sub = h.subscribe("app");
    let mut delivered = Vec::new();
    for _ in 0..200 {
        settle().await;
        assert!(h.engine.resident_jobs() <= 8, "{} in memory", h.engine.resident_jobs());
        let got = drain(&mut sub);
        if got.is_empty() && delivered.len() == 100 {
            break;
        }
        assert!(got.len() <= 4);
        for t in got {
            assert_eq!(t.due, at(1));
            delivered.push(t.key.name.clone());
            assert!(sub.complete(t.id, Outcome::Success));
        }
    }
    let mut unique = delivered.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((delivered.len(), unique.len()), (100, 100), "each exactly once");
    assert_eq!(h.engine.staged_count().await.unwrap(), 0);
    assert_eq!(h.store.count().await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn one_apps_staged_backlog_does_not_starve_another_apps_jobs() {
    let h = bounded(8, 64);
    schedule_many(&h, "idle", "backlog", 50, "1s").await;
    h.advance(2).await;
    assert_eq!(h.engine.staged_count().await.unwrap(), 50);
    // Another app's jobs, due later, in the same partition: they fire on time although the
    // partition's window would hold only 8 of the idle app's overdue jobs.
    let mut busy = h.subscribe("busy");
    schedule_many(&h, "busy", "tick", 3, "3s").await;
    h.advance(3).await;
    let got = drain(&mut busy);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.iter().all(|t| t.due == at(5)));
    for t in &got {
        assert!(busy.complete(t.id, Outcome::Success));
    }
    // While the idle app's backlog pages in, the busy app still gets its jobs on time.
    let mut idle = h.subscribe("idle");
    schedule_many(&h, "busy", "later", 3, "5s").await;
    let mut idle_seen = 0;
    for _ in 0..5 {
        h.advance(1).await;
        for t in drain(&mut idle) {
            idle_seen += 1;
            assert!(idle.complete(t.id, Outcome::Success));
        }
    }
    let later = drain(&mut busy);
    assert_eq!(later.len(), 3, "{later:?}");
    assert!(later.iter().all(|t| t.due == at(10)));
    assert!(idle_seen < 50, "the backlog was still paging in ({idle_seen} of 50)");
    idle_seen += answer_rounds(&mut idle, 100).await.len();
    assert_eq!(idle_seen, 50);
}

#[tokio::test(start_paused = true)]
async fn triggers_of_a_route_that_loses_its_last_subscriber_are_staged_and_redelivered_without_a_retry() {
    let (h, first, held) = holding(16, 2, 10).await;
    assert_eq!(held.len(), 2);
    assert_eq!(h.engine.router_stats().queued, 8);
    drop(first);
    settle().await;
    assert_eq!(h.engine.router_stats(), kairos_engine::RouterStats::default());
    assert_eq!(h.engine.staged_count().await.unwrap(), 10, "sent and queued ones alike");
    assert_eq!(h.engine.resident_jobs(), 0);
    let mut second = h.subscribe("app");
    let mut names = answer_rounds(&mut second, 20).await;
    names.sort();
    assert_eq!(names, (0..10).map(|i| format!("j-{i:04}")).collect::<Vec<_>>());
    assert_eq!(h.store.count().await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_job_deleted_while_its_trigger_is_queued_is_never_delivered() {
    let (h, mut sub, first) = holding(16, 1, 3).await;
    assert_eq!(first.len(), 1);
    let doomed: Vec<String> =
        (0..3).map(|i| format!("j-{i:04}")).filter(|n| *n != first[0].key.name).collect();
    h.engine.delete(&key_of("app", &doomed[0])).await.unwrap();
    settle().await;
    assert!(sub.complete(first[0].id, Outcome::Success));
    let rest = answer_rounds(&mut sub, 5).await;
    assert_eq!(rest, vec![doomed[1].clone()], "the deleted job's queued trigger was recalled");
}

#[tokio::test(start_paused = true)]
async fn answers_from_split_subscription_halves_flow_while_triggers_wait() {
    let h = bounded(64, 4);
    let (mut triggers, answers) = h.subscribe("app").split();
    schedule_many(&h, "app", "j", 20, "1s").await;
    h.advance(1).await;
    let mut batch = Vec::new();
    let mut total = 0;
    while total < 20 {
        batch.clear();
        let n = tokio::time::timeout(Duration::from_secs(5), triggers.recv_many(&mut batch, 64))
            .await
            .expect("triggers keep coming while answers flow");
        assert!(n <= 4, "{n} at once with a credit of 4");
        for t in &batch {
            assert!(answers.complete(t.id, Outcome::Success));
        }
        total += n;
    }
    settle().await;
    assert_eq!(h.store.count().await.unwrap(), 0);
    drop(triggers);
    settle().await;
    assert_eq!(h.engine.router_stats().subscribers, 1, "the answers half keeps it registered");
    drop(answers);
    assert_eq!(h.engine.router_stats().subscribers, 0);
}

#[tokio::test(start_paused = true)]
async fn draining_a_partition_takes_back_its_queued_triggers() {
    let (h, mut sub, held) = holding(16, 1, 5).await;
    assert_eq!(held.len(), 1);
    assert_eq!(h.engine.router_stats().queued, 4);
    let engine = h.engine.clone();
    let drained = tokio::spawn(async move { engine.drain_partition(0, SignedDuration::from_secs(30)).await });
    settle().await;
    assert_eq!(h.engine.router_stats().queued, 0, "queued triggers were taken back");
    assert!(sub.complete(held[0].id, Outcome::Success));
    settle().await;
    assert!(drained.await.unwrap());
    h.engine.release(0).await;
    assert!(drain(&mut sub).is_empty(), "nothing of the drained partition goes out");
    assert_eq!(h.store.count().await.unwrap(), 4, "the next owner fires the rest from the store");
}

fn key_of(app: &str, name: &str) -> JobKey {
    JobKey::app("default", app, name)
}

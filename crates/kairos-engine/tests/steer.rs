//! Seeing and steering jobs (issue 14): status, history, pause/resume, trigger-now, misfire
//! policies and exponential retries, on a `ManualClock` and the in-memory store.

mod common;

use std::sync::Arc;

use common::{Harness, at, drain, every, key, settle};
use jiff::{SignedDuration, Timestamp};
use kairos_core::{
    CatchUp, Exponential, FailurePolicy, HistoryLimit, JobSpec, JobState, MisfirePolicy, Owner, Ratio,
    TriggerOutcome,
};
use kairos_engine::{Engine, EngineConfig, EngineError, ListFilter, Outcome, Subscription};
use kairos_store::memory::MemoryStore;
use kairos_store::{JobStore, PutMode};

/// [`common::config`] with a window of 64 and a history of 5 per job.
fn config() -> EngineConfig {
    EngineConfig { history: HistoryLimit::new(5).unwrap(), ..common::config(64) }
}

impl Harness {
    fn new() -> Harness {
        Harness::on(Arc::new(MemoryStore::new(4)), Harness::start_clock(), config())
    }

    /// A new engine on the same store and clock, after this one stopped.
    async fn restart(self) -> Harness {
        self.engine.shutdown().await;
        Harness::on(self.store, self.clock, config())
    }

    /// Answers every trigger due now, then every one due within the next `secs`: their due
    /// times.
    async fn answer_now_and_within(&self, sub: &mut Subscription, secs: i64) -> Vec<Timestamp> {
        let mut dues = answer_all(sub, Outcome::Success).await;
        self.advance(secs).await;
        dues.extend(answer_all(sub, Outcome::Success).await);
        dues
    }

    async fn state(&self, name: &str) -> Option<JobState> {
        self.engine.status(&key(name)).await.unwrap().map(|(_, s)| s.state)
    }
}

fn misfire(catch_up: CatchUp, window: Option<i64>) -> Option<MisfirePolicy> {
    Some(MisfirePolicy { catch_up, window: window.map(SignedDuration::from_secs) })
}

/// Answers every trigger that arrives (one job has one in flight) until none comes, returning
/// their due times.
async fn answer_all(sub: &mut Subscription, outcome: Outcome) -> Vec<Timestamp> {
    let mut dues = Vec::new();
    loop {
        settle().await;
        let got = drain(sub);
        if got.is_empty() {
            return dues;
        }
        for t in got {
            dues.push(t.due);
            assert!(sub.complete(t.id, outcome));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn status_and_history_follow_every_outcome() {
    let h = Harness::new();
    let mut sub = h.subscribe("app");
    h.schedule("s", every("@every 10s", None)).await;
    let (_, status) = h.engine.status(&key("s")).await.unwrap().unwrap();
    assert_eq!((status.state, status.next_fire, status.fired), (JobState::Scheduled, Some(at(10)), 0));

    h.advance(10).await;
    assert_eq!(answer_all(&mut sub, Outcome::Success).await, vec![at(10)]);
    h.advance(10).await;
    settle().await;
    let t = drain(&mut sub).pop().unwrap();
    h.advance(2).await;
    sub.complete(t.id, Outcome::Failed);
    settle().await;
    let (_, status) = h.engine.status(&key("s")).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Retrying);
    assert_eq!((status.attempt, status.next_fire), (1, Some(at(21))));
    assert_eq!(answer_all(&mut sub, Outcome::Success).await, vec![at(21)]);

    let (_, status) = h.engine.status(&key("s")).await.unwrap().unwrap();
    assert_eq!(
        (status.state, status.ticks, status.fired, status.successes, status.failures),
        (JobState::Scheduled, 2, 3, 2, 1)
    );
    assert_eq!(status.last_outcome, Some(TriggerOutcome::Success));
    assert_eq!(status.last_fire, Some(at(22)));
    let history = h.engine.history(&key("s"), 50).await.unwrap();
    let summary: Vec<_> =
        history.iter().map(|r| (r.tick, r.fired_at, r.answered_at, r.attempt, r.outcome)).collect();
    assert_eq!(
        summary,
        vec![
            (at(10), at(10), at(10), 1, TriggerOutcome::Success),
            (at(20), at(20), at(22), 1, TriggerOutcome::Failed),
            (at(20), at(22), at(22), 2, TriggerOutcome::Success),
        ]
    );
    assert_eq!(history[2].lateness(), SignedDuration::from_secs(2));

    // Bounded: the history keeps the newest 5 (the engine's limit here).
    for _ in 0..6 {
        h.advance(10).await;
        answer_all(&mut sub, Outcome::Success).await;
    }
    let history = h.engine.history(&key("s"), 50).await.unwrap();
    assert_eq!(
        history.iter().map(|r| r.tick).collect::<Vec<_>>(),
        (4..=8).map(|i| at(i * 10)).collect::<Vec<_>>()
    );
    // Removed with the job.
    h.engine.delete(&key("s")).await.unwrap();
    assert!(h.engine.history(&key("s"), 50).await.unwrap().is_empty());
    assert!(h.engine.status(&key("s")).await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_job_without_a_subscriber_is_waiting_for_its_app_and_its_history_says_so() {
    let h = Harness::new();
    h.schedule("w", every("@every 10s", None)).await;
    h.advance(10).await;
    settle().await;
    assert_eq!(h.state("w").await, Some(JobState::WaitingForApp));
    let history = h.engine.history(&key("w"), 50).await.unwrap();
    assert_eq!(history.iter().map(|r| r.outcome).collect::<Vec<_>>(), vec![TriggerOutcome::Undeliverable]);
    let mut sub = h.subscribe("app");
    assert_eq!(answer_all(&mut sub, Outcome::Success).await, vec![at(10)]);
    assert_eq!(h.state("w").await, Some(JobState::Scheduled));
}

/// Pauses at 5 s, stays paused through a restart until 65 s, resumes: what each policy
/// delivers of the six ticks missed (10 … 60 s).
async fn paused_then_resumed(policy: Option<MisfirePolicy>) -> Vec<Timestamp> {
    let h = Harness::new();
    h.schedule("p", JobSpec { misfire_policy: policy, ..every("@every 10s", None) }).await;
    let mut sub = h.subscribe("app");
    h.advance(5).await;
    let status = h.engine.pause(&key("p")).await.unwrap();
    assert_eq!((status.state, status.next_fire), (JobState::Paused, None));
    h.advance(30).await;
    assert!(answer_all(&mut sub, Outcome::Success).await.is_empty(), "a paused job fires nothing");
    drop(sub);
    let h = h.restart().await;
    let mut sub = h.subscribe("app");
    h.advance(30).await;
    assert!(answer_all(&mut sub, Outcome::Success).await.is_empty(), "still paused after a restart");
    assert_eq!(h.state("p").await, Some(JobState::Paused));
    let status = h.engine.resume(&key("p")).await.unwrap();
    assert_eq!(status.state, JobState::Scheduled);
    h.answer_now_and_within(&mut sub, 5).await
}

#[tokio::test(start_paused = true)]
async fn resume_applies_each_misfire_policy_to_the_ticks_missed_while_paused() {
    let all: Vec<Timestamp> = (1..=7).map(|i| at(i * 10)).collect();
    assert_eq!(paused_then_resumed(None).await, all, "default: every missed tick, then on schedule");
    assert_eq!(paused_then_resumed(misfire(CatchUp::Once, None)).await, vec![at(60), at(70)]);
    assert_eq!(paused_then_resumed(misfire(CatchUp::Skip, None)).await, vec![at(70)]);
    assert_eq!(
        paused_then_resumed(misfire(CatchUp::All, Some(25))).await,
        vec![at(40), at(50), at(60), at(70)]
    );
}

/// 65 s of scheduler downtime on `@every 10s`: what each policy delivers after the restart.
async fn after_downtime(policy: Option<MisfirePolicy>) -> Vec<Timestamp> {
    let h = Harness::new();
    h.schedule("d", JobSpec { misfire_policy: policy, ..every("@every 10s", None) }).await;
    h.engine.shutdown().await;
    h.clock.advance(SignedDuration::from_secs(65));
    let h = Harness::on(h.store, h.clock, config());
    let mut sub = h.subscribe("app");
    h.answer_now_and_within(&mut sub, 5).await
}

#[tokio::test(start_paused = true)]
async fn misfire_policy_applies_after_scheduler_downtime() {
    let all: Vec<Timestamp> = (1..=7).map(|i| at(i * 10)).collect();
    assert_eq!(after_downtime(None).await, all);
    assert_eq!(after_downtime(misfire(CatchUp::All, None)).await, all, "explicit all is the default");
    assert_eq!(after_downtime(misfire(CatchUp::Once, None)).await, vec![at(60), at(70)]);
    assert_eq!(after_downtime(misfire(CatchUp::Skip, None)).await, vec![at(70)]);
    assert_eq!(
        after_downtime(misfire(CatchUp::Once, Some(3))).await,
        vec![at(70)],
        "the newest missed is older than the window"
    );
}

#[tokio::test(start_paused = true)]
async fn misfire_policy_applies_after_a_long_app_outage() {
    let h = Harness::new();
    h.schedule("o", JobSpec { misfire_policy: misfire(CatchUp::Once, None), ..every("@every 10s", None) })
        .await;
    // No subscriber from 10 s to 65 s: the job is staged.
    h.advance(65).await;
    assert_eq!(h.state("o").await, Some(JobState::WaitingForApp));
    let mut sub = h.subscribe("app");
    assert_eq!(h.answer_now_and_within(&mut sub, 5).await, vec![at(60), at(70)]);
}

#[tokio::test(start_paused = true)]
async fn trigger_now_delivers_once_more_without_moving_the_schedule_or_the_count() {
    let h = Harness::new();
    let mut sub = h.subscribe("app");
    h.schedule("t", every("@every 10s", Some(2))).await;
    h.advance(3).await;
    h.engine.trigger_now(&key("t")).await.unwrap();
    assert_eq!(answer_all(&mut sub, Outcome::Success).await, vec![at(3)]);
    let (job, status) = h.engine.status(&key("t")).await.unwrap().unwrap();
    assert_eq!((job.progress.count, job.next_due, status.fired), (0, at(10), 1));
    h.advance(7).await;
    assert_eq!(answer_all(&mut sub, Outcome::Success).await, vec![at(10)]);
    h.advance(10).await;
    assert_eq!(
        answer_all(&mut sub, Outcome::Success).await,
        vec![at(20)],
        "still two ticks: repeats unaffected"
    );
    assert!(h.engine.status(&key("t")).await.unwrap().is_none());
    assert!(matches!(h.engine.trigger_now(&key("t")).await, Err(EngineError::NotFound(_))));
}

#[tokio::test(start_paused = true)]
async fn trigger_now_on_a_paused_job_is_allowed_and_retried_under_the_failure_policy() {
    let h = Harness::new();
    let mut sub = h.subscribe("app");
    h.schedule("t", every("@every 1h", None)).await;
    h.engine.pause(&key("t")).await.unwrap();
    settle().await;
    h.engine.trigger_now(&key("t")).await.unwrap();
    settle().await;
    let first = drain(&mut sub);
    assert_eq!(first.len(), 1);
    sub.complete(first[0].id, Outcome::Failed);
    h.advance(1).await;
    assert_eq!(answer_all(&mut sub, Outcome::Success).await, vec![at(0)], "retried after the default 1 s");
    let history = h.engine.history(&key("t"), 50).await.unwrap();
    assert!(history.iter().all(|r| r.manual));
    assert_eq!(
        history.iter().map(|r| (r.attempt, r.outcome)).collect::<Vec<_>>(),
        vec![(1, TriggerOutcome::Failed), (2, TriggerOutcome::Success)]
    );
    assert_eq!(h.state("t").await, Some(JobState::Paused), "still paused");
    h.advance(3600).await;
    assert!(drain(&mut sub).is_empty(), "the paused job's own ticks do not fire");
}

#[tokio::test(start_paused = true)]
async fn trigger_now_is_a_durable_request_any_engine_may_write_and_the_owner_takes() {
    let store = Arc::new(MemoryStore::new(4));
    let clock = Harness::start_clock();
    // An engine that fires no partition (another replica's) writes the request...
    let writer = Engine::new(store.clone(), Arc::new(clock.clone()), config());
    writer.schedule(key("t"), every("@every 1h", Some(3)), PutMode::CreateOnly).await.unwrap();
    writer.trigger_now(&key("t")).await.unwrap();
    let stored = store.get(&key("t")).await.unwrap().unwrap();
    assert_eq!((stored.manual.clone(), stored.next_due), (vec![at(0)], at(0)), "pulled forward, durably");
    // ... and whoever fires the partition later delivers it, then puts the job back on its timeline.
    clock.advance(SignedDuration::from_secs(5));
    let h = Harness::on(store.clone(), clock.clone(), config());
    let mut sub = h.subscribe("app");
    assert_eq!(answer_all(&mut sub, Outcome::Success).await, vec![at(0)]);
    settle().await;
    let (job, status) = h.engine.status(&key("t")).await.unwrap().unwrap();
    assert!(job.manual.is_empty(), "taken");
    assert_eq!((job.progress.count, job.next_due, status.fired), (0, at(3600), 1));
    let history = h.engine.history(&key("t"), 50).await.unwrap();
    assert_eq!(history.iter().map(|r| (r.manual, r.tick)).collect::<Vec<_>>(), vec![(true, at(0))]);
    // Too many waiting requests: Busy, and nothing changes.
    for _ in 0..kairos_engine::MAX_PENDING_TRIGGERS {
        writer.trigger_now(&key("t")).await.unwrap();
    }
    assert!(matches!(writer.trigger_now(&key("t")).await, Err(EngineError::Busy)));
}

#[tokio::test(start_paused = true)]
async fn trigger_now_on_a_paused_job_survives_a_restart_and_leaves_it_paused() {
    let h = Harness::new();
    h.schedule("t", every("@every 1h", None)).await;
    h.engine.pause(&key("t")).await.unwrap();
    settle().await;
    // No subscriber yet: stop before anything could be delivered.
    h.engine.shutdown().await;
    let writer = Engine::new(h.store.clone(), Arc::new(h.clock.clone()), config());
    writer.trigger_now(&key("t")).await.unwrap();
    let h = Harness::on(h.store.clone(), h.clock.clone(), config());
    let mut sub = h.subscribe("app");
    assert_eq!(answer_all(&mut sub, Outcome::Success).await, vec![at(0)]);
    settle().await;
    let (job, status) = h.engine.status(&key("t")).await.unwrap().unwrap();
    assert_eq!((status.state, job.next_due, job.manual.len()), (JobState::Paused, Timestamp::MAX, 0));
    h.advance(7200).await;
    assert!(drain(&mut sub).is_empty(), "still paused");
}

#[tokio::test(start_paused = true)]
async fn exponential_retries_grow_by_the_multiplier_up_to_the_cap() {
    let h = Harness::new();
    let mut sub = h.subscribe("app");
    let policy = FailurePolicy::Exponential(Exponential {
        initial_interval: SignedDuration::from_secs(1),
        multiplier: Ratio::from_f64(2.0).unwrap(),
        max_interval: Some(SignedDuration::from_secs(5)),
        max_retries: Some(4),
        jitter: Ratio::ZERO,
    });
    h.schedule(
        "x",
        JobSpec { due_time: Some("5s".into()), failure_policy: Some(policy), ..JobSpec::default() },
    )
    .await;
    h.advance(5).await;
    let mut dues = Vec::new();
    for wait in [1, 2, 4, 5, 0] {
        settle().await;
        let got = drain(&mut sub);
        assert_eq!(got.len(), 1, "{dues:?}");
        dues.push(got[0].due);
        sub.complete(got[0].id, Outcome::Failed);
        h.advance(wait).await;
    }
    assert_eq!(dues, vec![at(5), at(6), at(8), at(12), at(17)]);
    assert!(h.engine.status(&key("x")).await.unwrap().is_none(), "4 retries, then given up and finished");
}

#[tokio::test(start_paused = true)]
async fn exponential_jitter_is_the_same_on_every_run() {
    async fn dues() -> Vec<Timestamp> {
        let h = Harness::new();
        let mut sub = h.subscribe("app");
        let policy = FailurePolicy::Exponential(Exponential {
            initial_interval: SignedDuration::from_secs(10),
            multiplier: Ratio::from_f64(3.0).unwrap(),
            max_interval: None,
            max_retries: Some(3),
            jitter: Ratio::from_f64(0.5).unwrap(),
        });
        h.schedule(
            "j",
            JobSpec { due_time: Some("1s".into()), failure_policy: Some(policy), ..JobSpec::default() },
        )
        .await;
        let mut dues = Vec::new();
        for _ in 0..200 {
            h.advance(1).await;
            for t in drain(&mut sub) {
                dues.push(t.due);
                sub.complete(t.id, Outcome::Failed);
            }
        }
        dues
    }
    let a = dues().await;
    assert_eq!(a.len(), 4);
    assert_eq!(a, dues().await);
    let gaps: Vec<i64> = a.windows(2).map(|w| w[1].duration_since(w[0]).as_secs()).collect();
    for (gap, base) in gaps.iter().zip([10, 30, 90]) {
        assert!(*gap <= base && *gap >= base / 2, "gap {gap} outside [{}, {base}]", base / 2);
    }
}

#[tokio::test(start_paused = true)]
async fn the_ttl_keeps_running_while_paused() {
    let h = Harness::new();
    let mut sub = h.subscribe("app");
    h.schedule("ttl", JobSpec { ttl: Some("30s".into()), ..every("@every 10s", None) }).await;
    h.schedule("late", JobSpec { ttl: Some("30s".into()), ..every("@every 10s", None) }).await;
    h.engine.pause(&key("ttl")).await.unwrap();
    h.engine.pause(&key("late")).await.unwrap();
    // Resumed after its ttl: finished, deleted, nothing delivered.
    h.clock.advance(SignedDuration::from_secs(31));
    let status = h.engine.resume(&key("late")).await.unwrap();
    assert_eq!(status.state, JobState::Finished);
    assert!(h.engine.status(&key("late")).await.unwrap().is_none());
    // Left paused: deleted at its expiry.
    h.advance(1).await;
    assert!(h.engine.status(&key("ttl")).await.unwrap().is_none(), "expired while paused");
    let got = drain(&mut sub);
    assert!(got.is_empty(), "{got:?}");
}

#[tokio::test(start_paused = true)]
async fn bad_steering_gets_clear_errors_and_repeats_are_idempotent() {
    let h = Harness::new();
    assert!(matches!(h.engine.pause(&key("none")).await, Err(EngineError::NotFound(_))));
    assert!(matches!(h.engine.resume(&key("none")).await, Err(EngineError::NotFound(_))));
    h.schedule("i", every("@every 10s", None)).await;
    assert_eq!(h.engine.resume(&key("i")).await.unwrap().state, JobState::Scheduled, "not paused: unchanged");
    let before = h.store.get(&key("i")).await.unwrap();
    h.engine.pause(&key("i")).await.unwrap();
    let once = h.store.get(&key("i")).await.unwrap().unwrap();
    h.engine.pause(&key("i")).await.unwrap();
    assert_eq!(h.store.get(&key("i")).await.unwrap().unwrap(), once, "pausing twice changes nothing");
    assert_ne!(before.unwrap().incarnation, once.incarnation);
    let err = h
        .engine
        .schedule(
            key("bad"),
            JobSpec { misfire_policy: misfire(CatchUp::Skip, Some(0)), ..every("@every 1s", None) },
            PutMode::CreateOnly,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("invalid misfire window 0s"), "{err}");
    assert!(h.store.get(&key("bad")).await.unwrap().is_none(), "nothing stored");
}

#[tokio::test(start_paused = true)]
async fn concurrent_pause_and_resume_never_half_apply() {
    let h = Harness::new();
    h.schedule("c", every("@every 10s", None)).await;
    let mut calls = Vec::new();
    for i in 0..40 {
        let engine = h.engine.clone();
        calls.push(tokio::spawn(async move {
            if i % 2 == 0 { engine.pause(&key("c")).await } else { engine.resume(&key("c")).await }
        }));
    }
    for call in calls {
        call.await.unwrap().unwrap();
    }
    let job = h.store.get(&key("c")).await.unwrap().unwrap();
    // Paused and parked at the far end of the due index, or running and due at its next tick:
    // never one without the other.
    assert_eq!(job.paused, job.next_due == Timestamp::MAX, "{job:?}");
    if !job.paused {
        assert_eq!(job.next_due, at(10));
    }
}

#[tokio::test(start_paused = true)]
async fn list_filters_by_name_prefix_and_state_and_pages() {
    let h = Harness::new();
    for name in ["a1", "a2", "a3", "b1"] {
        h.schedule(name, every("@every 10s", None)).await;
    }
    h.engine.pause(&key("a2")).await.unwrap();
    let owner = Owner::app("app");
    let names = |jobs: Vec<(kairos_store::StoredJob, kairos_core::JobStatus)>| {
        jobs.into_iter().map(|(j, _)| j.key.name).collect::<Vec<_>>()
    };
    let a = ListFilter { name_prefix: "a".into(), state: None };
    assert_eq!(
        names(h.engine.list_status("default", &owner, &a, None, 10).await.unwrap()),
        ["a1", "a2", "a3"]
    );
    assert_eq!(names(h.engine.list_status("default", &owner, &a, Some("a1"), 1).await.unwrap()), ["a2"]);
    let paused = ListFilter { name_prefix: String::new(), state: Some(JobState::Paused) };
    assert_eq!(names(h.engine.list_status("default", &owner, &paused, None, 10).await.unwrap()), ["a2"]);
}

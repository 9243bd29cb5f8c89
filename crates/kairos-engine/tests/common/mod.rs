//! What the engine's test files share: one engine on the in-memory store and a `ManualClock`,
//! driven on tokio's paused clock (`settle()` returns once every engine task is idle, so the
//! tests are deterministic and never sleep), and the keys, times and specs the tests name.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use kairos_core::{HistoryLimit, JobKey, JobSpec, ManualClock};
use kairos_engine::{Engine, EngineConfig, Registration, Subscription, Trigger};
use kairos_store::memory::MemoryStore;
use kairos_store::{JobStore, PutMode, StoredJob};

/// The manual clock's start.
pub const START: &str = "2026-03-01T10:00:00Z";

/// An engine owning every partition of `store`, on `clock`.
pub struct Harness {
    pub engine: Engine,
    pub clock: ManualClock,
    pub store: Arc<MemoryStore>,
}

/// A window of `window` jobs, 16 triggers of credit per subscriber, the default history.
pub fn config(window: usize) -> EngineConfig {
    EngineConfig {
        window,
        credit: 16,
        max_sleep: SignedDuration::from_secs(1),
        default_tz: TimeZone::UTC,
        history: HistoryLimit::DEFAULT,
    }
}

impl Harness {
    /// A new engine with `config` over `store` on `clock`, owning every partition.
    pub fn on(store: Arc<MemoryStore>, clock: ManualClock, config: EngineConfig) -> Harness {
        let engine = Engine::new(store.clone(), Arc::new(clock.clone()), config);
        engine.own_all();
        Harness { engine, clock, store }
    }

    /// The clock at [`START`].
    pub fn start_clock() -> ManualClock {
        ManualClock::new(START.parse().unwrap())
    }

    pub async fn advance(&self, secs: i64) {
        settle().await;
        self.clock.advance(SignedDuration::from_secs(secs));
        settle().await;
    }

    pub async fn advance_ms(&self, ms: i64) {
        settle().await;
        self.clock.advance(SignedDuration::from_millis(ms));
        settle().await;
    }

    /// A subscriber of `app` in namespace "default".
    pub fn subscribe(&self, app: &str) -> Subscription {
        self.engine.subscribe(&Registration {
            namespace: "default".into(),
            app_id: Some(app.into()),
            actor_types: vec![],
        })
    }

    /// Creates job `name` of "app" and lets the engine take it in.
    pub async fn schedule(&self, name: &str, spec: JobSpec) {
        self.engine.schedule(key(name), spec, PutMode::CreateOnly).await.expect("schedule");
        settle().await;
    }

    /// Job `name` of "app" as the store holds it.
    pub async fn stored(&self, name: &str) -> Option<StoredJob> {
        self.store.get(&key(name)).await.unwrap()
    }
}

/// Lets every task run until all are idle.
pub async fn settle() {
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Job `name` of app "app" in namespace "default".
pub fn key(name: &str) -> JobKey {
    JobKey::app("default", "app", name)
}

/// `secs` after [`START`].
pub fn at(secs: i64) -> Timestamp {
    START.parse::<Timestamp>().unwrap() + SignedDuration::from_secs(secs)
}

pub fn one_shot(due: &str) -> JobSpec {
    JobSpec { due_time: Some(due.into()), ..JobSpec::default() }
}

pub fn every(schedule: &str, repeats: Option<u32>) -> JobSpec {
    JobSpec { schedule: Some(schedule.into()), repeats, ..JobSpec::default() }
}

/// Every trigger the subscriber holds now.
pub fn drain(sub: &mut Subscription) -> Vec<Trigger> {
    std::iter::from_fn(|| sub.try_recv()).collect()
}

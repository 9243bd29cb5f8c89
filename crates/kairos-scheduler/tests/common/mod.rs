//! What the scheduler's integration tests share: an engine on a [`ManualClock`] that owns every
//! partition, as one scheduler replica alone would.

use std::sync::Arc;

use jiff::SignedDuration;
use jiff::tz::TimeZone;
use kairos_core::{Clock, ManualClock};
use kairos_engine::{Engine, EngineConfig};
use kairos_store::memory::MemoryStore;

/// An engine over `store` on a manual clock at 2026-03-01T10:00:00Z, owning all partitions.
pub fn manual_engine(store: Arc<MemoryStore>) -> (Engine, ManualClock) {
    let clock = ManualClock::new("2026-03-01T10:00:00Z".parse().unwrap());
    let config = EngineConfig {
        window: 64,
        max_sleep: SignedDuration::from_millis(20),
        default_tz: TimeZone::UTC,
        ..EngineConfig::default()
    };
    let engine = Engine::new(store, Arc::new(clock.clone()) as Arc<dyn Clock>, config);
    engine.own_all();
    (engine, clock)
}

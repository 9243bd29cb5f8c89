//! The domain of kairos, with no I/O: what a Dapr job *is* and when it fires.
//!
//! This crate owns the exact semantics of the Dapr Jobs API that a user can observe: job keys
//! and name rules ([`key`]), the schedule grammar ([`schedule`]), due time and ttl strings
//! ([`duration`], [`timepoint`]), job validation ([`job`]), the trigger timeline
//! ([`timeline`]) and failure-policy arithmetic ([`policy`]); the kairos extensions: the
//! misfire policy ([`misfire`]) and job status and history ([`status`]); and the one [`backoff`]
//! of every reconnect loop. Time is read only through [`clock::Clock`].
//!
//! It sits at the bottom of the workspace and must never import tokio (except behind the
//! `tokio` feature, for `SystemClock::sleep_until`), tonic, axum, serde_json or any storage.

pub mod backoff;
pub mod clock;
pub mod duration;
pub mod job;
pub mod key;
pub mod misfire;
pub mod policy;
pub mod schedule;
pub mod status;
pub mod timeline;
pub mod timepoint;

pub use backoff::Backoff;
pub use clock::{Clock, ManualClock, Stopwatch, SystemClock};
pub use job::{FailurePolicy, JobSpec, JobTiming, MisfirePolicy, Payload, ValidationError};
pub use key::{JobKey, NameError, Owner, Route};
pub use misfire::CatchUp;
pub use policy::{Exponential, Ratio};
pub use schedule::{Schedule, ScheduleError};
pub use status::{HistoryLimit, JobState, JobStats, JobStatus, TriggerOutcome, TriggerRecord};
pub use timeline::Progress;

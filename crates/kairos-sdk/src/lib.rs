//! The Rust SDK for the Dapr Jobs API, served by kairos or by Dapr's own sidecar.
//!
//! Two halves, as in the official SDKs:
//!
//! * [`Client`]: schedule, get, list and delete jobs through the sidecar's gRPC API
//!   (`dapr.proto.runtime.v1.Dapr`), preferring the stable RPCs and falling back to the
//!   `…Alpha1` ones on older sidecars. [`Client::from_env`] reads `DAPR_GRPC_ENDPOINT` /
//!   `DAPR_GRPC_PORT` and `DAPR_API_TOKEN` as `dapr run` sets them.
//! * [`JobEventService`]: the gRPC app-callback server a `--app-protocol grpc` app runs to
//!   receive fired jobs, dispatching each by job name to a handler added with
//!   [`JobEventService::add_job_event_handler`] and enforcing `APP_API_TOKEN`.
//!
//! * kairos extensions, for a kairos sidecar (a Dapr sidecar ignores or refuses them):
//!   [`MisfirePolicy`] and [`FailurePolicy::Exponential`] on [`Job`], and steering the app's own
//!   jobs ([`steer`]: [`Client::job_status`], [`Client::job_history`], [`Client::pause_job`],
//!   [`Client::resume_job`], [`Client::trigger_job`], [`Client::list_job_status`]).
//!
//! JSON payloads travel as `google.protobuf.Value`-typed `Any`s, like jobs scheduled over HTTP;
//! [`JobEvent::data_json`] also reads raw JSON text as other SDKs send it ([`data`] explains the
//! choice).
//!
//! ```no_run
//! use kairos_sdk::{Client, FailurePolicy, HandlerError, Job, JobEvent, JobEventService};
//! use std::time::Duration;
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Backup { db: String }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Receive the job (dapr run --app-protocol grpc --app-port 50051 …).
//! let service = JobEventService::new().add_job_event_handler("prod-db-backup", |event: JobEvent| async move {
//!     let backup: Backup = event.data_json()?;
//!     println!("backing up {}", backup.db);
//!     Ok::<(), HandlerError>(())
//! });
//! tokio::spawn(service.serve("127.0.0.1:50051".parse()?));
//!
//! // Schedule it.
//! let client = Client::from_env().await?;
//! let job = Job::new("prod-db-backup")
//!     .schedule("@every 1m")
//!     .data_json(&Backup { db: "prod".into() })?
//!     .failure_policy(FailurePolicy::constant(Duration::from_secs(5), Some(3)));
//! client.schedule_job(job, true).await?;
//! # Ok(()) }
//! ```
//!
//! This crate sits on `kairos-proto` only (the generated wire types); it must never import the
//! sidecar, scheduler, engine or store crates, so apps do not pull in the server.

/// Writes builder setters: `name(args) => field = value;` is a `#[must_use]` method that takes
/// the builder by value, sets `field` to `value` and returns it.
macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),+) => $field:ident = $value:expr;)*) => {
        $(
            $(#[$doc])*
            #[must_use]
            pub fn $name(mut self, $($arg: $ty),+) -> Self {
                self.$field = $value;
                self
            }
        )*
    };
}

pub mod client;
pub mod data;
pub mod error;
pub mod job;
pub mod service;
pub mod steer;

pub use client::{API_TOKEN_HEADER, Client, ClientConfig, DEFAULT_CONNECT_TIMEOUT, DEFAULT_GRPC_PORT};
pub use data::{DataError, JobData, VALUE_TYPE_URL};
pub use error::Error;
pub use job::{CatchUp, Exponential, FailurePolicy, Job, MisfirePolicy};
pub use service::{CallbackMethod, HandlerError, HandlerFuture, JobEvent, JobEventHandler, JobEventService};
pub use steer::{
    JobState, JobStatus, JobWithStatus, StatusFilter, StatusPage, TriggerOutcome, TriggerRecord,
};

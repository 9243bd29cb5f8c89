//! The sidecar: what a Dapr app talks to.
//!
//! It serves the Dapr runtime Jobs API over HTTP and gRPC (stable and Alpha1), forwards every
//! call to the scheduler, receives triggered jobs from the scheduler and delivers them to the
//! app over its app channel (gRPC `OnJobEvent`, falling back to `OnJobEventAlpha1`, or HTTP
//! `POST /job/{name}`). Beside Dapr's API it serves kairos's steering of the app's own jobs
//! (status, history, pause, resume, trigger-now, a filtered list) over HTTP under
//! `/v1.0-kairos` and over gRPC as `kairos.runtime.v1.Steering`.
//!
//! Sits on `kairos-core` and `kairos-proto`; it reaches the scheduler only through the
//! scheduler API and, for steering, the steering RPCs of the scheduler's Admin service (gRPC
//! clients or, in `kairos run`, the in-process services, behind the `SchedulerApi` and
//! `SteerApi` traits), and must never import the store or the engine.

pub mod app_channel;
pub mod config;
pub mod errors;
pub mod grpc_api;
pub mod grpc_steer;
pub mod health;
pub mod http_api;
pub mod http_json;
pub mod http_steer;
pub mod job_metrics;
pub mod jobs;
pub mod metadata;
pub mod scheduler_link;
pub mod server;
pub mod tls;

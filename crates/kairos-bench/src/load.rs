//! The create load: C client tasks over K HTTP/2 connections, each scheduling far-future
//! one-shot jobs back to back, until a job count or a deadline is reached (a [`drive`] of
//! Scheduler `ScheduleJob` calls).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kairos_proto::scheduler::scheduler_client::SchedulerClient;
use kairos_proto::scheduler::{
    Job, JobMetadata, JobTargetMetadata, ScheduleJobRequest, TargetJob, job_target_metadata,
};
use tonic::transport::{Channel, Endpoint};

use crate::drive::{self, Call, Driven};
use crate::stack::APP_ID;

/// Far-future due time of every created job (Go duration: one year), so nothing fires.
pub const FAR_DUE_TIME: &str = "8760h";

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// `HOST:PORT` of the Scheduler gRPC service.
    pub address: String,
    /// Concurrent client tasks, each with one call in flight.
    pub clients: usize,
    /// HTTP/2 connections the clients share (client `i` uses connection `i % channels`).
    pub channels: usize,
    /// Stop after this many jobs were attempted.
    pub jobs: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Bytes of the job payload.
    pub payload_bytes: usize,
    /// Job names are this prefix and a sequence number.
    pub name_prefix: String,
    /// Label of the once-a-second progress lines on stderr.
    pub label: String,
}

/// What happened: `ok` counts calls that returned OK (each one a durable job), `elapsed` runs
/// from the first call to the last answer, `latencies` are those of successful calls.
pub type LoadResult = Driven;

/// Opens `channels` HTTP/2 connections to `address`.
///
/// # Errors
/// When a connection cannot be made.
pub async fn connect(address: &str, channels: usize) -> anyhow::Result<Vec<Channel>> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .with_context(|| format!("bad scheduler address {address:?}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    let mut connected = Vec::with_capacity(channels);
    for _ in 0..channels.max(1) {
        // `connect` (not `connect_lazy`) opens a connection of its own for each channel.
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot connect to the scheduler at {address}"))?;
        connected.push(channel);
    }
    Ok(connected)
}

/// The metadata of every bench job: app [`APP_ID`] in namespace `default`.
pub fn metadata() -> JobMetadata {
    JobMetadata {
        app_id: APP_ID.into(),
        namespace: "default".into(),
        target: Some(JobTargetMetadata { r#type: Some(job_target_metadata::Type::Job(TargetJob {})) }),
        concurrency_key: None,
    }
}

fn request(config: &LoadConfig, index: u64, payload: &[u8]) -> ScheduleJobRequest {
    ScheduleJobRequest {
        name: format!("{}{index:010}", config.name_prefix),
        job: Some(Job {
            due_time: Some(FAR_DUE_TIME.into()),
            data: Some(prost_types::Any { type_url: "kairos-bench/payload".into(), value: payload.to_vec() }),
            ..Job::default()
        }),
        metadata: Some(metadata()),
        overwrite: false,
    }
}

/// Runs the load and returns its figures.
///
/// # Errors
/// When the connections cannot be made or a client task fails to run.
pub async fn run(config: LoadConfig) -> anyhow::Result<LoadResult> {
    let channels = connect(&config.address, config.channels).await?;
    let config = Arc::new(config);
    let payload: Arc<[u8]> = vec![b'x'; config.payload_bytes].into();
    let clients = (0..config.clients.max(1))
        .map(|i| {
            let client = SchedulerClient::new(channels[i % channels.len()].clone())
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX);
            let config = config.clone();
            let payload = payload.clone();
            let call: Call = Box::new(move |index| {
                let mut client = client.clone();
                let request = request(&config, index, &payload);
                drive::grpc(async move { client.schedule_job(request).await })
            });
            call
        })
        .collect();
    drive::drive(clients, config.jobs, config.duration, &config.label).await
}

//! The create load: C client tasks over K HTTP/2 connections, each scheduling far-future
//! one-shot jobs back to back, until a job count or a deadline is reached.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use kairos_proto::scheduler::scheduler_client::SchedulerClient;
use kairos_proto::scheduler::{
    Job, JobMetadata, JobTargetMetadata, ScheduleJobRequest, TargetJob, job_target_metadata,
};
use tokio::sync::Mutex;
use tonic::transport::{Channel, Endpoint};

use crate::hist::Latencies;
use crate::timing;

/// A client gives up after this many failed calls across all clients (the server is gone or
/// the load is wrong; either way the figure would mean nothing).
const MAX_ERRORS: u64 = 100;

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
    /// App id owning the jobs.
    pub app_id: String,
    /// Job names are this prefix and a sequence number.
    pub name_prefix: String,
    /// Label of the once-a-second progress lines on stderr.
    pub label: String,
}

/// What happened.
#[derive(Debug)]
pub struct LoadResult {
    /// Calls that returned OK (each one a durable job).
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// From the first call to the last answer.
    pub elapsed: Duration,
    /// Latency of successful calls.
    pub latencies: Latencies,
}

struct Shared {
    next: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
    done: AtomicBool,
    first_error: Mutex<Option<String>>,
}

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

/// The metadata of every bench job.
pub fn metadata(app_id: &str) -> JobMetadata {
    JobMetadata {
        app_id: app_id.to_owned(),
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
        metadata: Some(metadata(&config.app_id)),
        overwrite: false,
    }
}

/// Runs the load and returns its figures.
///
/// # Errors
/// When the connections cannot be made or a client task fails to run.
pub async fn run(config: LoadConfig) -> anyhow::Result<LoadResult> {
    let channels = connect(&config.address, config.channels).await?;
    let shared = Arc::new(Shared {
        next: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        done: AtomicBool::new(false),
        first_error: Mutex::new(None),
    });
    let config = Arc::new(config);
    let start = timing::now();
    let deadline = config.duration.map(|d| start + d);
    let progress = tokio::spawn(progress(shared.clone(), config.label.clone()));

    let mut clients = Vec::with_capacity(config.clients);
    for i in 0..config.clients.max(1) {
        let client = SchedulerClient::new(channels[i % channels.len()].clone())
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        clients.push(tokio::spawn(client_task(client, config.clone(), shared.clone(), deadline)));
    }
    let mut latencies = Latencies::new()?;
    for client in clients {
        let client_latencies = client.await.context("a load client task failed")??;
        latencies.merge(&client_latencies)?;
    }
    let elapsed = start.elapsed();
    shared.done.store(true, Ordering::Relaxed);
    let _ = progress.await;
    let first_error = shared.first_error.lock().await.take();
    Ok(LoadResult {
        ok: shared.ok.load(Ordering::Relaxed),
        errors: shared.errors.load(Ordering::Relaxed),
        first_error,
        elapsed,
        latencies,
    })
}

async fn client_task(
    mut client: SchedulerClient<Channel>,
    config: Arc<LoadConfig>,
    shared: Arc<Shared>,
    deadline: Option<std::time::Instant>,
) -> anyhow::Result<Latencies> {
    let mut latencies = Latencies::new()?;
    let payload = vec![b'x'; config.payload_bytes];
    loop {
        if deadline.is_some_and(|d| timing::now() >= d) || shared.errors.load(Ordering::Relaxed) >= MAX_ERRORS
        {
            break;
        }
        let index = shared.next.fetch_add(1, Ordering::Relaxed);
        if config.jobs.is_some_and(|n| index >= n) {
            break;
        }
        let request = request(&config, index, &payload);
        let sent = timing::now();
        match client.schedule_job(request).await {
            Ok(_) => {
                latencies.record(sent.elapsed());
                shared.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(status) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                let mut first = shared.first_error.lock().await;
                if first.is_none() {
                    *first = Some(format!("{:?}: {}", status.code(), status.message()));
                }
            }
        }
    }
    Ok(latencies)
}

/// Prints a line a second: jobs so far and the rate over the last second.
async fn progress(shared: Arc<Shared>, label: String) {
    let start = timing::now();
    let mut last = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        if shared.done.load(Ordering::Relaxed) {
            return;
        }
        let ok = shared.ok.load(Ordering::Relaxed);
        let errors = shared.errors.load(Ordering::Relaxed);
        eprintln!(
            "  [{label} {:>4.0}s] {ok} jobs, {} jobs/s in the last second, {errors} errors",
            start.elapsed().as_secs_f64(),
            ok - last
        );
        last = ok;
    }
}

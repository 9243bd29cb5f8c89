//! The calls the loads make: ScheduleJob through the sidecar's gRPC or HTTP Jobs API.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::FutureExt;
use kairos_proto::runtime::ScheduleJobRequest;
use kairos_proto::runtime::dapr_client::DaprClient;
use tonic::transport::{Channel, Endpoint};

use crate::app::job_name;
use crate::drive::{self, Call};

/// The due time of job `i` (a Dapr `dueTime`: RFC 3339 or a duration).
pub type DueTime = Arc<dyn Fn(u64) -> String + Send + Sync>;

/// Jobs to schedule: names `prefix` + index, their due times, their payload size.
#[derive(Clone)]
pub struct JobSet {
    pub prefix: String,
    pub due: DueTime,
    pub payload_bytes: usize,
}

impl std::fmt::Debug for JobSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobSet").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

/// Opens `count` HTTP/2 connections to `address`.
///
/// # Errors
/// When one cannot be made.
pub async fn channels(address: &str, count: usize) -> anyhow::Result<Vec<Channel>> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .with_context(|| format!("bad address {address:?}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    let mut out = Vec::new();
    for _ in 0..count.max(1) {
        out.push(endpoint.connect().await.with_context(|| format!("cannot connect to {address}"))?);
    }
    Ok(out)
}

/// `clients` callers of the sidecar's stable gRPC `ScheduleJob` over `connections` connections.
///
/// # Errors
/// When the connections cannot be made.
pub async fn sidecar_grpc(
    address: &str,
    clients: usize,
    connections: usize,
    jobs: &JobSet,
) -> anyhow::Result<Vec<Call>> {
    let channels = channels(address, connections).await?;
    let payload = Arc::new(vec![b'x'; jobs.payload_bytes]);
    Ok((0..clients.max(1))
        .map(|i| {
            let client = DaprClient::new(channels[i % channels.len()].clone());
            let jobs = jobs.clone();
            let payload = payload.clone();
            let call: Call = Box::new(move |index| {
                let mut client = client.clone();
                let request = ScheduleJobRequest {
                    job: Some(kairos_proto::runtime::Job {
                        name: job_name(&jobs.prefix, index),
                        due_time: Some((jobs.due)(index)),
                        data: Some(prost_types::Any {
                            type_url: "kairos-bench/payload".into(),
                            value: payload.to_vec(),
                        }),
                        ..Default::default()
                    }),
                    overwrite: false,
                };
                drive::grpc(async move { client.schedule_job(request).await })
            });
            call
        })
        .collect())
}

/// `clients` callers of the sidecar's HTTP `POST /v1.0/jobs/{name}` (HTTP/1.1, one pooled
/// connection per client at most).
///
/// # Errors
/// When the HTTP client cannot be built.
pub fn sidecar_http(address: &str, clients: usize, jobs: &JobSet) -> anyhow::Result<Vec<Call>> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(clients.max(1))
        .build()
        .context("cannot build the HTTP client")?;
    let data = "x".repeat(jobs.payload_bytes);
    let base = format!("http://{address}/v1.0/jobs/");
    Ok((0..clients.max(1))
        .map(|_| {
            let http = http.clone();
            let jobs = jobs.clone();
            let base = base.clone();
            let data = data.clone();
            let call: Call = Box::new(move |index| {
                let body = serde_json::json!({ "dueTime": (jobs.due)(index), "data": data }).to_string();
                let request = http
                    .post(format!("{base}{}", job_name(&jobs.prefix, index)))
                    .header("content-type", "application/json")
                    .body(body);
                async move {
                    let response = request.send().await.map_err(|e| e.to_string())?;
                    let status = response.status();
                    if status.is_success() {
                        Ok(())
                    } else {
                        let text = response.text().await.unwrap_or_default();
                        Err(format!("HTTP {status}: {text}"))
                    }
                }
                .boxed()
            });
            call
        })
        .collect())
}

//! The gRPC calls the process tests share: a scheduler client that waits for the port, the job
//! metadata of an app, and every stored job through the admin API.

use std::time::Duration;

use kairos_proto::admin::admin_client::AdminClient;
use kairos_proto::admin::{ListAllJobsRequest, StoredJob};
use kairos_proto::scheduler::scheduler_client::SchedulerClient;
use kairos_proto::scheduler::watch_jobs_request::WatchJobRequestType;
use kairos_proto::scheduler::{
    Job, JobMetadata, JobTargetMetadata, ScheduleJobRequest, TargetJob, WatchJobsRequest,
    WatchJobsRequestInitial, WatchJobsRequestResult, WatchJobsRequestResultStatus, WatchJobsResponse,
    job_target_metadata,
};
use tonic::transport::Channel;

/// A scheduler client for `address` (`host:port`), retried for up to 5 s.
///
/// # Panics
/// When no connection can be made in that time (it is for tests).
pub async fn connect(address: &str) -> SchedulerClient<Channel> {
    for _ in 0..100 {
        if let Ok(client) = SchedulerClient::connect(format!("http://{address}")).await {
            return client;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot connect to the scheduler at {address}");
}

/// The metadata of a plain job of `app_id` in namespace `namespace`.
pub fn job_metadata(namespace: &str, app_id: &str) -> JobMetadata {
    JobMetadata {
        app_id: app_id.into(),
        namespace: namespace.into(),
        target: Some(JobTargetMetadata { r#type: Some(job_target_metadata::Type::Job(TargetJob {})) }),
        concurrency_key: None,
    }
}

/// A create-only `ScheduleJob` request for `name` on `schedule` (e.g. `@every 1s`), `repeats`
/// times.
pub fn repeating_job(name: &str, schedule: &str, repeats: u32, metadata: JobMetadata) -> ScheduleJobRequest {
    ScheduleJobRequest {
        name: name.to_owned(),
        job: Some(Job { schedule: Some(schedule.to_owned()), repeats: Some(repeats), ..Default::default() }),
        metadata: Some(metadata),
        overwrite: false,
    }
}

/// Watches the triggers of `app_id` in namespace `default` and answers each with what
/// `on_trigger` returns, until the stream breaks (or the task is aborted).
///
/// # Panics
/// When the initial message cannot be queued (it is for tests).
pub async fn watch_jobs(
    mut client: SchedulerClient<Channel>,
    app_id: &str,
    mut on_trigger: impl FnMut(&WatchJobsResponse) -> WatchJobsRequestResultStatus,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let initial =
        WatchJobsRequestInitial { app_id: app_id.into(), namespace: "default".into(), ..Default::default() };
    tx.send(WatchJobsRequest { watch_job_request_type: Some(WatchJobRequestType::Initial(initial)) })
        .await
        .expect("queue the initial WatchJobs message");
    let outbound = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let Ok(response) = client.watch_jobs(outbound).await else { return };
    let mut inbound = response.into_inner();
    while let Ok(Some(trigger)) = inbound.message().await {
        let status = on_trigger(&trigger);
        let result = WatchJobsRequestResult { id: trigger.id, status: status as i32 };
        let message = WatchJobsRequest { watch_job_request_type: Some(WatchJobRequestType::Result(result)) };
        if tx.send(message).await.is_err() {
            return;
        }
    }
}

/// Every stored job, with its progress, paged through `ListAllJobs`.
///
/// # Panics
/// When a call fails (it is for tests).
pub async fn all_jobs(admin: &mut AdminClient<Channel>) -> Vec<StoredJob> {
    let mut jobs = Vec::new();
    let mut after = None;
    loop {
        let page = admin
            .list_all_jobs(ListAllJobsRequest { after: after.take(), page_size: 0 })
            .await
            .expect("ListAllJobs")
            .into_inner();
        after = page.jobs.last().and_then(|j| j.r#ref.clone());
        jobs.extend(page.jobs);
        if !page.more {
            return jobs;
        }
    }
}

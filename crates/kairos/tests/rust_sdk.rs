//! Compatibility with the official Dapr Rust SDK (crates.io `dapr` 0.20): its client against the
//! real `kairos sidecar`, and its `AppCallbackService` job handler receiving jobs through it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use dapr::appcallback::{AppCallbackService, JobHandlerMethod};
use dapr::client::{ClientOptions, JobBuilder, JobFailurePolicyBuilder, JobFailurePolicyType};
use dapr::dapr::proto::runtime::v1::app_callback_alpha_server::AppCallbackAlphaServer;
use dapr::dapr::proto::runtime::v1::app_callback_server::AppCallbackServer;
use dapr::dapr::proto::runtime::v1::{JobEventRequest, JobEventResponse};
use prost_types::Any;
use tokio::sync::mpsc;
use tonic::Status;

/// Records every event it gets; fails those whose name starts with `fail`.
struct Recorder {
    tx: mpsc::UnboundedSender<JobEventRequest>,
}

#[dapr::reexport::async_trait]
impl JobHandlerMethod for Recorder {
    async fn handler(&self, request: JobEventRequest) -> Result<JobEventResponse, Status> {
        let fail = request.name.starts_with("fail");
        let _ = self.tx.send(request);
        if fail { Err(Status::internal("handler failed")) } else { Ok(JobEventResponse {}) }
    }
}

async fn recv(rx: &mut mpsc::UnboundedReceiver<JobEventRequest>) -> JobEventRequest {
    tokio::time::timeout(Duration::from_secs(15), rx.recv())
        .await
        .expect("a job event within 15 s")
        .expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_sdk_client_and_job_handler_work_against_the_sidecar() {
    // The app: the SDK's AppCallbackService, serving both the stable and the Alpha1 callback.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut service = AppCallbackService::new();
    for name in ["rust-job", "fail-job"] {
        service.add_job_handler(name.to_owned(), Box::new(Recorder { tx: tx.clone() }));
    }
    let service = Arc::new(service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(AppCallbackServer::from_arc(service.clone()))
            .add_service(AppCallbackAlphaServer::from_arc(service))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });

    let dir = tempfile::tempdir().unwrap();
    let scheduler = common::start_scheduler(dir.path(), &[]);
    let sidecar = common::start_sidecar(
        "rust-app",
        &scheduler.address,
        &["--app-port", &app_port.to_string(), "--app-protocol", "grpc"],
        &[],
    );
    let options = ClientOptions::new().with_address(format!("http://{}", sidecar.grpc));
    let mut client = dapr::Client::from_options(options).await.expect("connect the Rust SDK client");

    // Schedule with the SDK's builder, then read it back.
    let data = Any { type_url: "type.googleapis.com/io.dapr.RustTest".into(), value: b"hello".to_vec() };
    let policy = JobFailurePolicyBuilder::new(JobFailurePolicyType::Constant {})
        .with_retry_interval(Duration::from_secs(2))
        .with_max_retries(4)
        .build();
    let job = JobBuilder::new("later-job")
        .with_schedule("@every 1h")
        .with_repeats(3)
        .with_ttl("5h")
        .with_data(data.clone())
        .with_failure_policy(policy)
        .build();
    client.schedule_job(job, None).await.expect("schedule");
    let got = client.get_job("later-job").await.expect("get").job.expect("job");
    assert_eq!(got.name, "later-job");
    assert_eq!(got.schedule.as_deref(), Some("@every 1h"));
    assert_eq!(got.repeats, Some(3));
    assert_eq!(got.ttl.as_deref(), Some("5h"));
    assert_eq!(got.data, Some(data.clone()));
    assert_eq!(got.failure_policy, Some(policy));

    // Existing name: AlreadyExists, unless overwrite.
    let dup = JobBuilder::new("later-job").with_schedule("@every 2h").build();
    let err = client.schedule_job(dup.clone(), None).await.expect_err("duplicate");
    assert!(format!("{err:?}").contains("AlreadyExists"), "{err:?}");
    client.schedule_job(dup, Some(true)).await.expect("overwrite");

    // List and delete by prefix (stable RPCs only in the SDK).
    client.schedule_job(JobBuilder::new("tmp-1").with_due_time("1h").build(), None).await.unwrap();
    client.schedule_job(JobBuilder::new("tmp-2").with_due_time("1h").build(), None).await.unwrap();
    let names = |jobs: Vec<dapr::client::Job>| jobs.into_iter().map(|j| j.name).collect::<Vec<_>>();
    assert_eq!(names(client.list_jobs().await.unwrap().jobs), ["later-job", "tmp-1", "tmp-2"]);
    client.delete_jobs_by_prefix(Some("tmp-")).await.unwrap();
    assert_eq!(names(client.list_jobs().await.unwrap().jobs), ["later-job"]);
    client.delete_job("later-job").await.unwrap();
    assert!(client.get_job("later-job").await.is_err(), "deleted");

    // Delivery to the SDK's handler, with the raw payload and daprd's request fields.
    client
        .schedule_job(JobBuilder::new("rust-job").with_due_time("0s").with_data(data.clone()).build(), None)
        .await
        .unwrap();
    let event = recv(&mut rx).await;
    assert_eq!(event.name, "rust-job");
    assert_eq!(event.method, "job/rust-job");
    assert_eq!(event.data, Some(data.clone()));
    assert_eq!(event.content_type, data.type_url);

    // A failing handler is retried under the job's policy: 1 + 2 retries.
    let retry_fast =
        JobFailurePolicyBuilder::new(JobFailurePolicyType::Constant {}).with_max_retries(2).build();
    client
        .schedule_job(
            JobBuilder::new("fail-job").with_due_time("0s").with_failure_policy(retry_fast).build(),
            None,
        )
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(recv(&mut rx).await.name, "fail-job");
    }
    assert!(tokio::time::timeout(Duration::from_millis(1500), rx.recv()).await.is_err(), "no fourth attempt");
}

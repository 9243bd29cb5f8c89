//! Parity with daprd around the Jobs API (issue 16): the metadata API, a scheduler address
//! given as quoted blanks, the job metrics, app health checks, and `WatchHosts` without an app.
//! Real `kairos` processes throughout; the official Python SDK where a client is involved.

mod common;

use std::process::Command;

use kairos_proto::runtime::GetMetadataRequest;
use kairos_proto::runtime::dapr_client::DaprClient;
use serde_json::Value;

fn port_of(address: &str) -> String {
    address.rsplit(':').next().unwrap().to_owned()
}

/// Runs a script of tests/python with the sidecar's ports; returns its stdout (panics on failure).
fn run_python(script: &str, sidecar: &common::SidecarProc) -> String {
    let mut command = Command::new(common::python());
    command.arg(common::python_script(script));
    for var in ["DAPR_API_TOKEN", "APP_API_TOKEN", "DAPR_HTTP_ENDPOINT", "DAPR_GRPC_ENDPOINT"] {
        command.env_remove(var);
    }
    command
        .env("DAPR_HEALTH_TIMEOUT", "20")
        .env("DAPR_HTTP_PORT", port_of(&sidecar.http))
        .env("DAPR_GRPC_PORT", port_of(&sidecar.grpc));
    let output = command.output().expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

async fn http_json(url: &str) -> (u16, Value) {
    let response = reqwest::get(url).await.expect("GET");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_metadata_reports_the_app_the_runtime_and_the_connected_schedulers() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = common::start_scheduler(dir.path(), &[]);
    // An app that listens (and answers nothing): the metadata does not depend on it.
    let app = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_port = app.local_addr().unwrap().port().to_string();
    let sidecar = common::start_sidecar(
        "meta-app",
        &scheduler.address,
        &["--app-port", &app_port, "--app-max-concurrency", "7", "--metrics-port", "0"],
        &[],
    );

    // The official Python SDK decodes the gRPC answer.
    let stdout = run_python("metadata.py", &sidecar);
    let decoded: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(decoded["application_id"], "meta-app", "{stdout}");
    assert!(
        decoded["extended_metadata"]["daprRuntimeVersion"].as_str().is_some_and(|v| !v.is_empty()),
        "{stdout}"
    );
    assert_eq!(decoded["registered_components"], 0);

    // The raw gRPC answer: app connection properties and the scheduler it uses.
    let mut client = DaprClient::connect(format!("http://{}", sidecar.grpc)).await.unwrap();
    let answer = client.get_metadata(GetMetadataRequest {}).await.unwrap().into_inner();
    assert_eq!(answer.id, "meta-app");
    assert_eq!(answer.runtime_version, env!("CARGO_PKG_VERSION"));
    let props = answer.app_connection_properties.expect("app connection properties");
    assert_eq!(props.port.to_string(), app_port);
    assert_eq!((props.protocol.as_str(), props.channel_address.as_str()), ("http", "127.0.0.1"));
    assert_eq!(props.max_concurrency, 7);
    assert!(props.health.is_none(), "no health checks configured");
    let connected = answer.scheduler.expect("scheduler metadata").connected_addresses;
    assert!(
        !connected.is_empty() && connected.iter().all(|a| port_of(a) == port_of(&scheduler.address)),
        "connected to {connected:?}, scheduler at {}",
        scheduler.address
    );

    // HTTP: daprd's JSON shape, with what `PUT /v1.0/metadata/{key}` set under `extended`.
    let put = reqwest::Client::new()
        .put(format!("http://{}/v1.0/metadata/cliPID", sidecar.http))
        .body("4242")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 204);
    let (status, json) = http_json(&format!("http://{}/v1.0/metadata", sidecar.http)).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["id"], "meta-app");
    assert_eq!(json["runtimeVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(json["extended"]["cliPID"], "4242");
    assert_eq!(json["appConnectionProperties"]["port"].to_string(), app_port);
    assert_eq!(json["appConnectionProperties"]["protocol"], "http");
    assert_eq!(json["appConnectionProperties"]["channelAddress"], "127.0.0.1");
    assert_eq!(json["appConnectionProperties"]["maxConcurrency"], 7);
    assert_eq!(json["scheduler"]["connected_addresses"], serde_json::json!(connected));
    drop(app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_metadata_needs_the_api_token_when_one_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = common::start_scheduler(dir.path(), &[]);
    let sidecar = common::start_sidecar("meta-app", &scheduler.address, &[], &[("DAPR_API_TOKEN", "t0k")]);
    let url = format!("http://{}/v1.0/metadata", sidecar.http);
    let (status, _) = http_json(&url).await;
    assert_eq!(status, 401);
    let response = reqwest::Client::new().get(&url).header("dapr-api-token", "t0k").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut client = DaprClient::connect(format!("http://{}", sidecar.grpc)).await.unwrap();
    let refused = client.get_metadata(GetMetadataRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
}

/// `--scheduler-host-address` given as quoted blanks, the way shells and manifests pass an
/// empty value: daprd trims the quotes and spaces and runs with the scheduler disabled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quoted_blank_scheduler_address_starts_with_the_scheduler_disabled() {
    let http = reqwest::Client::new();
    for blank in ["\"\"", "'   '", "\"   \"", "\"\",'  '"] {
        let sidecar = common::start_sidecar("no-sched", blank, &["--metrics-port", "0"], &[]);
        let base = format!("http://{}/v1.0", sidecar.http);

        let post = http.post(format!("{base}/jobs/j")).body(r#"{"dueTime":"1s"}"#).send().await.unwrap();
        assert_eq!(post.status().as_u16(), 500, "{blank:?}");
        let body: Value = post.json().await.unwrap();
        assert_eq!(body["errorCode"], "DAPR_SCHEDULER_SCHEDULE_JOB", "{blank:?}: {body}");
        assert_eq!(body["message"], "failed to schedule job due to: scheduler clients are disabled");

        let get: Value = http.get(format!("{base}/jobs/j")).send().await.unwrap().json().await.unwrap();
        assert_eq!(get["errorCode"], "DAPR_SCHEDULER_GET_JOB", "{get}");
        let delete: Value = http.delete(format!("{base}/jobs/j")).send().await.unwrap().json().await.unwrap();
        assert_eq!(delete["errorCode"], "DAPR_SCHEDULER_DELETE_JOB", "{delete}");

        let mut client = DaprClient::connect(format!("http://{}", sidecar.grpc)).await.unwrap();
        let refused = client
            .schedule_job(kairos_proto::runtime::ScheduleJobRequest {
                job: Some(kairos_proto::runtime::Job {
                    name: "j".into(),
                    due_time: Some("1s".into()),
                    ..Default::default()
                }),
                overwrite: false,
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Internal, "{blank:?}: {refused:?}");
        assert!(refused.message().contains("scheduler clients are disabled"), "{refused:?}");

        // Up and ready (no app to wait for), and the metadata has no scheduler.
        assert_eq!(http.get(format!("{base}/healthz")).send().await.unwrap().status().as_u16(), 204);
        let (_, metadata) = http_json(&format!("{base}/metadata")).await;
        assert_eq!(metadata["id"], "no-sched");
        assert!(metadata.get("scheduler").is_none(), "{metadata}");
    }
}

/// Under `kairos run`, quoted blanks are no address at all: the embedded scheduler runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kairos_run_treats_a_quoted_blank_scheduler_address_as_none() {
    let dir = tempfile::tempdir().unwrap();
    let run = common::start_run(
        "run-blank",
        common::free_port(),
        dir.path(),
        &["--scheduler-host-address", "\"  \""],
    );
    let post = reqwest::Client::new()
        .post(format!("http://{}/v1.0/jobs/j", run.http))
        .body(r#"{"dueTime":"1h"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(post.status().as_u16(), 204, "{}", post.text().await.unwrap());
}

//! Parity with daprd around the Jobs API (issue 16): the metadata API, a scheduler address
//! given as quoted blanks, the job metrics, app health checks, and `WatchHosts` without an app.
//! Real `kairos` processes throughout; the official Python SDK where a client is involved.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;

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
    kairos_testing::http::status_and_json(reqwest::get(url).await.expect("GET")).await
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
        kairos_testing::free_port().expect("free port"),
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

/// An HTTP app for the metrics and health tests: `POST /job/{name}` answers 200 for `ok*`,
/// 500 for `fail*` and 404 for `gone*`, and counts what it got by name.
#[derive(Debug, Clone, Default)]
struct JobApp {
    received: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl JobApp {
    fn count(&self, name: &str) -> usize {
        self.received.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

async fn on_job(State(app): State<JobApp>, Path(name): Path<String>) -> StatusCode {
    *app.received.lock().unwrap().entry(name.clone()).or_default() += 1;
    kairos_testing::http::status_by_name(&name)
}

async fn start_job_app() -> (u16, JobApp) {
    kairos_testing::http::serve_jobs(on_job, JobApp::default()).await
}

async fn schedule(http_addr: &str, name: &str, body: &str) {
    let response = reqwest::Client::new()
        .post(format!("http://{http_addr}/v1.0/jobs/{name}"))
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204, "{name}: {}", response.text().await.unwrap());
}

/// Waits up to `limit` for `done`.
async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

/// The value of the sample `name{…}` (or unlabelled `name`) whose labels include every one of `labels` (`k="v"`).
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn scrape(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap().text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_metrics_count_like_daprd_beside_the_kairos_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = common::start_scheduler(dir.path(), &[]);
    let (app_port, app) = start_job_app().await;
    let metrics_port = kairos_testing::free_port().expect("free port");
    let sidecar = common::start_sidecar(
        "metrics-app",
        &scheduler.address,
        &["--app-port", &app_port.to_string(), "--metrics-port", &metrics_port.to_string()],
        &[],
    );
    // Three successes, a retriable failure under the default policy (1 s x 3 retries), and an
    // app without a handler (404: no retry).
    schedule(&sidecar.http, "ok", r#"{"dueTime":"0s","schedule":"@every 1s","repeats":3}"#).await;
    schedule(&sidecar.http, "fail", r#"{"dueTime":"0s"}"#).await;
    schedule(&sidecar.http, "gone", r#"{"dueTime":"0s"}"#).await;
    assert!(
        eventually(Duration::from_secs(20), || app.count("ok") >= 3
            && app.count("fail") >= 4
            && app.count("gone") >= 1)
        .await,
        "deliveries: {:?}",
        app.received.lock().unwrap()
    );
    // Nothing more comes: the failure policy is spent, the 404 is not retried.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!((app.count("ok"), app.count("fail"), app.count("gone")), (3, 4, 1));

    let text = scrape(metrics_port).await;
    let labels = [r#"app_id="metrics-app""#, r#"namespace="""#, r#"operation="job_trigger_op""#];
    assert_eq!(sample(&text, "dapr_component_job_success_count", &labels), Some(3.0), "{text}");
    assert_eq!(
        sample(&text, "dapr_component_job_failure_count", &labels),
        Some(5.0),
        "4 attempts of the failing job and the 404:\n{text}"
    );
    assert_eq!(sample(&text, "dapr_component_job_latencies_count", &labels), Some(8.0), "{text}");
    assert!(sample(&text, "dapr_component_job_latencies_sum", &labels).is_some_and(|ms| ms > 0.0));
    let mut le_100ms = labels.to_vec();
    le_100ms.push(r#"le="100""#);
    assert!(
        sample(&text, "dapr_component_job_latencies_bucket", &le_100ms).is_some(),
        "a histogram in milliseconds with daprd's buckets:\n{text}"
    );
    // The kairos metrics are still there.
    assert_eq!(
        sample(&text, "kairos_sidecar_deliveries_total", &[r#"result="success""#]),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "kairos_sidecar_deliveries_total", &[r#"result="failed""#]),
        Some(4.0),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kairos_run_serves_the_job_metrics_on_its_metrics_port() {
    let dir = tempfile::tempdir().unwrap();
    let (app_port, app) = start_job_app().await;
    let metrics_port = kairos_testing::free_port().expect("free port");
    let run = common::start_run(
        "run-metrics",
        app_port,
        dir.path(),
        &["--metrics-port", &metrics_port.to_string()],
    );
    schedule(&run.http, "ok-run", r#"{"dueTime":"0s"}"#).await;
    assert!(eventually(Duration::from_secs(10), || app.count("ok-run") == 1).await);
    let labels = [r#"app_id="run-metrics""#, r#"operation="job_trigger_op""#];
    let mut text = String::new();
    let counted = async {
        for _ in 0..50 {
            text = scrape(metrics_port).await;
            // The embedded scheduler counts the trigger when the answer reaches it, a moment
            // after the sidecar counted the delivery: wait for both.
            if sample(&text, "dapr_component_job_success_count", &labels) == Some(1.0)
                && text.contains("kairos_triggers_total")
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    counted.await;
    assert_eq!(sample(&text, "dapr_component_job_success_count", &labels), Some(1.0), "{text}");
    assert!(text.contains("kairos_triggers_total"), "the embedded scheduler's metrics too:\n{text}");
}

/// An HTTP app whose health can be switched: `GET /healthz` answers 200 or 503, `GET
/// /slowhealthz` answers 200 after 400 ms, and `POST /job/{name}` counts deliveries by name and
/// fails (500) any that arrives while the app is unhealthy, counting those apart.
#[derive(Debug, Clone, Default)]
struct FlakyApp {
    unhealthy: Arc<std::sync::atomic::AtomicBool>,
    received: Arc<Mutex<BTreeMap<String, usize>>>,
    while_unhealthy: Arc<Mutex<Vec<String>>>,
}

impl FlakyApp {
    fn set_healthy(&self, healthy: bool) {
        self.unhealthy.store(!healthy, std::sync::atomic::Ordering::SeqCst);
    }
    fn count(&self, name: &str) -> usize {
        self.received.lock().unwrap().get(name).copied().unwrap_or(0)
    }
    fn failed(&self) -> Vec<String> {
        self.while_unhealthy.lock().unwrap().clone()
    }
}

async fn flaky_health(State(app): State<FlakyApp>) -> StatusCode {
    if app.unhealthy.load(std::sync::atomic::Ordering::SeqCst) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

async fn flaky_job(State(app): State<FlakyApp>, Path(name): Path<String>) -> StatusCode {
    if app.unhealthy.load(std::sync::atomic::Ordering::SeqCst) {
        app.while_unhealthy.lock().unwrap().push(name);
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    *app.received.lock().unwrap().entry(name).or_default() += 1;
    StatusCode::OK
}

async fn start_flaky_app() -> (u16, FlakyApp) {
    let app = FlakyApp::default();
    let router = Router::new()
        .route("/healthz", axum::routing::get(flaky_health))
        .route(
            "/slowhealthz",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                StatusCode::OK
            }),
        )
        .route("/job/{name}", post(flaky_job))
        .with_state(app.clone());
    let port = kairos_testing::http::serve(router).await;
    (port, app)
}

/// Asserts (without blocking the runtime) that a log line containing `needle` comes within `secs`.
async fn assert_log_line(sidecar: &common::SidecarProc, needle: &str, secs: u64) {
    tokio::task::block_in_place(|| common::assert_log(sidecar, needle, secs));
}

const FAST_PROBES: &[&str] =
    &["--enable-app-health-check", "--app-health-probe-interval", "1", "--app-health-threshold", "1"];

/// A flaky app and a sidecar `app_id` delivering to it, with [`FAST_PROBES`] and `extra` flags.
async fn flaky_app_and_sidecar(
    scheduler: &str,
    app_id: &str,
    extra: &[&str],
) -> (FlakyApp, common::SidecarProc) {
    let (app_port, app) = start_flaky_app().await;
    let app_port = app_port.to_string();
    let flags = [&["--app-port", app_port.as_str()][..], extra, FAST_PROBES].concat();
    (app, common::start_sidecar(app_id, scheduler, &flags, &[]))
}

/// Asserts that a job due now does not reach the (never healthy) `app` within 3 s.
async fn assert_no_job_reaches(sidecar: &common::SidecarProc, app: &FlakyApp) {
    schedule(&sidecar.http, "waits", r#"{"dueTime":"0s"}"#).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(app.count("waits"), 0, "an app that is never healthy gets no job");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_app_gets_no_jobs_and_gets_them_all_once_healthy_again() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = common::start_scheduler(dir.path(), &[]);
    let metrics_port = kairos_testing::free_port().expect("free port");
    let metrics = ["--metrics-port", &metrics_port.to_string()].map(str::to_owned);
    let (app, sidecar) =
        flaky_app_and_sidecar(&scheduler.address, "flaky-app", &metrics.each_ref().map(String::as_str)).await;
    assert_log_line(&sidecar, "app is healthy", 15).await;

    // Healthy: jobs flow.
    schedule(&sidecar.http, "before", r#"{"dueTime":"0s"}"#).await;
    assert!(eventually(Duration::from_secs(10), || app.count("before") == 1).await);

    // Unhealthy: the sidecar notices, then jobs come due and wait.
    app.set_healthy(false);
    assert_log_line(&sidecar, "app is unhealthy", 10).await;
    for i in 0..5 {
        schedule(&sidecar.http, &format!("due-{i}"), r#"{"dueTime":"1s"}"#).await;
    }
    schedule(&sidecar.http, "every", r#"{"schedule":"@every 1s","repeats":3}"#).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(app.failed().is_empty(), "delivered while unhealthy: {:?}", app.failed());
    assert_eq!((0..5).map(|i| app.count(&format!("due-{i}"))).sum::<usize>(), 0);
    // The due jobs are kept by the scheduler.
    let get = reqwest::get(format!("http://{}/v1.0/jobs/due-0", sidecar.http)).await.unwrap();
    assert_eq!(get.status().as_u16(), 200, "due-0 is still stored while the app is unhealthy");
    let text = scrape(metrics_port).await;
    assert_eq!(sample(&text, "kairos_sidecar_app_healthy", &[]), Some(0.0), "{text}");

    // Healthy again: every job is delivered, once, and none failed.
    app.set_healthy(true);
    assert_log_line(&sidecar, "app is healthy", 10).await;
    assert!(
        eventually(Duration::from_secs(15), || (0..5).all(|i| app.count(&format!("due-{i}")) == 1)
            && app.count("every") >= 3)
        .await,
        "after recovery: {:?}",
        app.received.lock().unwrap()
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!((0..5).all(|i| app.count(&format!("due-{i}")) == 1), "{:?}", app.received.lock().unwrap());
    assert_eq!(app.count("every"), 3, "repeats: 3 gives 3 deliveries");
    assert!(app.failed().is_empty(), "delivered while unhealthy: {:?}", app.failed());
    let text = scrape(metrics_port).await;
    assert_eq!(
        sample(&text, "dapr_component_job_failure_count", &[r#"app_id="flaky-app""#]),
        None,
        "no delivery failed:\n{text}"
    );
    assert_eq!(sample(&text, "dapr_component_job_success_count", &[r#"app_id="flaky-app""#]), Some(9.0));
    assert_eq!(sample(&text, "kairos_sidecar_app_healthy", &[]), Some(1.0), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_path_that_404s_keeps_the_app_unhealthy_with_a_clear_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = common::start_scheduler(dir.path(), &[]);
    let (app, sidecar) =
        flaky_app_and_sidecar(&scheduler.address, "no-health-app", &["--app-health-check-path", "/nope"])
            .await;
    assert_log_line(
        &sidecar,
        "answered 404 Not Found: the app serves no health check there (check --app-health-check-path)",
        10,
    )
    .await;
    assert_no_job_reaches(&sidecar, &app).await;
    let get = reqwest::get(format!("http://{}/v1.0/jobs/waits", sidecar.http)).await.unwrap();
    assert_eq!(get.status().as_u16(), 200, "the job waits in the scheduler");
    let (_, metadata) = http_json(&format!("http://{}/v1.0/metadata", sidecar.http)).await;
    let health = &metadata["appConnectionProperties"]["health"];
    assert_eq!(health["healthCheckPath"], "/nope", "{metadata}");
    assert_eq!(health["healthProbeInterval"], "1s");
    assert_eq!(health["healthProbeTimeout"], "500ms");
    assert_eq!(health["healthThreshold"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_timeout_shorter_than_the_apps_answer_is_a_failed_probe() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = common::start_scheduler(dir.path(), &[]);
    let slow = ["--app-health-check-path", "/slowhealthz", "--app-health-probe-timeout", "100"];
    let (app, sidecar) = flaky_app_and_sidecar(&scheduler.address, "slow-app", &slow).await;
    assert_log_line(
        &sidecar,
        "the app did not answer its health probe within 100ms (--app-health-probe-timeout)",
        10,
    )
    .await;
    assert_no_job_reaches(&sidecar, &app).await;
}

#[test]
fn bad_health_settings_stop_the_sidecar_with_a_clear_error() {
    for (flag, value, expected) in [
        ("--app-health-probe-interval", "0", "--app-health-probe-interval must be at least 1"),
        ("--app-health-probe-timeout", "0", "--app-health-probe-timeout must be at least 1"),
        ("--app-health-threshold", "0", "--app-health-threshold must be at least 1"),
        ("--app-health-check-path", "healthz", "must be a URL path starting with /"),
        ("--app-health-probe-interval", "-1", "-1"),
    ] {
        let output = Command::new(common::kairos_bin())
            .args([
                "sidecar",
                "--app-id",
                "a",
                "--app-port",
                "1",
                "--dapr-http-port",
                "0",
                "--dapr-grpc-port",
                "0",
            ])
            .args(["--metrics-port", "0", "--enable-app-health-check", flag, value])
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flag} {value} accepted");
        assert!(stderr.contains(expected), "{flag} {value}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// Runs tests/python/grpc_app.py against a sidecar with fast gRPC health probes; returns its
/// stdout and the sidecar (whose log is left to read).
fn run_python_grpc_app(app_id: &str, health_check: bool, seconds: &str) -> (String, common::SidecarProc) {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = common::start_scheduler(dir.path(), &[]);
    let app_port = kairos_testing::free_port().expect("free port").to_string();
    let mut flags = vec!["--app-port", &app_port, "--app-protocol", "grpc", "--metrics-port", "0"];
    flags.extend(FAST_PROBES);
    let sidecar = common::start_sidecar(app_id, &scheduler.address, &flags, &[]);
    let mut command = Command::new(common::python());
    command.arg(common::python_script("grpc_app.py"));
    for var in ["DAPR_API_TOKEN", "APP_API_TOKEN", "DAPR_HTTP_ENDPOINT", "DAPR_GRPC_ENDPOINT"] {
        command.env_remove(var);
    }
    command
        .env("DAPR_HEALTH_TIMEOUT", "20")
        .env("APP_PORT", &app_port)
        .env("DAPR_HTTP_PORT", port_of(&sidecar.http))
        .env("DAPR_GRPC_PORT", port_of(&sidecar.grpc))
        .env("RUN_SECONDS", seconds)
        .env("HEALTH_CHECK", if health_check { "1" } else { "0" });
    let output = command.output().expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    (stdout, sidecar)
}

fn events(stdout: &str, name: &str) -> usize {
    stdout.lines().filter(|l| l.contains(&format!(r#""name": "{name}""#))).count()
}

/// The official Python SDK's gRPC app answers `AppCallbackHealthCheck/HealthCheck` once it
/// registers a health check callback; with health checks on, its jobs are delivered as without.
#[test]
fn python_grpc_app_passes_the_grpc_health_check_and_gets_its_jobs() {
    let (stdout, sidecar) = run_python_grpc_app("py-health-app", true, "10");
    assert!(common::wait_log(&sidecar, "app is healthy", Duration::from_secs(1)), "never probed healthy");
    assert_eq!(events(&stdout, "hello-job"), 1, "{stdout}");
    assert_eq!(events(&stdout, "repeat-job"), 3, "{stdout}");
    assert_eq!(events(&stdout, "failing-job"), 4, "{stdout}");
}

/// Without a registered callback the SDK answers UNIMPLEMENTED: the app is unhealthy, as under
/// daprd, and gets no job.
#[test]
fn python_grpc_app_without_a_health_callback_is_unhealthy_and_gets_no_job() {
    let (stdout, sidecar) = run_python_grpc_app("py-unhealthy-app", false, "5");
    assert!(
        common::wait_log(
            &sidecar,
            "AppCallbackHealthCheck/HealthCheck answered Unimplemented",
            Duration::from_secs(1)
        ),
        "no log line naming the failed gRPC health check"
    );
    assert!(stdout.contains(r#""scheduled": true"#), "{stdout}");
    for name in ["hello-job", "data-job", "repeat-job", "failing-job"] {
        assert_eq!(events(&stdout, name), 0, "{name} delivered to an unhealthy app: {stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kairos_run_takes_the_health_check_flags() {
    let dir = tempfile::tempdir().unwrap();
    let (app_port, app) = start_flaky_app().await;
    app.set_healthy(false);
    let run = common::start_run("run-health", app_port, dir.path(), FAST_PROBES);
    schedule(&run.http, "waits", r#"{"dueTime":"0s"}"#).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(app.count("waits"), 0, "not delivered while unhealthy");
    assert!(app.failed().is_empty(), "{:?}", app.failed());
    app.set_healthy(true);
    assert!(eventually(Duration::from_secs(10), || app.count("waits") == 1).await, "delivered once healthy");
    assert!(app.failed().is_empty(), "{:?}", app.failed());
}

/// A `kairos scheduler` replica on etcd (short lease, so a killed one is gone in seconds).
fn start_etcd_replica(endpoints: &[String], id: &str) -> (common::Proc, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let endpoints = endpoints.join(",");
    let proc = common::start_scheduler(
        dir.path(),
        &["--etcd-endpoints", &endpoints, "--replica-id", id, "--lease-ttl", "2s", "--partitions", "8"],
    );
    (proc, dir)
}

/// The schedulers a sidecar reports in `GET /v1.0/metadata`, as sorted ports.
async fn connected_ports(sidecar: &common::SidecarProc) -> Vec<String> {
    let (_, metadata) = http_json(&format!("http://{}/v1.0/metadata", sidecar.http)).await;
    let mut ports: Vec<String> = metadata["scheduler"]["connected_addresses"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).map(port_of).collect())
        .unwrap_or_default();
    ports.sort();
    ports
}

async fn until_connected_to(sidecar: &common::SidecarProc, replicas: &[&common::Proc]) {
    let mut expected: Vec<String> = replicas.iter().map(|r| port_of(&r.address)).collect();
    expected.sort();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ports = connected_ports(sidecar).await;
        if ports == expected {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "connected to {ports:?}, expected {expected:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A sidecar with no `--app-port` still follows `WatchHosts`: given one replica's address, it
/// learns the others, drops those that die, and its job calls keep working through the ones
/// that live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_without_an_app_follows_the_replicas_for_its_job_calls() {
    let etcd = kairos_testing::etcd::EtcdProcess::start().await.expect("etcd");
    let endpoints = etcd.endpoints();
    let (mut a, _a_dir) = start_etcd_replica(&endpoints, "a");
    let (b, _b_dir) = start_etcd_replica(&endpoints, "b");
    let sidecar = common::start_sidecar(
        "no-app",
        &a.address,
        &["--metrics-port", "0", "--scheduler-request-timeout-seconds", "10"],
        &[],
    );
    until_connected_to(&sidecar, &[&a, &b]).await;
    schedule(&sidecar.http, "kept", r#"{"dueTime":"1h"}"#).await;

    // The configured replica dies: the sidecar hears it from the other one.
    a.kill9();
    until_connected_to(&sidecar, &[&b]).await;
    let http = reqwest::Client::new();
    for i in 0..4 {
        schedule(&sidecar.http, &format!("after-{i}"), r#"{"dueTime":"1h"}"#).await;
    }
    let get = http.get(format!("http://{}/v1.0/jobs/kept", sidecar.http)).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 200, "{}", get.text().await.unwrap());

    // A new replica comes: it is used too.
    let (c, _c_dir) = start_etcd_replica(&endpoints, "c");
    until_connected_to(&sidecar, &[&b, &c]).await;
    for i in 0..4 {
        let delete =
            http.delete(format!("http://{}/v1.0/jobs/after-{i}", sidecar.http)).send().await.unwrap();
        assert_eq!(delete.status().as_u16(), 204);
    }
    let gone = http.get(format!("http://{}/v1.0/jobs/after-0", sidecar.http)).send().await.unwrap();
    assert_eq!(gone.status().as_u16(), 500, "deleted through the replicas");
}

//! Operating kairos (issue 8): metrics, JSON logs with trigger spans, readiness, graceful
//! shutdown on SIGTERM, the scheduler API token and the request limits, all on real `kairos
//! scheduler` and `kairos sidecar` processes with an HTTP app in the test.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use kairos_core::{JobKey, JobSpec, Payload};
use kairos_proto::convert::{metadata_of, spec_to_scheduler_job};
use kairos_proto::scheduler::{GetJobRequest, ScheduleJobRequest};
use kairos_testing::wait_until;
use serde_json::Value;

use common::Kairos;

/// `kairos scheduler` on port 0 with metrics and health on port 0 too.
fn scheduler(data_dir: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Kairos {
    let dir = data_dir.display().to_string();
    let mut args =
        vec!["scheduler", "--port", "0", "--data-dir", &dir, "--partitions", "4", "--metrics-port", "0"];
    args.extend_from_slice(&["--healthz-port", "0"]);
    args.extend_from_slice(extra);
    common::spawn_kairos(&args, envs)
}

/// [`scheduler`] over a new temporary data dir, which lives as long as the returned guard.
fn scheduler_in_tempdir(extra: &[&str], envs: &[(&str, &str)]) -> (tempfile::TempDir, Kairos) {
    let dir = tempfile::tempdir().expect("a temporary data dir");
    let scheduler = scheduler(dir.path(), extra, envs);
    (dir, scheduler)
}

/// `kairos sidecar` with every port 0.
fn sidecar(app_id: &str, scheduler: &str, extra: &[&str], envs: &[(&str, &str)]) -> Kairos {
    let mut extra = extra.to_vec();
    extra.extend_from_slice(&["--metrics-port", "0"]);
    common::start_sidecar(app_id, scheduler, &extra, envs).kairos
}

/// A sidecar `app_id` (see [`sidecar`]) delivering to the app on `app_port`, with `extra` flags.
fn app_sidecar(app_id: &str, scheduler: &str, app_port: u16, extra: &[&str]) -> Kairos {
    let app_port = app_port.to_string();
    sidecar(app_id, scheduler, &[&["--app-port", app_port.as_str()][..], extra].concat(), &[])
}

/// Asserts that `sidecar` takes job `name`, due now, and that `app` answers its delivery
/// within 10 s.
async fn assert_delivered(sidecar: &Kairos, app: &App, name: &str) {
    assert_eq!(post_job(sidecar, name, r#"{"dueTime":"0s"}"#).await.0, 204);
    wait_until(&format!("the delivery of {name}"), 10, || app.answered(name) == 1).await;
}

/// Waits (bounded) for the process to exit and returns its exit code.
fn exit_code(process: &mut Kairos, seconds: u64) -> Option<i32> {
    let status = process.wait_exit(Duration::from_secs(seconds)).unwrap();
    status.unwrap_or_else(|| panic!("kairos did not exit within {seconds} s")).code()
}

/// An HTTP app: `ok*` answer 200, `fail*` 500, `slow*` 200 after 3 s. It records every
/// delivery when it starts and when it has answered.
#[derive(Debug, Clone, Default)]
struct App {
    started: Arc<Mutex<Vec<String>>>,
    answered: Arc<Mutex<Vec<String>>>,
}

impl App {
    fn started(&self, name: &str) -> usize {
        self.started.lock().unwrap().iter().filter(|n| *n == name).count()
    }
    fn answered(&self, name: &str) -> usize {
        self.answered.lock().unwrap().iter().filter(|n| *n == name).count()
    }
}

async fn on_job(State(app): State<App>, UrlPath(name): UrlPath<String>) -> StatusCode {
    app.started.lock().unwrap().push(name.clone());
    if name.starts_with("slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    app.answered.lock().unwrap().push(name.clone());
    if name.starts_with("fail") { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK }
}

async fn http_app() -> (u16, App) {
    kairos_testing::http::serve_jobs(on_job, App::default()).await
}

async fn post_job(sidecar: &Kairos, name: &str, body: &str) -> (u16, String) {
    let url = format!("http://{}/v1.0/jobs/{name}", sidecar.http());
    let r = reqwest::Client::new().post(url).body(body.to_owned()).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn get_job(sidecar: &Kairos, name: &str) -> u16 {
    let url = format!("http://{}/v1.0/jobs/{name}", sidecar.http());
    reqwest::get(url).await.unwrap().status().as_u16()
}

async fn get_text(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The value of one sample line (`name{labels} value`) of a Prometheus text page; 0 if absent.
fn sample(page: &str, series: &str) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

fn error_code(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["errorCode"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn schedule_request(app_id: &str, name: &str, spec: &JobSpec) -> ScheduleJobRequest {
    ScheduleJobRequest {
        name: name.to_owned(),
        job: Some(spec_to_scheduler_job(spec)),
        metadata: Some(metadata_of(&JobKey::app("default", app_id, ""))),
        overwrite: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_jobs_and_triggers_by_result() {
    let (app_port, app) = http_app().await;
    let (_dir, scheduler) = scheduler_in_tempdir(&[], &[]);
    let address = scheduler.grpc();
    let side = app_sidecar("metrics-app", &address, app_port, &[]);
    // A sidecar without --app-port takes no triggers: its app's jobs are staged.
    let idle = sidecar("metrics-idle", &address, &[], &[]);
    let url = format!("http://{}/metrics", scheduler.metrics());
    let mut connected = 0.0;
    for _ in 0..200 {
        connected = sample(&get_text(&url).await.1, "kairos_sidecars_connected");
        if connected == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(connected, 1.0, "the app's sidecar streams before jobs are scheduled");

    for name in ["ok-1", "ok-2", "ok-3"] {
        assert_eq!(post_job(&side, name, r#"{"dueTime":"0s"}"#).await.0, 204);
    }
    // Dropped at once; and failed once, then dropped.
    let drop = r#"{"dueTime":"0s","failurePolicy":{"drop":{}}}"#;
    assert_eq!(post_job(&side, "fail-drop", drop).await.0, 204);
    let retry = r#"{"dueTime":"0s","failurePolicy":{"constant":{"interval":"0.1s","maxRetries":1}}}"#;
    assert_eq!(post_job(&side, "fail-retry", retry).await.0, 204);
    assert_eq!(post_job(&idle, "staged", r#"{"dueTime":"0s"}"#).await.0, 204);
    assert_eq!(post_job(&side, "later", r#"{"dueTime":"1h"}"#).await.0, 204);

    wait_until("the deliveries", 20, || {
        app.answered("ok-1") + app.answered("ok-2") + app.answered("ok-3") == 3
            && app.answered("fail-drop") == 1
            && app.answered("fail-retry") == 2
    })
    .await;

    let mut page = String::new();
    // The last result is written just after it is answered: wait for the counters to settle.
    for _ in 0..100 {
        page = get_text(&url).await.1;
        if sample(&page, r#"kairos_jobs_deleted_total{reason="completed"}"#) >= 5.0
            && sample(&page, "kairos_jobs_stored") <= 2.0
            // The staging write lands just after the staged counter is bumped.
            && sample(&page, "kairos_triggers_staged") >= 1.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sample(&page, "kairos_jobs_created_total"), 7.0, "{page}");
    assert_eq!(sample(&page, r#"kairos_triggers_total{result="success"}"#), 3.0, "{page}");
    assert_eq!(sample(&page, r#"kairos_triggers_total{result="failed"}"#), 1.0, "{page}");
    assert_eq!(sample(&page, r#"kairos_triggers_total{result="dropped"}"#), 2.0, "{page}");
    assert_eq!(sample(&page, r#"kairos_triggers_total{result="staged"}"#), 1.0, "{page}");
    assert_eq!(sample(&page, r#"kairos_jobs_deleted_total{reason="completed"}"#), 5.0, "{page}");
    // Left: the staged job and the one due in an hour.
    assert_eq!(sample(&page, "kairos_jobs_stored"), 2.0, "{page}");
    assert_eq!(sample(&page, "kairos_triggers_staged"), 1.0, "{page}");
    assert_eq!(sample(&page, "kairos_partitions_owned"), 4.0, "{page}");
    assert_eq!(sample(&page, "kairos_sidecars_connected"), 1.0, "{page}");
    // Six answers (3 + 1 + 2) to six triggers sent; the staged job was never sent (no sidecar
    // of its app), so it has no lateness yet.
    assert_eq!(sample(&page, "kairos_trigger_delivery_seconds_count"), 6.0, "{page}");
    assert_eq!(sample(&page, "kairos_trigger_lateness_seconds_count"), 6.0, "{page}");
    assert!(page.contains(r#"kairos_trigger_delivery_seconds_bucket{le="+Inf"} 6"#), "{page}");
    assert!(sample(&page, "kairos_store_commit_batch_size_count") >= 1.0, "{page}");
    assert!(sample(&page, "kairos_store_commit_duration_seconds_count") >= 1.0, "{page}");
    assert!(page.contains("# TYPE kairos_triggers_total counter"), "{page}");

    let side_page = get_text(&format!("http://{}/metrics", side.metrics())).await.1;
    assert_eq!(
        sample(&side_page, r#"kairos_sidecar_deliveries_total{result="success"}"#),
        3.0,
        "{side_page}"
    );
    assert_eq!(sample(&side_page, r#"kairos_sidecar_deliveries_total{result="failed"}"#), 3.0, "{side_page}");
    assert_eq!(sample(&side_page, "kairos_sidecar_delivery_duration_seconds_count"), 6.0, "{side_page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_health_is_live_and_ready_until_sigterm() {
    let (_dir, mut scheduler) = scheduler_in_tempdir(&[], &[]);
    let healthz = scheduler.healthz();
    assert_eq!(get_text(&format!("http://{healthz}/healthz")).await.0, 200);
    let ready_url = format!("http://{healthz}/readyz");
    let mut ready = 0;
    for _ in 0..100 {
        ready = get_text(&ready_url).await.0;
        if ready == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready, 200, "ready once the partitions are loaded and the store answers");
    scheduler.sigterm();
    assert_eq!(exit_code(&mut scheduler, 15), Some(0));
    assert!(scheduler.log_has("triggers in flight drained"));
}

/// SIGTERM to the scheduler while the app holds a delivery: readiness fails and writes are
/// refused at once, the delivery is answered within the grace, the process exits 0, and after
/// a restart nothing is lost and nothing fires twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_sigterm_drains_a_slow_delivery_and_loses_nothing() {
    let (app_port, app) = http_app().await;
    let (dir, mut first) = scheduler_in_tempdir(&["--graceful-shutdown-seconds", "10"], &[]);
    let address = first.grpc();
    let side = app_sidecar("drain-app", &address, app_port, &[]);
    assert_eq!(post_job(&side, "later", r#"{"dueTime":"1h"}"#).await.0, 204);
    assert_eq!(post_job(&side, "slow-1", r#"{"dueTime":"0s"}"#).await.0, 204);
    wait_until("the slow delivery to start", 10, || app.started("slow-1") == 1).await;

    first.sigterm();
    let ready_url = format!("http://{}/readyz", first.healthz());
    let (mut status, mut body) = (0, String::new());
    for _ in 0..40 {
        (status, body) = get_text(&ready_url).await;
        if status != 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(status, 503, "not ready while draining: {body}");
    assert!(body.contains("shutting down"), "{body}");
    let mut client = common::connect(&address).await;
    let spec = JobSpec { due_time: Some("1h".into()), ..JobSpec::default() };
    let refused = client.schedule_job(schedule_request("drain-app", "refused", &spec)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused}");

    assert_eq!(exit_code(&mut first, 15), Some(0));
    assert_eq!(app.answered("slow-1"), 1, "the delivery finished before the scheduler exited");
    assert!(first.log_has("triggers in flight drained"), "the answer came back within the grace");
    drop(side);

    let second = scheduler(dir.path(), &[], &[]);
    let side = app_sidecar("drain-app", &second.grpc(), app_port, &[]);
    assert_eq!(get_job(&side, "later").await, 200, "the pending job survived the restart");
    assert_eq!(get_job(&side, "slow-1").await, 500, "the answered one-shot job is complete");
    assert_eq!(get_job(&side, "refused").await, 500, "a refused write stored nothing");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(app.started("slow-1"), 1, "not delivered again after the restart");
}

/// SIGTERM to the sidecar while the app holds a delivery: the delivery finishes and reaches
/// the scheduler, and the sidecar exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_sigterm_lets_the_delivery_in_flight_finish() {
    let (app_port, app) = http_app().await;
    let (_dir, scheduler) = scheduler_in_tempdir(&[], &[]);
    let address = scheduler.grpc();
    let mut side = app_sidecar("side-drain", &address, app_port, &[]);
    assert_eq!(post_job(&side, "slow-2", r#"{"dueTime":"0s"}"#).await.0, 204);
    wait_until("the slow delivery to start", 10, || app.started("slow-2") == 1).await;
    side.sigterm();
    assert_eq!(exit_code(&mut side, 15), Some(0));
    assert_eq!(app.answered("slow-2"), 1);

    let mut client = common::connect(&address).await;
    let request = GetJobRequest {
        name: "slow-2".into(),
        metadata: Some(metadata_of(&JobKey::app("default", "side-drain", ""))),
    };
    let mut gone = false;
    for _ in 0..40 {
        match client.get_job(request.clone()).await {
            Err(status) if status.code() == tonic::Code::NotFound => {
                gone = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert!(gone, "the result reached the scheduler, which completed the job");
    // A new sidecar of the app does not get it again.
    let _again = app_sidecar("side-drain", &address, app_port, &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(app.started("slow-2"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_api_token_is_required_when_set() {
    let (app_port, app) = http_app().await;
    let (dir, scheduler) = scheduler_in_tempdir(&[], &[("KAIROS_SCHEDULER_API_TOKEN", "sched-s3cret")]);
    let address = scheduler.grpc();
    let spec = JobSpec { due_time: Some("1h".into()), ..JobSpec::default() };

    // Raw gRPC: none, wrong, right.
    let mut client = common::connect(&address).await;
    let missing = client.schedule_job(schedule_request("tok-app", "raw", &spec)).await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::Unauthenticated, "{missing}");
    let mut wrong = tonic::Request::new(schedule_request("tok-app", "raw", &spec));
    wrong.metadata_mut().insert("authorization", "Bearer sched-s3creT".parse().unwrap());
    let mismatch = client.schedule_job(wrong).await.unwrap_err();
    assert_eq!(mismatch.code(), tonic::Code::Unauthenticated, "{mismatch}");
    let mut right = tonic::Request::new(schedule_request("tok-app", "raw", &spec));
    right.metadata_mut().insert("authorization", "Bearer sched-s3cret".parse().unwrap());
    client.schedule_job(right).await.unwrap();

    // A sidecar without the token is refused (and nothing is stored)...
    let without = sidecar("tok-app", &address, &[], &[]);
    let (status, body) = post_job(&without, "nope", r#"{"dueTime":"0s"}"#).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_code(&body), "DAPR_SCHEDULER_SCHEDULE_JOB", "{body}");
    assert!(body.contains("Unauthenticated"), "{body}");
    // ...one with it (from a file) works, its trigger stream included.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "sched-s3cret\n").unwrap();
    let token_path = token_file.display().to_string();
    let with = app_sidecar("tok-app", &address, app_port, &["--scheduler-api-token-file", &token_path]);
    assert_delivered(&with, &app, "ok-tok").await;
    assert_eq!(get_job(&with, "raw").await, 200);
    assert_eq!(get_job(&with, "nope").await, 500, "the refused job was not stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_job_data_and_bodies_are_refused_and_store_nothing() {
    let (_dir, scheduler) = scheduler_in_tempdir(&["--max-job-data-size", "2Ki"], &[]);
    let address = scheduler.grpc();
    let side = sidecar("limits", &address, &["--max-job-data-size", "1Ki", "--max-body-size", "8Ki"], &[]);
    let body_with = |n: usize| format!(r#"{{"dueTime":"1h","data":"{}"}}"#, "x".repeat(n));

    // Over the sidecar's data limit.
    let (status, body) = post_job(&side, "big-data", &body_with(1500)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "DAPR_SCHEDULER_SCHEDULE_JOB", "{body}");
    assert!(body.contains("--max-job-data-size"), "{body}");
    assert_eq!(get_job(&side, "big-data").await, 500);
    // Over the body limit.
    let (status, body) = post_job(&side, "big-body", &body_with(9000)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "ERR_BODY_READ", "{body}");
    assert_eq!(get_job(&side, "big-body").await, 500);
    // Within both.
    assert_eq!(post_job(&side, "small", &body_with(500)).await.0, 204);
    assert_eq!(get_job(&side, "small").await, 200);

    // The scheduler enforces its own limit for any client.
    let mut client = common::connect(&address).await;
    let spec = JobSpec {
        due_time: Some("1h".into()),
        data: Some(Payload {
            type_url: "type.googleapis.com/google.protobuf.BytesValue".into(),
            value: vec![7; 3000],
        }),
        ..JobSpec::default()
    };
    let refused = client.schedule_job(schedule_request("limits", "raw-big", &spec)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused}");
    assert_eq!(get_job(&side, "raw-big").await, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_one_span_per_trigger() {
    let (app_port, app) = http_app().await;
    let (_dir, scheduler) = scheduler_in_tempdir(&["--log-as-json", "--log-level", "debug"], &[]);
    let address = scheduler.grpc();
    let side = app_sidecar("json-app", &address, app_port, &[]);
    assert_eq!(post_job(&side, "fail-json", r#"{"dueTime":"0s","failurePolicy":{"drop":{}}}"#).await.0, 204);
    wait_until("the delivery", 10, || app.answered("fail-json") == 1).await;
    let mut found = None;
    for _ in 0..40 {
        found = scheduler.log_lines().iter().find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            (v["span"]["name"] == "trigger" && v["span"]["outcome"] == "dropped").then_some(v)
        });
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let event = found.expect("a trigger log line with its span");
    assert_eq!(event["span"]["job"], "app||default||json-app||fail-json", "{event}");
    assert_eq!(event["span"]["attempt"], 1, "{event}");
    assert_eq!(event["level"], "WARN", "{event}");
    // The listening line is JSON too, with the address of the ready line.
    let listening = scheduler.log_lines().iter().find_map(|l| {
        let v: Value = serde_json::from_str(l).ok()?;
        (v["fields"]["message"] == "kairos scheduler listening").then_some(v)
    });
    let listening = listening.expect("a JSON listening log line");
    assert_eq!(listening["fields"]["address"], address.as_str(), "{listening}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dapr_api_token_guards_every_api_route_but_health() {
    use kairos_proto::runtime::dapr_client::DaprClient;
    use kairos_proto::runtime::{GetJobRequest as RuntimeGet, ScheduleJobRequest as RuntimeSchedule};

    let (_dir, scheduler) = scheduler_in_tempdir(&[], &[]);
    let side = sidecar("dapr-token", &scheduler.grpc(), &[], &[("DAPR_API_TOKEN", "d4pr")]);
    let http = reqwest::Client::new();
    let base = format!("http://{}", side.http());
    let put = |token: Option<&str>| {
        let mut r = http.put(format!("{base}/v1.0/metadata/appPID")).body("1");
        if let Some(token) = token {
            r = r.header("dapr-api-token", token);
        }
        r.send()
    };
    assert_eq!(put(None).await.unwrap().status().as_u16(), 401);
    assert_eq!(put(Some("d4pR")).await.unwrap().status().as_u16(), 401);
    assert_eq!(put(Some("d4pr")).await.unwrap().status().as_u16(), 204);
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let r = http.request(method.clone(), format!("{base}/v1.0-alpha1/jobs/x")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{method} without a token");
    }
    assert_eq!(
        http.get(format!("{base}/v1.0/healthz/outbound")).send().await.unwrap().status().as_u16(),
        204
    );

    let mut grpc = DaprClient::connect(format!("http://{}", side.grpc())).await.unwrap();
    let job = kairos_proto::convert::spec_to_runtime_job(
        "g",
        &JobSpec { due_time: Some("1h".into()), ..JobSpec::default() },
    );
    let schedule = || RuntimeSchedule { job: Some(job.clone()), overwrite: false };
    let err = grpc.schedule_job(schedule()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
    let mut wrong = tonic::Request::new(RuntimeGet { name: "g".into() });
    wrong.metadata_mut().insert("dapr-api-token", "nope".parse().unwrap());
    assert_eq!(grpc.get_job(wrong).await.unwrap_err().code(), tonic::Code::Unauthenticated);
    let mut right = tonic::Request::new(schedule());
    right.metadata_mut().insert("dapr-api-token", "d4pr".parse().unwrap());
    grpc.schedule_job(right).await.unwrap();
    let mut right = tonic::Request::new(RuntimeGet { name: "g".into() });
    right.metadata_mut().insert("dapr-api-token", "d4pr".parse().unwrap());
    assert!(grpc.get_job(right).await.unwrap().into_inner().job.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::disallowed_methods)] // a wall-clock bound on the test itself
async fn an_unreachable_scheduler_times_out_with_504() {
    let dead = format!("127.0.0.1:{}", kairos_testing::free_port().unwrap());
    let side = sidecar("timeout-app", &dead, &["--scheduler-request-timeout-seconds", "1"], &[]);
    let started = std::time::Instant::now();
    let (status, body) = post_job(&side, "t", r#"{"dueTime":"1h"}"#).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(error_code(&body), "DAPR_SCHEDULER_SCHEDULE_JOB", "{body}");
    assert!(body.contains("DeadlineExceeded"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(10), "bounded by the timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_api_can_be_served_over_tls() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let (cert, key, ca) = (
        fixtures.join("server-cert.pem").display().to_string(),
        fixtures.join("server-key.pem").display().to_string(),
        fixtures.join("ca-cert.pem").display().to_string(),
    );
    let (app_port, app) = http_app().await;
    let (_dir, scheduler) = scheduler_in_tempdir(&["--tls-cert-file", &cert, "--tls-key-file", &key], &[]);
    assert!(scheduler.ready.tls, "{}", scheduler.ready.line);
    let address = scheduler.grpc();

    let with_ca = app_sidecar("tls-app", &address, app_port, &["--scheduler-tls-ca-file", &ca]);
    assert_delivered(&with_ca, &app, "ok-tls").await;

    // Plain text does not reach a TLS scheduler.
    let plain = sidecar("tls-app", &address, &["--scheduler-request-timeout-seconds", "1"], &[]);
    let (status, body) = post_job(&plain, "nope", r#"{"dueTime":"1h"}"#).await;
    assert_ne!(status, 204, "{body}");
    assert_eq!(get_job(&with_ca, "nope").await, 500, "nothing stored");
}

/// One HTTP/1.1 request over TLS (verified against `ca`), by hand: status and body.
async fn https_request(ca: &Path, address: &str, request: &str) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(address).await?;
    let mut tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await?;
    tls.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    // The server closes after the answer (`Connection: close`); a TLS peer that just drops the
    // connection ends the read with an error after the data.
    let _ = tls.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_apis_can_be_served_over_tls() {
    use kairos_proto::runtime::GetJobRequest as RuntimeGet;
    use kairos_proto::runtime::dapr_client::DaprClient;

    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let (cert, key, ca) =
        (fixtures.join("server-cert.pem"), fixtures.join("server-key.pem"), fixtures.join("ca-cert.pem"));
    let (app_port, app) = http_app().await;
    let (_dir, scheduler) = scheduler_in_tempdir(&[], &[]);
    let side = sidecar(
        "tls-side",
        &scheduler.grpc(),
        &[
            "--app-port",
            &app_port.to_string(),
            "--tls-cert-file",
            cert.to_str().unwrap(),
            "--tls-key-file",
            key.to_str().unwrap(),
        ],
        &[],
    );
    assert!(side.ready.tls, "{}", side.ready.line);
    let http = format!("localhost:{}", side.http().rsplit(':').next().unwrap());
    let grpc = format!("localhost:{}", side.grpc().rsplit(':').next().unwrap());

    // HTTPS: schedule, read back, and the app gets the job.
    let body = r#"{"dueTime":"0s","data":"over tls"}"#;
    let post = format!(
        "POST /v1.0-alpha1/jobs/tls-job HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(https_request(&ca, &http, &post).await.unwrap().0, 204);
    let get = "GET /v1.0-alpha1/jobs/later HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let later = r#"{"dueTime":"1h"}"#;
    let post_later = format!(
        "POST /v1.0-alpha1/jobs/later HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{later}",
        later.len()
    );
    assert_eq!(https_request(&ca, &http, &post_later).await.unwrap().0, 204);
    let (status, got) = https_request(&ca, &http, get).await.unwrap();
    assert_eq!(status, 200, "{got}");
    assert!(got.contains("\"name\":\"later\""), "{got}");
    wait_until("the delivery of a job scheduled over HTTPS", 10, || app.answered("tls-job") == 1).await;

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new().get(format!("http://{http}/v1.0/healthz/outbound")).send().await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");

    // gRPC over TLS with the CA works; plain text does not.
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(&ca).unwrap()));
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{grpc}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let job =
        DaprClient::new(channel).get_job(RuntimeGet { name: "later".into() }).await.unwrap().into_inner();
    assert_eq!(job.job.unwrap().name, "later");
    let plain_grpc = match DaprClient::connect(format!("http://{grpc}")).await {
        Ok(mut client) => client.get_job(RuntimeGet { name: "later".into() }).await.map(|_| ()),
        Err(err) => Err(tonic::Status::unavailable(err.to_string())),
    };
    assert!(plain_grpc.is_err(), "plain-text gRPC was answered");
}

#[test]
fn a_sidecar_with_a_bad_certificate_does_not_start() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = tempfile::tempdir().unwrap();
    let not_a_cert = dir.path().join("cert.pem");
    std::fs::write(&not_a_cert, "not a certificate").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kairos"))
        .args(["sidecar", "--app-id", "bad-tls", "--dapr-http-port", "0", "--dapr-grpc-port", "0"])
        .args(["--metrics-port", "0", "--tls-cert-file", not_a_cert.to_str().unwrap(), "--tls-key-file"])
        .arg(fixtures.join("server-key.pem"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad TLS certificate or key"), "{stderr}");
}

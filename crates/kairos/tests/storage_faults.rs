//! Storage faults seen from outside, on the real binaries: a disk that fills up and is freed
//! again without a restart (a small tmpfs; the test needs root to mount it and says so and
//! returns where it cannot), a store file damaged on disk, and etcd's space quota used up (a real
//! Debian etcd with a small `--quota-backend-bytes`).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use kairos_core::Stopwatch;
use kairos_proto::scheduler::{GetJobRequest, Job, JobMetadata, ScheduleJobRequest};
use kairos_testing::damage::{compacted_store_file, damaged};
use kairos_testing::disk::{Tmpfs, fill};
use kairos_testing::etcd::EtcdProcess;
use serde_json::Value;

/// Deliveries per job name.
#[derive(Debug, Clone, Default)]
struct Deliveries(Arc<Mutex<BTreeMap<String, u32>>>);

impl Deliveries {
    fn of(&self, name: &str) -> u32 {
        self.0.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

async fn on_job(State(deliveries): State<Deliveries>, UrlPath(name): UrlPath<String>) -> StatusCode {
    *deliveries.0.lock().unwrap().entry(name).or_default() += 1;
    StatusCode::OK
}

/// An HTTP app on a free port that records every job delivered to it.
async fn http_app() -> (u16, Deliveries) {
    kairos_testing::http::serve_jobs(on_job, Deliveries::default()).await
}

/// POSTs a job through a sidecar's HTTP API: status, body, and how long the answer took.
async fn create(http: &reqwest::Client, sidecar: &str, name: &str, body: &str) -> (u16, String, Duration) {
    let watch = Stopwatch::start();
    let response =
        http.post(format!("http://{sidecar}/v1.0/jobs/{name}")).body(body.to_owned()).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap(), watch.elapsed())
}

async fn get_text(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Polls `url` until it answers `status` (bounded), returning the last body.
async fn until_status(url: &str, status: u16, seconds: u64) -> String {
    let watch = Stopwatch::start();
    loop {
        let (got, body) = get_text(url).await;
        if got == status {
            return body;
        }
        assert!(watch.elapsed() < Duration::from_secs(seconds), "{url} still answers {got} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn error_code(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["errorCode"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn metadata(app_id: &str) -> JobMetadata {
    common::job_metadata("default", app_id)
}

/// A one-shot job due `due` after creation, with `pad` bytes of data.
fn job_body(due: &str, pad: usize) -> String {
    serde_json::json!({ "dueTime": due, "data": { "pad": "x".repeat(pad) } }).to_string()
}

/// The arguments of a `kairos scheduler` on `data_dir` with every port chosen by the system.
fn scheduler_on(data_dir: &str) -> Vec<&str> {
    vec!["scheduler", "--port", "0", "--healthz-port", "0", "--metrics-port", "0", "--data-dir", data_dir]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_creates_at_once_with_the_cause_and_they_resume_once_space_is_freed() {
    let Some(disk) = Tmpfs::mount("16m") else { return };
    let data_dir = disk.path().join("data");
    let scheduler = common::start_scheduler(
        &data_dir,
        &["--partitions", "4", "--healthz-port", "0", "--metrics-port", "0"],
    );
    let ready_url = format!("http://{}/readyz", scheduler.healthz());
    let (app_port, deliveries) = http_app().await;
    let sidecar =
        common::start_sidecar("full-app", &scheduler.address, &["--app-port", &app_port.to_string()], &[]);
    let http = reqwest::Client::new();
    until_status(&ready_url, 200, 20).await;

    let (status, body, _) = create(&http, &sidecar.http, "kept", &job_body("1h", 100)).await;
    assert_eq!(status, 204, "{body}");
    let mut acked = Vec::new();
    for i in 0..20 {
        let name = format!("before-{i:02}");
        let (status, body, _) = create(&http, &sidecar.http, &name, &job_body("1s", 100)).await;
        assert_eq!(status, 204, "{body}");
        acked.push(name);
    }

    let filler = fill(disk.path());
    // redb may still have room inside its file: create until the disk says no.
    let mut i = 0;
    let (body, took) = loop {
        assert!(i < 5000, "the disk never filled up");
        let name = format!("during-{i:04}");
        let (status, body, took) = create(&http, &sidecar.http, &name, &job_body("4s", 4096)).await;
        match status {
            204 => acked.push(name),
            507 => break (body, took),
            other => panic!("create {name} answered {other} after {took:?}: {body}"),
        }
        i += 1;
    };
    println!("first refused create after {} acknowledged ones, in {took:?}: {body}", acked.len());
    assert!(took < Duration::from_secs(5), "the refusal took {took:?}");
    assert_eq!(error_code(&body), "DAPR_SCHEDULER_SCHEDULE_JOB", "{body}");
    assert!(message(&body).contains("no space left on device"), "{body}");
    let mut refused = vec![format!("during-{i:04}")];

    // Later creates: refused at once, through the sidecar and straight at the scheduler.
    for k in 0..10 {
        let name = format!("refused-{k}");
        let (status, body, took) = create(&http, &sidecar.http, &name, &job_body("4s", 10)).await;
        assert_eq!((status, error_code(&body).as_str()), (507, "DAPR_SCHEDULER_SCHEDULE_JOB"), "{body}");
        assert!(took < Duration::from_secs(2), "a refusal took {took:?}");
        refused.push(name);
    }
    let mut client = common::connect(&scheduler.address).await;
    let request = ScheduleJobRequest {
        name: "refused-grpc".into(),
        job: Some(Job { due_time: Some("4s".into()), ..Default::default() }),
        metadata: Some(metadata("full-app")),
        overwrite: false,
    };
    let status = client.schedule_job(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("no space left on device"), "{status:?}");
    refused.push("refused-grpc".into());

    // The scheduler says why it is not ready; reads still work.
    let (code, reasons) = get_text(&ready_url).await;
    assert_eq!(code, 503, "{reasons}");
    assert!(reasons.contains("store full") && reasons.contains("no space left on device"), "{reasons}");
    let request = GetJobRequest { name: "kept".into(), metadata: Some(metadata("full-app")) };
    client.get_job(request).await.expect("reads go on");

    // Jobs stored before keep firing while the disk is full (their progress waits for space).
    let watch = Stopwatch::start();
    while let Some(missing) = acked.iter().filter(|n| n.starts_with("before")).find(|n| deliveries.of(n) == 0)
    {
        assert!(watch.elapsed() < Duration::from_secs(20), "{missing} did not fire while the disk was full");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get_text(&ready_url).await.0, 503, "still full");

    // Space comes back: creates succeed again without a restart, and the node is ready again.
    std::fs::remove_file(filler).unwrap();
    let watch = Stopwatch::start();
    loop {
        let (status, body, _) = create(&http, &sidecar.http, "after-00", &job_body("2s", 10)).await;
        if status == 204 {
            break;
        }
        assert_eq!(status, 507, "{body}");
        assert!(watch.elapsed() < Duration::from_secs(15), "creates did not resume: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("creates resumed {:?} after the filler was removed", watch.elapsed());
    acked.push("after-00".into());
    for k in 1..20 {
        let name = format!("after-{k:02}");
        let (status, body, _) = create(&http, &sidecar.http, &name, &job_body("2s", 10)).await;
        assert_eq!(status, 204, "{body}");
        acked.push(name);
    }
    until_status(&ready_url, 200, 15).await;

    // Every acknowledged job fires; no refused one was stored.
    let watch = Stopwatch::start();
    while let Some(missing) = acked.iter().find(|name| deliveries.of(name) == 0) {
        assert!(watch.elapsed() < Duration::from_secs(60), "{missing} was never delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for name in &refused {
        assert_eq!(deliveries.of(name), 0, "{name} was refused but delivered");
        let request = GetJobRequest { name: name.clone(), metadata: Some(metadata("full-app")) };
        let status = client.get_job(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound, "{name}: {status:?}");
    }
    let repeated = acked.iter().filter(|name| deliveries.of(name) > 1).count();
    println!(
        "{} acknowledged jobs all delivered ({repeated} more than once), {} refused ones never stored",
        acked.len(),
        refused.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kairos_run_health_says_the_store_is_full_until_space_is_freed() {
    let Some(disk) = Tmpfs::mount("8m") else { return };
    let data_dir = disk.path().join("data").display().to_string();
    let args = ["run", "--app-id", "run-app", "--data-dir", &data_dir, "--", "sleep", "120"];
    // Killed when dropped, at the end of the test.
    let run = common::spawn_kairos(&args, &[]);
    let sidecar = run.http();
    let health = format!("http://{sidecar}/v1.0/healthz");
    let http = reqwest::Client::new();
    until_status(&health, 204, 20).await;

    let filler = fill(disk.path());
    let mut i = 0;
    loop {
        assert!(i < 5000, "the disk never filled up");
        let (status, body, _) = create(&http, &sidecar, &format!("job-{i:04}"), &job_body("1h", 4096)).await;
        match status {
            204 => {}
            507 => break,
            other => panic!("create answered {other}: {body}"),
        }
        i += 1;
    }
    let body = until_status(&health, 500, 5).await;
    println!("kairos run health after {i} creates, with the disk full: {body}");
    assert_eq!(error_code(&body), "ERR_HEALTH_NOT_READY", "{body}");
    assert!(message(&body).contains("store full (no space left on device)"), "{body}");

    std::fs::remove_file(filler).unwrap();
    until_status(&health, 204, 15).await;
    let (status, body, _) = create(&http, &sidecar, "after", &job_body("1h", 10)).await;
    assert_eq!(status, 204, "{body}");
}

/// A closed, compacted store file with `jobs` jobs of about 1 KiB each.
async fn store_file(path: &Path, jobs: usize) -> Vec<u8> {
    let jobs = (0..jobs).map(|i| {
        let key = kairos_core::JobKey::app("default", "corrupt-app", format!("job-{i:05}"));
        let mut job = kairos_testing::conformance::job(key, jiff::Timestamp::UNIX_EPOCH);
        job.spec.data =
            Some(kairos_core::Payload { type_url: "t".into(), value: vec![(i % 251) as u8; 1024] });
        job
    });
    compacted_store_file(path, jobs).await
}

/// Runs `kairos ARGS…` to its end (bounded): exit code and stderr.
fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kairos"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let watch = Stopwatch::start();
    while child.try_wait().unwrap().is_none() {
        if watch.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kairos {args:?} still runs after 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_store_stops_startup_with_its_exit_code_and_what_to_do() {
    let source = tempfile::tempdir().unwrap();
    let clean = store_file(&source.path().join("jobs.redb"), 4000).await;
    for (what, bytes) in damaged(&clean) {
        for command in ["scheduler", "run"] {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("jobs.redb");
            std::fs::write(&file, &bytes).unwrap();
            let data_dir = dir.path().display().to_string();
            let args: Vec<&str> = match command {
                "scheduler" => scheduler_on(&data_dir),
                _ => vec!["run", "--app-id", "corrupt-app", "--data-dir", &data_dir, "--", "sleep", "60"],
            };
            let (code, stderr) = run_to_exit(&args);
            println!("{what}, kairos {command}: exit {code:?}: {}", stderr.trim());
            assert_eq!(code, Some(65), "{what}, {command}: {stderr}");
            assert!(!stderr.contains("panicked"), "{what}, {command}: {stderr}");
            assert!(stderr.contains(&format!("the job store {} is corrupt", file.display())), "{stderr}");
            assert!(stderr.contains("kairos jobs export") && stderr.contains("--data-dir"), "{stderr}");
            assert!(!stderr.contains("another kairos process"), "{what}, {command}: {stderr}");
        }
    }

    // The undamaged file starts; a second process on the same data dir gets the lock hint.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jobs.redb"), &clean).unwrap();
    let _first = common::start_scheduler(dir.path(), &["--healthz-port", "0", "--metrics-port", "0"]);
    let data_dir = dir.path().display().to_string();
    let (code, stderr) = run_to_exit(&scheduler_on(&data_dir));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("another kairos process"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_used_up_etcd_quota_refuses_creates_with_the_cause_and_they_resume_once_freed() {
    let etcd = EtcdProcess::start_with_args(&["--quota-backend-bytes", &(2u32 << 20).to_string()])
        .await
        .expect("start etcd (scripts/ensure-deps installs it)");
    let dir = tempfile::tempdir().unwrap();
    let endpoints = etcd.endpoints().join(",");
    let scheduler = common::start_scheduler(
        dir.path(),
        &["--etcd-endpoints", &endpoints, "--partitions", "4", "--healthz-port", "0", "--metrics-port", "0"],
    );
    let ready_url = format!("http://{}/readyz", scheduler.healthz());
    until_status(&ready_url, 200, 30).await;
    let mut client = common::connect(&scheduler.address).await;
    let schedule = |name: &str, pad: usize, overwrite: bool| ScheduleJobRequest {
        name: name.into(),
        job: Some(Job {
            due_time: Some("1h".into()),
            data: Some(prost_types::Any { type_url: "t".into(), value: vec![0x42; pad] }),
            ..Default::default()
        }),
        metadata: Some(metadata("quota-app")),
        overwrite,
    };
    client.schedule_job(schedule("kept", 10, false)).await.unwrap();

    // One large job overwritten until the quota is used up (every version stays in etcd's
    // history until a compaction).
    let mut writes = 0;
    let status = loop {
        assert!(writes < 1000, "the quota was never reached");
        match client.schedule_job(schedule("churn", 64 << 10, true)).await {
            Ok(_) => writes += 1,
            Err(status) => break status,
        }
    };
    println!("after {writes} overwrites: {status:?}");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("database space exceeded"), "{status:?}");
    assert!(status.message().contains("no space left on device"), "{status:?}");
    let status = client.schedule_job(schedule("new", 10, false)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");

    // Reads go on, and readiness says why it is not ready.
    let request = GetJobRequest { name: "kept".into(), metadata: Some(metadata("quota-app")) };
    client.get_job(request).await.unwrap();
    let body = until_status(&ready_url, 503, 10).await;
    assert!(body.contains("NOSPACE"), "{body}");

    // The operator compacts, defragments and disarms the alarm: creates work again.
    etcd.free_space().await.unwrap();
    client.schedule_job(schedule("new", 10, false)).await.unwrap();
    until_status(&ready_url, 200, 15).await;
}

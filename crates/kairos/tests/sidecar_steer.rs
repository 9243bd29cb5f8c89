//! Steering an app's own jobs through the real processes (issue 14, docs/steering.md): the
//! sidecar's `/v1.0-kairos` HTTP routes and `kairos.runtime.v1.Steering` gRPC service against a
//! `kairos scheduler`, and the kairos-sdk against `kairos run` (embedded scheduler): pause stops
//! deliveries, trigger delivers once and is recorded as manual, resume restarts them, the list
//! filters and pages, another app sees none of it, and nothing passes without the token.

mod common;

use std::time::Duration;

use kairos_proto::steer::GetJobStatusRequest;
use kairos_proto::steer::steering_client::SteeringClient;
use kairos_sdk::{
    CatchUp, Client, ClientConfig, Exponential, FailurePolicy, Job, JobState, MisfirePolicy, StatusFilter,
};
use kairos_testing::http::{JobCounter, serve_job_counter};
use kairos_testing::wait_until;
use serde_json::{Value, json};
use tonic::Code;

const TOKEN: &str = "s3cret";

/// An HTTP call to a sidecar with (or without) the token; the body as JSON when it is JSON.
async fn call(method: &str, url: String, token: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method.parse().unwrap(), url)
        .timeout(Duration::from_secs(20))
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("dapr-api-token", token);
    }
    if method == "POST" {
        request = request.body("{}");
    }
    kairos_testing::http::status_and_json(request.send().await.unwrap()).await
}

async fn schedule(http: &str, name: &str, body: &str) {
    let url = format!("http://{http}/v1.0/jobs/{name}");
    let response = reqwest::Client::new()
        .post(url)
        .header("dapr-api-token", TOKEN)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204, "{name}: {}", response.text().await.unwrap());
}

/// Waits for in-flight deliveries to settle, then checks that none comes for three periods of a
/// `@every 1s` job; returns the count.
async fn assert_no_deliveries(app: &JobCounter, name: &str) -> usize {
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = app.count(name);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(app.count(name), before, "{name} was delivered while paused");
    before
}

/// The names of every job the list returns with `query`, following `nextAfter` page by page.
async fn all_pages(http: &str, query: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut after = String::new();
    for _ in 0..20 {
        let url = format!("http://{http}/v1.0-kairos/jobs?{query}&after={after}");
        let (code, body) = call("GET", url, Some(TOKEN)).await;
        assert_eq!(code, 200, "{body}");
        let jobs = body["jobs"].as_array().unwrap();
        assert!(jobs.len() <= 1, "pageSize=1 returned {body}");
        names.extend(jobs.iter().map(|j| j["job"]["name"].as_str().unwrap().to_owned()));
        match body["nextAfter"].as_str() {
            Some(next) => after = next.to_owned(),
            None => return names,
        }
    }
    panic!("the list did not end after 20 pages: {names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_http_and_grpc_steer_an_apps_own_jobs_behind_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = common::start_scheduler(dir.path(), &[]);
    let (port, app) = serve_job_counter().await;
    let envs = [("DAPR_API_TOKEN", TOKEN)];
    let port = port.to_string();
    let a = common::start_sidecar(
        "steer-a",
        &scheduler.address,
        &["--app-port", &port, "--metrics-port", "0"],
        &envs,
    );
    let b = common::start_sidecar("steer-b", &scheduler.address, &["--metrics-port", "0"], &envs);
    let steer_a = format!("http://{}/v1.0-kairos/jobs", a.http);
    let steer_b = format!("http://{}/v1.0-kairos/jobs", b.http);

    schedule(&a.http, "tick", r#"{"schedule":"@every 1s","data":{"n":1}}"#).await;
    wait_until("a first delivery of tick", 15, || app.count("tick") >= 1).await;

    // Without the token (or with a wrong one) nothing is answered, on every route.
    for (method, url) in [
        ("GET", format!("{steer_a}/tick/status")),
        ("GET", format!("{steer_a}/tick/history")),
        ("POST", format!("{steer_a}/tick/pause")),
        ("POST", format!("{steer_a}/tick/trigger")),
        ("GET", steer_a.clone()),
    ] {
        assert_eq!(call(method, url.clone(), None).await.0, 401, "{method} {url}");
        assert_eq!(call(method, url.clone(), Some("wrong")).await.0, 401, "{method} {url}");
    }

    // Pause: no more deliveries, and the status says so.
    let (code, body) = call("POST", format!("{steer_a}/tick/pause"), Some(TOKEN)).await;
    assert_eq!(
        (code, &body["status"]["state"], &body["status"]["paused"]),
        (200, &json!("paused"), &json!(true)),
        "{body}"
    );
    let paused_at = assert_no_deliveries(&app, "tick").await;
    let (code, body) = call("GET", format!("{steer_a}/tick/status"), Some(TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["job"],
        json!({"name": "tick", "schedule": "@every 1s", "data": {"@type": "type.googleapis.com/google.protobuf.Value", "value": {"n": 1}}, "failurePolicy": {"constant": {"interval": "1s", "maxRetries": 3}}})
    );
    assert_eq!(body["status"]["state"], "paused");
    assert!(body["status"]["fired"].as_u64().unwrap() >= 1, "{body}");
    assert_eq!(body["status"]["lastOutcome"], "success", "{body}");

    // Trigger while paused: exactly one delivery, recorded as manual.
    let (code, body) = call("POST", format!("{steer_a}/tick/trigger"), Some(TOKEN)).await;
    assert_eq!(code, 204, "{body}");
    wait_until("the triggered delivery", 15, || app.count("tick") > paused_at).await;
    assert_eq!(assert_no_deliveries(&app, "tick").await, paused_at + 1, "one delivery per trigger");
    let (code, body) = call("GET", format!("{steer_a}/tick/history?limit=50"), Some(TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    let records = body["records"].as_array().unwrap();
    let manual: Vec<&Value> = records.iter().filter(|r| r["manual"] == json!(true)).collect();
    assert_eq!(manual.len(), 1, "{body}");
    assert_eq!(manual[0]["outcome"], "success", "{body}");
    assert!(records.iter().any(|r| r["manual"] == json!(false)), "the scheduled ticks are there too: {body}");
    let (_, one) = call("GET", format!("{steer_a}/tick/history?limit=1"), Some(TOKEN)).await;
    assert_eq!(one["records"].as_array().unwrap().len(), 1, "{one}");
    let (code, bad) = call("GET", format!("{steer_a}/tick/history?limit=-1"), Some(TOKEN)).await;
    assert_eq!((code, &bad["errorCode"]), (400, &json!("KAIROS_INVALID_REQUEST")), "{bad}");

    // Resume: deliveries again.
    let (code, body) = call("POST", format!("{steer_a}/tick/resume"), Some(TOKEN)).await;
    assert_eq!((code, &body["status"]["paused"]), (200, &json!(false)), "{body}");
    wait_until("deliveries after resume", 15, || app.count("tick") > paused_at + 2).await;

    // The list: prefix, state, pagination; bad filters refused.
    for name in ["report-1", "report-2", "other"] {
        schedule(&a.http, name, r#"{"dueTime":"1h"}"#).await;
    }
    assert_eq!(call("POST", format!("{steer_a}/report-2/pause"), Some(TOKEN)).await.0, 200);
    let (code, body) = call("GET", format!("{steer_a}?prefix=report-"), Some(TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    let names: Vec<&str> =
        body["jobs"].as_array().unwrap().iter().map(|j| j["job"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["report-1", "report-2"], "{body}");
    let (_, body) = call("GET", format!("{steer_a}?state=paused"), Some(TOKEN)).await;
    let names: Vec<&str> =
        body["jobs"].as_array().unwrap().iter().map(|j| j["job"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["report-2"], "{body}");
    assert_eq!(body["jobs"][0]["status"]["state"], "paused");
    assert_eq!(all_pages(&a.http, "pageSize=1").await, ["other", "report-1", "report-2", "tick"]);
    assert_eq!(all_pages(&a.http, "pageSize=1&prefix=report-").await, ["report-1", "report-2"]);
    for bad in ["state=sleeping", "pageSize=many", "colour=red"] {
        let (code, body) = call("GET", format!("{steer_a}?{bad}"), Some(TOKEN)).await;
        assert_eq!((code, &body["errorCode"]), (400, &json!("KAIROS_INVALID_REQUEST")), "{bad}: {body}");
    }

    // Another app sees and steers none of it: 404, an empty list, and tick keeps running.
    for (method, route) in
        [("GET", "status"), ("GET", "history"), ("POST", "pause"), ("POST", "resume"), ("POST", "trigger")]
    {
        let (code, body) = call(method, format!("{steer_b}/tick/{route}"), Some(TOKEN)).await;
        assert_eq!((code, &body["errorCode"]), (404, &json!("KAIROS_JOB_NOT_FOUND")), "{route}: {body}");
    }
    let (code, body) = call("GET", steer_b.clone(), Some(TOKEN)).await;
    assert_eq!((code, body), (200, json!({"jobs": []})));
    let (_, body) = call("GET", format!("{steer_a}/tick/status"), Some(TOKEN)).await;
    assert_eq!(body["status"]["paused"], false, "{body}");

    // gRPC: the same service on the gRPC port, scoped and behind the token.
    let mut grpc = SteeringClient::connect(format!("http://{}", a.grpc)).await.unwrap();
    let err = grpc.get_job_status(GetJobStatusRequest { name: "tick".into() }).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let with_token = |name: &str| {
        let mut request = tonic::Request::new(GetJobStatusRequest { name: name.into() });
        request.metadata_mut().insert("dapr-api-token", TOKEN.parse().unwrap());
        request
    };
    let status = grpc.get_job_status(with_token("report-2")).await.unwrap().into_inner();
    assert_eq!(status.job.unwrap().due_time.as_deref(), Some("1h"));
    assert_eq!(status.status.unwrap().state, kairos_proto::admin::JobState::Paused as i32);
    let mut grpc_b = SteeringClient::connect(format!("http://{}", b.grpc)).await.unwrap();
    let err = grpc_b.get_job_status(with_token("report-2")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kairos_sdk_steers_jobs_under_kairos_run() {
    let dir = tempfile::tempdir().unwrap();
    let (port, app) = serve_job_counter().await;
    let port = port.to_string();
    let data_dir = dir.path().to_str().unwrap();
    let placeholder = "while kill -0 $PPID 2>/dev/null; do sleep 1; done";
    let args = [
        "run",
        "--app-id",
        "sdk-app",
        "--app-port",
        &port,
        "--data-dir",
        data_dir,
        "--",
        "sh",
        "-c",
        placeholder,
    ];
    let run = common::spawn_kairos(&args, &[("DAPR_API_TOKEN", TOKEN)]);
    let config = ClientConfig::new(run.grpc()).with_api_token(Some(TOKEN.into()));
    let client = Client::connect_with(config).await.unwrap();

    // The extensions go out and read back as they were sent.
    let backoff = Exponential::new(Duration::from_secs(1))
        .multiplier(2.0)
        .max_interval(Duration::from_secs(60))
        .max_retries(5)
        .jitter(0.1);
    let misfire = MisfirePolicy::new(CatchUp::Once).window(Duration::from_secs(3600));
    let beat = Job::new("beat")
        .schedule("@every 1s")
        .failure_policy(FailurePolicy::exponential(backoff))
        .misfire_policy(misfire);
    client.schedule_job(beat, false).await.unwrap();
    let stored = client.get_job("beat").await.unwrap();
    assert_eq!(stored.failure_policy, Some(FailurePolicy::Exponential(backoff)));
    assert_eq!(stored.misfire_policy, Some(misfire));
    // A job without extensions reads back as it does from Dapr: the default policy, no misfire.
    client.schedule_job(Job::new("plain").due_time("1h"), false).await.unwrap();
    let plain = client.get_job("plain").await.unwrap();
    assert_eq!(plain.failure_policy, Some(FailurePolicy::constant(Duration::from_secs(1), Some(3))));
    assert_eq!(plain.misfire_policy, None);

    wait_until("a first delivery of beat", 15, || app.count("beat") >= 1).await;
    let paused = client.pause_job("beat").await.unwrap();
    assert_eq!((paused.state, paused.paused), (Some(JobState::Paused), true));
    let paused_at = assert_no_deliveries(&app, "beat").await;

    client.trigger_job("beat").await.unwrap();
    wait_until("the triggered delivery", 15, || app.count("beat") > paused_at).await;
    // The record is written once the sidecar has reported the delivery's result.
    let deadline = kairos_testing::process::now() + Duration::from_secs(15);
    let history = loop {
        let history = client.job_history("beat", None).await.unwrap();
        if history.iter().any(|r| r.manual) || kairos_testing::process::now() > deadline {
            break history;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let manual: Vec<_> = history.iter().filter(|r| r.manual).collect();
    assert_eq!(manual.len(), 1, "{history:?}");
    assert_eq!(manual[0].outcome, Some(kairos_sdk::TriggerOutcome::Success), "{history:?}");
    assert_eq!(client.job_history("beat", Some(1)).await.unwrap().len(), 1);

    let resumed = client.resume_job("beat").await.unwrap();
    assert!(!resumed.paused, "{resumed:?}");
    wait_until("deliveries after resume", 15, || app.count("beat") > paused_at + 2).await;
    let status = client.job_status("beat").await.unwrap();
    assert!(status.status.fired >= 3 && status.status.last_fire.is_some(), "{status:?}");
    assert_eq!(status.job.failure_policy, Some(FailurePolicy::Exponential(backoff)));

    // List with filters and pagination.
    client.pause_job("plain").await.unwrap();
    let page = client.list_job_status(StatusFilter::new().state(JobState::Paused)).await.unwrap();
    assert_eq!(page.jobs.iter().map(|j| j.job.name.as_str()).collect::<Vec<_>>(), ["plain"]);
    let page = client.list_job_status(StatusFilter::new().name_prefix("be")).await.unwrap();
    assert_eq!(page.jobs.iter().map(|j| j.job.name.as_str()).collect::<Vec<_>>(), ["beat"]);
    let first = client.list_job_status(StatusFilter::new().page_size(1)).await.unwrap();
    assert_eq!((first.jobs.len(), first.next_after.as_deref()), (1, Some("beat")));
    let second = client.list_job_status(StatusFilter::new().page_size(1).after("beat")).await.unwrap();
    assert_eq!(second.jobs[0].job.name, "plain");

    // Unknown jobs, and no token.
    assert!(client.job_status("nope").await.unwrap_err().is_not_found());
    assert!(client.pause_job("nope").await.unwrap_err().is_not_found());
    let anonymous = Client::connect(run.grpc()).await.unwrap();
    assert!(anonymous.job_status("beat").await.unwrap_err().is_unauthenticated());

    // The HTTP routes answer under kairos run too.
    let (code, body) =
        call("GET", format!("http://{}/v1.0-kairos/jobs/plain/status", run.http()), Some(TOKEN)).await;
    assert_eq!((code, &body["status"]["state"]), (200, &json!("paused")), "{body}");
}

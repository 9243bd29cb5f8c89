//! The HTTP Jobs API of the real `kairos sidecar` process against a real `kairos scheduler`,
//! and an HTTP app receiving `POST /job/{name}` (spec §2, §4.2, §6, §7.5).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use kairos_testing::wait_until;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
struct Received {
    name: String,
    content_type: String,
    token: Option<String>,
    body: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
struct AppState {
    received: Arc<Mutex<Vec<Received>>>,
}

impl AppState {
    fn of(&self, name: &str) -> Vec<Received> {
        self.received.lock().unwrap().iter().filter(|r| r.name == name).cloned().collect()
    }
}

async fn on_job(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_owned);
    state.received.lock().unwrap().push(Received {
        name: name.clone(),
        content_type: header("content-type").unwrap_or_default(),
        token: header("dapr-api-token"),
        body: body.to_vec(),
    });
    kairos_testing::http::status_by_name(&name)
}

/// An HTTP app on a free port.
async fn http_app() -> (u16, AppState) {
    kairos_testing::http::serve_jobs(on_job, AppState::default()).await
}

/// An HTTP app on a free port, a sidecar `app_id` (to the scheduler at `scheduler`, with `envs`)
/// delivering to it, and a client of the sidecar's API.
async fn app_and_sidecar(
    scheduler: &str,
    app_id: &str,
    envs: &[(&str, &str)],
) -> (AppState, common::SidecarProc, Api) {
    let (app_port, app) = http_app().await;
    let sidecar = common::start_sidecar(app_id, scheduler, &["--app-port", &app_port.to_string()], envs);
    let api = Api::new(&sidecar);
    (app, sidecar, api)
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(sidecar: &common::SidecarProc) -> Api {
        Api { http: reqwest::Client::new(), base: format!("http://{}", sidecar.http) }
    }

    /// A sidecar `app_id` of the scheduler at `scheduler`, with no app, and a client of its API.
    fn start(scheduler: &str, app_id: &str) -> (common::SidecarProc, Api) {
        let sidecar = common::start_sidecar(app_id, scheduler, &[], &[]);
        let api = Api::new(&sidecar);
        (sidecar, api)
    }

    async fn post(&self, name: &str, body: &str) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}/v1.0/jobs/{name}", self.base))
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn get(&self, name: &str) -> (u16, String) {
        let r = self.http.get(format!("{}/v1.0/jobs/{name}", self.base)).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn delete(&self, name: &str) -> u16 {
        self.http.delete(format!("{}/v1.0/jobs/{name}", self.base)).send().await.unwrap().status().as_u16()
    }
}

fn error_code(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["errorCode"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_answers_with_daprd_status_codes_and_bodies() {
    let (_dir, scheduler) = common::start_scheduler_in_tempdir(&[]);
    let (_sidecar, api) = Api::start(&scheduler.address, "http-app");

    // §2.2's accepted example, verbatim.
    let example = r#"{"schedule":"@every 1m","repeats":123,"dueTime":"1000s","ttl":"123s","data":"hello world","failure_policy":{"constant":{"interval":"3s","max_retries":5}}}"#;
    assert_eq!(api.post("example", example).await, (204, String::new()));
    let (status, body) = api.get("example").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({
            "name": "example",
            "schedule": "@every 1m",
            "repeats": 123,
            "dueTime": "1000s",
            "ttl": "123s",
            "data": {"@type": "type.googleapis.com/google.protobuf.Value", "value": "hello world"},
            "failurePolicy": {"constant": {"interval": "3s", "maxRetries": 5}}
        })
    );

    // Existing name without overwrite: 409; with overwrite in the body: replaced.
    let (status, body) = api.post("example", r#"{"schedule":"@every 2m"}"#).await;
    assert_eq!((status, error_code(&body).as_str()), (409, "DAPR_SCHEDULER_SCHEDULE_JOB"), "{body}");
    assert!(body.contains("job already exists: 'app||default||http-app||example'"), "{body}");
    assert_eq!(api.post("example", r#"{"schedule":"@every 2m","overwrite":true}"#).await.0, 204);
    let (_, body) = api.get("example").await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"name": "example", "schedule": "@every 2m", "failurePolicy": {"constant": {"interval": "1s", "maxRetries": 3}}}),
        "the default failure policy is present"
    );

    // GET of an unknown job: 500; DELETE of an unknown job: 204.
    let (status, body) = api.get("missing").await;
    assert_eq!((status, error_code(&body).as_str()), (500, "DAPR_SCHEDULER_GET_JOB"), "{body}");
    assert_eq!(api.delete("missing").await, 204);

    // daprd's own checks.
    let (status, body) = api.post("x", r#"{"name":"x","schedule":"@every 1s"}"#).await;
    assert_eq!((status, error_code(&body).as_str()), (400, "DAPR_SCHEDULER_JOB_NAME"), "{body}");
    let (status, body) = api.post("x", "").await;
    assert_eq!((status, error_code(&body).as_str()), (400, "DAPR_SCHEDULER_SCHEDULE_EMPTY"), "{body}");
    let (status, body) = api.post("x", "[{}]").await;
    assert_eq!((status, error_code(&body).as_str()), (400, "ERR_MALFORMED_REQUEST"), "{body}");
    let (status, body) = api.post("x", r#"{"schedule":"@every 1s","repeats":-1}"#).await;
    assert_eq!((status, error_code(&body).as_str()), (400, "ERR_MALFORMED_REQUEST"), "{body}");
    let (status, body) = api.post("%20", r#"{"schedule":"@every 1s"}"#).await;
    assert_eq!((status, error_code(&body).as_str()), (400, "DAPR_SCHEDULER_JOB_NAME_EMPTY"), "{body}");

    // Rejected by the scheduler: 500 with its text.
    let (status, body) = api.post("bad", r#"{"schedule":"* * * * *"}"#).await;
    assert_eq!((status, error_code(&body).as_str()), (500, "DAPR_SCHEDULER_SCHEDULE_JOB"), "{body}");
    assert!(body.contains("expected exactly 6 fields, found 5"), "{body}");
    let (status, body) = api.post("bad", r#"{"dueTime":"1s","ttl":"10s"}"#).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("job must have a schedule to have a ttl"), "{body}");

    // A name with special characters, URL-encoded.
    assert_eq!(api.post("my%7C%7Cjob@name", r#"{"dueTime":"1h"}"#).await.0, 204);
    let (status, body) = api.get("my%7C%7Cjob@name").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["name"], "my||job@name");

    // The alpha1 routes are the same handlers.
    let alpha = format!("{}/v1.0-alpha1/jobs/example", api.base);
    assert_eq!(api.http.get(&alpha).send().await.unwrap().status().as_u16(), 200);
    assert_eq!(api.http.delete(&alpha).send().await.unwrap().status().as_u16(), 204);
    assert_eq!(api.get("example").await.0, 500);

    // Health routes.
    for path in ["/v1.0/healthz", "/v1.0/healthz/outbound"] {
        let status = api.http.get(format!("{}{path}", api.base)).send().await.unwrap().status().as_u16();
        assert_eq!(status, 204, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_app_receives_post_job_with_the_data_as_json() {
    let (_dir, scheduler) = common::start_scheduler_in_tempdir(&[]);
    let (app, _sidecar, api) = app_and_sidecar(&scheduler.address, "http-data", &[]).await;

    let cases: &[(&str, &str, &str)] = &[
        ("string", r#""someData""#, r#""someData""#),
        ("number", "123", "123"),
        ("object", r#"{"a": {"b": [1, 2]}}"#, r#"{"a":{"b":[1,2]}}"#),
        ("array", r#"[1, "two"]"#, r#"[1,"two"]"#),
        ("bool", "true", "true"),
        ("null", "null", "null"),
        (
            "anylike",
            r#"{"@type":"type.googleapis.com/google.protobuf.StringValue","value":"x"}"#,
            r#"{"@type":"type.googleapis.com/google.protobuf.StringValue","value":"x"}"#,
        ),
    ];
    for (name, data, _) in cases {
        let (status, body) = api.post(name, &format!(r#"{{"dueTime":"0s","data":{data}}}"#)).await;
        assert_eq!(status, 204, "{name}: {body}");
    }
    assert_eq!(api.post("nodata", r#"{"dueTime":"0s"}"#).await.0, 204);

    wait_until("every delivery", 20, || {
        cases.iter().all(|(n, _, _)| !app.of(n).is_empty()) && !app.of("nodata").is_empty()
    })
    .await;
    for (name, _, want) in cases {
        let got = app.of(name);
        assert_eq!(got.len(), 1, "{name}");
        let body: Value = serde_json::from_slice(&got[0].body).unwrap_or(Value::Null);
        assert_eq!(
            body,
            serde_json::from_str::<Value>(want).unwrap(),
            "{name}: {:?}",
            String::from_utf8_lossy(&got[0].body)
        );
        assert_eq!(got[0].content_type, "application/json", "{name}");
    }
    assert!(app.of("nodata")[0].body.is_empty(), "no data → empty body");

    // One rendering on both paths, byte for byte: protojson's numbers (daprd's GET and its
    // structpb MarshalJSON delivery), not 1e+20 and 0.
    let numbers = r#"{"b":1e20,"d":-0.0,"e":1e21,"f":1e-7}"#;
    let want = r#"{"b":100000000000000000000,"d":-0,"e":1e+21,"f":1e-7}"#;
    assert_eq!(api.post("numbers-later", &format!(r#"{{"dueTime":"1h","data":{numbers}}}"#)).await.0, 204);
    let (status, body) = api.get("numbers-later").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!(r#""value":{want}}}"#)), "{body}");
    assert_eq!(api.post("numbers", &format!(r#"{{"dueTime":"0s","data":{numbers}}}"#)).await.0, 204);
    wait_until("the numbers delivery", 20, || !app.of("numbers").is_empty()).await;
    assert_eq!(String::from_utf8_lossy(&app.of("numbers")[0].body), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_failures_and_not_found_follow_the_failure_policy() {
    let (_dir, scheduler) = common::start_scheduler_in_tempdir(&[]);
    let (app, _sidecar, api) = app_and_sidecar(&scheduler.address, "http-policy", &[]).await;

    assert_eq!(api.post("repeat", r#"{"schedule":"@every 1s","repeats":3}"#).await.0, 204);
    assert_eq!(api.post("fail-default", r#"{"dueTime":"0s"}"#).await.0, 204);
    assert_eq!(api.post("fail-drop", r#"{"dueTime":"0s","failurePolicy":{"drop":{}}}"#).await.0, 204);
    assert_eq!(api.post("gone", r#"{"dueTime":"0s"}"#).await.0, 204);

    wait_until("3 repeats and 4 attempts", 30, || {
        app.of("repeat").len() >= 3 && app.of("fail-default").len() >= 4
    })
    .await;
    // Give any extra delivery time to show up.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(app.of("repeat").len(), 3, "repeats: 3 → exactly 3 deliveries");
    assert_eq!(app.of("fail-default").len(), 4, "default policy: 4 attempts of a failing job");
    assert_eq!(app.of("fail-drop").len(), 1, "drop: no retry");
    assert_eq!(app.of("gone").len(), 1, "404 counts as success: no retry");
    for name in ["repeat", "fail-default", "fail-drop", "gone"] {
        assert_eq!(api.get(name).await.0, 500, "{name} is deleted after its last tick");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_token_is_required_when_set_and_app_token_is_sent() {
    let (_dir, scheduler) = common::start_scheduler_in_tempdir(&[]);
    let tokens = [("DAPR_API_TOKEN", "s3cret"), ("APP_API_TOKEN", "app-s3cret")];
    let (app, _sidecar, api) = app_and_sidecar(&scheduler.address, "http-token", &tokens).await;
    let url = format!("{}/v1.0/jobs/tok", api.base);
    let body = r#"{"dueTime":"0s"}"#;

    let r = api.http.post(&url).body(body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.text().await.unwrap().trim(), "invalid api token");
    let r = api.http.post(&url).header("dapr-api-token", "wrong").body(body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = api.http.post(&url).header("dapr-api-token", "s3cret").body(body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 204);
    for path in ["/v1.0/healthz", "/v1.0/healthz/outbound"] {
        let status = api.http.get(format!("{}{path}", api.base)).send().await.unwrap().status().as_u16();
        assert_eq!(status, 204, "{path} is exempt");
    }

    wait_until("the delivery", 10, || !app.of("tok").is_empty()).await;
    assert_eq!(app.of("tok")[0].token.as_deref(), Some("app-s3cret"));

    // Without DAPR_API_TOKEN no token is needed (the other tests), and without APP_API_TOKEN none
    // is sent.
    let (plain_app, _plain, plain_api) = app_and_sidecar(&scheduler.address, "http-plain", &[]).await;
    assert_eq!(plain_api.post("tok", body).await.0, 204);
    wait_until("the delivery", 10, || !plain_app.of("tok").is_empty()).await;
    assert_eq!(plain_app.of("tok")[0].token, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apps_with_the_same_job_name_do_not_see_each_other() {
    let (_dir, scheduler) = common::start_scheduler_in_tempdir(&[]);
    let (_sidecar_a, a) = Api::start(&scheduler.address, "app-a");
    let (_sidecar_b, b) = Api::start(&scheduler.address, "app-b");

    assert_eq!(a.post("same", r#"{"dueTime":"1h","data":"from a"}"#).await.0, 204);
    assert_eq!(b.post("same", r#"{"dueTime":"1h","data":"from b"}"#).await.0, 204, "no conflict across apps");
    let data = |body: String| serde_json::from_str::<Value>(&body).unwrap()["data"]["value"].clone();
    assert_eq!(data(a.get("same").await.1), json!("from a"));
    assert_eq!(data(b.get("same").await.1), json!("from b"));
    assert_eq!(a.delete("same").await, 204);
    assert_eq!(a.get("same").await.0, 500);
    assert_eq!(data(b.get("same").await.1), json!("from b"), "b's job survives a's delete");
}

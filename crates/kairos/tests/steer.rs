//! Issue 14's extensions through the real processes: a job created over the sidecar's HTTP API
//! with `misfirePolicy` and `failurePolicy.exponential` travels sidecar → scheduler → store and
//! back, survives a `kill -9` of the scheduler, and bad values are refused before anything is
//! stored.

mod common;

use serde_json::{Value, json};

async fn post(http: &reqwest::Client, base: &str, name: &str, body: &str) -> (u16, String) {
    let r = http.post(format!("{base}/v1.0/jobs/{name}")).body(body.to_owned()).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn get(http: &reqwest::Client, base: &str, name: &str) -> (u16, Value) {
    kairos_testing::http::status_and_json(http.get(format!("{base}/v1.0/jobs/{name}")).send().await.unwrap())
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extensions_travel_to_the_scheduler_and_survive_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let mut scheduler = common::start_scheduler(dir.path(), &[]);
    let sidecar = common::start_sidecar("steer-app", &scheduler.address, &[], &[]);
    let base = format!("http://{}", sidecar.http);

    let body = r#"{"schedule":"@every 1h","misfirePolicy":{"catchUp":"skip","window":"10m"},
        "failurePolicy":{"exponential":{"initialInterval":"1s","multiplier":2,"maxInterval":"1m","maxRetries":5,"jitter":0.1}}}"#;
    assert_eq!(post(&http, &base, "steered", body).await, (204, String::new()));
    let expected = json!({
        "name": "steered",
        "schedule": "@every 1h",
        "failurePolicy": {"exponential": {"initialInterval": "1s", "multiplier": 2, "maxInterval": "60s", "maxRetries": 5, "jitter": 0.1}},
        "misfirePolicy": {"catchUp": "skip", "window": "600s"},
    });
    assert_eq!(get(&http, &base, "steered").await, (200, expected.clone()));

    // Bad extension values: 400 ERR_MALFORMED_REQUEST, nothing stored.
    for bad in [
        r#"{"schedule":"@every 1h","misfirePolicy":{"catchUp":"sometimes"}}"#,
        r#"{"schedule":"@every 1h","misfirePolicy":{"window":"0s"}}"#,
        r#"{"schedule":"@every 1h","failurePolicy":{"exponential":{"initialInterval":"0s"}}}"#,
        r#"{"schedule":"@every 1h","failurePolicy":{"exponential":{"initialInterval":"1s","multiplier":0.5}}}"#,
        r#"{"schedule":"@every 1h","failurePolicy":{"exponential":{"initialInterval":"1s","jitter":2}}}"#,
    ] {
        let (status, text) = post(&http, &base, "refused", bad).await;
        assert_eq!(status, 400, "{bad}: {text}");
        let code: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(code["errorCode"], "ERR_MALFORMED_REQUEST", "{bad}: {text}");
        // daprd's answer for an unknown job: 500 DAPR_SCHEDULER_GET_JOB.
        let (status, missing) = get(&http, &base, "refused").await;
        assert_eq!(
            (status, &missing["errorCode"]),
            (500, &json!("DAPR_SCHEDULER_GET_JOB")),
            "{bad} stored nothing"
        );
    }

    // A job without extensions renders exactly as before: no extension fields appear.
    assert_eq!(post(&http, &base, "plain", r#"{"dueTime":"1h"}"#).await.0, 204);
    let (_, plain) = get(&http, &base, "plain").await;
    assert!(plain.get("misfirePolicy").is_none(), "{plain}");
    assert_eq!(plain["failurePolicy"], json!({"constant": {"interval": "1s", "maxRetries": 3}}));

    // kill -9 the scheduler; a new one on the same data dir still has the extensions.
    scheduler.kill9();
    drop(sidecar);
    let scheduler = common::start_scheduler(dir.path(), &[]);
    let sidecar = common::start_sidecar("steer-app", &scheduler.address, &[], &[]);
    let base = format!("http://{}", sidecar.http);
    assert_eq!(get(&http, &base, "steered").await, (200, expected));
}

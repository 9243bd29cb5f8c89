//! The web dashboard in a real browser (Debian's headless chromium through chromedriver):
//! a job created through the Dapr HTTP API of `kairos run` is found on the jobs page, paused
//! with clicks (and then fires nothing), triggered now with clicks (and its delivery shows up
//! in the history on the page by itself); a job named like markup renders as text; with an API
//! token the dashboard wants a login first.
//!
//! Skipped, with a message, only where chromium or chromedriver is not installed
//! (`scripts/ensure-deps` installs both). Screenshots of each page go to
//! `$TMPDIR/kairos-dashboard-screenshots`, and to `docs/` with `KAIROS_UPDATE_SCREENSHOTS=1`.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use kairos_testing::wait_until;
use kairos_testing::webdriver::Browser;

const WAIT: Duration = Duration::from_secs(20);

/// A scheduler's ops routes on free ports, and its dashboard.
const SCHEDULER_DASHBOARD: [&str; 6] =
    ["--metrics-port", "0", "--healthz-port", "0", "--dashboard-port", "0"];

#[derive(Debug, Clone, Default)]
struct App {
    received: Arc<Mutex<Vec<String>>>,
}

impl App {
    fn count(&self, name: &str) -> usize {
        self.received.lock().unwrap().iter().filter(|n| *n == name).count()
    }
}

async fn on_job(State(app): State<App>, Path(name): Path<String>) -> StatusCode {
    app.received.lock().unwrap().push(name.clone());
    kairos_testing::http::status_by_name(&name)
}

async fn start_browser() -> Option<Browser> {
    match Browser::start(1280, 1000).await.expect("start headless chromium") {
        Some(browser) => Some(browser),
        None => {
            assert!(
                std::env::var_os("KAIROS_REQUIRE_BROWSER").is_none(),
                "KAIROS_REQUIRE_BROWSER is set but chromium/chromedriver are not installed"
            );
            eprintln!(
                "SKIPPED: the dashboard browser test needs Debian's chromium and chromium-driver \
                 ({} and {}); run scripts/ensure-deps as root to install them",
                kairos_testing::webdriver::CHROMIUM,
                kairos_testing::webdriver::CHROMEDRIVER
            );
            None
        }
    }
}

/// Saves a screenshot of the current page as `name`.png (see the module docs for where).
async fn screenshot(browser: &Browser, name: &str) {
    let png = browser.screenshot_page(1280).await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a screenshot is a PNG");
    let tmp = std::env::temp_dir().join("kairos-dashboard-screenshots");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join(format!("{name}.png")), &png).unwrap();
    if std::env::var_os("KAIROS_UPDATE_SCREENSHOTS").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/dashboard");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join(format!("{name}.png")), &png).unwrap();
    }
}

async fn schedule(http: &reqwest::Client, base: &str, name: &str, body: &str) {
    let url = format!("{base}/v1.0-alpha1/jobs/{}", kairos_dashboard::html::url(name));
    let r = http.post(url).body(body.to_owned()).send().await.unwrap();
    let status = r.status();
    assert_eq!(status.as_u16(), 204, "schedule {name}: {}", r.text().await.unwrap());
}

/// Waits until the page the browser shows (live refreshes included) contains `text`.
async fn wait_page_has(browser: &Browser, text: &str) {
    let deadline = kairos_testing::process::now() + WAIT;
    loop {
        let source = browser.source().await.unwrap();
        if source.contains(text) {
            return;
        }
        assert!(kairos_testing::process::now() < deadline, "the page never showed {text:?}:\n{source}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_found_paused_and_triggered_with_clicks() {
    let Some(browser) = start_browser().await else { return };
    let (port, app) = kairos_testing::http::serve_jobs(on_job, App::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let run = common::start_run("dash-app", port, dir.path(), &[]);
    let dash = run.dashboard();
    let http = reqwest::Client::new();
    let api = format!("http://{}", run.http);

    schedule(
        &http,
        &api,
        "tick",
        r#"{"schedule":"@every 1s","ttl":"1h","data":{"order":42,"items":["tea","<b>cake</b>"]}}"#,
    )
    .await;
    schedule(&http, &api, "nightly-report", r#"{"schedule":"0 30 2 * * *","repeats":30}"#).await;
    schedule(
        &http,
        &api,
        "fail-always",
        r#"{"schedule":"@every 2s","failurePolicy":{"constant":{"interval":"1s","maxRetries":1}}}"#,
    )
    .await;
    schedule(&http, &api, "reminder-once", r#"{"dueTime":"2h","data":"call back"}"#).await;
    schedule(&http, &api, "<script>alert(1)", r#"{"schedule":"@every 1h"}"#).await;
    wait_until("the first deliveries of tick", 20, || app.count("tick") >= 2).await;

    // The jobs page lists the job; markup in a name is text, not a script.
    browser.goto(&format!("{dash}jobs")).await.unwrap();
    let tick_link = "tr[data-job=\"tick\"] a.job-link";
    browser.wait_for(tick_link, WAIT).await.unwrap();
    assert_eq!(browser.find_all("script").await.unwrap().len(), 1, "only the dashboard's own script runs");
    let markup = browser.text_of("tr[data-job=\"<script>alert(1)\"] a.job-link", WAIT).await.unwrap();
    assert_eq!(markup, "<script>alert(1)");
    screenshot(&browser, "jobs").await;

    // Its page: the spec in words, ten next fires, the payload; then pause, confirm.
    browser.click_on(tick_link, WAIT).await.unwrap();
    let words = browser.text_of("#spec-words", WAIT).await.unwrap();
    assert!(words.starts_with("every 1 s, expires "), "{words}");
    assert_eq!(browser.find_all("#next-fires li").await.unwrap().len(), 10);
    let payload = browser.text_of("#payload", WAIT).await.unwrap();
    assert!(payload.contains("\"order\": 42") && payload.contains("<b>cake</b>"), "{payload}");
    wait_page_has(&browser, "id=\"history\"").await;
    screenshot(&browser, "job").await;
    browser.click_on("#action-pause", WAIT).await.unwrap();
    let question = browser.text_of("#question", WAIT).await.unwrap();
    assert!(question.starts_with("Pause this job?"), "{question}");
    screenshot(&browser, "confirm").await;
    browser.click_on("#confirm", WAIT).await.unwrap();
    let flash = browser.text_of("#flash", WAIT).await.unwrap();
    assert!(flash.starts_with("Paused"), "{flash}");
    assert!(browser.source().await.unwrap().contains("st-paused"), "the status says paused");

    // Through the API: the job is still there, and fires nothing while paused (a delivery
    // already in flight when the pause landed may still arrive: give it a moment).
    let r = http.get(format!("{api}/v1.0-alpha1/jobs/tick")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "the paused job is still stored");
    let r = http.get(format!("{api}/v1.0-kairos/jobs/tick/status")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "the app's steering API answers");
    let status: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status["status"]["state"], "paused", "the API says paused: {status}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = app.count("tick");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(app.count("tick"), before, "a paused @every 1s job fired");

    // Trigger now: one delivery, and the page shows it in the history without a reload.
    browser.click_on("#action-trigger", WAIT).await.unwrap();
    browser.click_on("#confirm", WAIT).await.unwrap();
    let flash = browser.text_of("#flash", WAIT).await.unwrap();
    assert!(flash.starts_with("Triggered"), "{flash}");
    wait_until("the trigger-now delivery", 20, || app.count("tick") == before + 1).await;
    wait_page_has(&browser, "<td>trigger now</td>").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(app.count("tick"), before + 1, "trigger-now delivers once and the job stays paused");
    screenshot(&browser, "job-triggered").await;

    // Resume, then the overview with the engine's numbers.
    browser.click_on("#action-resume", WAIT).await.unwrap();
    browser.click_on("#confirm", WAIT).await.unwrap();
    wait_until("deliveries after resume", 20, || app.count("tick") > before + 1).await;
    browser.goto(&dash).await.unwrap();
    wait_page_has(&browser, "app=dash-app\">dash-app</a>").await;
    screenshot(&browser, "overview").await;

    // Delete from the dashboard: gone from the API too.
    browser.goto(&format!("{dash}jobs?prefix=reminder")).await.unwrap();
    browser
        .click(&browser.wait_for("tr[data-job=\"reminder-once\"] a.job-link", WAIT).await.unwrap())
        .await
        .unwrap();
    browser.click_on("#action-delete", WAIT).await.unwrap();
    browser.click_on("#confirm", WAIT).await.unwrap();
    let flash = browser.text_of("#flash", WAIT).await.unwrap();
    assert!(flash.starts_with("Deleted 'reminder-once'"), "{flash}");
    let r = http.get(format!("{api}/v1.0-alpha1/jobs/reminder-once")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 500, "daprd's answer for an unknown job");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_api_token_the_dashboard_wants_a_login() {
    let Some(browser) = start_browser().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let mut args = vec!["scheduler", "--port", "0", "--data-dir", data];
    args.extend(SCHEDULER_DASHBOARD);
    let scheduler = common::spawn_kairos(&args, &[("KAIROS_SCHEDULER_API_TOKEN", "s3cret-token")]);
    let dash = scheduler.dashboard();

    browser.goto(&format!("{dash}jobs")).await.unwrap();
    let token = browser.wait_for("#token", WAIT).await.unwrap();
    assert!(browser.url().await.unwrap().ends_with("/login"), "sent to the login form");
    browser.type_into(&token, "wrong").await.unwrap();
    browser.click_on("#login", WAIT).await.unwrap();
    wait_page_has(&browser, "wrong token").await;
    screenshot(&browser, "login").await;
    let token = browser.wait_for("#token", WAIT).await.unwrap();
    browser.type_into(&token, "s3cret-token").await.unwrap();
    browser.click_on("#login", WAIT).await.unwrap();
    wait_page_has(&browser, "Jobs stored").await;
    let cookies = browser.execute("return document.cookie").await.unwrap();
    assert!(!cookies.to_string().contains("kairos_token"), "the token cookie is HttpOnly: {cookies}");

    // The cookie is not readable by scripts, and a request without it is sent to log in.
    let plain = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = plain.get(format!("{dash}jobs")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/login");
}

/// `GET path` over TLS, trusting only `ca`; the status line and headers, or the TLS error.
async fn https_get(address: &str, ca: &std::path::Path, path: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls =
        common::certs::tls_connect(address, "localhost", ca, None, &[]).await.map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_the_dashboard_is_served_over_https_with_the_schedulers_certificate() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (fixtures.join("server-cert.pem"), fixtures.join("server-key.pem"));
    let mut args = SCHEDULER_DASHBOARD.to_vec();
    args.extend([
        "--dashboard-read-only",
        "--tls-cert-file",
        cert.to_str().unwrap(),
        "--tls-key-file",
        key.to_str().unwrap(),
    ]);
    let scheduler = common::start_scheduler(dir.path(), &args);
    let url = scheduler.dashboard();
    let address = url.strip_prefix("https://").expect("an https URL in the ready line").trim_end_matches('/');
    let answer = https_get(address, &fixtures.join("ca-cert.pem"), "/jobs").await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("read-only"), "--dashboard-read-only shows on the page");
    // Plain HTTP on the same port gets no page.
    let plain = reqwest::Client::new().get(format!("http://{address}/jobs")).send().await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_kairos_run_the_apps_dapr_api_token_guards_the_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let app = ["--", "sh", "-c", "while kill -0 $PPID 2>/dev/null; do sleep 1; done"];
    let mut args = vec!["run", "--app-id", "guarded", "--data-dir", data];
    args.extend(app);
    let run = common::spawn_kairos(&args, &[("DAPR_API_TOKEN", "app-token")]);
    let dash = run.dashboard();
    assert!(dash.starts_with("http://127.0.0.1:"), "{dash}");
    let plain = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = plain.get(format!("{dash}jobs")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["location"].to_str().unwrap()), (303, "/login"));
    let r = plain.get(format!("{dash}jobs")).bearer_auth("app-token").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // --no-dashboard: none, and none in the ready line.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let mut args = vec!["run", "--app-id", "plain", "--data-dir", data, "--no-dashboard"];
    args.extend(app);
    let run = common::spawn_kairos(&args, &[]);
    assert_eq!(run.ready.dashboard, None, "{}", run.ready.line);
}

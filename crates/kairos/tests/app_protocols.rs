//! daprd's other app protocols (issue 16): `https` and `grpcs` (TLS to the app, unverified as in
//! daprd or verified with `--app-tls-ca-file`) and `h2c`, each against a real app process
//! (`kairos-test-app`) receiving job triggers from `kairos run`; and a protocol that does not
//! match the app, which fails deliveries with a clear log line and loses no job.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use common::certs::{make_ca, make_leaf, path};
use common::{Kairos, SidecarProc, start_run, wait_log};

/// The receiving app binary, built once per test process.
fn test_app_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| common::cargo_bin("kairos-testing", "kairos-test-app"))
}

/// Starts `kairos-test-app PROTOCOL [CERT KEY]` on a port of its choosing.
fn start_app(protocol: &str, tls: Option<(&Path, &Path)>) -> Kairos {
    let mut args = vec![protocol.to_owned()];
    if let Some((cert, key)) = tls {
        args.extend([cert.display().to_string(), key.display().to_string()]);
    }
    Kairos::spawn("app", test_app_bin(), &args, &[("APP_PORT", "0")], Duration::from_secs(30))
        .unwrap_or_else(|err| panic!("start kairos-test-app {protocol}: {err:#}"))
}

fn app_port(app: &Kairos) -> u16 {
    let address = app.ready.http.as_deref().expect("the app's address");
    address.rsplit(':').next().and_then(|p| p.parse().ok()).expect("the app's port")
}

/// Schedules job `name` through the sidecar's HTTP API, due now, with `extra` JSON fields.
async fn schedule(sidecar: &SidecarProc, name: &str, extra: &str) {
    let url = format!("http://{}/v1.0-alpha1/jobs/{name}", sidecar.http);
    let body = format!(r#"{{"dueTime":"0s"{extra}}}"#);
    let response = reqwest::Client::new().post(url).body(body).send().await.expect("schedule the job");
    let status = response.status();
    assert_eq!(status, 204, "{}", response.text().await.unwrap_or_default());
}

/// Whether the app printed that it received job `name`.
fn received(app: &Kairos, name: &str) -> bool {
    let line = serde_json::json!({ "job": name }).to_string();
    app.other_stdout().contains(&line)
}

async fn wait_received(app: &Kairos, sidecar: &SidecarProc, name: &str) {
    for _ in 0..300 {
        if received(app, name) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the app never received {name}\nsidecar:\n{}\napp:\n{}", sidecar.tail(), app.tail());
}

/// A CA with a server certificate for 127.0.0.1 (`server.pem`, `server.key`) in `dir`.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    make_ca(dir);
    make_leaf(dir, "server", "3001", "30");
    (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_reach_apps_over_https_grpcs_and_h2c() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(certs.path());
    let ca = ca.display().to_string();
    // (protocol, app serves TLS, sidecar flags)
    let cases: [(&str, bool, &[&str]); 5] = [
        ("https", true, &[]),
        ("https", true, &["--app-tls-ca-file", &ca]),
        ("grpcs", true, &[]),
        ("grpcs", true, &["--app-tls-ca-file", &ca]),
        ("h2c", false, &[]),
    ];
    for (protocol, tls, flags) in cases {
        let app = start_app(protocol, tls.then_some((cert.as_path(), key.as_path())));
        let data = tempfile::tempdir().unwrap();
        let mut extra = vec!["--app-protocol", protocol];
        extra.extend_from_slice(flags);
        let run = start_run("protocols", app_port(&app), data.path(), &extra);
        let name = format!("{protocol}-{}", if flags.is_empty() { "unverified" } else { "verified" });
        schedule(&run, &name, "").await;
        wait_received(&app, &run, &name).await;
        assert!(!run.log_has("job delivery failed"), "{protocol} {flags:?}:\n{}", run.tail());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused_when_a_ca_is_given() {
    let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    certificates(ours.path());
    let (_, cert, key) = certificates(theirs.path());
    let app = start_app("https", Some((&cert, &key)));
    let data = tempfile::tempdir().unwrap();
    let ca = path(ours.path(), "ca.pem");
    let run = start_run(
        "protocols",
        app_port(&app),
        data.path(),
        &["--app-protocol", "https", "--app-tls-ca-file", &ca],
    );
    let retries = r#","failurePolicy":{"constant":{"interval":"1s","maxRetries":100}}"#;
    schedule(&run, "untrusted", retries).await;
    assert!(wait_log(&run, "invalid peer certificate", Duration::from_secs(15)), "{}", run.tail());
    assert!(!received(&app, "untrusted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_the_app_does_not_serve_fails_clearly_and_loses_no_job() {
    let app = start_app("http", None);
    let data = tempfile::tempdir().unwrap();
    let mut run = start_run("protocols", app_port(&app), data.path(), &["--app-protocol", "https"]);
    let retries = r#","failurePolicy":{"constant":{"interval":"1s","maxRetries":100}}"#;
    schedule(&run, "mismatch", retries).await;
    assert!(
        wait_log(
            &run,
            "--app-protocol https expects the app to serve HTTP/1.1 over TLS on its port",
            Duration::from_secs(15)
        ),
        "{}",
        run.tail()
    );
    // Retried per its policy: a second failed attempt, and the job still stored.
    let attempts = || run.log_lines().iter().filter(|l| l.contains("job delivery failed")).count();
    for _ in 0..100 {
        if attempts() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(attempts() >= 2, "{}", run.tail());
    let url = format!("http://{}/v1.0-alpha1/jobs/mismatch", run.http);
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 200, "the job is kept while it retries");
    assert!(!received(&app, "mismatch"));

    // With the right protocol, the same store delivers it.
    run.stop(Duration::from_secs(10)).unwrap();
    drop(run);
    let run = start_run("protocols", app_port(&app), data.path(), &["--app-protocol", "http"]);
    wait_received(&app, &run, "mismatch").await;
}

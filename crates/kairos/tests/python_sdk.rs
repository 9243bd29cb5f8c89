//! Compatibility with the official Dapr Python SDK (PyPI `dapr` 1.19.0, in the venv that
//! `scripts/ensure-deps` creates): its client against `kairos sidecar`, and an app built on
//! `dapr.ext.grpc.App` receiving jobs through it. Real processes throughout.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

fn run_python(script: &str, envs: &[(&str, String)]) -> (bool, String, String) {
    let mut command = Command::new(common::python());
    command.arg(common::python_script(script));
    for var in ["DAPR_API_TOKEN", "APP_API_TOKEN", "DAPR_HTTP_ENDPOINT", "DAPR_GRPC_ENDPOINT"] {
        command.env_remove(var);
    }
    command.env("DAPR_HEALTH_TIMEOUT", "20");
    for (k, v) in envs {
        command.env(k, v);
    }
    let output = command.output().expect("run python");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn port(address: &str) -> String {
    address.rsplit(':').next().unwrap().to_owned()
}

#[test]
fn python_client_round_trips_jobs_through_the_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = common::start_scheduler(dir.path(), &[]);
    let sidecar = common::start_sidecar("py-app", &scheduler.address, &[], &[]);
    let (ok, stdout, stderr) = run_python(
        "client_roundtrip.py",
        &[("DAPR_HTTP_PORT", port(&sidecar.http)), ("DAPR_GRPC_PORT", port(&sidecar.grpc))],
    );
    assert!(ok && stdout.contains("PASS"), "python client failed:\n{stdout}\n{stderr}");
}

#[test]
fn python_grpc_app_receives_its_jobs_with_their_data() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = common::start_scheduler(dir.path(), &[]);
    let app_port = kairos_testing::free_port().unwrap();
    let sidecar = common::start_sidecar(
        "py-grpc-app",
        &scheduler.address,
        &["--app-port", &app_port.to_string(), "--app-protocol", "grpc"],
        &[],
    );
    let (ok, stdout, stderr) = run_python(
        "grpc_app.py",
        &[
            ("APP_PORT", app_port.to_string()),
            ("DAPR_HTTP_PORT", port(&sidecar.http)),
            ("DAPR_GRPC_PORT", port(&sidecar.grpc)),
            ("RUN_SECONDS", "8".into()),
        ],
    );
    assert!(ok, "python app failed:\n{stdout}\n{stderr}");

    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut data: BTreeMap<String, String> = BTreeMap::new();
    for line in stdout.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let Some(name) = event["name"].as_str() else { continue };
        *counts.entry(name.to_owned()).or_default() += 1;
        data.insert(name.to_owned(), event["data"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(counts.get("hello-job"), Some(&1), "one-shot fires once: {stdout}");
    assert_eq!(counts.get("data-job"), Some(&1), "{stdout}");
    assert_eq!(data.get("data-job").map(String::as_str), Some(r#"{"answer": 42}"#), "raw Any.value bytes");
    assert_eq!(counts.get("repeat-job"), Some(&3), "repeats: 3 gives exactly 3 deliveries: {stdout}");
    assert_eq!(
        counts.get("failing-job"),
        Some(&4),
        "the default failure policy gives a failing job 4 attempts: {stdout}"
    );
}

#[test]
fn python_client_sends_the_api_token_and_is_refused_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let scheduler = common::start_scheduler(dir.path(), &[]);
    let sidecar =
        common::start_sidecar("py-app", &scheduler.address, &[], &[("DAPR_API_TOKEN", "py-s3cret")]);
    let ports = [("DAPR_HTTP_PORT", port(&sidecar.http)), ("DAPR_GRPC_PORT", port(&sidecar.grpc))];

    let mut with_token = ports.to_vec();
    with_token.push(("DAPR_API_TOKEN", "py-s3cret".into()));
    let (ok, stdout, stderr) = run_python("client_roundtrip.py", &with_token);
    assert!(ok && stdout.contains("PASS"), "with the token:\n{stdout}\n{stderr}");

    let (ok, stdout, stderr) = run_python("client_without_token.py", &ports);
    assert!(ok && stdout.contains("UNAUTHENTICATED"), "without the token:\n{stdout}\n{stderr}");
}

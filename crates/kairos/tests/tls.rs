//! Mutual TLS between sidecar and scheduler, and certificate reload without a restart (issue
//! 16). Certificates are made per test with the `openssl` CLI.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;

use common::certs::{path, pki, tls_connect};
use common::{Proc, assert_log, spawn_kairos, start_scheduler, start_sidecar};

#[derive(Clone, Default)]
struct App(Arc<Mutex<Vec<String>>>);

async fn on_job(State(app): State<App>, UrlPath(name): UrlPath<String>) -> &'static str {
    app.0.lock().unwrap().push(name);
    ""
}

async fn http_app() -> (u16, App) {
    kairos_testing::http::serve_jobs(on_job, App::default()).await
}

async fn post_job(http: &str, name: &str) -> (u16, String) {
    let url = format!("http://{http}/v1.0-alpha1/jobs/{name}");
    let r = reqwest::Client::new().post(url).body(r#"{"dueTime":"0s"}"#).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The certificate the server at `address` presents to a new connection (verified against `ca`,
/// presenting `client` when given, offering ALPN h2); `None` when the handshake fails.
async fn served_certificate(address: &str, ca: &Path, client: Option<(PathBuf, PathBuf)>) -> Option<Vec<u8>> {
    served_certificate_alpn(address, ca, client, b"h2").await
}

async fn served_certificate_alpn(
    address: &str,
    ca: &Path,
    client: Option<(PathBuf, PathBuf)>,
    alpn: &[u8],
) -> Option<Vec<u8>> {
    let tls = tls_connect(address, "127.0.0.1", ca, client, &[alpn]).await.ok()?;
    Some(tls.get_ref().1.peer_certificates()?[0].to_vec())
}

/// `kairos scheduler` flags serving TLS with `cert` and `key`, requiring client certificates
/// signed by `client_ca`.
fn server_tls(cert: &Path, key: &Path, client_ca: &Path) -> [String; 6] {
    let [cert, key, client_ca] = [cert, key, client_ca].map(|p| p.display().to_string());
    ["--tls-cert-file".into(), cert, "--tls-key-file".into(), key, "--tls-client-ca-file".into(), client_ca]
}

/// `kairos sidecar` flags reaching the scheduler over TLS (verified against `ca.pem` of `dir`),
/// presenting `NAME.pem` and `NAME.key` of `dir`.
fn client_tls(dir: &Path, name: &str) -> [String; 6] {
    [
        "--scheduler-tls-ca-file".into(),
        path(dir, "ca.pem"),
        "--scheduler-tls-cert-file".into(),
        path(dir, &format!("{name}.pem")),
        "--scheduler-tls-key-file".into(),
        path(dir, &format!("{name}.key")),
    ]
}

/// Copies `NAME.key` and then `NAME.pem` of `dir` over the files a process reads (key first: in
/// between, the pair does not match and is kept as is).
fn install(dir: &Path, name: &str, cert: &Path, key: &Path) {
    std::fs::copy(dir.join(format!("{name}.key")), key).unwrap();
    std::fs::copy(dir.join(format!("{name}.pem")), cert).unwrap();
}

fn der_of(pem: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(pem).unwrap().to_vec()
}

async fn wait_until(what: &str, secs: u64, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..secs * 10 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_requires_a_client_certificate_signed_by_its_client_ca() {
    let dir = pki(&[("server", "1001", "30"), ("client", "2001", "30"), ("expired", "2002", "-1")]);
    let d = dir.path();
    let (app_port, app) = http_app().await;
    let data = tempfile::tempdir().unwrap();
    let tls = server_tls(&d.join("server.pem"), &d.join("server.key"), &d.join("ca.pem"));
    let scheduler = start_scheduler(data.path(), &tls.each_ref().map(String::as_str));
    let port = app_port.to_string();
    let ca = path(d, "ca.pem");

    let with_cert = start_sidecar(
        "mtls-app",
        &scheduler.address,
        &[&["--app-port", &port][..], &client_tls(d, "client").each_ref().map(String::as_str)].concat(),
        &[],
    );
    let (status, body) = post_job(&with_cert.http, "with-cert").await;
    assert_eq!(status, 204, "{body}");
    let delivered = app.clone();
    wait_until("the delivery over mTLS", 15, async || {
        delivered.0.lock().unwrap().contains(&"with-cert".to_owned())
    })
    .await;

    // The operator CLI presents its own client certificate the same way.
    let (cert, key) = (path(d, "client.pem"), path(d, "client.key"));
    let listed = common::jobs_cli(
        &scheduler.address,
        &["--tls-ca-file", &ca, "--tls-cert-file", &cert, "--tls-key-file", &key, "list"],
    );
    let stdout = String::from_utf8_lossy(&listed.stdout);
    // (The one-shot job above is delivered and gone: the table is empty.)
    assert!(
        listed.status.success() && stdout.contains("0 jobs"),
        "{stdout}{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let refused = common::jobs_cli(&scheduler.address, &["--tls-ca-file", &ca, "list"]);
    assert!(!refused.status.success(), "kairos jobs without a client certificate was let in");

    let timeout = ["--scheduler-request-timeout-seconds", "2"];
    let without = start_sidecar(
        "mtls-app",
        &scheduler.address,
        &["--scheduler-tls-ca-file", &ca, timeout[0], timeout[1]],
        &[],
    );
    let (status, body) = post_job(&without.http, "without-cert").await;
    assert_ne!(status, 204, "no client certificate: {body}");
    assert_log(&scheduler, "peer sent no certificates", 5);

    let expired = start_sidecar(
        "mtls-app",
        &scheduler.address,
        &[&client_tls(d, "expired").each_ref().map(String::as_str)[..], &timeout].concat(),
        &[],
    );
    let (status, body) = post_job(&expired.http, "expired-cert").await;
    assert_ne!(status, 204, "expired client certificate: {body}");
    assert_log(&scheduler, "invalid peer certificate: Expired", 5);
    assert!(!app.0.lock().unwrap().iter().any(|n| n != "with-cert"), "only the authenticated job ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_server_certificate_is_picked_up_and_garbage_keeps_the_last_good_one() {
    let dir = pki(&[("server", "1001", "30"), ("rotated", "1002", "30"), ("client", "2001", "30")]);
    let d = dir.path();
    let (cert, key) = (d.join("live.pem"), d.join("live.key"));
    install(d, "server", &cert, &key);
    let data = tempfile::tempdir().unwrap();
    let tls = server_tls(&cert, &key, &d.join("ca.pem"));
    let scheduler = start_scheduler(data.path(), &tls.each_ref().map(String::as_str));
    let ca = d.join("ca.pem");
    let client = || Some((d.join("client.pem"), d.join("client.key")));
    let first = served_certificate(&scheduler.address, &ca, client()).await;
    assert_eq!(first, Some(der_of(&d.join("server.pem"))));

    // Rotate: key first, then certificate (in between the pair does not match: kept as is).
    install(d, "rotated", &cert, &key);
    let rotated = Some(der_of(&d.join("rotated.pem")));
    wait_until("the rotated certificate", 15, async || {
        served_certificate(&scheduler.address, &ca, client()).await == rotated
    })
    .await;
    assert_log(&scheduler, "reloaded TLS server certificate", 1);

    // Garbage: logged, the last good certificate stays.
    std::fs::write(&cert, "not a certificate\n").unwrap();
    assert_log(&scheduler, "cannot reload TLS server certificate: keeping the last good one", 10);
    assert_eq!(served_certificate(&scheduler.address, &ca, client()).await, rotated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecars_own_certificate_is_reloaded_on_both_apis_and_garbage_keeps_the_last_good_one() {
    let dir = pki(&[("server", "1001", "30"), ("rotated", "1002", "30")]);
    let d = dir.path();
    let (cert, key) = (d.join("live.pem"), d.join("live.key"));
    install(d, "server", &cert, &key);
    let data = tempfile::tempdir().unwrap();
    let scheduler = start_scheduler(data.path(), &[]);
    let sidecar = start_sidecar(
        "reload-app",
        &scheduler.address,
        &["--tls-cert-file", &cert.display().to_string(), "--tls-key-file", &key.display().to_string()],
        &[],
    );
    let ca = d.join("ca.pem");
    let served = async |api: &str| match api {
        "http" => served_certificate_alpn(&sidecar.http, &ca, None, b"http/1.1").await,
        _ => served_certificate(&sidecar.grpc, &ca, None).await,
    };
    let first = Some(der_of(&d.join("server.pem")));
    assert_eq!(served("http").await, first);
    assert_eq!(served("grpc").await, first);

    install(d, "rotated", &cert, &key);
    let rotated = Some(der_of(&d.join("rotated.pem")));
    wait_until("the rotated certificate on both APIs", 15, async || {
        served("http").await == rotated && served("grpc").await == rotated
    })
    .await;

    std::fs::write(&key, "garbage\n").unwrap();
    assert_log(&sidecar, "cannot reload TLS server certificate: keeping the last good one", 10);
    assert_eq!(served("http").await, rotated);
    assert_eq!(served("grpc").await, rotated);
}

/// The sidecar's client certificate is replaced while it runs; a scheduler that trusts only the
/// new certificate's CA accepts it on the next connection. A certificate replaced by garbage is
/// logged and the last good one keeps being presented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_client_certificate_is_presented_on_the_next_connection() {
    let one = pki(&[("server", "1001", "30"), ("client", "2001", "30")]);
    let two = pki(&[("client", "2002", "30")]);
    let (d1, d2) = (one.path(), two.path());
    // The scheduler's client CA file: CA one, then CA two only.
    let client_ca = d1.join("client-ca.pem");
    std::fs::copy(d1.join("ca.pem"), &client_ca).unwrap();
    let (cert, key) = (d1.join("live-client.pem"), d1.join("live-client.key"));
    install(d1, "client", &cert, &key);

    let port = kairos_testing::free_port().unwrap().to_string();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().display().to_string();
    let tls = server_tls(&d1.join("server.pem"), &d1.join("server.key"), &client_ca);
    let mut scheduler_args = vec!["scheduler", "--port", &port, "--data-dir", &data_dir];
    scheduler_args.extend(tls.each_ref().map(String::as_str));
    // On a fixed port, so that it can come back where the sidecar looks for it.
    let start_scheduler = || Proc::from(spawn_kairos(&scheduler_args, &[]));
    let mut scheduler = start_scheduler();
    let sidecar = start_sidecar(
        "rotating-client",
        &scheduler.address,
        // `live-client.pem` and `.key`: `cert` and `key`.
        &[
            &client_tls(d1, "live-client").each_ref().map(String::as_str)[..],
            &["--scheduler-request-timeout-seconds", "2"],
        ]
        .concat(),
        &[],
    );
    let accepted = async |name: &str| {
        for _ in 0..100 {
            if post_job(&sidecar.http, name).await.0 == 204 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    };
    assert!(accepted("with-first-cert").await, "{}", sidecar.tail());

    // Rotate the client certificate (key first), and make the scheduler trust only CA two.
    install(d2, "client", &cert, &key);
    assert_log(&sidecar, "reloaded TLS client configuration", 10);
    std::fs::copy(d2.join("ca.pem"), &client_ca).unwrap();
    // A new connection: the scheduler restarts on the same port and store.
    scheduler.kill9();
    drop(scheduler);
    scheduler = start_scheduler();
    assert!(accepted("with-rotated-cert").await, "{}\n{}", sidecar.tail(), scheduler.tail());

    // Garbage: logged, and the rotated certificate is still the one presented.
    std::fs::write(&cert, "not a certificate\n").unwrap();
    assert_log(&sidecar, "cannot reload TLS client configuration: keeping the last good one", 10);
    scheduler.kill9();
    drop(scheduler);
    let scheduler = start_scheduler();
    assert!(accepted("after-garbage").await, "{}\n{}", sidecar.tail(), scheduler.tail());
}

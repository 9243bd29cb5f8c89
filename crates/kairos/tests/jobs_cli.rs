//! `kairos jobs list|get|delete|export|import` against real `kairos scheduler` processes:
//! export → fresh store → import → export is byte-identical, imports keep the timeline (the
//! jobs go on from their next tick, not from the start), and a taken name fails, skips or is
//! overwritten as asked.

mod common;

use common::{jobs_cli, ok};

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kairos_core::{Clock, SystemClock};
use kairos_proto::admin::admin_client::AdminClient;
use kairos_proto::admin::{GetJobRequest, JobRef};
use kairos_proto::common::{
    JobFailurePolicy, JobFailurePolicyConstant, JobFailurePolicyDrop, job_failure_policy,
};
use kairos_proto::scheduler::scheduler_client::SchedulerClient;
use kairos_proto::scheduler::{
    Job, JobMetadata, JobTargetMetadata, ScheduleJobRequest, TargetActorReminder, TargetJob,
    WatchJobsRequestResultStatus, job_target_metadata,
};
use tonic::transport::Channel;

fn app(namespace: &str, app_id: &str) -> JobMetadata {
    JobMetadata {
        app_id: app_id.into(),
        namespace: namespace.into(),
        target: Some(JobTargetMetadata { r#type: Some(job_target_metadata::Type::Job(TargetJob {})) }),
        concurrency_key: None,
    }
}

fn actor(actor_type: &str, id: &str) -> JobMetadata {
    JobMetadata {
        app_id: String::new(),
        namespace: "default".into(),
        target: Some(JobTargetMetadata {
            r#type: Some(job_target_metadata::Type::Actor(TargetActorReminder {
                id: id.into(),
                r#type: actor_type.into(),
            })),
        }),
        concurrency_key: None,
    }
}

fn export(scheduler: &str, file: &Path) -> String {
    ok(jobs_cli(scheduler, &["export", "--file", file.to_str().unwrap()]));
    std::fs::read_to_string(file).unwrap()
}

type Deliveries = Arc<Mutex<BTreeMap<String, Vec<jiff::Timestamp>>>>;

/// Consumes `app1`'s triggers until aborted: names starting with `nack` fail, others succeed.
async fn consume(client: SchedulerClient<Channel>, deliveries: Deliveries) {
    kairos_testing::grpc::watch_jobs(client, "app1", |trigger| {
        deliveries.lock().unwrap().entry(trigger.name.clone()).or_default().push(SystemClock.now());
        if trigger.name.starts_with("nack") {
            WatchJobsRequestResultStatus::Failed
        } else {
            WatchJobsRequestResultStatus::Success
        }
    })
    .await;
}

async fn progress(address: &str, name: &str) -> Option<(u32, u32)> {
    let mut admin = AdminClient::connect(format!("http://{address}")).await.unwrap();
    let r#ref = JobRef { name: name.into(), metadata: Some(app("default", "app1")) };
    let job = admin.get_job(GetJobRequest { r#ref: Some(r#ref) }).await.ok()?.into_inner().job?;
    let p = job.progress.unwrap_or_default();
    Some((p.count, p.attempts))
}

fn line_of<'a>(export: &'a str, name: &str) -> &'a str {
    let needle = format!("\"name\":\"{name}\"");
    export.lines().find(|l| l.contains(&needle)).unwrap_or_else(|| panic!("no {name} in {export}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_import_into_a_fresh_store_is_exact_and_jobs_continue_where_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let first = common::start_scheduler(&dir.path().join("a"), &["--partitions", "4"]);
    let mut client = common::connect(&first.address).await;

    let constant = |interval: i64, max_retries: Option<u32>| JobFailurePolicy {
        policy: Some(job_failure_policy::Policy::Constant(JobFailurePolicyConstant {
            interval: Some(prost_types::Duration { seconds: interval, nanos: 250_000_000 }),
            max_retries,
        })),
    };
    let jobs = [
        (
            "every",
            app("default", "app1"),
            Job {
                schedule: Some("@every 1s".into()),
                repeats: Some(6),
                data: Some(prost_types::Any {
                    type_url: "type.googleapis.com/x".into(),
                    value: vec![0, 1, 255, 10],
                }),
                ..Default::default()
            },
        ),
        (
            "nack-once",
            app("default", "app1"),
            Job {
                due_time: Some("0s".into()),
                failure_policy: Some(constant(3600, Some(5))),
                ..Default::default()
            },
        ),
        (
            "yearly",
            app("default", "app1"),
            Job {
                schedule: Some("0 0 0 1 1 *".into()),
                ttl: Some("P1000D".into()),
                failure_policy: Some(JobFailurePolicy {
                    policy: Some(job_failure_policy::Policy::Drop(JobFailurePolicyDrop {})),
                }),
                data: Some(prost_types::Any::default()),
                ..Default::default()
            },
        ),
        ("r||x@y é", actor("Cart", "id-1"), Job { schedule: Some("@every 1h".into()), ..Default::default() }),
        (
            "far",
            app("other-ns", "app2"),
            Job { due_time: Some("2099-01-01T00:00:00Z".into()), repeats: Some(1), ..Default::default() },
        ),
    ];
    for (name, metadata, job) in jobs {
        let request = ScheduleJobRequest {
            name: name.into(),
            job: Some(job),
            metadata: Some(metadata),
            overwrite: false,
        };
        client.schedule_job(request).await.unwrap();
    }

    // Let `every` tick twice and `nack-once` fail once, so there is progress to carry over.
    let deliveries: Deliveries = Arc::default();
    let consumer = tokio::spawn(consume(client.clone(), deliveries.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let every = progress(&first.address, "every").await.unwrap();
        let nack = progress(&first.address, "nack-once").await.unwrap();
        if every.0 >= 2 && nack.1 == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no progress: every {every:?} nack {nack:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    consumer.abort();
    let _ = consumer.await;
    drop(client);

    let files = tempfile::tempdir().unwrap();
    let exported = export(&first.address, &files.path().join("a.jsonl"));
    drop(first);
    assert_eq!(exported.lines().count(), 5, "{exported}");
    for line in exported.lines() {
        assert!(line.starts_with(r#"{"format":"kairos.jobs/v1","#), "{line}");
    }
    let every_count: u32 = {
        let line = line_of(&exported, "every");
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["data"]["value"], "AAH/Cg==", "data bytes kept: {line}");
        assert_eq!(v["failurePolicy"]["constant"]["maxRetries"], 3, "default policy stored: {line}");
        assert!(v["lastScheduled"].is_string(), "{line}");
        v["count"].as_u64().unwrap().try_into().unwrap()
    };
    assert!(every_count >= 2);
    let nack: serde_json::Value = serde_json::from_str(line_of(&exported, "nack-once")).unwrap();
    assert_eq!(nack["attempts"], 1, "{nack}");
    let every_next: jiff::Timestamp = {
        let v: serde_json::Value = serde_json::from_str(line_of(&exported, "every")).unwrap();
        v["nextDue"].as_str().unwrap().parse().unwrap()
    };

    // A fresh store: import, export again: identical.
    let second = common::start_scheduler(&dir.path().join("b"), &["--partitions", "8"]);
    let a_file = files.path().join("a.jsonl");
    let a_path = a_file.to_str().unwrap();
    let out = ok(jobs_cli(&second.address, &["import", "--file", a_path]));
    assert!(out.contains("imported 5 jobs, skipped 0"), "{out}");
    let b_file = files.path().join("b.jsonl");
    assert_eq!(export(&second.address, &b_file), exported);

    // A taken name: fail (the default) imports nothing; skip leaves the stored jobs; overwrite
    // stores them again, exactly.
    let failed = jobs_cli(&second.address, &["import", "--file", a_path]);
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("5 jobs of the file already exist"), "{stderr}");
    assert_eq!(export(&second.address, &b_file), exported);
    let out = ok(jobs_cli(&second.address, &["import", "--file", a_path, "--on-conflict", "skip"]));
    assert!(out.contains("imported 0 jobs, skipped 5"), "{out}");
    assert_eq!(export(&second.address, &b_file), exported);
    let out = ok(jobs_cli(&second.address, &["import", "--file", a_path, "--on-conflict", "overwrite"]));
    assert!(out.contains("imported 5 jobs, skipped 0"), "{out}");
    assert_eq!(export(&second.address, &b_file), exported);

    // A malformed file is refused with its line number, and stores nothing.
    let bad = files.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        format!("{}\n{{\"format\":\"kairos.jobs/v1\"}}\n", line_of(&exported, "far").replace("far", "far2")),
    )
    .unwrap();
    let failed = jobs_cli(&second.address, &["import", "--file", bad.to_str().unwrap()]);
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("line 2"), "{failed:?}");
    assert_eq!(export(&second.address, &b_file), exported);

    // The table names every job with its owner and progress.
    let table = ok(jobs_cli(&second.address, &["list"]));
    let header = table.lines().next().unwrap();
    for column in ["NAMESPACE", "OWNER", "NAME", "SCHEDULE", "NEXT FIRE", "LAST FIRE", "COUNT", "ATTEMPTS"] {
        assert!(header.contains(column), "{table}");
    }
    let row = table.lines().find(|l| l.contains(" every ")).unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains("app/app1") && row.contains("@every 1s") && row.contains(&every_next.to_string()),
        "{row}"
    );
    assert!(
        table.contains("actor/Cart/id-1") && table.contains("r||x@y é") && table.contains("5 jobs"),
        "{table}"
    );
    let json = ok(jobs_cli(&second.address, &["list", "--json", "--app-id", "app1"]));
    assert_eq!(json.lines().count(), 3, "{json}");

    // get and delete by full key.
    let got = ok(jobs_cli(&second.address, &["get", "far", "--app-id", "app2", "--namespace", "other-ns"]));
    assert_eq!(got.trim_end(), line_of(&exported, "far"));
    let got =
        ok(jobs_cli(&second.address, &["get", "r||x@y é", "--actor-type", "Cart", "--actor-id", "id-1"]));
    assert_eq!(got.trim_end(), line_of(&exported, "r||x@y é"));
    let missing = jobs_cli(&second.address, &["get", "far", "--app-id", "app1"]);
    assert!(!missing.status.success() && String::from_utf8_lossy(&missing.stderr).contains("NotFound"));
    let out =
        ok(jobs_cli(&second.address, &["delete", "far", "--app-id", "app2", "--namespace", "other-ns"]));
    assert!(out.contains("deleted"), "{out}");
    let out =
        ok(jobs_cli(&second.address, &["delete", "far", "--app-id", "app2", "--namespace", "other-ns"]));
    assert!(out.contains("not found"), "{out}");
    assert_eq!(export(&second.address, &b_file).lines().count(), 4);

    // The imported `every` goes on from its next tick: only its remaining repeats fire, the
    // first not before the exported next due time; `nack-once` waits for its 1 h retry.
    let deliveries: Deliveries = Arc::default();
    let client = common::connect(&second.address).await;
    let consumer = tokio::spawn(consume(client, deliveries.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while progress(&second.address, "every").await.is_some() {
        assert!(tokio::time::Instant::now() < deadline, "every did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    consumer.abort();
    let deliveries = deliveries.lock().unwrap().clone();
    let every = &deliveries["every"];
    assert_eq!(every.len(), 6 - every_count as usize, "remaining ticks only: {every:?}");
    assert!(every[0] >= every_next, "fired at {} before its next due {every_next}", every[0]);
    assert!(!deliveries.contains_key("nack-once"), "the retry is an hour away: {deliveries:?}");
    assert_eq!(progress(&second.address, "nack-once").await, Some((0, 1)));
    drop(second);
}

/// The admin service sits behind the scheduler's API token and TLS like the Scheduler API:
/// `kairos jobs` without the token is refused, with it (file or environment) it works, and it
/// reaches a TLS scheduler given the CA.
#[test]
fn kairos_jobs_needs_the_api_token_and_speaks_tls() {
    let fixture = |f: &str| format!("{}/tests/fixtures/{f}", env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "adm1n-s3cret\n").unwrap();
    let token_arg = token_file.to_str().unwrap();
    let scheduler = common::start_scheduler(
        &dir.path().join("data"),
        &[
            "--api-token-file",
            token_arg,
            "--tls-cert-file",
            &fixture("server-cert.pem"),
            "--tls-key-file",
            &fixture("server-key.pem"),
        ],
    );
    let ca = fixture("ca-cert.pem");
    let address = format!("localhost:{}", scheduler.address.rsplit(':').next().unwrap());

    let plain = jobs_cli(&address, &["list", "--api-token-file", token_arg]);
    assert!(!plain.status.success(), "plain text reached a TLS scheduler");

    let refused = jobs_cli(&address, &["list", "--tls-ca-file", &ca]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("Unauthenticated"), "{stderr}");

    let listed = ok(jobs_cli(&address, &["list", "--tls-ca-file", &ca, "--api-token-file", token_arg]));
    assert!(listed.trim_end().ends_with("0 jobs"), "an empty store lists no job: {listed}");

    let by_env = Command::new(env!("CARGO_BIN_EXE_kairos"))
        .args(["jobs", "--scheduler", &address, "--tls-ca-file", &ca, "list", "--json"])
        .env("KAIROS_SCHEDULER_API_TOKEN", "adm1n-s3cret")
        .output()
        .unwrap();
    assert!(by_env.status.success(), "{}", String::from_utf8_lossy(&by_env.stderr));
    assert!(by_env.stdout.is_empty(), "no job, no line");
}

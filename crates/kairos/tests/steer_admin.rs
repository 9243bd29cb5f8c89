//! Steering jobs as an operator, through `kairos jobs status|history|pause|resume|trigger|list`
//! against a real `kairos scheduler` process, with a WatchJobs consumer standing in for the
//! app's sidecar and counting deliveries: a paused job delivers nothing, stays paused across a
//! `kill -9`, delivers a trigger-now (recorded as manual, not counted against repeats) and,
//! once resumed, catches up under its misfire policy (`once`: one delivery for the whole gap).
//! Unknown jobs answer NOT_FOUND.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{jobs_cli, ok};
use kairos_proto::common::{JobMisfireCatchUp, JobMisfirePolicy};
use kairos_proto::scheduler::{Job, ScheduleJobRequest, WatchJobsRequestResultStatus};
use serde_json::Value;

const APP: &str = "steer-app";

type Deliveries = Arc<Mutex<Vec<String>>>;

fn count(deliveries: &Deliveries, name: &str) -> usize {
    deliveries.lock().unwrap().iter().filter(|n| *n == name).count()
}

/// Consumes `APP`'s triggers through the scheduler at `address`, acknowledging each.
fn spawn_consumer(address: &str, deliveries: &Deliveries) -> tokio::task::JoinHandle<()> {
    let (address, deliveries) = (address.to_owned(), deliveries.clone());
    tokio::spawn(async move {
        let client = common::connect(&address).await;
        kairos_testing::grpc::watch_jobs(client, APP, |trigger| {
            deliveries.lock().unwrap().push(trigger.name.clone());
            WatchJobsRequestResultStatus::Success
        })
        .await;
    })
}

fn cli(scheduler: &str, verb: &str, name: &str, extra: &[&str]) -> String {
    common::steer(scheduler, verb, name, APP, extra)
}

fn status(scheduler: &str, name: &str) -> Value {
    common::job_status(scheduler, name, APP)
}

fn history(scheduler: &str, name: &str) -> Vec<Value> {
    common::job_history(scheduler, name, APP)
}

/// Deliveries of `name` over `window`, which must be none.
async fn assert_silent(deliveries: &Deliveries, name: &str, window: Duration, why: &str) {
    let before = count(deliveries, name);
    tokio::time::sleep(window).await;
    assert_eq!(count(deliveries, name), before, "{name} delivered while {why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_survives_kill_9_trigger_is_manual_and_resume_catches_up_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut scheduler = common::start_scheduler(dir.path(), &[]);
    let mut client = common::connect(&scheduler.address).await;
    let once = JobMisfirePolicy { catch_up: JobMisfireCatchUp::Once.into(), window: None };
    let tick = ScheduleJobRequest {
        name: "tick".into(),
        job: Some(Job { schedule: Some("@every 1s".into()), misfire_policy: Some(once), ..Job::default() }),
        metadata: Some(common::job_metadata("default", APP)),
        overwrite: false,
    };
    client.schedule_job(tick).await.unwrap();
    // One tick, an hour away: only a trigger-now delivers it now.
    let manual = common::repeating_job("manual", "@every 1h", 1, common::job_metadata("default", APP));
    client.schedule_job(manual).await.unwrap();

    let deliveries = Deliveries::default();
    let consumer = spawn_consumer(&scheduler.address, &deliveries);
    kairos_testing::wait_until("tick to be delivered twice", 15, || count(&deliveries, "tick") >= 2).await;

    // Pause: nothing more is delivered (a tick already in flight may still land at once).
    let out = cli(&scheduler.address, "pause", "tick", &[]);
    assert!(out.contains("paused"), "{out}");
    let paused = status(&scheduler.address, "tick");
    assert_eq!(
        (&paused["state"], &paused["paused"]),
        (&Value::from("paused"), &Value::from(true)),
        "{paused}"
    );
    // (Over 3.5 s an @every 1s job that kept firing would deliver three more.)
    let at_pause = count(&deliveries, "tick");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let while_paused = count(&deliveries, "tick") - at_pause;
    assert!(while_paused <= 1, "{while_paused} deliveries while paused (one may have been in flight)");
    let fired_before = paused["fired"].as_u64().unwrap();
    assert!(fired_before >= 2, "{paused}");

    // kill -9 while paused: the new process has it paused, and delivers nothing of it.
    scheduler.kill9();
    consumer.abort();
    let scheduler = common::start_scheduler(dir.path(), &["--metrics-port", "0"]);
    let metrics_url = format!("http://{}/metrics", scheduler.metrics());
    let _consumer = spawn_consumer(&scheduler.address, &deliveries);
    let after = status(&scheduler.address, "tick");
    assert_eq!((&after["state"], &after["paused"]), (&Value::from("paused"), &Value::from(true)), "{after}");
    assert_silent(&deliveries, "tick", Duration::from_millis(2500), "paused after kill -9").await;

    // Trigger-now: delivered, recorded as manual, not counted against repeats (the one-tick
    // job is still there, its tick still an hour away).
    let out = cli(&scheduler.address, "trigger", "manual", &[]);
    assert!(out.contains("triggered"), "{out}");
    kairos_testing::wait_until("the trigger-now delivery", 15, || count(&deliveries, "manual") == 1).await;
    let address = scheduler.address.clone();
    let records = wait_records(&address, "manual").await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        (&records[0]["manual"], &records[0]["outcome"], &records[0]["attempt"]),
        (&Value::from(true), &Value::from("success"), &Value::from(0)),
        "{records:?}"
    );
    let manual = status(&scheduler.address, "manual");
    assert_eq!(
        (&manual["ticks"], &manual["fired"], &manual["state"]),
        (&0.into(), &1.into(), &"scheduled".into())
    );
    let table = cli(&scheduler.address, "history", "manual", &[]);
    assert!(table.contains("manual") && table.contains("success") && table.contains("1 records"), "{table}");

    // A trigger-now of the paused job is delivered too (it is explicit), and it stays paused.
    let before = count(&deliveries, "tick");
    cli(&scheduler.address, "trigger", "tick", &[]);
    kairos_testing::wait_until("the paused job's trigger-now", 15, || {
        count(&deliveries, "tick") == before + 1
    })
    .await;
    assert_eq!(status(&scheduler.address, "tick")["state"], "paused");

    // Listing with filters shows the states.
    let listed = ok(jobs_cli(&scheduler.address, &["list", "--app", APP, "--state", "paused"]));
    assert!(listed.contains("STATE") && listed.contains("tick") && !listed.contains("manual"), "{listed}");
    assert!(listed.contains("1 jobs"), "{listed}");
    let listed = ok(jobs_cli(&scheduler.address, &["list", "--prefix", "man"]));
    assert!(
        listed.contains("manual") && listed.contains("scheduled") && listed.contains("1 jobs"),
        "{listed}"
    );

    // The paused-jobs gauge (counted in the background: the first scrape starts the count).
    let mut paused_gauge = 0.0;
    for _ in 0..100 {
        paused_gauge = metric(&scrape(&metrics_url).await, "kairos_jobs_paused", &[]);
        if paused_gauge == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(paused_gauge, 1.0, "kairos_jobs_paused");

    // Resume after ~6 s paused: `once` delivers one catch-up for the whole gap, then ticks on
    // schedule (`all` would deliver every missed tick at once).
    let before = count(&deliveries, "tick");
    let out = cli(&scheduler.address, "resume", "tick", &[]);
    assert!(out.contains("resumed"), "{out}");
    kairos_testing::wait_until("a delivery after resume", 15, || count(&deliveries, "tick") > before).await;
    // Let the ticks due right after resume go out too, then count the missed ticks delivered
    // (more than 1 s late): `once` delivers one for the whole gap.
    let seen = count(&deliveries, "tick");
    kairos_testing::wait_until("a tick on schedule after resume", 15, || count(&deliveries, "tick") > seen)
        .await;
    let records = history(&scheduler.address, "tick");
    let instant = |r: &Value, field: &str| r[field].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    let late: Vec<&Value> = records
        .iter()
        .filter(|r| r["manual"] == false)
        .filter(|r| {
            instant(r, "firedAt").duration_since(instant(r, "tick")) > jiff::SignedDuration::from_secs(1)
        })
        .collect();
    assert_eq!(late.len(), 1, "one catch-up delivery for the whole pause: {records:#?}");
    let page = scrape(&metrics_url).await;
    assert_eq!(metric(&page, "kairos_misfires_total", &["policy=\"once\""]), 1.0, "{page}");
    let coalesced = metric(&page, "kairos_misfire_ticks_total", &["policy=\"once\"", "action=\"coalesced\""]);
    assert!(coalesced >= 3.0, "{coalesced} ticks coalesced over a ~6 s pause of an @every 1s job: {page}");
    let resumed = status(&scheduler.address, "tick");
    assert_eq!(resumed["paused"], false, "{resumed}");
    assert!(resumed["fired"].as_u64().unwrap() > fired_before, "counters kept across kill -9: {resumed}");

    // Unknown jobs: NOT_FOUND, a failed command.
    for verb in ["status", "history", "pause", "resume", "trigger"] {
        let output = jobs_cli(&scheduler.address, &[verb, "nope", "--app-id", APP]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains("NotFound"), "{verb}: {stderr}");
    }
}

async fn scrape(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// The value of the first sample of `name` whose labels include every one of `labels`; 0 if
/// there is none.
fn metric(page: &str, name: &str, labels: &[&str]) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|label| l.contains(label)))
        .find_map(|l| {
            let rest = &l[name.len()..];
            let value =
                if rest.starts_with('{') { rest.split_once("} ")?.1 } else { rest.strip_prefix(' ')? };
            value.trim().parse().ok()
        })
        .unwrap_or(0.0)
}

/// The job's history once it has a record.
async fn wait_records(address: &str, name: &str) -> Vec<Value> {
    for _ in 0..100 {
        let records = history(address, name);
        if !records.is_empty() {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no history for {name}");
}

#[test]
fn a_history_limit_out_of_range_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(common::kairos_bin())
        .args(["scheduler", "--port", "0", "--history-limit", "1001", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("invalid history limit 1001"), "{stderr}");
}

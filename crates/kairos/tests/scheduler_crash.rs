//! The real `kairos scheduler` binary, killed with SIGKILL mid-load and restarted on the same
//! data dir: every acknowledged job is still there, no tick is skipped, and only a trigger that
//! was in flight at the kill may be delivered twice.

mod common;

use std::sync::Arc;
use std::time::Duration;

use kairos_proto::scheduler::{GetJobRequest, JobMetadata};

use common::crash::{Acked, Deliveries, Writers, consume};

const REPEATS: u32 = 20;

fn metadata() -> JobMetadata {
    common::job_metadata("default", "crash-app")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_load_loses_no_acknowledged_job_and_skips_no_tick() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = common::start_scheduler(dir.path(), &["--partitions", "16"]);
    let client = common::connect(&first.address).await;
    let deliveries: Deliveries = Arc::default();
    let consumer = tokio::spawn(consume(client.clone(), "crash-app".into(), deliveries.clone()));

    // Eight writers schedule jobs until the kill; a job counts as acknowledged once its
    // ScheduleJob call returned OK.
    let acked: Acked = Arc::default();
    // Up to 2001 jobs each: writing until the kill (bounded, in case the kill comes late).
    let writers = Writers { writers: 8, per_writer: 2001, repeats: REPEATS, metadata: metadata() };
    let writers = writers.spawn(&client, |w, i| format!("job-{w}-{i:04}"), &acked);

    // Let jobs be created and fire for a while, then kill the process mid-load.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    first.kill9();
    for writer in writers {
        let _ = writer.await;
    }
    let _ = consumer.await;
    let acked = acked.lock().unwrap().clone();
    let delivered_before = deliveries.lock().unwrap().values().sum::<u32>();
    assert!(acked.len() > 50, "the load was real: {} jobs acknowledged", acked.len());
    assert!(delivered_before > 0, "triggers flowed before the kill");

    // Restart on the same data dir.
    let second = common::start_scheduler(dir.path(), &[]);
    let mut client = common::connect(&second.address).await;
    let consumer = tokio::spawn(consume(client.clone(), "crash-app".into(), deliveries.clone()));

    // Wait until every acknowledged job has run all its ticks and been deleted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let mut remaining = 0;
        for name in &acked {
            let request = GetJobRequest { name: name.clone(), metadata: Some(metadata()) };
            if client.get_job(request).await.is_ok() {
                remaining += 1;
            }
        }
        if remaining == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{remaining} jobs still pending after 90 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let deliveries = deliveries.lock().unwrap().clone();
    let mut duplicated = 0;
    for name in &acked {
        let got = deliveries.get(name).copied().unwrap_or(0);
        assert!(got >= REPEATS, "{name}: {got} deliveries, a tick was skipped or the job lost");
        assert!(got <= REPEATS + 1, "{name}: {got} deliveries; only the in-flight trigger may repeat");
        if got > REPEATS {
            duplicated += 1;
        }
    }
    eprintln!(
        "acknowledged jobs: {}, delivered before kill: {delivered_before}, jobs with one duplicate: {duplicated}",
        acked.len()
    );
    consumer.abort();
    drop(second);
}

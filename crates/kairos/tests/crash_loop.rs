//! A crash loop: the real `kairos scheduler` is killed with SIGKILL at a random moment under
//! load, again and again, on the same data dir. Every restart must open the store, keep every
//! acknowledged create, and in the end every job runs all its ticks (a kill may repeat only the
//! trigger that was in flight).
//!
//! `KAIROS_CRASH_CYCLES` sets the number of kill cycles (default 5, so the test command stays
//! short); the figure is `KAIROS_CRASH_CYCLES=50 cargo nextest run -p kairos --test
//! crash_loop`.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kairos_core::{Clock, SystemClock};
use kairos_proto::admin::admin_client::AdminClient;
use kairos_proto::scheduler::JobMetadata;

use common::crash::{Acked, Deliveries, Writers, consume};

const REPEATS: u32 = 8;
const APP: &str = "loop-app";

fn metadata() -> JobMetadata {
    common::job_metadata("default", APP)
}

fn cycles() -> u32 {
    std::env::var("KAIROS_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(5)
}

/// Every stored job name, through the admin service.
async fn stored_names(address: &str) -> BTreeSet<String> {
    let mut admin = AdminClient::connect(format!("http://{address}")).await.unwrap();
    let jobs = common::all_jobs(&mut admin).await;
    jobs.into_iter().filter_map(|j| j.r#ref.map(|r| r.name)).collect()
}

/// A kill delay in 200..1400 ms, different every cycle (no RNG crate needed for this).
fn random_delay(cycle: u32) -> Duration {
    let nanos = u64::try_from(SystemClock.now().subsec_nanosecond()).unwrap_or(0);
    let mixed =
        (nanos ^ u64::from(cycle).wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    Duration::from_millis(200 + (mixed >> 33) % 1200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_kill_9_under_load_keeps_every_acknowledged_job() {
    let cycles = cycles();
    let dir = tempfile::tempdir().unwrap();
    let deliveries: Deliveries = Arc::default();
    let acked: Acked = Arc::default();
    let writers = Writers { writers: 4, per_writer: 1000, repeats: REPEATS, metadata: metadata() };
    let started = tokio::time::Instant::now();

    for cycle in 0..cycles {
        // The store must open after every kill (start_scheduler panics if it does not listen).
        let mut scheduler = common::start_scheduler(dir.path(), &["--partitions", "16"]);
        let client = common::connect(&scheduler.address).await;

        // Nothing acknowledged before this restart is missing, unless it ran all its ticks.
        let stored = stored_names(&scheduler.address).await;
        {
            let acked = acked.lock().unwrap();
            let deliveries = deliveries.lock().unwrap();
            for name in acked.iter() {
                let done = deliveries.get(name).copied().unwrap_or(0) >= REPEATS;
                assert!(stored.contains(name) || done, "cycle {cycle}: acknowledged job {name} lost");
            }
        }

        let consumer = tokio::spawn(consume(client.clone(), APP.into(), deliveries.clone()));
        let running = writers.spawn(&client, move |w, i| format!("c{cycle:03}-w{w}-{i:04}"), &acked);
        tokio::time::sleep(random_delay(cycle)).await;
        scheduler.kill9();
        for writer in running {
            let _ = writer.await;
        }
        let _ = consumer.await;
    }

    // A last restart: every acknowledged job runs to its end.
    let scheduler = common::start_scheduler(dir.path(), &[]);
    let client = common::connect(&scheduler.address).await;
    let consumer = tokio::spawn(consume(client, APP.into(), deliveries.clone()));
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() as u64 > u64::from(cycles) * 10,
        "the load was real: {} jobs acknowledged",
        acked.len()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let stored = stored_names(&scheduler.address).await;
        let pending = acked.iter().filter(|n| stored.contains(*n)).count();
        if pending == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{pending} jobs still pending after 120 s");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    consumer.abort();
    let deliveries = deliveries.lock().unwrap().clone();
    let mut duplicates = 0;
    for name in &acked {
        let got = deliveries.get(name).copied().unwrap_or(0);
        // A job lives through at most every kill from its creation on; each kill can repeat only
        // the one trigger it had in flight.
        let cycle: u32 = name[1..4].parse().unwrap();
        let kills = cycles - cycle;
        assert!(got >= REPEATS, "{name}: {got} deliveries of {REPEATS}: a tick was skipped or the job lost");
        assert!(got <= REPEATS + kills, "{name}: {got} deliveries, more than one repeat per kill ({kills})");
        duplicates += got - REPEATS;
    }
    eprintln!(
        "crash loop: {cycles} kill -9 cycles, {} acknowledged jobs, {duplicates} repeated deliveries, {:.1} s",
        acked.len(),
        started.elapsed().as_secs_f64()
    );
}

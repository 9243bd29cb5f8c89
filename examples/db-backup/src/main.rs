//! The app of Dapr's "Schedule and handle triggered jobs" walkthrough, in Rust on kairos-sdk.
//!
//! It serves the job-event callbacks on `APP_PORT` (default 50070), schedules `prod-db-backup`
//! (`@every 1s`, 10 repeats, a JSON payload) through the sidecar named by `DAPR_GRPC_PORT`,
//! prints every delivery, and exits once the job has fired its last tick and the scheduler has
//! deleted it. Run it under `kairos run` (see `scripts/run-example`):
//!
//! ```sh
//! kairos run --app-id=distributed-scheduler --metrics-port=9091 --dapr-grpc-port 50001 \
//!   --app-port 50070 --app-protocol grpc --log-level debug -- target/release/db-backup
//! ```
//!
//! Re-running: by default the job is scheduled with `overwrite: true`, so a second run (or a run
//! after an interrupted one) starts the walkthrough afresh with 10 new deliveries, as re-running
//! the Dapr walkthrough does. With `--resume`, a `prod-db-backup` left by an interrupted run is
//! kept and only its remaining deliveries arrive.

use std::process::ExitCode;
use std::time::Duration;

use kairos_sdk::{Client, HandlerError, Job, JobEvent, JobEventService};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// The job's name, as in the walkthrough.
const JOB_NAME: &str = "prod-db-backup";
/// Ticks before the scheduler deletes the job.
const REPEATS: u32 = 10;
/// How long the job may outlive its last delivery before something is wrong: the scheduler
/// deletes it as soon as the sidecar reports the last tick done.
const DELETE_GRACE: Duration = Duration::from_secs(10);
/// First pause before asking whether the job is gone; doubled while it is still there.
const FIRST_CHECK: Duration = Duration::from_millis(200);

/// The walkthrough's payload: `{"task": …, "metadata": {"db_name": …, "backup_location": …}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct DbBackup {
    task: String,
    metadata: Metadata,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Metadata {
    db_name: String,
    backup_location: String,
}

/// One delivery, handed from the handler to `main`.
#[derive(Debug)]
struct Delivery {
    event: JobEvent,
    payload: DbBackup,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("db-backup: {err}");
            ExitCode::FAILURE
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn run() -> Result<(), BoxError> {
    let resume = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--resume") => true,
        Some(other) => return Err(format!("unknown argument {other:?}; usage: db-backup [--resume]").into()),
    };

    // Receive first: the sidecar only takes jobs from the scheduler once this port accepts
    // connections, so nothing fires into the void.
    let (deliveries_tx, mut deliveries) = mpsc::channel::<Delivery>(16);
    let service = JobEventService::new().add_job_event_handler(JOB_NAME, move |event: JobEvent| {
        let deliveries_tx = deliveries_tx.clone();
        async move {
            // A payload that does not decode is an error the scheduler retries (failure policy).
            let payload: DbBackup = event.data_json()?;
            deliveries_tx.send(Delivery { event, payload }).await.map_err(|_| "the app is stopping")?;
            Ok::<(), HandlerError>(())
        }
    });
    let address = std::env::var("APP_CHANNEL_ADDRESS").unwrap_or_else(|_| "127.0.0.1".into());
    let port: u16 = match std::env::var("APP_PORT") {
        Ok(port) => port.parse().map_err(|_| format!("APP_PORT {port:?} is not a port number"))?,
        Err(_) => 50070,
    };
    let listener = TcpListener::bind((address.as_str(), port))
        .await
        .map_err(|err| format!("cannot listen on {address}:{port}: {err}"))?;
    println!("listening for job events on {}", listener.local_addr()?);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(service.serve_with_shutdown(listener, async {
        stop_rx.await.ok();
    }));

    let client = Client::from_env().await?;
    let payload = DbBackup {
        task: "db-backup".into(),
        metadata: Metadata { db_name: "my-prod-db".into(), backup_location: "/backup-dir".into() },
    };
    let job = Job::new(JOB_NAME).schedule("@every 1s").repeats(REPEATS).data_json(&payload)?;
    if resume {
        match client.schedule_job(job, false).await {
            Ok(()) => println!("schedulejob - success"),
            Err(err) if err.is_already_exists() => {
                println!("schedulejob - {JOB_NAME} exists from an earlier run; resuming it");
            }
            Err(err) => return Err(err.into()),
        }
    } else {
        client.schedule_job(job, true).await?;
        println!("schedulejob - success");
    }
    match client.get_job(JOB_NAME).await {
        Ok(job) => println!(
            "getjob - name: {}, schedule: {}, repeats: {}",
            job.name,
            job.schedule.as_deref().unwrap_or(""),
            job.repeats.map(|r| r.to_string()).unwrap_or_default()
        ),
        // Resuming a job whose last tick was already in flight: it may be gone by now.
        Err(err) if err.is_not_found() && resume => {}
        Err(err) => return Err(err.into()),
    }

    let outcome = receive(&client, &mut deliveries).await;
    // Graceful: the last delivery's answer reaches the sidecar before the process exits.
    stop_tx.send(()).ok();
    server.await??;
    outcome
}

/// Prints deliveries until the job is gone after one of them (the scheduler deletes it once its
/// last tick is done).
async fn receive(client: &Client, deliveries: &mut mpsc::Receiver<Delivery>) -> Result<(), BoxError> {
    let mut count = 0u32;
    let mut last_delivery = Instant::now();
    // Checked from the start too: a resumed job may already be gone.
    let mut pause = FIRST_CHECK;
    let mut check_at = Instant::now() + pause;
    loop {
        tokio::select! {
            delivery = deliveries.recv() => {
                let Some(Delivery { event, payload }) = delivery else {
                    return Err("the job-event server stopped".into());
                };
                count += 1;
                print_delivery(count, &event, &payload)?;
                last_delivery = Instant::now();
                pause = FIRST_CHECK;
                check_at = last_delivery + pause;
            }
            () = tokio::time::sleep_until(check_at) => {
                match client.get_job(JOB_NAME).await {
                    Err(err) if err.is_not_found() => {
                        println!("job {JOB_NAME} done after {count} deliveries in this run; deleted by the scheduler");
                        return Ok(());
                    }
                    Err(err) => return Err(err.into()),
                    Ok(_) if count >= REPEATS && last_delivery.elapsed() > DELETE_GRACE => {
                        return Err(format!("{JOB_NAME} still exists {DELETE_GRACE:?} after delivery {count}").into());
                    }
                    Ok(_) => {
                        // Still scheduled: look again later, or at the next delivery.
                        pause *= 2;
                        check_at = Instant::now() + pause;
                    }
                }
            }
        }
    }
}

fn print_delivery(count: u32, event: &JobEvent, payload: &DbBackup) -> Result<(), BoxError> {
    println!("job {count} received:");
    println!("  type: {}", event.name);
    println!("  typeurl: {}", event.type_url);
    println!("  value: {}", event.data.escape_ascii());
    println!("  extracted payload: {}", serde_json::to_string(payload)?);
    Ok(())
}

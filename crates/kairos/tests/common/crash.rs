//! The load of the kill -9 tests (`scheduler_crash`, `crash_loop`): writers scheduling
//! repeating jobs until the scheduler is killed, and a consumer counting what it fires.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kairos_proto::scheduler::scheduler_client::SchedulerClient;
use kairos_proto::scheduler::{JobMetadata, WatchJobsRequestResultStatus};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// Deliveries counted by job name.
pub type Deliveries = Arc<Mutex<BTreeMap<String, u32>>>;

/// Names of the jobs whose ScheduleJob call returned OK.
pub type Acked = Arc<Mutex<BTreeSet<String>>>;

/// Acknowledges every trigger of `app` through `client`, counting it in `deliveries`, until the
/// stream breaks.
pub async fn consume(client: SchedulerClient<Channel>, app: String, deliveries: Deliveries) {
    kairos_testing::grpc::watch_jobs(client, &app, |trigger| {
        *deliveries.lock().unwrap().entry(trigger.name.clone()).or_default() += 1;
        WatchJobsRequestResultStatus::Success
    })
    .await;
}

/// `writers` tasks, each scheduling up to `per_writer` jobs `@every 100ms` with `repeats` ticks
/// for `metadata`, named `name(w, i)`, 10 ms apart, until a call fails (the scheduler was
/// killed); every job whose call returned OK goes into `acked`.
pub struct Writers {
    pub writers: usize,
    pub per_writer: usize,
    pub repeats: u32,
    pub metadata: JobMetadata,
}

impl Writers {
    /// Starts the writers on `client`.
    pub fn spawn(
        &self,
        client: &SchedulerClient<Channel>,
        name: impl Fn(usize, usize) -> String + Clone + Send + 'static,
        acked: &Acked,
    ) -> Vec<JoinHandle<()>> {
        (0..self.writers)
            .map(|w| {
                let (mut client, acked, name) = (client.clone(), acked.clone(), name.clone());
                let (per_writer, repeats, metadata) = (self.per_writer, self.repeats, self.metadata.clone());
                tokio::spawn(async move {
                    for i in 0..per_writer {
                        let job = name(w, i);
                        let request = super::repeating_job(&job, "@every 100ms", repeats, metadata.clone());
                        if client.schedule_job(request).await.is_err() {
                            return;
                        }
                        acked.lock().unwrap().insert(job);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                })
            })
            .collect()
    }
}

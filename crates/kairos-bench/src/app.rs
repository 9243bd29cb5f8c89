//! The receiving app: a gRPC `AppCallback` server that acknowledges every job at once and, when
//! it records, notes when each job first arrived and how often it came again.
//!
//! Job names are `PREFIX` followed by a decimal index below the recorder's capacity; the index
//! selects the slot, so recording takes no lock. Names that do not parse are counted as
//! foreign. The same server without a recorder is the far end of the tonic ceiling measurement
//! (`kairos-bench serve-app`, a process of its own).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use kairos_proto::runtime::app_callback_server::{AppCallback, AppCallbackServer};
use kairos_proto::runtime::{JobEventRequest, JobEventResponse};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

use crate::timing;

/// First-arrival times and duplicate counts of jobs `PREFIX0 … PREFIX(n-1)`.
#[derive(Debug)]
pub struct Recorder {
    prefix: String,
    base: Instant,
    /// Nanoseconds after `base` of the first arrival, plus one; 0 = not arrived.
    first: Vec<AtomicU64>,
    received: AtomicU64,
    duplicates: AtomicU64,
    foreign: AtomicU64,
}

impl Recorder {
    /// A recorder of `capacity` jobs named `prefix` + index; times are measured from `base`.
    pub fn new(prefix: impl Into<String>, capacity: u64, base: Instant) -> Arc<Self> {
        Arc::new(Recorder {
            prefix: prefix.into(),
            base,
            first: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            received: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
        })
    }

    /// Notes one arrival of job `name` now.
    pub fn record(&self, name: &str) {
        let index = name.strip_prefix(self.prefix.as_str()).and_then(|i| i.parse::<usize>().ok());
        let Some(slot) = index.and_then(|i| self.first.get(i)) else {
            self.foreign.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let nanos = u64::try_from(timing::now().saturating_duration_since(self.base).as_nanos())
            .unwrap_or(u64::MAX - 1);
        if slot.compare_exchange(0, nanos + 1, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            self.received.fetch_add(1, Ordering::Relaxed);
        } else {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Distinct jobs arrived so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Arrivals of a job already arrived.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    /// Arrivals whose name is not one of ours.
    pub fn foreign(&self) -> u64 {
        self.foreign.load(Ordering::Relaxed)
    }

    /// When job `index` first arrived, if it did.
    pub fn arrival(&self, index: u64) -> Option<Instant> {
        let slot = self.first.get(usize::try_from(index).ok()?)?;
        match slot.load(Ordering::Relaxed) {
            0 => None,
            n => Some(self.base + Duration::from_nanos(n - 1)),
        }
    }

    /// The jobs' count.
    pub fn capacity(&self) -> u64 {
        self.first.len() as u64
    }

    /// Waits until `count` distinct jobs arrived or `timeout` passed, printing progress once a
    /// second under `label`. True when all arrived.
    pub async fn wait_for(&self, count: u64, timeout: Duration, label: &str) -> bool {
        let start = timing::now();
        let mut last_print = start;
        let mut last = 0;
        loop {
            let now_received = self.received();
            if now_received >= count {
                return true;
            }
            let now = timing::now();
            if now - start > timeout {
                return false;
            }
            if now - last_print >= Duration::from_secs(1) {
                eprintln!(
                    "  [{label} {:>4.0}s] {now_received}/{count} delivered, {}/s, {} duplicates",
                    (now - start).as_secs_f64(),
                    now_received - last,
                    self.duplicates()
                );
                last = now_received;
                last_print = now;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// `prefix` + zero-padded `index`.
pub fn job_name(prefix: &str, index: u64) -> String {
    format!("{prefix}{index:010}")
}

#[derive(Debug, Clone)]
struct App {
    recorder: Option<Arc<Recorder>>,
}

#[tonic::async_trait]
impl AppCallback for App {
    async fn on_job_event(
        &self,
        request: Request<JobEventRequest>,
    ) -> Result<Response<JobEventResponse>, Status> {
        if let Some(recorder) = &self.recorder {
            recorder.record(&request.get_ref().name);
        }
        Ok(Response::new(JobEventResponse {}))
    }
}

/// A running receiving app; stops when dropped.
#[derive(Debug)]
pub struct AppServer {
    pub address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for AppServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves `AppCallback` on `127.0.0.1:port` (0 picks one) in this process.
///
/// # Errors
/// When the port cannot be bound.
pub async fn serve(port: u16, recorder: Option<Arc<Recorder>>) -> anyhow::Result<AppServer> {
    let listener =
        TcpListener::bind(("127.0.0.1", port)).await.context("cannot bind the receiving app's port")?;
    let address = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let service = AppCallbackServer::new(App { recorder })
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await;
        if let Err(err) = served {
            eprintln!("receiving app failed: {err}");
        }
    });
    Ok(AppServer { address, stop: Some(stop) })
}

/// `kairos-bench serve-app`: the app alone, acknowledging everything, until killed. Prints
/// `listening on ADDR` on stdout once it accepts connections.
///
/// # Errors
/// When the port cannot be bound.
pub async fn serve_forever(port: u16) -> anyhow::Result<()> {
    let server = serve(port, None).await?;
    println!("listening on {}", server.address);
    std::future::pending::<()>().await;
    drop(server);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_counts_first_arrivals_duplicates_and_foreign_names() {
        let recorder = Recorder::new("b-", 3, timing::now());
        recorder.record(&job_name("b-", 0));
        recorder.record(&job_name("b-", 2));
        recorder.record(&job_name("b-", 2));
        recorder.record("b-0000000009");
        recorder.record("other");
        assert_eq!(recorder.received(), 2);
        assert_eq!(recorder.duplicates(), 1);
        assert_eq!(recorder.foreign(), 2);
        assert!(recorder.arrival(0).is_some());
        assert!(recorder.arrival(1).is_none());
        assert!(recorder.arrival(2).is_some());
    }
}

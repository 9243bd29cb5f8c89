//! What operators talk to: the Prometheus exporter and `/metrics`, the scheduler's health and
//! readiness routes, and the logging setup.
//!
//! The library crates only update metrics through the `metrics` facade; the exporter and its
//! HTTP routes live here, in the binary, so no layer below depends on HTTP.
//!
//! Ports (documented in the README): the scheduler serves `/metrics` on `--metrics-port`
//! (default 9090) and `/healthz` (live) and `/readyz` (ready) on `--healthz-port` (default
//! 8080), as upstream's scheduler splits them; the sidecar serves `/metrics` on
//! `--metrics-port` and its health routes on the Dapr HTTP port (spec §2.5).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kairos_scheduler::SchedulerService;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long the readiness store probe may take before the scheduler counts as not ready.
pub const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Latency buckets (seconds) of every `*_seconds` histogram.
const SECONDS_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Buckets of the store's commit batch size (operations per commit).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once) and returns its handle; `None` if
/// another recorder was installed first. Must be called within a tokio runtime (it starts the
/// upkeep task that keeps histograms bounded).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let installed = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("kairos_store_commit_batch_size".into()),
                        BATCH_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(kairos_sidecar::job_metrics::JOB_LATENCIES.into()),
                        kairos_sidecar::job_metrics::LATENCY_BUCKETS_MS,
                    )
                })
                .and_then(PrometheusBuilder::install_recorder);
            match installed {
                Ok(handle) => {
                    let upkeep = handle.clone();
                    tokio::spawn(async move {
                        loop {
                            tokio::time::sleep(Duration::from_secs(5)).await;
                            upkeep.run_upkeep();
                        }
                    });
                    describe();
                    Some(handle)
                }
                Err(err) => {
                    tracing::warn!(%err, "metrics recorder not installed; /metrics stays empty");
                    None
                }
            }
        })
        .clone()
}

/// What kind of series a metric is, for its help text.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    /// A histogram of seconds.
    Seconds,
}

/// Every metric the scheduler and the sidecar write (besides daprd's job metrics, see
/// [`kairos_sidecar::job_metrics`]), with its help text, so `/metrics` explains itself.
/// docs/operations.md lists each of them (checked by a test).
const METRICS: &[(&str, Kind, &str)] = &[
    ("kairos_jobs_stored", Kind::Gauge, "Jobs in the store (scheduler)"),
    (
        "kairos_jobs_paused",
        Kind::Gauge,
        "Paused jobs in the store (scheduler; counted in the background at most once a minute)",
    ),
    ("kairos_jobs_paused_total", Kind::Counter, "Pause calls that paused a job"),
    ("kairos_jobs_resumed_total", Kind::Counter, "Resume calls that resumed a paused job"),
    ("kairos_jobs_triggered_total", Kind::Counter, "Trigger-now requests accepted"),
    (
        "kairos_misfires_total",
        Kind::Counter,
        "Times a misfire policy changed what fires after missed ticks, by policy (all, once, skip)",
    ),
    (
        "kairos_misfire_ticks_total",
        Kind::Counter,
        "Missed ticks not delivered one by one, by policy and action: coalesced (once: one delivery for them) or skipped (skip, or older than the window)",
    ),
    (
        "kairos_retries_total",
        Kind::Counter,
        "Failed deliveries that will be retried, by failure policy kind (constant, exponential)",
    ),
    ("kairos_jobs_created_total", Kind::Counter, "Jobs accepted by schedule calls, overwrites included"),
    (
        "kairos_jobs_deleted_total",
        Kind::Counter,
        "Jobs deleted: reason=api (delete calls) or completed (after their last tick)",
    ),
    (
        "kairos_triggers_total",
        Kind::Counter,
        "Triggers by result: success, failed (will retry), dropped (tick given up by the failure policy), staged (no sidecar connected)",
    ),
    (
        "kairos_trigger_delivery_seconds",
        Kind::Seconds,
        "From sending a trigger to a sidecar to its result coming back",
    ),
    (
        "kairos_trigger_lateness_seconds",
        Kind::Seconds,
        "How late a trigger was sent to a sidecar after its scheduled time",
    ),
    (
        "kairos_triggers_staged",
        Kind::Gauge,
        "Jobs staged in the store: due while no sidecar of their app was connected",
    ),
    (
        "kairos_triggers_in_flight",
        Kind::Gauge,
        "Triggers fired and not yet answered (sent, or queued for a sidecar's credit)",
    ),
    ("kairos_triggers_queued", Kind::Gauge, "Triggers waiting for a sidecar's credit"),
    (
        "kairos_jobs_in_memory",
        Kind::Gauge,
        "Jobs the engine holds in memory (bounded by the window per partition)",
    ),
    ("kairos_partitions_owned", Kind::Gauge, "Partitions this scheduler fires"),
    ("kairos_sidecars_connected", Kind::Gauge, "Open WatchJobs streams"),
    ("kairos_store_commit_batch_size", Kind::Histogram, "Operations per store commit (group commit)"),
    ("kairos_store_commit_duration_seconds", Kind::Seconds, "Store commit time, fsync included"),
    ("kairos_store_commit_failures_total", Kind::Counter, "Store commits that failed"),
    (
        "kairos_store_faults_total",
        Kind::Counter,
        "Times the store entered a fault by kind: full (no space; clears by itself), corrupt (lasts until restored)",
    ),
    ("kairos_store_reopens_total", Kind::Counter, "Times the store file was reopened after an I/O error"),
    ("kairos_sidecar_deliveries_total", Kind::Counter, "Deliveries to the app by result (sidecar)"),
    (
        "kairos_sidecar_delivery_duration_seconds",
        Kind::Seconds,
        "Time the app took to answer a delivery (sidecar)",
    ),
    (
        kairos_sidecar::health::APP_HEALTHY_GAUGE,
        Kind::Gauge,
        "1 while the app passes its health checks, 0 while its jobs wait (sidecar, --enable-app-health-check)",
    ),
];

/// Gives every metric of [`METRICS`] (and daprd's job metrics) its help text.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    for &(name, kind, help) in METRICS {
        match kind {
            Kind::Counter => describe_counter!(name, help),
            Kind::Gauge => describe_gauge!(name, help),
            Kind::Histogram => describe_histogram!(name, help),
            Kind::Seconds => describe_histogram!(name, Unit::Seconds, help),
        }
    }
    kairos_sidecar::job_metrics::describe();
}

/// Binds an ops listener. With `port: None` the default port is tried and, when taken, the
/// routes are skipped with a warning (so two kairos processes on one machine both start);
/// an explicit port that cannot be bound is an error.
///
/// # Errors
/// When an explicitly given port cannot be bound.
pub async fn bind(
    what: &str,
    listen: std::net::IpAddr,
    port: Option<u16>,
    default: u16,
) -> anyhow::Result<Option<TcpListener>> {
    let address = SocketAddr::new(listen, port.unwrap_or(default));
    match TcpListener::bind(address).await {
        Ok(listener) => Ok(Some(listener)),
        Err(err) if port.is_none() => {
            tracing::warn!(%address, %err, "{what} port taken; serving no {what} routes (give the port explicitly to make this fatal)");
            Ok(None)
        }
        Err(err) => Err(anyhow::anyhow!("cannot listen on {address} for {what}: {err}")),
    }
}

/// Serves `router` on `listener` until `stop` fires.
pub fn spawn_server(
    listener: TcpListener,
    router: Router,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let served = axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await;
        if let Err(err) = served {
            tracing::error!(%err, "ops HTTP server failed");
        }
    })
}

/// The scheduler's `/metrics`: the gauges read at scrape time are refreshed first.
pub fn scheduler_metrics_router(service: Arc<SchedulerService>) -> Router {
    Router::new().route("/metrics", get(scheduler_metrics)).with_state(service)
}

/// The sidecar's `/metrics`.
pub fn sidecar_metrics_router() -> Router {
    Router::new().route("/metrics", get(render))
}

async fn scheduler_metrics(State(service): State<Arc<SchedulerService>>) -> Response {
    refresh_scheduler_gauges(&service).await;
    render().await
}

async fn render() -> Response {
    let text = metrics_handle().map(|h| h.render()).unwrap_or_default();
    (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))], text)
        .into_response()
}

/// Sets the scheduler's scrape-time gauges from the engine and the store.
pub async fn refresh_scheduler_gauges(service: &SchedulerService) {
    let engine = service.engine();
    let stats = engine.router_stats();
    #[allow(clippy::cast_precision_loss)]
    {
        metrics::gauge!("kairos_triggers_in_flight").set(stats.in_flight() as f64);
        metrics::gauge!("kairos_triggers_queued").set(stats.queued as f64);
        metrics::gauge!("kairos_jobs_in_memory").set(engine.resident_jobs() as f64);
        metrics::gauge!("kairos_partitions_owned").set(engine.owned().len() as f64);
        if let Some(paused) = engine.paused_jobs() {
            metrics::gauge!("kairos_jobs_paused").set(paused as f64);
        }
    }
    if let Ok(Ok(staged)) = tokio::time::timeout(STORE_PROBE_TIMEOUT, engine.staged_count()).await {
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!("kairos_triggers_staged").set(staged as f64);
    }
    if let Ok(Ok(count)) = tokio::time::timeout(STORE_PROBE_TIMEOUT, engine.store().count()).await {
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!("kairos_jobs_stored").set(count as f64);
    }
}

/// Why a scheduler is not ready; empty when it is.
pub async fn scheduler_not_ready(service: &SchedulerService) -> Vec<String> {
    let engine = service.engine();
    let mut reasons = Vec::new();
    if !service.is_accepting() || engine.is_draining() {
        reasons.push("shutting down".to_owned());
    }
    if !engine.partitions_alive() {
        reasons.push("a partition loop has stopped".to_owned());
    }
    if engine.owned().is_empty() {
        // A replica may rightly own none (more replicas than partitions, or between a
        // membership change and its claims) and still serves every API call.
        if !engine.follows_store_feed() {
            reasons.push("owns no partitions".to_owned());
        }
    } else if !engine.partitions_loaded() {
        reasons.push("partitions not loaded yet".to_owned());
    }
    reasons.extend(store_not_ready(service).await);
    // One single-key read: the cheapest call every store answers (a count would scan every job
    // key on etcd).
    let probe = kairos_core::JobKey::app("kairos", "kairos-readiness", "probe");
    match tokio::time::timeout(STORE_PROBE_TIMEOUT, engine.store().get(&probe)).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => reasons.push(format!("store probe failed: {err}")),
        Err(_) => reasons.push(format!("store probe took longer than {STORE_PROBE_TIMEOUT:?}")),
    }
    reasons
}

/// What keeps the scheduler's store from taking writes (full, corrupt); empty when nothing does.
pub async fn store_not_ready(service: &SchedulerService) -> Vec<String> {
    service.engine().store().fault().await.map(|fault| fault.to_string()).into_iter().collect()
}

/// The embedded scheduler's store, as `kairos run`'s sidecar reports it on `/v1.0/healthz`.
#[derive(Debug)]
pub struct EmbeddedStoreReadiness(pub Arc<SchedulerService>);

#[async_trait::async_trait]
impl kairos_sidecar::server::ReadinessCheck for EmbeddedStoreReadiness {
    async fn not_ready(&self) -> Vec<String> {
        store_not_ready(&self.0).await
    }
}

/// The scheduler's `/healthz` (live) and `/readyz` (ready) routes.
///
/// `/healthz` fails only when the process can no longer fire anything by itself (a partition
/// loop died), so an orchestrator restarts it; `/readyz` also fails while starting, while
/// shutting down, while the store is full or corrupt ([`store_not_ready`]), and while the store
/// does not answer within [`STORE_PROBE_TIMEOUT`].
pub fn scheduler_health_router(service: Arc<SchedulerService>) -> Router {
    Router::new().route("/healthz", get(live)).route("/readyz", get(ready)).with_state(service)
}

async fn live(State(service): State<Arc<SchedulerService>>) -> Response {
    if service.engine().partitions_alive() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        not_ok(&["a partition loop has stopped".to_owned()])
    }
}

async fn ready(State(service): State<Arc<SchedulerService>>) -> Response {
    let reasons = scheduler_not_ready(&service).await;
    if reasons.is_empty() { (StatusCode::OK, "ready\n").into_response() } else { not_ok(&reasons) }
}

fn not_ok(reasons: &[String]) -> Response {
    let body = serde_json::json!({ "ready": false, "reasons": reasons }).to_string();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairos_core::{Clock, SystemClock};
    use kairos_engine::{Engine, EngineConfig};
    use kairos_store::JobStore;
    use kairos_store::memory::MemoryStore;

    fn service_over(store: MemoryStore) -> SchedulerService {
        let store: Arc<dyn JobStore> = Arc::new(store);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let engine = Engine::new(store, clock, EngineConfig::default());
        let (_, hosts) = tokio::sync::watch::channel(vec![]);
        SchedulerService::new(engine, hosts)
    }

    async fn until_ready(service: &SchedulerService) {
        for _ in 0..200 {
            if scheduler_not_ready(service).await.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never ready: {:?}", scheduler_not_ready(service).await);
    }

    #[tokio::test]
    async fn readiness_needs_owned_partitions_and_a_store_that_answers() {
        let store = MemoryStore::new(4);
        let faults = store.faults();
        let service = service_over(store);
        let reasons = scheduler_not_ready(&service).await;
        assert!(reasons.iter().any(|r| r.contains("owns no partitions")), "{reasons:?}");

        service.engine().own_all();
        until_ready(&service).await;

        // A store that fails every read makes the scheduler unready; it recovers with the store.
        faults.fail_next_reads(u64::MAX);
        let reasons = scheduler_not_ready(&service).await;
        assert!(reasons.iter().any(|r| r.contains("store probe failed")), "{reasons:?}");
        faults.fail_next_reads(0);
        until_ready(&service).await;

        // Partitions that stop firing (released) leave it unready too.
        service.engine().shutdown().await;
        let reasons = scheduler_not_ready(&service).await;
        assert!(reasons.iter().any(|r| r.contains("owns no partitions")), "{reasons:?}");
    }

    #[tokio::test]
    async fn readiness_says_when_the_store_is_full_or_corrupt() {
        use kairos_store::StoreFault;
        let store = MemoryStore::new(2);
        let faults = store.faults();
        let service = service_over(store);
        service.engine().own_all();
        until_ready(&service).await;

        faults.set_fault(Some(StoreFault::Full("cannot write /d/jobs.redb".into())));
        let expected = "store full (no space left on device): cannot write /d/jobs.redb".to_owned();
        assert_eq!(scheduler_not_ready(&service).await, vec![expected.clone()]);
        let service = Arc::new(service);
        let check = EmbeddedStoreReadiness(service.clone());
        assert_eq!(kairos_sidecar::server::ReadinessCheck::not_ready(&check).await, vec![expected]);

        faults.set_fault(Some(StoreFault::Corrupt("page 7 is damaged".into())));
        assert_eq!(scheduler_not_ready(&service).await, vec!["store corrupt: page 7 is damaged".to_owned()]);

        faults.set_fault(None);
        until_ready(&service).await;
        assert!(kairos_sidecar::server::ReadinessCheck::not_ready(&check).await.is_empty());
    }

    /// docs/operations.md's metric table and [`METRICS`] name the same series.
    #[test]
    fn every_metric_is_documented_and_every_documented_one_described() {
        let doc = include_str!("../../../docs/operations.md");
        let documented: std::collections::BTreeSet<&str> = doc
            .lines()
            .filter(|line| line.starts_with("| `kairos_"))
            .flat_map(|line| line.split('|').nth(1).unwrap_or_default().split(','))
            .map(|name| name.trim().trim_matches('`'))
            .collect();
        let described: std::collections::BTreeSet<&str> = METRICS.iter().map(|&(name, ..)| name).collect();
        assert_eq!(documented, described);
    }

    #[tokio::test]
    async fn a_replica_that_owns_no_partition_is_ready() {
        let service = service_over(MemoryStore::new(2));
        let reasons = scheduler_not_ready(&service).await;
        assert!(reasons.iter().any(|r| r.contains("owns no partitions")), "{reasons:?}");
        service.engine().follow_store_feed();
        assert_eq!(scheduler_not_ready(&service).await, Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_draining_scheduler_is_not_ready() {
        let service = service_over(MemoryStore::new(2));
        service.engine().own_all();
        until_ready(&service).await;
        service.stop_accepting();
        let reasons = scheduler_not_ready(&service).await;
        assert_eq!(reasons, vec!["shutting down".to_owned()]);
        assert_eq!(service.engine().drain(Duration::from_millis(10)).await, 0);
    }

    #[tokio::test]
    async fn a_partition_that_has_not_loaded_is_not_ready() {
        let store = MemoryStore::new(2);
        // The first due-index scans fail: the partitions are running but have loaded nothing.
        store.faults().fail_next_reads(2);
        let service = service_over(store);
        service.engine().own_all();
        let reasons = scheduler_not_ready(&service).await;
        assert!(reasons.iter().any(|r| r.contains("not loaded")), "{reasons:?}");
        until_ready(&service).await;
    }
}

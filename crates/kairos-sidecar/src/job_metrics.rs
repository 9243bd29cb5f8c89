//! The job metrics of daprd v1.18, so that dashboards built for Dapr work unchanged:
//! `dapr_component_job_success_count`, `dapr_component_job_failure_count` and the
//! `dapr_component_job_latencies` histogram (milliseconds), each labelled `app_id`,
//! `namespace` and `operation="job_trigger_op"`.
//!
//! One delivery to the app is one count: a failed delivery that the scheduler retries under
//! the default policy (3 retries) counts 4 failures. An app that answers 404 / NotFound has no
//! handler for the job: the scheduler is told SUCCESS (no retry), and, as daprd does, the
//! delivery counts as one failure. [`DeliveryMetrics`] records the sidecar's own
//! `kairos_sidecar_*` delivery metrics beside these. Only the `metrics` facade is used here; the
//! exporter lives in the binary.

use std::sync::OnceLock;
use std::time::Duration;

use crate::app_channel::Delivery;

/// Successful job triggers.
pub const JOB_SUCCESS_COUNT: &str = "dapr_component_job_success_count";
/// Failed job triggers (404 / NotFound included).
pub const JOB_FAILURE_COUNT: &str = "dapr_component_job_failure_count";
/// How long the app took to answer a trigger, in milliseconds.
pub const JOB_LATENCIES: &str = "dapr_component_job_latencies";
/// The `operation` label daprd gives job triggers.
pub const JOB_TRIGGER_OP: &str = "job_trigger_op";
/// daprd's latency distribution (milliseconds), the buckets of [`JOB_LATENCIES`].
pub const LATENCY_BUCKETS_MS: &[f64] = &[
    1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 13.0, 16.0, 20.0, 25.0, 30.0, 40.0, 50.0, 65.0, 80.0, 100.0,
    130.0, 160.0, 200.0, 250.0, 300.0, 400.0, 500.0, 650.0, 800.0, 1_000.0, 2_000.0, 5_000.0, 10_000.0,
    20_000.0, 50_000.0, 100_000.0,
];

/// Records what one delivery to the app counts: the daprd job metrics of the app and, beside
/// them, the sidecar's own `kairos_sidecar_deliveries_total` (by `result`, as the scheduler is
/// told it) and `kairos_sidecar_delivery_duration_seconds`.
///
/// Each handle is registered with the recorder on its first use and kept, so a delivery does no
/// label lookup in the recorder's registry; a series still appears only once it has a value.
#[derive(Debug, Clone)]
pub struct DeliveryMetrics {
    labels: [(&'static str, String); 3],
    success: OnceLock<metrics::Counter>,
    failure: OnceLock<metrics::Counter>,
    latencies: OnceLock<metrics::Histogram>,
    delivered: OnceLock<metrics::Counter>,
    failed: OnceLock<metrics::Counter>,
    duration: OnceLock<metrics::Histogram>,
}

impl DeliveryMetrics {
    /// The metrics of `app_id`, labelled with `namespace` (daprd reports the `NAMESPACE` it was
    /// given, empty when none was).
    pub fn new(app_id: &str, namespace: &str) -> Self {
        DeliveryMetrics {
            labels: [
                ("app_id", app_id.to_owned()),
                ("namespace", namespace.to_owned()),
                ("operation", JOB_TRIGGER_OP.to_owned()),
            ],
            success: OnceLock::new(),
            failure: OnceLock::new(),
            latencies: OnceLock::new(),
            delivered: OnceLock::new(),
            failed: OnceLock::new(),
            duration: OnceLock::new(),
        }
    }

    /// [`DeliveryMetrics::new`] with the namespace label from `NAMESPACE` (empty when unset).
    pub fn from_env(app_id: &str) -> Self {
        Self::new(app_id, &std::env::var("NAMESPACE").unwrap_or_default())
    }

    /// Counts one delivery to the app and how long it took.
    pub fn record(&self, delivery: &Delivery, elapsed: Duration) {
        let (count, name) = match delivery {
            Delivery::Success => (&self.success, JOB_SUCCESS_COUNT),
            Delivery::NotFoundCountedAsSuccess | Delivery::Failed { .. } => {
                (&self.failure, JOB_FAILURE_COUNT)
            }
        };
        count.get_or_init(|| metrics::counter!(name, &self.labels)).increment(1);
        self.latencies
            .get_or_init(|| metrics::histogram!(JOB_LATENCIES, &self.labels))
            .record(elapsed.as_secs_f64() * 1_000.0);
        let (count, result) =
            if delivery.is_success() { (&self.delivered, "success") } else { (&self.failed, "failed") };
        count
            .get_or_init(|| metrics::counter!("kairos_sidecar_deliveries_total", "result" => result))
            .increment(1);
        self.duration
            .get_or_init(|| metrics::histogram!("kairos_sidecar_delivery_duration_seconds"))
            .record(elapsed.as_secs_f64());
    }
}

/// Help texts for the exporter.
pub fn describe() {
    metrics::describe_counter!(JOB_SUCCESS_COUNT, "The number of successful job triggers (daprd)");
    metrics::describe_counter!(JOB_FAILURE_COUNT, "The number of failed job triggers (daprd)");
    metrics::describe_histogram!(
        JOB_LATENCIES,
        metrics::Unit::Milliseconds,
        "The latency of the response from the app that processed the triggered job (daprd)"
    );
}

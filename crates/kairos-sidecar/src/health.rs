//! App health checks (daprd's `--enable-app-health-check` and friends, spec §4.3, §9).
//!
//! With health checks on, the sidecar probes the app every interval (HTTP `GET` of the health
//! path, or the gRPC `AppCallbackHealthCheck/HealthCheck` callback) and takes triggers from the
//! scheduler only while the app is healthy: after `threshold` failed probes in a row it closes
//! its job streams, so due jobs wait (staged) in the scheduler instead of burning their failure
//! policy, and it opens them again at the first probe that succeeds.

use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderValue;
use kairos_proto::runtime::app_callback_health_check_client::AppCallbackHealthCheckClient;
use kairos_proto::scheduler::WatchJobsRequestInitial;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::metadata::AsciiMetadataValue;

use crate::app_channel::{API_TOKEN_HEADER, AppChannelConfig, AppHttpClient, connect_lazy, error_chain};
use crate::scheduler_link::{SchedulerLink, TriggerHandler};

/// `--app-health-check-path` default.
pub const DEFAULT_HEALTH_PATH: &str = "/healthz";
/// `--app-health-probe-interval` default.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// `--app-health-probe-timeout` default.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// How much of a health answer is read (and dropped) so its connection can be reused.
const PROBE_BODY_LIMIT: usize = 64 << 10;
/// `--app-health-threshold` default.
pub const DEFAULT_THRESHOLD: u32 = 3;

/// 1 while the app passes its health checks, 0 while it does not (only with health checks on).
pub const APP_HEALTHY_GAUGE: &str = "kairos_sidecar_app_healthy";

/// How the app's health is probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppHealthConfig {
    /// HTTP apps: the path probed with `GET` (2xx is healthy). Unused for gRPC apps.
    pub path: String,
    /// Time between probes.
    pub interval: Duration,
    /// How long one probe may take; a slower answer is a failed probe.
    pub timeout: Duration,
    /// Failed probes in a row that make the app unhealthy.
    pub threshold: u32,
}

impl Default for AppHealthConfig {
    fn default() -> Self {
        AppHealthConfig {
            path: DEFAULT_HEALTH_PATH.to_owned(),
            interval: DEFAULT_PROBE_INTERVAL,
            timeout: DEFAULT_PROBE_TIMEOUT,
            threshold: DEFAULT_THRESHOLD,
        }
    }
}

/// Why app health checks could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("invalid app health check setting: {0}")]
    Invalid(String),
    #[error("cannot build the app health probe: {0}")]
    Client(String),
}

impl AppHealthConfig {
    /// Checks the settings: the interval, timeout and threshold must be positive, and an
    /// HTTP health path must be a path.
    ///
    /// # Errors
    /// [`HealthError::Invalid`] naming the flag and the value.
    pub fn validate(&self) -> Result<(), HealthError> {
        if self.interval.is_zero() {
            return Err(HealthError::Invalid(
                "--app-health-probe-interval must be at least 1 (seconds)".into(),
            ));
        }
        if self.timeout.is_zero() {
            return Err(HealthError::Invalid(
                "--app-health-probe-timeout must be at least 1 (milliseconds)".into(),
            ));
        }
        if self.threshold == 0 {
            return Err(HealthError::Invalid("--app-health-threshold must be at least 1".into()));
        }
        if !self.path.starts_with('/') || self.path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(HealthError::Invalid(format!(
                "--app-health-check-path {:?} must be a URL path starting with /",
                self.path
            )));
        }
        Ok(())
    }
}

/// One health probe of the app: HTTP `GET` of the health path, or gRPC
/// `AppCallbackHealthCheck/HealthCheck`.
#[derive(Debug)]
pub struct AppProbe {
    target: ProbeTarget,
    timeout: Duration,
}

#[derive(Debug)]
enum ProbeTarget {
    Http { client: AppHttpClient, url: String, token: Option<HeaderValue> },
    Grpc { channel: tonic::transport::Channel, token: Option<AsciiMetadataValue> },
}

impl AppProbe {
    /// The probe of the app `app` describes, with the path and timeout of `health`. Nothing is
    /// connected yet.
    ///
    /// # Errors
    /// [`HealthError`] when the settings are invalid or the app's address is not a URL authority.
    pub fn new(app: &AppChannelConfig, health: &AppHealthConfig) -> Result<Self, HealthError> {
        health.validate()?;
        let client_error = |e: crate::app_channel::AppChannelError| HealthError::Client(error_chain(&e));
        let target = if app.protocol.is_grpc() {
            let (endpoint, tls) = app.grpc_endpoint(health.timeout).map_err(client_error)?;
            let channel = connect_lazy(&endpoint, tls.as_ref());
            let token = app.api_token.as_deref().and_then(|t| AsciiMetadataValue::try_from(t).ok());
            ProbeTarget::Grpc { channel, token }
        } else {
            let client = AppHttpClient::new(app).map_err(client_error)?;
            let url = format!("{}{}", app.base_url(), health.path);
            url.parse::<http::Uri>().map_err(|e| HealthError::Invalid(format!("{url:?}: {e}")))?;
            let token = app.api_token.as_deref().and_then(|t| HeaderValue::from_str(t).ok());
            ProbeTarget::Http { client, url, token }
        };
        Ok(AppProbe { target, timeout: health.timeout })
    }

    /// Probes once.
    ///
    /// # Errors
    /// Why the app counts as unhealthy, in words for the log.
    pub async fn probe(&self) -> Result<(), String> {
        let timeout = self.timeout;
        let call = async {
            match &self.target {
                ProbeTarget::Http { client, url, token } => {
                    let headers: Vec<_> = token.iter().map(|t| (API_TOKEN_HEADER, t.clone())).collect();
                    let status =
                        client.send(http::Method::GET, url, &headers, Vec::new(), PROBE_BODY_LIMIT).await?;
                    if status.is_success() {
                        Ok(())
                    } else if status.as_u16() == 404 {
                        Err(format!(
                            "GET {url} answered 404 Not Found: the app serves no health check there \
                             (check --app-health-check-path)"
                        ))
                    } else {
                        Err(format!("GET {url} answered {status}"))
                    }
                }
                ProbeTarget::Grpc { channel, token } => {
                    let mut request = tonic::Request::new(());
                    if let Some(token) = token {
                        request.metadata_mut().insert(API_TOKEN_HEADER, token.clone());
                    }
                    AppCallbackHealthCheckClient::new(channel.clone())
                        .health_check(request)
                        .await
                        .map(drop)
                        .map_err(|status| {
                            format!(
                                "AppCallbackHealthCheck/HealthCheck answered {:?}: {}",
                                status.code(),
                                status.message()
                            )
                        })
                }
            }
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "the app did not answer its health probe within {} (--app-health-probe-timeout)",
                go_duration(timeout)
            )),
        }
    }
}

/// Probes the app every interval until `stop` and publishes whether it is healthy: unhealthy
/// (the start state) until a probe succeeds, unhealthy again after `threshold` failed probes in
/// a row. Each change is logged, with the reason of the last failed probe.
pub async fn watch_app_health(
    probe: AppProbe,
    config: AppHealthConfig,
    healthy_tx: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(config.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0u32;
    let mut reported_start = false;
    metrics::gauge!(APP_HEALTHY_GAUGE).set(0.0);
    loop {
        if stop.run_until_cancelled(ticks.tick()).await.is_none() {
            return;
        }
        let Some(result) = stop.run_until_cancelled(probe.probe()).await else { return };
        let healthy = *healthy_tx.borrow();
        match result {
            Ok(()) => {
                failures = 0;
                if !healthy {
                    tracing::info!("app is healthy; taking jobs from the scheduler");
                    metrics::gauge!(APP_HEALTHY_GAUGE).set(1.0);
                    healthy_tx.send_replace(true);
                }
            }
            Err(reason) => {
                failures = failures.saturating_add(1);
                if healthy && failures >= config.threshold {
                    tracing::warn!(
                        %reason,
                        failures,
                        "app is unhealthy; job triggers wait in the scheduler until it is healthy again"
                    );
                    metrics::gauge!(APP_HEALTHY_GAUGE).set(0.0);
                    healthy_tx.send_replace(false);
                } else if !healthy && !reported_start {
                    tracing::warn!(%reason, "app is not healthy yet; job triggers wait in the scheduler");
                    reported_start = true;
                } else {
                    tracing::debug!(%reason, failures, "app health probe failed");
                }
            }
        }
    }
}

/// Takes triggers from the scheduler only while `healthy` says so: the job streams are opened
/// when the app turns healthy and closed (deliveries in flight finish within the shutdown
/// grace) when it turns unhealthy, so the scheduler stages the app's due jobs instead of
/// spending their failure policy. Returns after `stop`.
pub async fn run_streams_while_healthy(
    link: SchedulerLink,
    initial: WatchJobsRequestInitial,
    handler: Arc<dyn TriggerHandler>,
    mut healthy: watch::Receiver<bool>,
    stop: CancellationToken,
) {
    loop {
        while !*healthy.borrow_and_update() {
            if !matches!(stop.run_until_cancelled(healthy.changed()).await, Some(Ok(()))) {
                return;
            }
        }
        let streams = stop.child_token();
        let run = link.run_streams(initial.clone(), handler.clone(), streams.clone());
        tokio::pin!(run);
        loop {
            tokio::select! {
                () = &mut run => return,
                changed = healthy.changed() => {
                    if changed.is_err() || !*healthy.borrow_and_update() {
                        tracing::info!("closing the job streams while the app is unhealthy");
                        streams.cancel();
                        run.await;
                        break;
                    }
                }
            }
        }
        if stop.is_cancelled() {
            return;
        }
    }
}

/// A duration written the way Go's `time.Duration.String` writes it (`5s`, `500ms`, `1m30s`),
/// as daprd reports its health settings.
pub fn go_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    if d < Duration::from_secs(1) {
        let nanos = d.as_nanos();
        return if nanos.is_multiple_of(1_000_000) {
            format!("{}ms", nanos / 1_000_000)
        } else if nanos.is_multiple_of(1_000) {
            format!("{}µs", nanos / 1_000)
        } else {
            format!("{nanos}ns")
        };
    }
    let total = d.as_secs();
    let (hours, minutes, seconds) = (total / 3600, (total / 60) % 60, total % 60);
    let frac = d.subsec_nanos();
    let mut seconds = if frac == 0 {
        format!("{seconds}s")
    } else {
        let digits = format!("{frac:09}");
        format!("{seconds}.{}s", digits.trim_end_matches('0'))
    };
    if hours > 0 {
        seconds = format!("{hours}h{minutes}m{seconds}");
    } else if minutes > 0 {
        seconds = format!("{minutes}m{seconds}");
    }
    seconds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_out_of_range_are_refused_with_the_flag_named() {
        assert!(AppHealthConfig::default().validate().is_ok());
        let bad = |f: fn(&mut AppHealthConfig), flag: &str| {
            let mut config = AppHealthConfig::default();
            f(&mut config);
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(flag), "{err}");
        };
        bad(|c| c.interval = Duration::ZERO, "--app-health-probe-interval");
        bad(|c| c.timeout = Duration::ZERO, "--app-health-probe-timeout");
        bad(|c| c.threshold = 0, "--app-health-threshold");
        bad(|c| c.path = "healthz".into(), "--app-health-check-path");
        bad(|c| c.path = "/health z".into(), "--app-health-check-path");
    }

    #[test]
    fn durations_read_as_go_writes_them() {
        assert_eq!(go_duration(Duration::from_secs(5)), "5s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_micros(250)), "250µs");
    }
}

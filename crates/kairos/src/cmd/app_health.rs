//! daprd's app health check flags, shared by `kairos sidecar` and `kairos run`.

use std::time::Duration;

use kairos_sidecar::health::{AppHealthConfig, DEFAULT_HEALTH_PATH};

/// `--enable-app-health-check` and its settings (daprd's names, units and defaults).
#[derive(Debug, Clone, clap::Args)]
pub struct AppHealthArgs {
    /// Probe the app's health; while it is unhealthy no job is delivered (jobs wait in the
    /// scheduler without spending their failure policy).
    #[arg(long)]
    pub enable_app_health_check: bool,
    /// HTTP apps: the path probed with GET (2xx is healthy). gRPC apps are probed with
    /// AppCallbackHealthCheck/HealthCheck.
    #[arg(long, default_value = DEFAULT_HEALTH_PATH)]
    pub app_health_check_path: String,
    /// Time between health probes (seconds).
    #[arg(long, default_value_t = 5)]
    pub app_health_probe_interval: u64,
    /// How long one health probe may take (milliseconds); a slower answer is a failed probe.
    #[arg(long, default_value_t = 500)]
    pub app_health_probe_timeout: u64,
    /// Failed probes in a row that make the app unhealthy.
    #[arg(long, default_value_t = 3)]
    pub app_health_threshold: u32,
}

impl AppHealthArgs {
    /// The health check settings; `None` unless `--enable-app-health-check`.
    ///
    /// # Errors
    /// When a setting is out of range (a zero interval, timeout or threshold, a path that is
    /// not a path).
    pub fn config(&self) -> anyhow::Result<Option<AppHealthConfig>> {
        if !self.enable_app_health_check {
            return Ok(None);
        }
        let config = AppHealthConfig {
            path: self.app_health_check_path.clone(),
            interval: Duration::from_secs(self.app_health_probe_interval),
            timeout: Duration::from_millis(self.app_health_probe_timeout),
            threshold: self.app_health_threshold,
        };
        config.validate()?;
        Ok(Some(config))
    }
}

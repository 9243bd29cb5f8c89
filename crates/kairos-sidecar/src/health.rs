//! App health checks (daprd's `--enable-app-health-check` and friends, spec §4.3, §9).
//!
//! With health checks on, the sidecar probes the app every interval (HTTP `GET` of the health
//! path, or the gRPC `AppCallbackHealthCheck/HealthCheck` callback) and takes triggers from the
//! scheduler only while the app is healthy: after `threshold` failed probes in a row it closes
//! its job streams, so due jobs wait (staged) in the scheduler instead of burning their failure
//! policy, and it opens them again at the first probe that succeeds.

use std::time::Duration;

/// `--app-health-check-path` default.
pub const DEFAULT_HEALTH_PATH: &str = "/healthz";
/// `--app-health-probe-interval` default.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// `--app-health-probe-timeout` default.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// `--app-health-threshold` default.
pub const DEFAULT_THRESHOLD: u32 = 3;

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

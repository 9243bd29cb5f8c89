//! Wall-time measurement: the one place the bench reads a monotonic clock.

use std::time::Instant;

/// The current monotonic instant.
///
/// kairos reads time only through `kairos_core::Clock` (clippy `disallowed-methods`) so that its
/// timing logic runs on a manual clock in tests. A benchmark measures elapsed wall time, which
/// is exactly what that rule keeps out of the product; every measurement here goes through this
/// function and nothing else.
#[allow(clippy::disallowed_methods)]
pub fn now() -> Instant {
    Instant::now()
}

/// Seconds as `f64` from a `Duration`, for rates.
pub fn secs(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
}

/// Milliseconds as `f64` from a `Duration`, for report cells.
pub fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Mebibytes as `f64` from a byte count, for report cells.
#[allow(clippy::cast_precision_loss)]
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// `count / seconds`, 0 when no time passed.
pub fn rate(count: u64, d: std::time::Duration) -> f64 {
    let s = secs(d);
    if s > 0.0 { count as f64 / s } else { 0.0 }
}

/// The load averages (1, 5, 15 min) from `/proc/loadavg`, as text; `?` when unreadable.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

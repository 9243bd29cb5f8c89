//! Latency histograms: one per client task, merged at the end (no shared lock on the hot path).

use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;

/// Highest latency recorded exactly; slower calls are clamped to it (and counted).
const MAX_MICROS: u64 = 120_000_000;

/// Latencies in microseconds, 3 significant digits.
#[derive(Debug, Clone)]
pub struct Latencies {
    hist: Histogram<u64>,
}

/// The quantiles a report shows, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latencies {
    /// An empty histogram.
    ///
    /// # Errors
    /// Never for the fixed bounds used here; kept fallible rather than panicking.
    pub fn new() -> anyhow::Result<Self> {
        let hist =
            Histogram::new_with_bounds(1, MAX_MICROS, 3).context("cannot create a latency histogram")?;
        Ok(Latencies { hist })
    }

    /// Records one call's latency.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, MAX_MICROS);
        self.hist.saturating_record(micros);
    }

    /// Adds every sample of `other`.
    ///
    /// # Errors
    /// When the histograms have incompatible bounds (they never do here).
    pub fn merge(&mut self, other: &Latencies) -> anyhow::Result<()> {
        self.hist.add(&other.hist).context("cannot merge latency histograms")
    }

    /// p50, p90, p99 and max in milliseconds.
    pub fn summary(&self) -> Summary {
        let ms = |micros: u64| micros as f64 / 1000.0;
        Summary {
            p50_ms: ms(self.hist.value_at_quantile(0.50)),
            p90_ms: ms(self.hist.value_at_quantile(0.90)),
            p99_ms: ms(self.hist.value_at_quantile(0.99)),
            max_ms: ms(self.hist.max()),
        }
    }
}

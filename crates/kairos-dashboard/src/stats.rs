//! The overview's numbers: rates and lateness from the process's own metrics, and a census of
//! the stored jobs by app and state.
//!
//! Rates come from samples of the Prometheus text the process exports (the engine counts
//! `kairos_triggers_total` and `kairos_trigger_lateness_seconds`), taken every
//! [`SAMPLE_EVERY`] and kept for [`KEPT`]: a rate is the difference of two samples, a percentile
//! the bucket where the difference of two histograms crosses it.
//!
//! The census reads every stored job, so it never runs inside a request: a request asks for one
//! ([`Census::request`]) and shows the last finished count with its age; a new count starts at
//! most every [`CENSUS_EVERY`], and no sooner than [`CENSUS_SHARE`] times the last one took.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kairos_core::{Clock, JobKey, JobState, Owner};
use kairos_engine::status_of;
use kairos_store::JobStore;

/// The process's metrics as Prometheus text.
pub type MetricsSource = Arc<dyn Fn() -> String + Send + Sync>;

/// How often the metrics are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// How long samples are kept (the lateness percentiles span this).
pub const KEPT: SignedDuration = SignedDuration::from_secs(300);
/// The window of the trigger rates.
pub const RATE_OVER: SignedDuration = SignedDuration::from_secs(60);
/// The least time between two censuses.
pub const CENSUS_EVERY: SignedDuration = SignedDuration::from_secs(30);
/// A census may take at most this share of the time (a store that takes 10 s to count is
/// counted at most every 100 s).
pub const CENSUS_SHARE: i32 = 10;

/// One reading of the counters the overview shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub at: Option<Timestamp>,
    /// `kairos_triggers_total` by `result`.
    pub triggers: BTreeMap<String, f64>,
    /// `kairos_trigger_lateness_seconds` buckets: `(le, cumulative count)`, ascending.
    pub lateness: Vec<(f64, f64)>,
}

/// Reads the counters out of Prometheus text.
pub fn parse(text: &str) -> Sample {
    let mut sample = Sample::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Ok(value) = value.trim().parse::<f64>() else { continue };
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        match name {
            "kairos_triggers_total" => {
                if let Some(result) = label(labels, "result") {
                    *sample.triggers.entry(result.to_owned()).or_default() += value;
                }
            }
            "kairos_trigger_lateness_seconds_bucket" => {
                let le = match label(labels, "le") {
                    Some("+Inf") => f64::INFINITY,
                    Some(le) => match le.parse() {
                        Ok(le) => le,
                        Err(_) => continue,
                    },
                    None => continue,
                };
                match sample.lateness.iter_mut().find(|(l, _)| *l == le) {
                    Some((_, count)) => *count += value,
                    None => sample.lateness.push((le, value)),
                }
            }
            _ => {}
        }
    }
    sample.lateness.sort_by(|a, b| a.0.total_cmp(&b.0));
    sample
}

fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels.trim_end_matches('}').split(',').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// What the overview shows of the samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rates {
    /// Over how long the rates were measured (zero until two samples exist).
    pub over: SignedDuration,
    /// Triggers per second by result.
    pub per_second: BTreeMap<String, f64>,
    /// Over how long the lateness was measured.
    pub lateness_over: SignedDuration,
    /// Lateness percentiles (upper bounds of their buckets), in seconds; `None` without
    /// triggers in the window.
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    /// Triggers failed or dropped within `lateness_over`.
    pub failures: f64,
}

/// Samples kept over [`KEPT`].
#[derive(Debug, Default)]
pub struct Samples {
    kept: Mutex<VecDeque<Sample>>,
}

impl Samples {
    /// Adds a sample taken at `at`, dropping those older than [`KEPT`].
    pub fn push(&self, mut sample: Sample, at: Timestamp) {
        sample.at = Some(at);
        let mut kept = self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        kept.push_back(sample);
        let oldest = at.checked_sub(KEPT).unwrap_or(at);
        while kept.len() > 2 && kept.front().and_then(|s| s.at).is_some_and(|t| t < oldest) {
            kept.pop_front();
        }
    }

    /// Rates between the newest sample and the ones [`RATE_OVER`] and [`KEPT`] before it.
    pub fn rates(&self) -> Rates {
        let kept = self.kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (Some(newest), Some(oldest)) = (kept.back(), kept.front()) else { return Rates::default() };
        let (Some(now), Some(first)) = (newest.at, oldest.at) else { return Rates::default() };
        let since = now.checked_sub(RATE_OVER).unwrap_or(now);
        let base = kept.iter().find(|s| s.at.is_some_and(|t| t >= since)).unwrap_or(oldest);
        let over = base.at.map_or(SignedDuration::ZERO, |t| now.duration_since(t));
        let mut rates = Rates { over, lateness_over: now.duration_since(first), ..Rates::default() };
        if over > SignedDuration::ZERO {
            for (result, count) in &newest.triggers {
                let before = base.triggers.get(result).copied().unwrap_or(0.0);
                rates.per_second.insert(result.clone(), (count - before).max(0.0) / over.as_secs_f64());
            }
        }
        let delta = |r: &str| {
            newest.triggers.get(r).copied().unwrap_or(0.0) - oldest.triggers.get(r).copied().unwrap_or(0.0)
        };
        rates.failures = (delta("failed") + delta("dropped")).max(0.0);
        let buckets: Vec<(f64, f64)> = newest
            .lateness
            .iter()
            .map(|(le, count)| {
                let before = oldest.lateness.iter().find(|(l, _)| l == le).map_or(0.0, |(_, c)| *c);
                (*le, (count - before).max(0.0))
            })
            .collect();
        let total = buckets.last().map_or(0.0, |(_, c)| *c);
        if total > 0.0 {
            let quantile = |q: f64| buckets.iter().find(|(_, c)| *c >= q * total).map(|(le, _)| *le);
            (rates.p50, rates.p99) = (quantile(0.5), quantile(0.99));
        }
        rates
    }
}

/// Samples `source` every [`SAMPLE_EVERY`] into `samples` until `stop`.
pub async fn sample_forever(
    source: MetricsSource,
    samples: Arc<Samples>,
    clock: Arc<dyn Clock>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        samples.push(parse(&source()), clock.now());
        if stop.run_until_cancelled(tokio::time::sleep(SAMPLE_EVERY)).await.is_none() {
            return;
        }
    }
}

/// Stored jobs counted by owner and state.
#[derive(Debug, Clone, Default)]
pub struct Count {
    /// When the count finished.
    pub at: Option<Timestamp>,
    /// How long it took.
    pub took: SignedDuration,
    pub total: u64,
    /// `(namespace, "app" or "actor", app id or actor type)` → jobs by state.
    pub by_owner: BTreeMap<(String, &'static str, String), BTreeMap<&'static str, u64>>,
    pub by_state: BTreeMap<&'static str, u64>,
}

/// The last census of the store and whether one is running.
#[derive(Debug)]
pub struct Census {
    store: Arc<dyn JobStore>,
    clock: Arc<dyn Clock>,
    state: Mutex<(Option<Count>, bool)>,
}

/// Jobs read per store call by a census.
const CENSUS_PAGE: usize = 1024;

impl Census {
    pub fn new(store: Arc<dyn JobStore>, clock: Arc<dyn Clock>) -> Arc<Census> {
        Arc::new(Census { store, clock, state: Mutex::new((None, false)) })
    }

    /// The last finished count; starts a new one in the background when the last is older
    /// than [`CENSUS_EVERY`] and none runs.
    pub fn request(self: &Arc<Self>) -> Option<Count> {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = self.clock.now();
        let stale = state.0.as_ref().is_none_or(|c| {
            let every = CENSUS_EVERY.max(c.took.checked_mul(CENSUS_SHARE).unwrap_or(CENSUS_EVERY));
            c.at.is_none_or(|at| now.duration_since(at) >= every)
        });
        if stale && !state.1 {
            state.1 = true;
            let census = self.clone();
            tokio::spawn(async move {
                let count = census.count().await;
                let mut state = census.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                match count {
                    Ok(count) => state.0 = Some(count),
                    Err(err) => tracing::warn!(%err, "dashboard: counting the stored jobs failed"),
                }
                state.1 = false;
            });
        }
        state.0.clone()
    }

    async fn count(&self) -> Result<Count, kairos_store::StoreError> {
        let started = self.clock.now();
        let mut count = Count::default();
        let mut after: Option<JobKey> = None;
        loop {
            let page = self.store.scan_all(after.as_ref(), CENSUS_PAGE).await?;
            let done = page.len() < CENSUS_PAGE;
            after = page.last().map(|j| j.key.clone());
            for job in &page {
                let state = status_of(job).state.as_str();
                let owner = match &job.key.owner {
                    Owner::App { app_id } => ("app", app_id.clone()),
                    Owner::Actor { actor_type, .. } => ("actor", actor_type.clone()),
                };
                *count
                    .by_owner
                    .entry((job.key.namespace.clone(), owner.0, owner.1))
                    .or_default()
                    .entry(state)
                    .or_default() += 1;
                *count.by_state.entry(state).or_default() += 1;
                count.total += 1;
            }
            if done {
                break;
            }
            // A census must not starve the requests it serves.
            tokio::task::yield_now().await;
        }
        let now = self.clock.now();
        count.at = Some(now);
        count.took = now.duration_since(started);
        Ok(count)
    }
}

/// The states in the order the overview lists them.
pub const STATES: [JobState; 5] =
    [JobState::Scheduled, JobState::Retrying, JobState::WaitingForApp, JobState::Paused, JobState::Finished];

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE kairos_triggers_total counter\n\
        kairos_triggers_total{result=\"success\"} 10\n\
        kairos_triggers_total{result=\"failed\"} 2\n\
        kairos_trigger_lateness_seconds_bucket{le=\"0.01\"} 8\n\
        kairos_trigger_lateness_seconds_bucket{le=\"0.1\"} 11\n\
        kairos_trigger_lateness_seconds_bucket{le=\"+Inf\"} 12\n";

    #[test]
    fn parses_trigger_counters_and_lateness_buckets() {
        let s = parse(TEXT);
        assert_eq!(s.triggers.get("success"), Some(&10.0));
        assert_eq!(s.triggers.get("failed"), Some(&2.0));
        assert_eq!(s.lateness, vec![(0.01, 8.0), (0.1, 11.0), (f64::INFINITY, 12.0)]);
    }

    #[test]
    fn rates_are_differences_of_samples() {
        let samples = Samples::default();
        let t0 = Timestamp::from_second(1_000).unwrap();
        samples.push(Sample::default(), t0);
        samples.push(parse(TEXT), t0 + SignedDuration::from_secs(10));
        let rates = samples.rates();
        assert_eq!(rates.over, SignedDuration::from_secs(10));
        assert_eq!(rates.per_second.get("success"), Some(&1.0));
        assert_eq!(rates.failures, 2.0);
        assert_eq!(rates.p50, Some(0.01));
        assert_eq!(rates.p99, Some(f64::INFINITY));
    }

    #[test]
    fn no_triggers_means_no_percentiles() {
        let samples = Samples::default();
        let t0 = Timestamp::from_second(1_000).unwrap();
        samples.push(parse(TEXT), t0);
        samples.push(parse(TEXT), t0 + SignedDuration::from_secs(5));
        let rates = samples.rates();
        assert_eq!(rates.p50, None);
        assert_eq!(rates.per_second.get("success"), Some(&0.0));
    }
}

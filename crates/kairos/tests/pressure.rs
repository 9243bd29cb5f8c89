//! The delivery path under pressure (issue 12), against real `kairos` processes on loopback:
//! bursts of 3,000 one-shot jobs due at one instant under `kairos run` with a fast, a slow and a
//! failing app; a larger burst through a separate `kairos scheduler` and `kairos sidecar`; and a
//! backlog of staged jobs (created while no sidecar of their app was connected) that an app then
//! comes for.
//!
//! The app is an HTTP server in this test process answering `POST /job/{name}`, counting the
//! deliveries of every job. Every wait has a deadline, so a stalled delivery path fails the test
//! instead of hanging it. Each test checks everything it can and then fails with the list of what
//! went wrong, and prints its figures (`--no-capture` shows them):
//!
//! ```text
//! cargo nextest run -p kairos --test pressure --no-capture
//! ```
//!
//! The tests are heavy (thousands of jobs on a 2-core machine), so they run one at a time: a
//! lock under `cargo test`, the `pressure` test group of `.config/nextest.toml` under nextest.
//! They run the `kairos` binary cargo built with them; `KAIROS_BIN=target/release/kairos` runs
//! them against a release build instead.

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::path::Path as FsPath;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use futures::StreamExt;
use kairos_core::{Clock, Stopwatch, SystemClock};
use kairos_proto::scheduler::scheduler_client::SchedulerClient;
use kairos_proto::scheduler::{
    Job, JobMetadata, JobTargetMetadata, ScheduleJobRequest, TargetJob, job_target_metadata,
};
use tonic::transport::Channel;

/// Attempts of one tick under the default failure policy (constant, 1 s × 3 retries): the first
/// and three retries (spec §7.5; Dapr's `failurepolicy/noset/allfail.go` expects exactly 4).
const DEFAULT_ATTEMPTS: u32 = 4;
/// The fixed seed of the failing app's coin.
const SEED: u64 = 0x6b61_6972_6f73_0012;
/// Duplicate deliveries allowed in the separate-process tests: 1 % of the jobs (issue 12).
const DUPLICATE_PERCENT: usize = 1;
/// Scheduler RSS growth allowed per staged job (issue 12).
const RSS_BYTES_PER_STAGED_JOB: u64 = 1024;

/// How long after the last expected delivery further (duplicate) deliveries are still counted.
const QUIET: Duration = Duration::from_secs(3);

/// The pressure tests run one at a time under `cargo test` (nextest: see the module doc).
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `test` on a runtime of its own, alone.
fn serial<F: Future<Output = ()>>(test: F) {
    let _alone = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(test);
}

// ---------------------------------------------------------------------------------------------
// The app

/// How the test app answers a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// 200 at once.
    Fast,
    /// 200 after 500 ms.
    Slow,
    /// 500 or 200 by a coin with a fixed seed, thrown per job and attempt ([`fails`]): about
    /// half the deliveries fail, and the outcome of every attempt is known beforehand.
    FailHalf,
}

/// The slow app's time per delivery.
const SLOW_DELIVERY: Duration = Duration::from_millis(500);

/// Whether the failing app answers attempt `attempt` (0-based, in arrival order) of job `name`
/// with a 500.
fn fails(name: &str, attempt: u32) -> bool {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = hash ^ SEED ^ u64::from(attempt).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    z & 1 == 1
}

/// What the app must see of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A success at attempt `n` (1-based) after `n - 1` failures.
    SuccessAt(u32),
    /// Every attempt of the default policy fails: exactly [`DEFAULT_ATTEMPTS`] deliveries, then
    /// the one-shot job is deleted (spec §7.5).
    Exhausted,
}

fn expect(behaviour: Behaviour, name: &str) -> Expect {
    if behaviour != Behaviour::FailHalf {
        return Expect::SuccessAt(1);
    }
    (0..DEFAULT_ATTEMPTS).find(|a| !fails(name, *a)).map_or(Expect::Exhausted, |a| Expect::SuccessAt(a + 1))
}

/// Deliveries of one job as the app saw them.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    deliveries: u32,
    successes: u32,
}

#[derive(Debug)]
struct TestApp {
    behaviour: Behaviour,
    tallies: Mutex<HashMap<String, Tally>>,
}

impl TestApp {
    /// Serves `POST /job/{name}` on a free loopback port.
    async fn serve(behaviour: Behaviour) -> (u16, Arc<TestApp>) {
        let app = Arc::new(TestApp { behaviour, tallies: Mutex::default() });
        kairos_testing::http::serve_jobs(on_job, app).await
    }

    fn snapshot(&self) -> HashMap<String, Tally> {
        self.tallies.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

async fn on_job(State(app): State<Arc<TestApp>>, Path(name): Path<String>) -> StatusCode {
    let attempt = {
        let mut tallies = app.tallies.lock().unwrap_or_else(PoisonError::into_inner);
        let tally = tallies.entry(name.clone()).or_default();
        tally.deliveries += 1;
        tally.deliveries - 1
    };
    match app.behaviour {
        Behaviour::Fast => {}
        Behaviour::Slow => tokio::time::sleep(SLOW_DELIVERY).await,
        Behaviour::FailHalf => {
            if fails(&name, attempt) {
                return StatusCode::INTERNAL_SERVER_ERROR;
            }
        }
    }
    let mut tallies = app.tallies.lock().unwrap_or_else(PoisonError::into_inner);
    tallies.entry(name).or_default().successes += 1;
    StatusCode::OK
}

/// What the app saw of a set of jobs.
#[derive(Debug, Default)]
struct Figures {
    jobs: usize,
    /// Jobs that got what they must get: a success, or (failing app) all their attempts.
    resolved: usize,
    /// Jobs with at least one successful delivery.
    succeeded: usize,
    /// Jobs whose every attempt failed, as expected.
    exhausted: usize,
    /// Deliveries of these jobs, all attempts.
    deliveries: u64,
    /// Deliveries beyond what each job needed (repeats after its success, or after its last
    /// expected attempt).
    duplicates: u64,
    /// Jobs delivered more often than they needed.
    duplicated_jobs: usize,
}

impl Figures {
    fn of(app: &TestApp, names: &[String]) -> Figures {
        let tallies = app.snapshot();
        let mut figures = Figures { jobs: names.len(), ..Figures::default() };
        for name in names {
            let tally = tallies.get(name).copied().unwrap_or_default();
            figures.deliveries += u64::from(tally.deliveries);
            if tally.successes > 0 {
                figures.succeeded += 1;
            }
            let needed = match expect(app.behaviour, name) {
                Expect::SuccessAt(n) => {
                    if tally.successes > 0 {
                        figures.resolved += 1;
                    }
                    n
                }
                Expect::Exhausted => {
                    if tally.deliveries >= DEFAULT_ATTEMPTS {
                        figures.resolved += 1;
                        figures.exhausted += 1;
                    }
                    DEFAULT_ATTEMPTS
                }
            };
            if tally.deliveries > needed {
                figures.duplicates += u64::from(tally.deliveries - needed);
                figures.duplicated_jobs += 1;
            }
        }
        figures
    }

    fn line(&self) -> String {
        format!(
            "{} of {} jobs resolved ({} succeeded, {} exhausted their retries), {} deliveries, {} duplicate deliveries over {} jobs",
            self.resolved,
            self.jobs,
            self.succeeded,
            self.exhausted,
            self.deliveries,
            self.duplicates,
            self.duplicated_jobs
        )
    }
}

/// Waits until every job of `names` is resolved (see [`Figures::resolved`]) and `settled` says
/// the scheduler is done with them too, or until `limit`; prints progress every 5 s. Returns
/// whether it got there and the seconds it took.
async fn wait_resolved<S, F>(
    label: &str,
    app: &TestApp,
    names: &[String],
    limit: Duration,
    mut settled: S,
) -> (bool, f64)
where
    S: FnMut() -> F,
    F: Future<Output = bool>,
{
    let watch = Stopwatch::start();
    let mut last_print = Duration::ZERO;
    loop {
        let figures = Figures::of(app, names);
        if figures.resolved == names.len() && settled().await {
            return (true, watch.elapsed().as_secs_f64());
        }
        if watch.elapsed() >= limit {
            eprintln!("[{label}] gave up after {limit:?}: {}", figures.line());
            return (false, watch.elapsed().as_secs_f64());
        }
        if watch.elapsed() - last_print >= Duration::from_secs(5) {
            last_print = watch.elapsed();
            eprintln!("[{label} {:>5.1} s] {}", watch.elapsed().as_secs_f64(), figures.line());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Time, names, creates, metrics

/// An RFC 3339 instant `ahead` from now (UTC, in milliseconds).
fn due_in(ahead: Duration) -> (jiff::Timestamp, String) {
    let ahead = jiff::SignedDuration::try_from(ahead).expect("short lead");
    let due = SystemClock.now().checked_add(ahead).expect("due time in range");
    let due = due.round(jiff::Unit::Millisecond).expect("due time in range");
    (due, due.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

/// Sleeps until `due` has passed by the wall clock.
async fn sleep_past(due: jiff::Timestamp) {
    let left = due.duration_since(SystemClock.now());
    if let Ok(left) = Duration::try_from(left) {
        tokio::time::sleep(left + Duration::from_millis(100)).await;
    }
}

fn names(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i:05}")).collect()
}

/// What a batch of creates did: when each one returned (sorted, from the start of the batch),
/// and the errors of those that failed.
#[derive(Debug, Default)]
struct Creates {
    done_at: Vec<Duration>,
    errors: Vec<String>,
    seconds: f64,
}

impl Creates {
    fn per_second(&self) -> f64 {
        rate(self.done_at.len(), self.seconds)
    }

    /// "created N of `total` jobs in S s (R/s), E errors".
    fn summary(&self, total: usize) -> String {
        let (n, errors) = (self.done_at.len(), self.errors.len());
        format!(
            "created {n} of {total} jobs in {:.1} s ({:.0}/s), {errors} errors",
            self.seconds,
            self.per_second()
        )
    }

    /// A failure in `failures` when any create of `what` failed.
    fn check_no_errors(&self, what: &str, failures: &mut Failures) {
        failures.check(self.errors.is_empty(), || {
            format!("{what}: {} creates failed, first: {}", self.errors.len(), self.errors[0])
        });
    }

    /// Creates per second over the first and the last tenth of the batch.
    fn first_and_last_tenth(&self) -> (f64, f64) {
        let n = self.done_at.len();
        let tenth = (n / 10).max(1);
        if n < 2 * tenth + 1 {
            return (0.0, 0.0);
        }
        let first = rate(tenth, self.done_at[tenth - 1].as_secs_f64());
        let last = rate(tenth, (self.done_at[n - 1] - self.done_at[n - 1 - tenth]).as_secs_f64());
        (first, last)
    }
}

#[allow(clippy::cast_precision_loss)]
fn rate(count: usize, seconds: f64) -> f64 {
    if seconds > 0.0 { count as f64 / seconds } else { f64::INFINITY }
}

/// Creates one-shot jobs `names` due at `due` through the sidecar's HTTP Jobs API, `concurrency`
/// calls at a time.
async fn create_over_http(sidecar_http: &str, names: &[String], due: &str, concurrency: usize) -> Creates {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("http client");
    let watch = Stopwatch::start();
    let results: Vec<(Duration, Result<(), String>)> = futures::stream::iter(names.iter().cloned())
        .map(|name| {
            let http = http.clone();
            let url = format!("http://{sidecar_http}/v1.0-alpha1/jobs/{name}");
            let body = serde_json::json!({"dueTime": due, "data": {"job": name}}).to_string();
            async move {
                let sent = http.post(url).header("content-type", "application/json").body(body).send().await;
                let result = match sent {
                    Ok(r) if r.status().as_u16() == 204 => Ok(()),
                    Ok(r) => {
                        let status = r.status();
                        Err(format!("{name}: {status} {}", r.text().await.unwrap_or_default()))
                    }
                    Err(err) => Err(format!("{name}: {err}")),
                };
                (watch.elapsed(), result)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    collect_creates(results, watch)
}

fn collect_creates(results: Vec<(Duration, Result<(), String>)>, watch: Stopwatch) -> Creates {
    let mut creates = Creates { seconds: watch.elapsed().as_secs_f64(), ..Creates::default() };
    for (at, result) in results {
        match result {
            Ok(()) => creates.done_at.push(at),
            Err(err) => creates.errors.push(err),
        }
    }
    creates.done_at.sort();
    creates
}

fn app_metadata(app_id: &str) -> JobMetadata {
    JobMetadata {
        app_id: app_id.into(),
        namespace: "default".into(),
        target: Some(JobTargetMetadata { r#type: Some(job_target_metadata::Type::Job(TargetJob {})) }),
        concurrency_key: None,
    }
}

/// A small payload, as a `google.protobuf.StringValue` (what the gRPC SDKs send).
fn payload(name: &str) -> prost_types::Any {
    let text = format!("{{\"job\":\"{name}\",\"note\":\"pressure test payload\"}}");
    let mut value = vec![0x0a, u8::try_from(text.len()).expect("short payload")];
    value.extend_from_slice(text.as_bytes());
    prost_types::Any { type_url: "type.googleapis.com/google.protobuf.StringValue".into(), value }
}

/// Creates one-shot jobs `names` of `app_id` due at `due` through the scheduler's gRPC
/// `ScheduleJob`, `concurrency` calls at a time (default failure policy).
async fn create_over_grpc(
    client: &SchedulerClient<Channel>,
    app_id: &str,
    names: &[String],
    due: &str,
    concurrency: usize,
) -> Creates {
    let watch = Stopwatch::start();
    let results: Vec<(Duration, Result<(), String>)> = futures::stream::iter(names.iter().cloned())
        .map(|name| {
            let mut client = client.clone();
            let request = ScheduleJobRequest {
                name: name.clone(),
                job: Some(Job {
                    due_time: Some(due.to_owned()),
                    data: Some(payload(&name)),
                    ..Default::default()
                }),
                metadata: Some(app_metadata(app_id)),
                overwrite: false,
            };
            async move {
                let result =
                    client.schedule_job(request).await.map(|_| ()).map_err(|s| format!("{name}: {s}"));
                (watch.elapsed(), result)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    collect_creates(results, watch)
}

/// A gauge (no labels) from a `/metrics` page at `address`; `None` when unreadable.
async fn gauge(address: &str, name: &str) -> Option<f64> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().ok()?;
    let text = http.get(format!("http://{address}/metrics")).send().await.ok()?.text().await.ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|value| value.trim().parse().ok())
}

/// Whether the scheduler behind `metrics` stores no job any more (one-shot jobs are deleted
/// once their tick succeeded or ran out of retries).
async fn store_empty(metrics: &str) -> bool {
    gauge(metrics, "kairos_jobs_stored").await == Some(0.0)
}

fn file_kib(path: &FsPath) -> u64 {
    std::fs::metadata(path).map(|m| m.len() / 1024).unwrap_or(0)
}

/// Collects what went wrong; the test fails with all of it at the end.
#[derive(Debug, Default)]
struct Failures(Vec<String>);

impl Failures {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            let what = what();
            eprintln!("FAILED: {what}");
            self.0.push(what);
        }
    }

    fn assert_none(self, test: &str) {
        assert!(self.0.is_empty(), "{test}:\n  {}", self.0.join("\n  "));
    }
}

// ---------------------------------------------------------------------------------------------
// 1. `kairos run`: 3,000 one-shot jobs due at one instant

/// Jobs of one burst under `kairos run` (issue 12: ≈ 1,800 were delivered, then nothing).
const RUN_BURST: usize = 3_000;
/// Jobs created after the bursts (issue 12: 7 of 311 were delivered after the stall).
const RUN_AFTER: usize = 100;
/// How far ahead a burst is due: creating 3,000 jobs through the sidecar takes ≈ 1 s in a debug
/// build here, and they must all be stored before the instant comes.
const RUN_DUE_AHEAD: Duration = Duration::from_secs(4);
/// How far ahead the jobs created after the bursts are due.
const AFTER_DUE_AHEAD: Duration = Duration::from_secs(2);
/// How long the jobs created after the bursts may take from their due time, failures and their
/// 3 s of retries included: 100 jobs are nothing once the path flows.
const AFTER_LIMIT: Duration = Duration::from_secs(30);

/// Bursts per `kairos run`, one after the other, each delivered in full before the next is
/// created.
///
/// Today's stall is a race between the scheduler's pump (which picks a new trigger three times
/// out of four when a result is also waiting, and stops reading results while its send waits)
/// and the 1,024 + 256 results the sidecar can hold: it strikes once about 1,800 triggers are
/// delivered with more still to send. A slow app's deliveries end in waves, so it strikes on
/// the first burst every time; with an app that answers at once it struck in 2 of 6 single
/// 3,000-job bursts here (always at 1,828 ± 1 delivered). Eight bursts leave today's code a
/// (2/3)^8 ≈ 4 % chance to slip through, and cost ≈ 6 s each once the path flows.
fn run_rounds(behaviour: Behaviour) -> usize {
    match behaviour {
        Behaviour::Slow => 1,
        Behaviour::Fast | Behaviour::FailHalf => 8,
    }
}

/// How long one burst may take from its due instant, per app:
///
/// * fast: a release build delivers ≈ 9,000–19,000 triggers/s here (docs/BENCHMARKS.md), a
///   debug build on two busy cores maybe 20× less (≈ 500/s): 3,000 in ≈ 6 s. 60 s is 10× that.
///   (Measured today when no stall strikes: 0.3–0.8 s.)
/// * slow: 3,000 × 0.5 s of app time over the sidecar's 256 deliveries in flight per stream
///   (`MAX_IN_FLIGHT`) is 5.9 s; even if flow control cut that to 32 at once it is
///   3,000 × 0.5 / 32 = 47 s. 90 s covers both with room.
/// * failing: like fast, plus up to 3 retries 1 s apart (3 s) per job, and ≈ 2× the deliveries
///   (half fail): 75 s. (Measured today when no stall strikes: 3.1 s.)
///
/// Today a stalled burst stays at ≈ 1,800 for minutes (issue 12), far beyond each bound.
fn run_burst_limit(behaviour: Behaviour) -> Duration {
    match behaviour {
        Behaviour::Fast => Duration::from_secs(60),
        Behaviour::Slow => Duration::from_secs(90),
        Behaviour::FailHalf => Duration::from_secs(75),
    }
}

async fn run_bursts(behaviour: Behaviour) {
    let label = format!("kairos run, {behaviour:?} app");
    let test_watch = Stopwatch::start();
    let mut failures = Failures::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let (app_port, app) = TestApp::serve(behaviour).await;
    let data_dir = dir.path().to_path_buf();
    let run = tokio::task::spawn_blocking(move || {
        common::start_run(
            "pressure-run",
            app_port,
            &data_dir,
            &["--app-protocol", "http", "--metrics-port", "0"],
        )
    })
    .await
    .expect("start kairos run");
    let metrics = run.metrics();

    let rounds = run_rounds(behaviour);
    let limit = run_burst_limit(behaviour);
    let mut all = Vec::new();
    let mut flowing = true;
    let mut burst_seconds = Vec::new();
    for round in 1..=rounds {
        let burst = names(&format!("burst{round}"), RUN_BURST);
        let (due, due_text) = due_in(RUN_DUE_AHEAD);
        let creates = create_over_http(&run.http, &burst, &due_text, 32).await;
        eprintln!("[{label}] burst {round}/{rounds}, due at {due_text}: {}", creates.summary(RUN_BURST));
        creates.check_no_errors(&format!("burst {round}"), &mut failures);
        warn_if_overran(&label, due, &creates);
        sleep_past(due).await;
        let (done, seconds) = wait_resolved(&label, &app, &burst, limit, || async { true }).await;
        let figures = Figures::of(&app, &burst);
        eprintln!(
            "[{label}] burst {round}/{rounds}: {} in {seconds:.1} s after the due instant (limit {limit:?})",
            figures.line()
        );
        all.extend(burst);
        burst_seconds.push(seconds);
        if !done {
            failures.check(false, || {
                format!(
                    "burst {round} of {rounds}: only {} of {RUN_BURST} jobs resolved within {limit:?} of their due time",
                    figures.resolved
                )
            });
            // A stalled path delivers no further burst either; what follows shows whether it
            // still delivers anything.
            flowing = false;
            break;
        }
    }

    // Jobs created after the bursts (whether or not they went through) must be delivered too.
    let after = names("after", RUN_AFTER);
    let (after_due, after_due_text) = due_in(AFTER_DUE_AHEAD);
    let after_creates = create_over_http(&run.http, &after, &after_due_text, 16).await;
    eprintln!("[{label}] after the bursts: {}", after_creates.summary(RUN_AFTER));
    after_creates.check_no_errors("after the bursts", &mut failures);
    sleep_past(after_due).await;
    let after_label = format!("{label}, after the bursts");
    let (after_done, after_seconds) =
        wait_resolved(&after_label, &app, &after, AFTER_LIMIT, || async { true }).await;
    let after_figures = Figures::of(&app, &after);
    eprintln!("[{label}] after the bursts: {} in {after_seconds:.1} s", after_figures.line());
    failures.check(after_done, || {
        format!(
            "after the bursts: only {} of {RUN_AFTER} jobs resolved within {AFTER_LIMIT:?}",
            after_figures.resolved
        )
    });

    // Once everything resolved, the one-shot jobs are gone from the store (succeeded, or out
    // of retries): the scheduler has taken in every result.
    if flowing && after_done {
        let (settled, settle_seconds) =
            wait_resolved(&label, &app, &[], Duration::from_secs(30), || store_empty(&metrics)).await;
        let left = gauge(&metrics, "kairos_jobs_stored").await;
        failures
            .check(settled, || format!("the store still holds {left:?} jobs 30 s after all were resolved"));
        eprintln!("[{label}] store empty {settle_seconds:.1} s after the last job resolved: {settled}");
    }
    tokio::time::sleep(QUIET).await;

    all.extend(after);
    let figures = Figures::of(&app, &all);
    if behaviour == Behaviour::FailHalf && flowing && after_done {
        check_exhausted_jobs(&label, &app, &run.http, &all, &mut failures).await;
    }
    let rounds_done = burst_seconds.len();
    eprintln!(
        "[{label}] FIGURES: {rounds_done} of {rounds} bursts of {RUN_BURST} ran, each resolved in {burst_seconds:.1?} s; with the {RUN_AFTER} later jobs: {}; {:.1} s in all",
        figures.line(),
        test_watch.elapsed().as_secs_f64()
    );
    failures.assert_none(&label);
    drop(run);
}

/// Says so when creating a burst took longer than its lead: the burst then came due while it
/// was still being created (a harder case, but not the one the test means).
fn warn_if_overran(label: &str, due: jiff::Timestamp, creates: &Creates) {
    if SystemClock.now() >= due {
        eprintln!(
            "[{label}] WARNING: the creates ({:.1} s) overran the due instant; the machine is slower than the lead assumes",
            creates.seconds
        );
    }
}

/// The jobs whose every attempt failed got exactly [`DEFAULT_ATTEMPTS`] deliveries and were
/// deleted afterwards (spec §7.5): GET answers daprd's "job not found" (a 500, spec §2.4).
async fn check_exhausted_jobs(
    label: &str,
    app: &TestApp,
    sidecar_http: &str,
    names: &[String],
    failures: &mut Failures,
) {
    let tallies = app.snapshot();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("http client");
    let exhausted: Vec<String> =
        names.iter().filter(|n| expect(Behaviour::FailHalf, n) == Expect::Exhausted).cloned().collect();
    let wrong_count: Vec<String> = exhausted
        .iter()
        .filter_map(|name| {
            let got = tallies.get(name).map_or(0, |t| t.deliveries);
            (got != DEFAULT_ATTEMPTS).then(|| format!("{name}: {got}"))
        })
        .collect();
    let still_stored: Vec<String> = futures::stream::iter(exhausted.iter().cloned())
        .map(|name| {
            let http = http.clone();
            let url = format!("http://{sidecar_http}/v1.0-alpha1/jobs/{name}");
            async move {
                match http.get(url).send().await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let body = r.text().await.unwrap_or_default();
                        (status != 500 || !body.contains("job not found"))
                            .then(|| format!("{name}: {status} {body}"))
                    }
                    Err(err) => Some(format!("{name}: {err}")),
                }
            }
        })
        .buffer_unordered(16)
        .filter_map(|x| async move { x })
        .collect()
        .await;
    eprintln!(
        "[{label}] {} jobs fail every attempt by the app's coin; {} of them delivered other than {DEFAULT_ATTEMPTS} times, {} still stored",
        exhausted.len(),
        wrong_count.len(),
        still_stored.len()
    );
    failures.check(wrong_count.is_empty(), || {
        format!(
            "{} jobs that fail every attempt were not delivered exactly {DEFAULT_ATTEMPTS} times (first: {:?})",
            wrong_count.len(),
            &wrong_count[..wrong_count.len().min(5)]
        )
    });
    failures.check(still_stored.is_empty(), || {
        format!(
            "{} jobs out of retries are still stored (first: {:?})",
            still_stored.len(),
            &still_stored[..still_stored.len().min(5)]
        )
    });
}

#[test]
fn kairos_run_delivers_bursts_of_3000_jobs_to_a_fast_app_and_jobs_created_after_them() {
    serial(run_bursts(Behaviour::Fast));
}

#[test]
fn kairos_run_delivers_a_burst_of_3000_jobs_to_a_slow_app_and_jobs_created_after_it() {
    serial(run_bursts(Behaviour::Slow));
}

#[test]
fn kairos_run_delivers_bursts_of_3000_jobs_to_an_app_failing_half_the_time_within_the_retries() {
    serial(run_bursts(Behaviour::FailHalf));
}

// ---------------------------------------------------------------------------------------------
// 2. Separate scheduler and sidecar: 20,000 jobs due at one instant

/// `kairos scheduler` on `data_dir` with free metrics and healthz ports and `extra` flags,
/// started on a blocking thread (the start waits for its ready line).
async fn scheduler_off_thread(data_dir: &std::path::Path, extra: &[&str]) -> common::Proc {
    let data_dir = data_dir.to_path_buf();
    let flags: Vec<String> =
        ["--metrics-port", "0", "--healthz-port", "0"].iter().chain(extra).map(|f| (*f).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        common::start_scheduler(&data_dir, &flags.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .expect("start the scheduler")
}

/// A sidecar `app_id` of the scheduler at `scheduler`, delivering over HTTP to the app on
/// `app_port`, started on a blocking thread.
async fn sidecar_off_thread(app_id: &'static str, scheduler: &str, app_port: u16) -> common::SidecarProc {
    let scheduler = scheduler.to_owned();
    tokio::task::spawn_blocking(move || {
        let flags = ["--app-port", &app_port.to_string(), "--app-protocol", "http", "--metrics-port", "0"];
        common::start_sidecar(app_id, &scheduler, &flags, &[])
    })
    .await
    .expect("start the sidecar")
}

/// Jobs of the separate-process burst (issue 12: 30,000 gave 102,371 deliveries).
///
/// Measured on today's code on a 2-core machine, this app got every job exactly once: 20,000
/// (debug and release builds), 30,000 (debug) and 60,000 (release) due at once, created over
/// gRPC or through the sidecar; over gRPC the h2 windows (2 MiB per stream towards the sidecar,
/// 1 MiB back) absorb what the pump leaves unread. So this test guards the new flow control
/// rather than reproducing the issue's duplicate storm.
const BIG_BURST: usize = 20_000;
/// How far ahead the big burst is due: 20,000 gRPC creates take ≈ 5 s in a debug build here.
const BIG_DUE_AHEAD: Duration = Duration::from_secs(15);
/// How long 20,000 deliveries to a fast app may take from the due instant (or, for staged jobs,
/// from the sidecar's start), the store emptied included: at ≈ 500 triggers/s (a debug build
/// on two busy cores, see [`run_burst_limit`]) it is 40 s; 120 s is 3× that.
const BIG_LIMIT: Duration = Duration::from_secs(120);

#[test]
fn a_separate_scheduler_and_sidecar_deliver_20000_jobs_due_at_once_with_at_most_1_percent_duplicates() {
    serial(async {
        let label = "separate processes, 20,000 due at once";
        let test_watch = Stopwatch::start();
        let mut failures = Failures::default();
        let dir = tempfile::tempdir().expect("tempdir");
        let scheduler = scheduler_off_thread(dir.path(), &[]).await;
        let metrics = scheduler.metrics();
        let (app_port, app) = TestApp::serve(Behaviour::Fast).await;
        let mut sidecar = sidecar_off_thread("pressure-big", &scheduler.address, app_port).await;
        let open = tokio::task::block_in_place(|| sidecar.wait_stream_open(Duration::from_secs(30)));
        if let Err(err) = open {
            panic!("the sidecar opened no job stream to the scheduler within 30 s: {err:#}");
        }

        let client = common::connect(&scheduler.address).await;
        let jobs = names("big", BIG_BURST);
        let (due, due_text) = due_in(BIG_DUE_AHEAD);
        let creates = create_over_grpc(&client, "pressure-big", &jobs, &due_text, 64).await;
        eprintln!("[{label}] due at {due_text}: {}", creates.summary(BIG_BURST));
        creates.check_no_errors("the burst", &mut failures);
        warn_if_overran(label, due, &creates);
        sleep_past(due).await;

        let (done, seconds) = wait_resolved(label, &app, &jobs, BIG_LIMIT, || store_empty(&metrics)).await;
        tokio::time::sleep(QUIET).await;
        let figures = Figures::of(&app, &jobs);
        let stored = gauge(&metrics, "kairos_jobs_stored").await;
        eprintln!(
            "[{label}] FIGURES: {}; {seconds:.1} s from the due instant; jobs still stored: {stored:?}; {:.1} s in all",
            figures.line(),
            test_watch.elapsed().as_secs_f64()
        );
        failures.check(done, || {
            format!(
                "only {} of {BIG_BURST} jobs delivered (and the store emptied: {stored:?} left) within {BIG_LIMIT:?}",
                figures.resolved
            )
        });
        check_duplicates(&figures, &mut failures);
        failures.assert_none(label);
        drop(sidecar);
        drop(scheduler);
    });
}

fn check_duplicates(figures: &Figures, failures: &mut Failures) {
    let allowed = figures.jobs * DUPLICATE_PERCENT / 100;
    failures.check(figures.duplicates <= allowed as u64, || {
        format!(
            "{} duplicate deliveries ({} jobs delivered more than once, up to {} times in all); at most {allowed} ({DUPLICATE_PERCENT} %) allowed",
            figures.duplicates, figures.duplicated_jobs, figures.deliveries
        )
    });
}

// ---------------------------------------------------------------------------------------------
// 3. 20,000 staged jobs, then the app

/// Jobs created while no sidecar of their app is connected, per batch (issue 12: 149,597
/// overdue jobs took 61 → 384 MB, ≈ 2.2 KB each; creates fell from 5,900/s to 650/s).
const STAGED: usize = 20_000;
/// Page cache of the staged test's store. The redb page cache fills up to the smaller of its
/// size (128 MiB by default) and the store file: with 20,000 jobs (≈ 16 MB on disk) it alone
/// grows RSS by ≈ 800 B per job, whether the jobs are staged, overdue or due in a year. What
/// this test measures is the memory the scheduler keeps per staged job (issue 12: ≈ 2.2 KB, all
/// of them loaded), so the cache is held small and fixed (`--store-cache-size`).
const STAGED_CACHE: &str = "8Mi";
/// The staged jobs of a batch are all due at one instant just after its creates start, so that
/// most of them are overdue (and staged) the moment they are stored, and the staged backlog
/// grows while the creates go on.
const STAGED_DUE_AHEAD: Duration = Duration::from_secs(1);
/// How long after the creates (and their due instant) the scheduler may take to have fired and
/// staged them all.
const STAGE_LIMIT: Duration = Duration::from_secs(60);

/// Creates one batch of `jobs` (due just after the creates start) and waits until `expect_staged`
/// jobs are staged in all. Returns the creates, and whether all were staged in time.
async fn stage_batch(
    label: &str,
    client: &SchedulerClient<Channel>,
    metrics: &str,
    app_id: &str,
    jobs: &[String],
    expect_staged: usize,
    failures: &mut Failures,
) -> Creates {
    let (due, due_text) = due_in(STAGED_DUE_AHEAD);
    let creates = create_over_grpc(client, app_id, jobs, &due_text, 64).await;
    let (first_rate, last_rate) = creates.first_and_last_tenth();
    eprintln!(
        "[{label}] due at {due_text}: {}; first tenth {first_rate:.0}/s, last tenth {last_rate:.0}/s",
        creates.summary(jobs.len())
    );
    creates.check_no_errors("the staged jobs", failures);
    // Every job overdue, fired and staged: none of them has anywhere to go.
    sleep_past(due).await;
    let watch = Stopwatch::start();
    let mut staged = None;
    while watch.elapsed() < STAGE_LIMIT {
        staged = gauge(metrics, "kairos_triggers_staged").await;
        if staged.is_some_and(|s| s >= expect_staged as f64) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("[{label}] staged: {staged:?} of {expect_staged} after {:.1} s", watch.elapsed().as_secs_f64());
    failures.check(staged.is_some_and(|s| s >= expect_staged as f64), || {
        format!("{STAGE_LIMIT:?} after the creates, {staged:?} of {expect_staged} jobs are reported staged")
    });
    // Whatever the engine does once they are staged, it has had time to do it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    creates
}

/// Two batches of 20,000 jobs fall due with no sidecar of their app: every one is staged. The
/// first batch shows what serving 20,000 creates and stagings costs a fresh scheduler (its
/// allocator grows to the busiest moment and keeps it); the second shows what *more* staged
/// jobs cost: with staged jobs kept in the store, RSS must not grow by more than 1 KB per job
/// (kept in memory, as before, each cost ≈ 2.2 KB). Creates must not slow down as the backlog
/// grows (the last tenth of the second batch at least half as fast as the first tenth of the
/// first). Then the app and its sidecar come: all 40,000 delivered, at most 1 % twice.
#[test]
fn twenty_thousand_staged_jobs_cost_little_memory_keep_creates_fast_and_all_reach_the_app_once() {
    serial(async {
        let label = "2 × 20,000 staged, then the app";
        let test_watch = Stopwatch::start();
        let mut failures = Failures::default();
        let dir = tempfile::tempdir().expect("tempdir");
        let scheduler = scheduler_off_thread(dir.path(), &["--store-cache-size", STAGED_CACHE]).await;
        let metrics = scheduler.metrics();
        let pid = scheduler.child.id();
        let client = common::connect(&scheduler.address).await;
        // Let start-up settle, and touch the metrics page once so that its cost is in the base.
        let _ = gauge(&metrics, "kairos_jobs_stored").await;
        tokio::time::sleep(Duration::from_secs(1)).await;

        let app_id = "pressure-staged";
        let rss_start = common::rss_kib(pid);
        let first = names("staged", STAGED);
        let first_creates =
            stage_batch(label, &client, &metrics, app_id, &first, STAGED, &mut failures).await;
        let rss_first = common::rss_kib(pid);
        let second = names("later", STAGED);
        let second_creates =
            stage_batch(label, &client, &metrics, app_id, &second, 2 * STAGED, &mut failures).await;
        let rss_second = common::rss_kib(pid);
        let store_kib = file_kib(&dir.path().join("jobs.redb"));
        let jobs: Vec<String> = first.into_iter().chain(second).collect();

        let first_growth = rss_first.saturating_sub(rss_start) * 1024;
        let growth_bytes = rss_second.saturating_sub(rss_first) * 1024;
        eprintln!(
            "[{label}] scheduler RSS {rss_start} KiB at start, {rss_first} KiB with the first batch staged ({:.0} B per job), {rss_second} KiB with both ({:.0} B per job of the second, allowed {RSS_BYTES_PER_STAGED_JOB}); jobs.redb {store_kib} KiB",
            first_growth as f64 / STAGED as f64,
            growth_bytes as f64 / STAGED as f64
        );
        failures.check(growth_bytes <= RSS_BYTES_PER_STAGED_JOB * STAGED as u64, || {
            format!(
                "scheduler RSS grew by {} KiB for {STAGED} more staged jobs: {:.0} B per job, more than {RSS_BYTES_PER_STAGED_JOB}",
                rss_second.saturating_sub(rss_first),
                growth_bytes as f64 / STAGED as f64
            )
        });
        let (first_rate, _) = first_creates.first_and_last_tenth();
        let (_, last_rate) = second_creates.first_and_last_tenth();
        failures.check(last_rate >= first_rate / 2.0, || {
            format!(
                "creates slowed down with the staged backlog: last tenth {last_rate:.0}/s < half of the first tenth {first_rate:.0}/s"
            )
        });
        let (rss_before, rss_after) = (rss_first, rss_second);

        // Now the app comes, with its sidecar.
        let (app_port, app) = TestApp::serve(Behaviour::Fast).await;
        let sidecar = sidecar_off_thread(app_id, &scheduler.address, app_port).await;
        let (done, seconds) = wait_resolved(label, &app, &jobs, BIG_LIMIT, || store_empty(&metrics)).await;
        tokio::time::sleep(QUIET).await;
        let figures = Figures::of(&app, &jobs);
        let stored = gauge(&metrics, "kairos_jobs_stored").await;
        let rss_end = common::rss_kib(pid);
        eprintln!(
            "[{label}] FIGURES: creates {first_rate:.0}/s first tenth of the first batch, {last_rate:.0}/s last tenth of the second; RSS {rss_start} KiB → {rss_before} KiB with 20,000 staged ({:.0} B per job) → {rss_after} KiB with 40,000 ({:.0} B per job of the second batch), {rss_end} KiB at the end; {}; {seconds:.1} s from the sidecar's start; jobs still stored: {stored:?}; {:.1} s in all",
            first_growth as f64 / STAGED as f64,
            growth_bytes as f64 / STAGED as f64,
            figures.line(),
            test_watch.elapsed().as_secs_f64()
        );
        failures.check(done, || {
            format!(
                "only {} of {} staged jobs delivered (and the store emptied: {stored:?} left) within {BIG_LIMIT:?} of the sidecar's start",
                figures.resolved,
                jobs.len()
            )
        });
        check_duplicates(&figures, &mut failures);
        failures.assert_none(label);
        drop(sidecar);
        drop(scheduler);
    });
}

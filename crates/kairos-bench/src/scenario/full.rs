//! The full-path scenarios: the kairos runtime (`kairos scheduler` + `kairos sidecar`
//! processes, or one `kairos run`: `--topology`) and the receiving app (in this process), as a
//! Dapr app sees kairos.
//!
//! * `create`: C clients schedule far-future one-shot jobs through the sidecar's gRPC API, then
//!   over its HTTP API.
//! * `burst`: N jobs all due at one instant; time until every one reached the app (and was
//!   acknowledged by its answer).
//! * `steady`: R jobs/s coming due for T s; delivered rate and lateness.
//! * `recovery`: `steady` with the scheduler killed (SIGKILL) part way and restarted on the same
//!   data dir and port: lost jobs, duplicates, catch-up time.
//!
//! Burst and steady jobs are created before the first one is due (through the sidecar, 64
//! clients), so creation does not compete with delivery; when creation overruns the first due
//! instant, the run is repeated on a fresh stack with a longer lead.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jiff::{SignedDuration, Timestamp};
use kairos_core::{Clock, SystemClock};
use serde_json::Value;

use super::{ATTEMPTS, BurstSize, lead_for, overrun, sized};
use crate::app::{self, Recorder};
use crate::cli::{PayloadArgs, SchedulerArgs};
use crate::clients::{self, JobSet};
use crate::drive::{self, CallArgs, Calls, Counted};
use crate::hist::Latencies;
use crate::load::FAR_DUE_TIME;
use crate::report::Report;
use crate::stack::{Runtime, Topology, kairos_bin};
use crate::timing::{self, mib, ms};

/// Headline figures of a scenario, by name, for `compare`.
pub type Headline = BTreeMap<&'static str, f64>;

/// Creation rate through the sidecar assumed when choosing the first due instant.
const ASSUMED_CREATES_PER_S: f64 = 4_000.0;
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Options of `create`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub scheduler: SchedulerArgs,
    #[command(flatten)]
    pub calls: CallArgs,
    /// Variants to run [default: grpc,http].
    #[arg(long, value_delimiter = ',')]
    pub apis: Option<Vec<Api>>,
    #[command(flatten)]
    pub payload: PayloadArgs,
}

/// The sidecar API a load uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    Grpc,
    Http,
}

/// Runs `create`.
///
/// # Errors
/// When the stack cannot start or every call fails.
pub async fn create(args: &CreateArgs, quick: bool) -> anyhow::Result<(Report, Headline)> {
    let kairos = kairos_bin(args.scheduler.kairos.as_deref())?;
    let calls = args.calls.resolve(20.0, quick);
    let Calls { clients, connections, duration } = calls;
    let payload_bytes = args.payload.bytes();
    let apis = args.apis.clone().unwrap_or_else(|| vec![Api::Grpc, Api::Http]);

    let topology = args.scheduler.topology.unwrap_or_default();
    let mut report = Report::new("create");
    report.param("topology", topology.as_str());
    report.param("path", topology.create_path());
    calls.params(&mut report);
    report.param("payload_bytes", payload_bytes as u64);
    report.param("due_time", FAR_DUE_TIME);
    let mut headline = Headline::new();
    let mut rows = Vec::new();
    let mut cpu_rows = Vec::new();
    for api in apis {
        let data = args.scheduler.temp_dir()?;
        let runtime = Runtime::start(&kairos, topology, data.path(), None, &args.scheduler, START_TIMEOUT)?;
        let jobs =
            JobSet { prefix: "create-".into(), due: Arc::new(|_| FAR_DUE_TIME.to_owned()), payload_bytes };
        let (name, calls) = match api {
            Api::Grpc => ("grpc", clients::sidecar_grpc(&runtime.grpc, clients, connections, &jobs).await?),
            Api::Http => ("http", clients::sidecar_http(&runtime.http, clients, &jobs)?),
        };
        eprintln!(
            "create: {clients} clients over the {name} API at {} ({})",
            runtime.grpc,
            topology.as_str()
        );
        let cpu_before = Cpu::now(&runtime)?;
        let result = drive::drive(calls, None, Some(duration), &format!("create {name}")).await?;
        let cpu_after = Cpu::now(&runtime)?;
        drop(runtime);
        if let Some(error) = &result.first_error {
            report.note(format!("{name}: {} calls failed; first: {error}", result.errors));
        }
        if result.ok == 0 {
            bail!("create over {name}: no call succeeded ({:?})", result.first_error);
        }
        let s = result.latencies.summary();
        if api == Api::Grpc {
            headline.insert("create_per_s", result.rate());
            headline.insert("create_p99_ms", s.p99_ms);
        } else {
            headline.insert("create_http_per_s", result.rate());
            headline.insert("create_http_p99_ms", s.p99_ms);
        }
        rows.push(result.row([Value::from(name)]));
        let mut row = vec![Value::from(name)];
        row.extend(cpu_after.per_op_us(&cpu_before, result.ok).into_iter().map(Value::from));
        cpu_rows.push(row);
    }
    let table = report.table(
        "durable creates through the sidecar (ScheduleJob / POST /v1.0/jobs answered OK)",
        &drive::columns(&["api"], Counted::Jobs),
    );
    for row in rows {
        table.row(row);
    }
    let mut columns = vec!["api"];
    columns.extend(Cpu::columns(topology, "client_us"));
    let table = report.table("CPU time per created job (user + system, from /proc)", &columns);
    for row in cpu_rows {
        table.row(row);
    }
    report.note(
        "total_us is the CPU one create costs on this machine: cores / total_us bounds the create rate",
    );
    report.finish();
    Ok((report, headline))
}

/// CPU used so far by each runtime process, then by this one (clients or app).
struct Cpu(Vec<Duration>);

impl Cpu {
    fn now(runtime: &Runtime) -> anyhow::Result<Cpu> {
        let mut used = runtime.cpu()?;
        used.push(kairos_testing::process::cpu_time("/proc/self/stat")?);
        Ok(Cpu(used))
    }

    /// The columns of [`Cpu::per_op_us`]: one per runtime process, `this` (this process), total.
    fn columns(topology: Topology, this: &'static str) -> Vec<&'static str> {
        let mut columns = match topology {
            Topology::Split => vec!["scheduler_us", "sidecar_us"],
            Topology::Embedded => vec!["run_us"],
        };
        columns.extend([this, "total_us"]);
        columns
    }

    /// Microseconds of CPU per operation since `before`, per process, then their total.
    fn per_op_us(&self, before: &Cpu, ops: u64) -> Vec<f64> {
        super::cpu_per_op_us(&self.0, &before.0, ops)
    }
}

/// Options of `burst`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BurstArgs {
    #[command(flatten)]
    pub scheduler: SchedulerArgs,
    #[command(flatten)]
    pub burst: BurstSize,
}

/// Options of `steady` and `recovery`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SteadyArgs {
    #[command(flatten)]
    pub scheduler: SchedulerArgs,
    /// Jobs coming due per second [default: 10000; --quick: 2000; recovery: 5000 / 1000].
    #[arg(long)]
    pub rate: Option<u64>,
    /// Seconds during which jobs come due [default: 20; --quick: 5; recovery --quick: 6].
    #[arg(long, value_name = "SECS")]
    pub secs: Option<f64>,
    /// Seconds from the start of creation to the first due instant [default: sized from the
    /// job count].
    #[arg(long, value_name = "SECS")]
    pub lead: Option<f64>,
    /// recovery: seconds after the first due instant at which the scheduler is killed
    /// [default: a third of --secs].
    #[arg(long, value_name = "SECS")]
    pub kill_after: Option<f64>,
}

/// A stack for delivery runs: the runtime with its job stream open, the recording app.
struct Stack {
    runtime: Runtime,
    _app: app::AppServer,
    recorder: Arc<Recorder>,
    data_path: std::path::PathBuf,
    _data: tempfile::TempDir,
}

async fn stack(args: &SchedulerArgs, prefix: &str, jobs: u64) -> anyhow::Result<Stack> {
    let kairos = kairos_bin(args.kairos.as_deref())?;
    let data = args.temp_dir()?;
    let recorder = Recorder::new(prefix, jobs, timing::now());
    let app = app::serve(0, Some(recorder.clone())).await?;
    let topology = args.topology.unwrap_or_default();
    let mut runtime =
        Runtime::start(&kairos, topology, data.path(), Some(app.address.port()), args, START_TIMEOUT)?;
    runtime.wait_stream(START_TIMEOUT)?;
    Ok(Stack { data_path: data.path().to_path_buf(), _data: data, runtime, _app: app, recorder })
}

/// Wall and monotonic "now" taken together, to map due instants onto the clock the
/// measurements use.
#[derive(Clone, Copy)]
pub(super) struct Epoch {
    wall: Timestamp,
    pub(super) mono: Instant,
}

impl Epoch {
    pub(super) fn now() -> Epoch {
        Epoch { wall: SystemClock.now(), mono: timing::now() }
    }

    fn wall_at(self, offset: Duration) -> Timestamp {
        self.wall
            .saturating_add(SignedDuration::try_from(offset).unwrap_or(SignedDuration::MAX))
            .unwrap_or(self.wall)
    }
}

/// Creates `count` jobs whose due time is `offset(i)` after `epoch`, through the gRPC Jobs API
/// of the sidecar at `grpc` (64 clients on one connection).
pub(super) async fn create_due(
    grpc: &str,
    prefix: &str,
    count: u64,
    epoch: Epoch,
    offset: Arc<dyn Fn(u64) -> Duration + Send + Sync>,
) -> anyhow::Result<Duration> {
    let due = Arc::new(move |i: u64| epoch.wall_at(offset(i)).to_string());
    let jobs = JobSet { prefix: prefix.into(), due, payload_bytes: 64 };
    let calls = clients::sidecar_grpc(grpc, 64, 1, &jobs).await?;
    let result = drive::drive(calls, Some(count), None, "create").await?;
    if result.ok != count {
        bail!(
            "only {} of {count} jobs were created; first error: {}",
            result.ok,
            result.first_error.as_deref().unwrap_or("none")
        );
    }
    Ok(result.elapsed)
}

/// Lateness (arrival - due) of every arrived job, and how many arrived before their due time.
pub(super) fn lateness(
    recorder: &Recorder,
    due: impl Fn(u64) -> Instant,
) -> anyhow::Result<(Latencies, u64)> {
    let mut hist = Latencies::new()?;
    let mut early = 0;
    for i in 0..recorder.capacity() {
        if let Some(at) = recorder.arrival(i) {
            let due = due(i);
            if at < due {
                early += 1;
            }
            hist.record(at.saturating_duration_since(due));
        }
    }
    Ok((hist, early))
}

/// What reached the app of a burst of jobs all due at `due_at`: the columns every burst table
/// shows.
pub(super) struct Arrivals {
    pub(super) delivered: u64,
    duplicates: u64,
    early: u64,
    /// First and last arrival after the due instant.
    first: Option<Duration>,
    span: Duration,
    late: crate::hist::Summary,
}

impl Arrivals {
    /// The names of [`Arrivals::cells`].
    pub(super) const COLUMNS: [&'static str; 8] = [
        "delivered",
        "duplicates",
        "early",
        "first_ms",
        "last_s",
        "triggers_per_s",
        "late_p50_ms",
        "late_p99_ms",
    ];

    /// The arrivals `recorder` saw, timed from `due_at`.
    ///
    /// # Errors
    /// When the lateness histogram cannot be built.
    pub(super) fn of(recorder: &Recorder, due_at: Instant) -> anyhow::Result<Arrivals> {
        let (hist, early) = lateness(recorder, |_| due_at)?;
        let arrivals = || (0..recorder.capacity()).filter_map(|i| recorder.arrival(i));
        Ok(Arrivals {
            delivered: recorder.received(),
            duplicates: recorder.duplicates(),
            early,
            first: arrivals().min().map(|f| f.saturating_duration_since(due_at)),
            span: arrivals().max().map(|l| l.saturating_duration_since(due_at)).unwrap_or_default(),
            late: hist.summary(),
        })
    }

    /// Deliveries per second from the due instant to the last arrival.
    pub(super) fn rate(&self) -> f64 {
        timing::rate(self.delivered, self.span)
    }

    /// One cell per name of [`Arrivals::COLUMNS`].
    pub(super) fn cells(&self) -> Vec<Value> {
        vec![
            self.delivered.into(),
            self.duplicates.into(),
            self.early.into(),
            self.first.map_or(Value::from("-"), |f| ms(f).into()),
            self.span.as_secs_f64().into(),
            self.rate().into(),
            self.late.p50_ms.into(),
            self.late.p99_ms.into(),
        ]
    }
}

/// Runs `burst`.
///
/// # Errors
/// When the stack cannot start, creation fails or overruns the due instant every time.
pub async fn burst(args: &BurstArgs, quick: bool) -> anyhow::Result<(Report, Headline)> {
    let (jobs, mut lead, timeout) = args.burst.resolve(ASSUMED_CREATES_PER_S, 120.0, quick);
    let topology = args.scheduler.topology.unwrap_or_default();
    let mut report = Report::new("burst");
    report.param("topology", topology.as_str());
    report.param("path", topology.delivery_path());
    report.param("jobs", jobs);

    for attempt in 1..=ATTEMPTS {
        let s = stack(&args.scheduler, "burst-", jobs).await?;
        let epoch = Epoch::now();
        let due_offset = Duration::from_millis((lead * 1000.0).ceil() as u64);
        let due_at = epoch.mono + due_offset;
        eprintln!("burst: creating {jobs} jobs due {lead:.1} s from now");
        let created =
            create_due(&s.runtime.grpc, "burst-", jobs, epoch, Arc::new(move |_| due_offset)).await?;
        let create_end = timing::now();
        if create_end >= due_at {
            lead = overrun("burst", jobs, created, attempt)?;
            continue;
        }
        let slack = due_at - create_end;
        let cpu_before = Cpu::now(&s.runtime)?;
        let all = s.recorder.wait_for(jobs, slack + timeout, "burst").await;
        let cpu_us = Cpu::now(&s.runtime)?.per_op_us(&cpu_before, jobs);
        // Let redeliveries, if any, show up before counting duplicates.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let arrived = Arrivals::of(&s.recorder, due_at)?;
        if s.recorder.foreign() > 0 {
            report.note(format!("{} deliveries of jobs not created by this run", s.recorder.foreign()));
        }
        let rss = s.runtime.scheduler_proc().rss().unwrap_or(0);
        // Split: the sidecar's; embedded: the one process's, as sched_rss_mib.
        let sidecar_rss = s.runtime.scheduler.is_some().then(|| s.runtime.front.rss().unwrap_or(0));
        drop(s);
        if !all {
            report.note(format!(
                "only {} of {jobs} jobs arrived within {timeout:?} of the due instant",
                arrived.delivered
            ));
        }
        let mut columns = vec!["jobs", "create_s", "slack_s"];
        columns.extend(Arrivals::COLUMNS);
        columns.extend(["sched_rss_mib", "sidecar_rss_mib"]);
        let table =
            report.table("one burst: N jobs due at one instant (times from the due instant)", &columns);
        let mut row = vec![jobs.into(), created.as_secs_f64().into(), slack.as_secs_f64().into()];
        row.extend(arrived.cells());
        row.extend([mib(rss).into(), sidecar_rss.map_or(Value::from("-"), |r| mib(r).into())]);
        table.row(row);
        report.note(
            "last_s = last arrival at the app minus the due instant; triggers_per_s = delivered / last_s",
        );
        report.note("the app acknowledges each job by answering OnJobEvent OK at once");
        let t = report.table(
            "CPU time per delivered trigger (user + system, from /proc)",
            &Cpu::columns(topology, "app_us"),
        );
        t.row(cpu_us.into_iter().map(Value::from).collect());
        report.note("app_us is this process (the receiving app and its 2 ms progress poll)");
        report.finish();
        let mut headline = Headline::new();
        headline.insert("burst_s", arrived.span.as_secs_f64());
        headline.insert("burst_per_s", arrived.rate());
        headline.insert("burst_lost", (jobs - arrived.delivered) as f64);
        return Ok((report, headline));
    }
    unreachable_attempts()
}

fn unreachable_attempts<T>() -> anyhow::Result<T> {
    bail!("no attempt ran")
}

/// Runs `steady` (`kill` false) or `recovery` (`kill` true).
///
/// # Errors
/// When the stack cannot start, creation fails or overruns every time, or the restart fails.
pub async fn steady(args: &SteadyArgs, quick: bool, kill: bool) -> anyhow::Result<(Report, Headline)> {
    let rate =
        if kill { sized(args.rate, 5_000, 1_000, quick) } else { sized(args.rate, 10_000, 2_000, quick) };
    let secs = if kill { sized(args.secs, 20.0, 6.0, quick) } else { sized(args.secs, 20.0, 5.0, quick) };
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let jobs = (rate as f64 * secs).round() as u64;
    let kill_after = args.kill_after.unwrap_or(secs / 3.0);
    let name = if kill { "recovery" } else { "steady" };
    let prefix = format!("{name}-");
    let kairos = kairos_bin(args.scheduler.kairos.as_deref())?;
    let mut lead = lead_for(jobs, args.lead, ASSUMED_CREATES_PER_S);
    let topology = args.scheduler.topology.unwrap_or_default();
    let mut report = Report::new(name);
    report.param("topology", topology.as_str());
    report.param("path", topology.delivery_path());
    report.param("rate_per_s", rate);
    report.param("secs", secs);
    report.param("jobs", jobs);
    if kill {
        report.param("kill9_after_s", kill_after);
    }

    for attempt in 1..=ATTEMPTS {
        let mut s = stack(&args.scheduler, &prefix, jobs).await?;
        let epoch = Epoch::now();
        let lead_d = Duration::from_millis((lead * 1000.0).ceil() as u64);
        let nanos_per_job = 1_000_000_000 / rate.max(1);
        let offset = Arc::new(move |i: u64| lead_d + Duration::from_nanos(i * nanos_per_job));
        let due_mono = {
            let offset = offset.clone();
            move |i: u64| epoch.mono + offset(i)
        };
        let t0 = epoch.mono + lead_d;
        eprintln!("{name}: creating {jobs} jobs coming due at {rate}/s for {secs} s, {lead:.1} s from now");
        let created = create_due(&s.runtime.grpc, &prefix, jobs, epoch, offset.clone()).await?;
        let create_end = timing::now();
        if create_end >= t0 {
            lead = overrun(name, jobs, created, attempt)?;
            continue;
        }
        let end = t0 + Duration::from_secs_f64(secs);
        let mut restart: Option<(Instant, Instant, Instant)> = None;
        if kill {
            let kill_at = t0 + Duration::from_secs_f64(kill_after);
            tokio::time::sleep_until(kill_at.into()).await;
            let killed = timing::now();
            s.runtime.kill_scheduler();
            eprintln!(
                "{name}: scheduler killed (SIGKILL) with {} jobs delivered; restarting",
                s.recorder.received()
            );
            let (spawned, listening) = s
                .runtime
                .restart_scheduler(&kairos, &s.data_path, &args.scheduler, START_TIMEOUT)
                .context("the scheduler did not restart")?;
            restart = Some((killed, spawned, listening));
        }
        let timeout = (end - timing::now().min(end)) + Duration::from_secs(60);
        let all = s.recorder.wait_for(jobs, timeout, name).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let received = s.recorder.received();
        let duplicates = s.recorder.duplicates();
        let (hist, early) = lateness(&s.recorder, &due_mono)?;
        let last = (0..jobs).filter_map(|i| s.recorder.arrival(i)).max();
        let rss = s.runtime.scheduler_proc().rss().unwrap_or(0);
        let recorder = s.recorder.clone();
        drop(s);
        if !all {
            report
                .note(format!("only {received} of {jobs} jobs arrived within 60 s of the last due instant"));
        }
        let span = last.map(|l| l.saturating_duration_since(t0)).unwrap_or_default();
        let delivered_rate = timing::rate(received, span);
        let l = hist.summary();
        let mut headline = Headline::new();
        let table = report.table(
            format!("{rate} jobs/s due for {secs} s (lateness = app receive time - due time)"),
            &[
                "jobs",
                "create_s",
                "delivered",
                "lost",
                "duplicates",
                "early",
                "delivered_per_s",
                "late_p50_ms",
                "late_p99_ms",
                "late_max_ms",
                "sched_rss_mib",
            ],
        );
        table.row(vec![
            jobs.into(),
            created.as_secs_f64().into(),
            received.into(),
            (jobs - received).into(),
            duplicates.into(),
            early.into(),
            delivered_rate.into(),
            l.p50_ms.into(),
            l.p99_ms.into(),
            l.max_ms.into(),
            mib(rss).into(),
        ]);
        report.note("delivered_per_s = delivered / (last arrival - first due instant)");
        if let Some((killed, spawned, listening)) = restart {
            // Catch-up: until every job due before the new process listened has arrived.
            let behind: Vec<u64> = (0..jobs).filter(|&i| due_mono(i) <= listening).collect();
            let caught_up = behind.iter().filter_map(|&i| recorder.arrival(i)).max();
            let missing_behind = behind.iter().filter(|&&i| recorder.arrival(i).is_none()).count();
            let t = report.metric_table("kill -9 and restart");
            t.metric("acknowledged jobs lost", jobs - received, "jobs");
            t.metric("duplicate deliveries", duplicates, "deliveries");
            t.metric("kill to restarted scheduler listening", ms(listening - killed), "ms");
            t.metric("restart spawn to listening", ms(listening - spawned), "ms");
            t.metric("jobs due before it listened", behind.len() as u64, "jobs");
            let catch_up = caught_up.map(|c| c.saturating_duration_since(listening));
            t.metric(
                "catch-up (listening to last of those delivered)",
                catch_up.map_or(Value::from("-"), |c| ms(c).into()),
                "ms",
            );
            if missing_behind > 0 {
                report.note(format!("{missing_behind} jobs due before the restart never arrived"));
            }
            headline.insert("recovery_lost", (jobs - received) as f64);
            headline.insert("recovery_duplicates", duplicates as f64);
            headline.insert("recovery_catch_up_ms", catch_up.map_or(f64::NAN, ms));
            report
                .note("every created job was acknowledged (ScheduleJob OK) before the kill: lost must be 0");
        } else {
            headline.insert("steady_per_s", delivered_rate);
            headline.insert("steady_p50_ms", l.p50_ms);
            headline.insert("steady_p99_ms", l.p99_ms);
            headline.insert("steady_max_ms", l.max_ms);
            headline.insert("steady_lost", (jobs - received) as f64);
        }
        report.finish();
        return Ok((report, headline));
    }
    unreachable_attempts()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_counts_early_arrivals_and_skips_missing_ones() {
        let base = timing::now();
        let recorder = Recorder::new("t-", 3, base);
        recorder.record(&app::job_name("t-", 0));
        recorder.record(&app::job_name("t-", 1));
        // Job 0 was due 10 s ago (late), job 1 is due in 10 s (early), job 2 never came.
        let ten_s = Duration::from_secs(10);
        let due = |i: u64| if i == 0 { base.checked_sub(ten_s).unwrap_or(base) } else { base + ten_s };
        let (hist, early) = lateness(&recorder, due).unwrap();
        assert_eq!(early, 1);
        let s = hist.summary();
        assert!(s.max_ms >= 9_900.0, "{s:?}");
    }
}

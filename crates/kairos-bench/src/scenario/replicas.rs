//! `replicas`: durable creates on 3 `kairos scheduler` replicas sharing one etcd member, as a
//! fraction of what that etcd can write at all.
//!
//! One Debian etcd member on loopback (`kairos_testing::etcd`). First the replicas start on it
//! (`--etcd-endpoints`, ready by their ready line) and one probe job is created, to learn the
//! size of a stored job record. Then etcd's own ceiling: C concurrent client tasks over 3
//! connections put values of that size under unique keys (each put durable, as etcd answers
//! only after its fsync) for D seconds. Then the same C tasks, spread evenly over the 3
//! replicas, create far-future one-shot jobs with unique names through ScheduleJob (the
//! `scheduler-create` load) for D seconds. The report gives both rates, their latency
//! quantiles, and creates/s as a fraction of etcd's puts/s; then the CPU (user + system, from
//! `/proc`) each operation cost etcd, the replicas together and this process (the clients).
//!
//! Last, triggers: one `kairos sidecar` with a job stream to every replica
//! (`--scheduler-host-address` naming all three) delivers to the receiving app in this process
//! (gRPC, acknowledging at once). N one-shot jobs all due at one instant are created through the
//! sidecar (64 clients), each replica fires the share of the partitions it owns, and the report
//! gives the time from the due instant to the last arrival, triggers/s, duplicates, jobs never
//! delivered, and the CPU each trigger cost etcd, the replicas, the sidecar and the app. A
//! trigger is settled (its one-shot job deleted from etcd) after the app's answer, so this
//! includes etcd's writes for every settlement. With `--kill-replica-after S` the first replica
//! is killed (SIGKILL) S seconds after the due instant, so the burst also measures a failover:
//! its partitions fire on the others once its lease ends.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::Signal;
use serde_json::Value;

use super::full::{Arrivals, Epoch, create_due};
use super::{ATTEMPTS, MIN_LEAD_S, overrun, sized};
use crate::app::{self, Recorder};
use crate::cli::{PayloadArgs, SchedulerArgs};
use crate::drive::{self, Call, Driven};
use crate::hist::Latencies;
use crate::load::{self, LoadConfig};
use crate::process::find_kairos;
use crate::report::Report;
use crate::stack::{Proc, Scheduler, Sidecar};
use crate::timing;

/// Replicas started on the one etcd member.
const REPLICAS: usize = 3;

/// The key prefix the replicas use (`kairos scheduler`'s default).
const JOBS_PREFIX: &str = "/kairos/jobs/";

/// Options of `replicas`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    /// The `kairos` binary (`--kairos PATH`, e.g. an older build for a before/after), partitions,
    /// work dir.
    #[command(flatten)]
    pub scheduler: SchedulerArgs,
    /// Concurrent client tasks, one call in flight each, for both etcd's puts and the creates
    /// (spread evenly over the replicas) [default: 96].
    #[arg(long)]
    pub clients: Option<usize>,
    /// HTTP/2 connections to each replica [default: 2].
    #[arg(long)]
    pub channels: Option<usize>,
    /// Seconds each of the two measurements lasts [default: 15; --quick: 4].
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    #[command(flatten)]
    pub payload: PayloadArgs,
    /// One-shot jobs of the trigger burst, all due at one instant [default: 20000; --quick:
    /// 3000]; 0 skips it.
    #[arg(long)]
    pub burst_jobs: Option<u64>,
    /// SIGKILL the first replica this many seconds after the burst's due instant: its
    /// partitions then fire on the other two once its lease ends (`--lease-ttl`, 5 s by default).
    /// Jobs never delivered must stay 0; duplicates are the deliveries it had not settled.
    #[arg(long, value_name = "SECS")]
    pub kill_replica_after: Option<f64>,
}

/// How long the trigger burst may take after its due instant.
const BURST_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs the scenario.
///
/// # Errors
/// When etcd or a replica cannot start, or the probe job cannot be created.
pub async fn run(args: &Args, quick: bool) -> anyhow::Result<Report> {
    let clients = args.clients.unwrap_or(96).max(REPLICAS);
    let channels = args.channels.unwrap_or(2).max(1);
    let duration = Duration::from_secs_f64(sized(args.duration, 15.0, 4.0, quick));
    let payload_bytes = args.payload.bytes();
    let kairos = find_kairos(args.scheduler.kairos.as_deref())?;

    let etcd = kairos_testing::etcd::EtcdProcess::start().await.context("cannot start etcd")?;
    let endpoints = etcd.endpoints().join(",");
    let mut dirs = Vec::new();
    let mut replicas = Vec::new();
    for r in 0..REPLICAS {
        let dir = args.scheduler.temp_dir()?;
        let mut flags =
            vec!["--etcd-endpoints".into(), endpoints.clone(), "--replica-id".into(), format!("bench-{r}")];
        flags.extend(args.scheduler.extra_flags());
        replicas.push(Scheduler::start(&kairos, dir.path(), 0, &flags, Duration::from_secs(30))?);
        dirs.push(dir);
    }
    let addresses: Vec<String> = replicas.iter().map(|r| r.address.clone()).collect();
    eprintln!("replicas: etcd at {endpoints}, {REPLICAS} replicas at {}", addresses.join(", "));

    let mut report = Report::new("replicas");
    report.param("kairos", kairos.display().to_string());
    report.param("replicas", REPLICAS as u64);
    report.param("clients", clients as u64);
    report.param("channels_per_replica", channels as u64);
    report.param("duration_s", duration.as_secs_f64());
    report.param("payload_bytes", payload_bytes as u64);

    let creates = |label: &'static str, jobs: Option<u64>, duration: Option<Duration>| {
        create_on_replicas(&addresses, clients, channels, jobs, duration, payload_bytes, label)
    };
    // The probe: a job stored by a replica gives the record size etcd's puts use.
    let probe = creates("probe", Some(REPLICAS as u64), None).await?;
    if let Some(error) = probe.first_error {
        anyhow::bail!("the probe creates failed ({} of {REPLICAS}): {error}", probe.errors);
    }
    let mut client = etcd.client().await.context("cannot connect to etcd")?;
    let stored = client
        .get(JOBS_PREFIX, Some(etcd_client::GetOptions::new().with_prefix().with_limit(1)))
        .await
        .context("cannot read the probe job from etcd")?;
    let record = stored.kvs().first().context("the probe job is not in etcd")?;
    let (key_bytes, value_bytes) = (record.key().len(), record.value().len());
    report.param("record_bytes", value_bytes as u64);

    let etcd_pid = etcd.pid().context("etcd is not running")?;
    let cpu = || Cpu::now(etcd_pid, &replicas, None);
    eprintln!("replicas: etcd put ceiling, {clients} clients, {value_bytes}-byte values");
    let before = cpu()?;
    let puts = etcd_puts(&etcd, clients, duration, key_bytes, value_bytes).await?;
    let puts_cpu = cpu()?.per_op_us(&before, puts.ok);
    eprintln!("replicas: creates over {REPLICAS} replicas, {clients} clients");
    let before = cpu()?;
    let created = creates("create", None, Some(duration)).await?;
    let creates_cpu = cpu()?.per_op_us(&before, created.ok);

    for (what, driven) in [("etcd put", &puts), ("create", &created)] {
        if let Some(error) = &driven.first_error {
            report.note(format!("{what}: {} calls failed; first: {error}", driven.errors));
        }
    }
    let fraction = created.rate() / puts.rate().max(f64::MIN_POSITIVE);
    let table = report.table(
        "etcd's durable put ceiling vs durable creates on 3 replicas",
        &["what", "ops", "errors", "secs", "ops_per_s", "p50_ms", "p99_ms", "max_ms", "of_ceiling"],
    );
    for (what, driven, of) in [("etcd put", &puts, 1.0), ("replica create", &created, fraction)] {
        let s = driven.latencies.summary();
        table.row(vec![
            Value::from(what),
            Value::from(driven.ok),
            Value::from(driven.errors),
            Value::from(driven.elapsed.as_secs_f64()),
            Value::from(driven.rate()),
            Value::from(s.p50_ms),
            Value::from(s.p99_ms),
            Value::from(s.max_ms),
            Value::from(of),
        ]);
    }
    let table = report.table(
        "CPU time per operation (user + system, from /proc)",
        &["what", "etcd_us", "replicas_us", "client_us", "total_us"],
    );
    for (what, us) in [("etcd put", puts_cpu), ("replica create", creates_cpu)] {
        let mut row = vec![Value::from(what)];
        row.extend(us.into_iter().map(Value::from));
        table.row(row);
    }
    report.note("replicas_us adds up the 3 replicas; total_us is what one operation costs this machine");
    let burst_jobs = sized(args.burst_jobs, 20_000, 3_000, quick);
    if burst_jobs > 0 {
        let lead = MIN_LEAD_S + burst_jobs as f64 / (created.rate() / 2.0).max(500.0);
        let kill_after = args.kill_replica_after.map(Duration::from_secs_f64);
        if let Some(after) = kill_after {
            report.param("kill9_replica_after_s", after.as_secs_f64());
        }
        let burst = Burst {
            kairos: &kairos,
            addresses: &addresses,
            etcd: client.clone(),
            etcd_pid,
            replicas: &replicas,
            kill_after,
        };
        burst.run(burst_jobs, lead, &mut report).await?;
    }
    report.finish();
    drop(replicas);
    drop(dirs);
    Ok(report)
}

/// CPU used so far by etcd, by the replicas together, by the sidecar when there is one, and
/// by this process.
struct Cpu(Vec<Duration>);

impl Cpu {
    fn now(etcd_pid: u32, replicas: &[Scheduler], sidecar: Option<&Proc>) -> anyhow::Result<Cpu> {
        let etcd = kairos_testing::process::cpu_time(&format!("/proc/{etcd_pid}/stat"))?;
        let replicas = replicas.iter().map(|r| r.proc.cpu()).sum::<anyhow::Result<Duration>>()?;
        let mut used = vec![etcd, replicas];
        if let Some(sidecar) = sidecar {
            used.push(sidecar.cpu()?);
        }
        used.push(kairos_testing::process::cpu_time("/proc/self/stat")?);
        Ok(Cpu(used))
    }

    /// Microseconds of CPU per operation since `before`: etcd, replicas, (sidecar,) this
    /// process, total.
    fn per_op_us(&self, before: &Cpu, ops: u64) -> Vec<f64> {
        super::cpu_per_op_us(&self.0, &before.0, ops)
    }
}

/// When a burst's jobs were all settled, and the most that were delivered but not settled.
struct Settled {
    /// After the due instant; `None` when they were not all settled in time.
    after: Option<Duration>,
    most_unsettled: u64,
}

/// The trigger burst: what it runs on.
struct Burst<'a> {
    kairos: &'a std::path::Path,
    addresses: &'a [String],
    /// A client of the etcd member, to count the stored jobs.
    etcd: etcd_client::Client,
    etcd_pid: u32,
    replicas: &'a [Scheduler],
    /// When to SIGKILL the first replica, after the due instant.
    kill_after: Option<Duration>,
}

impl Burst<'_> {
    /// Creates `jobs` one-shot jobs due `lead` seconds on through a sidecar linked to every
    /// replica, waits for them at the app, and adds the results to `report`. When creation
    /// overruns the due instant, runs again (new names, new sidecar) with a longer lead.
    ///
    /// # Errors
    /// When the sidecar or the app cannot start, creation fails, or it overruns every time.
    async fn run(&self, jobs: u64, mut lead: f64, report: &mut Report) -> anyhow::Result<()> {
        for attempt in 1..=ATTEMPTS {
            let prefix = format!("burst{attempt}-");
            let recorder = Recorder::new(prefix.clone(), jobs, timing::now());
            let app = app::serve(0, Some(recorder.clone())).await?;
            let mut sidecar = Sidecar::start(
                self.kairos,
                &self.addresses.join(","),
                Some(app.address.port()),
                &[],
                Duration::from_secs(30),
            )?;
            sidecar.proc.wait_streams_open(self.addresses.len() as u64, Duration::from_secs(30))?;
            eprintln!("replicas: burst of {jobs} jobs due {lead:.1} s from now, through one sidecar");
            let stored_before = self.stored().await?;
            let epoch = Epoch::now();
            let due_offset = Duration::from_secs_f64(lead);
            let due_at = epoch.mono + due_offset;
            let created =
                create_due(&sidecar.grpc, &prefix, jobs, epoch, Arc::new(move |_| due_offset)).await?;
            let create_end = timing::now();
            if create_end >= due_at {
                lead = overrun("replicas", jobs, created, attempt)?;
                continue;
            }
            let before = Cpu::now(self.etcd_pid, self.replicas, Some(&sidecar.proc))?;
            let kill = async {
                let Some(after) = self.kill_after else { return };
                tokio::time::sleep_until((due_at + after).into()).await;
                match self.replicas[0].proc.signal(Signal::SIGKILL) {
                    Ok(()) => {
                        eprintln!("replicas: killed replica 0 (SIGKILL) {after:?} after the due instant")
                    }
                    Err(err) => eprintln!("replicas: could not kill replica 0: {err:#}"),
                }
            };
            let limit = (due_at - create_end) + BURST_TIMEOUT;
            let wait = recorder.wait_for(jobs, limit, "burst");
            let settle = self.settle(&recorder, stored_before, due_at, create_end + limit);
            let (all, (), settled) = tokio::join!(wait, kill, settle);
            let cpu_us =
                Cpu::now(self.etcd_pid, self.replicas, Some(&sidecar.proc))?.per_op_us(&before, jobs);
            // Let redeliveries, if any, show up before counting duplicates.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let arrived = Arrivals::of(&recorder, due_at)?;
            if !all {
                report.note(format!(
                    "burst: only {} of {jobs} jobs arrived within {BURST_TIMEOUT:?} of the due instant",
                    arrived.delivered
                ));
            }
            let mut columns = vec!["jobs", "create_s"];
            columns.extend(Arrivals::COLUMNS);
            columns.extend(["settled_s", "most_unsettled"]);
            let table = report.table(
                "triggers: N jobs due at one instant, fired by 3 replicas through one sidecar (times from the due instant)",
                &columns,
            );
            let mut row = vec![jobs.into(), created.as_secs_f64().into()];
            row.extend(arrived.cells());
            let Settled { after, most_unsettled } = settled?;
            row.extend([after.map_or(Value::from("-"), |a| a.as_secs_f64().into()), most_unsettled.into()]);
            table.row(row);
            report.note(
                "settled_s = when the last burst job was gone from etcd (settled: deleted after the app's answer); most_unsettled = the most jobs delivered to the app but not yet settled, by etcd's job count polled every 100 ms: what a crash would deliver again",
            );
            let table = report.table(
                "CPU time per delivered trigger (user + system, from /proc)",
                &["etcd_us", "replicas_us", "sidecar_us", "app_us", "total_us"],
            );
            table.row(cpu_us.into_iter().map(Value::from).collect());
            report.note(
                "triggers_per_s = delivered / last_s; app_us is this process (the receiving app and its 2 ms progress poll)",
            );
            drop(sidecar);
            drop(app);
            return Ok(());
        }
        anyhow::bail!("no burst attempt ran")
    }

    /// Jobs stored in etcd (a count-only range read of the job keys).
    async fn stored(&self) -> anyhow::Result<u64> {
        let options = etcd_client::GetOptions::new().with_prefix().with_count_only();
        let response = self
            .etcd
            .clone()
            .get(JOBS_PREFIX, Some(options))
            .await
            .context("cannot count the jobs in etcd")?;
        Ok(u64::try_from(response.count()).unwrap_or(0))
    }

    /// Polls the job count every 100 ms from `due_at` until the burst's jobs are all gone (the
    /// count is back to `stored_before`) or `deadline` passes.
    async fn settle(
        &self,
        recorder: &Recorder,
        stored_before: u64,
        due_at: std::time::Instant,
        deadline: std::time::Instant,
    ) -> anyhow::Result<Settled> {
        tokio::time::sleep_until(due_at.into()).await;
        let jobs = recorder.capacity();
        let mut most_unsettled = 0;
        loop {
            let delivered = recorder.received();
            let left = self.stored().await?.saturating_sub(stored_before);
            let settled = jobs.saturating_sub(left);
            most_unsettled = most_unsettled.max(delivered.saturating_sub(settled));
            let now = timing::now();
            if left == 0 {
                return Ok(Settled { after: Some(now.saturating_duration_since(due_at)), most_unsettled });
            }
            if now >= deadline {
                return Ok(Settled { after: None, most_unsettled });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `clients` tasks putting `value_bytes` values under unique keys of `key_bytes` (about) over
/// one etcd connection per replica, for `duration`.
async fn etcd_puts(
    etcd: &kairos_testing::etcd::EtcdProcess,
    clients: usize,
    duration: Duration,
    key_bytes: usize,
    value_bytes: usize,
) -> anyhow::Result<Driven> {
    let mut connections = Vec::with_capacity(REPLICAS);
    for _ in 0..REPLICAS {
        connections.push(etcd.client().await.context("cannot connect to etcd")?.kv_client());
    }
    let value: std::sync::Arc<[u8]> = vec![b'x'; value_bytes].into();
    let calls = (0..clients)
        .map(|i| {
            let kv = connections[i % connections.len()].clone();
            let value = value.clone();
            let call: Call = Box::new(move |index| {
                let mut kv = kv.clone();
                let key =
                    format!("/bench-ceiling/{index:0>width$}", width = key_bytes.saturating_sub(15).max(10));
                let value = value.to_vec();
                Box::pin(async move { kv.put(key, value, None).await.map(|_| ()).map_err(|e| e.to_string()) })
            });
            call
        })
        .collect();
    drive::drive(calls, None, Some(duration), "etcd put").await
}

/// The `scheduler-create` load spread over `addresses` (the clients split evenly), as one result:
/// the calls and errors added up, the longest elapsed time, the latencies merged.
async fn create_on_replicas(
    addresses: &[String],
    clients: usize,
    channels: usize,
    jobs: Option<u64>,
    duration: Option<Duration>,
    payload_bytes: usize,
    label: &str,
) -> anyhow::Result<Driven> {
    let loads = addresses.iter().enumerate().map(|(r, address)| {
        load::run(LoadConfig {
            address: address.clone(),
            clients: clients / addresses.len(),
            channels,
            jobs: jobs.map(|n| n.div_ceil(addresses.len() as u64)),
            duration,
            payload_bytes,
            // Unique per replica and per load, so no two creates share a name.
            name_prefix: format!("{label}-{r}-"),
            label: format!("{label} r{r}"),
        })
    });
    let mut total =
        Driven { ok: 0, errors: 0, first_error: None, elapsed: Duration::ZERO, latencies: Latencies::new()? };
    for result in futures::future::join_all(loads).await {
        let one = result?;
        total.ok += one.ok;
        total.errors += one.errors;
        total.first_error = total.first_error.or(one.first_error);
        total.elapsed = total.elapsed.max(one.elapsed);
        total.latencies.merge(&one.latencies)?;
    }
    Ok(total)
}

//! Real `kairos scheduler` replicas on a real etcd (Debian's `etcd`, started by the test), with
//! one WatchJobs stream to each replica as a sidecar keeps: a replica killed with SIGKILL, a
//! replica joining under load, a replica stopped with SIGTERM (hand-over without the lease TTL),
//! etcd killed and restarted, a 3-member etcd losing its leader, and
//! a quick measurement of create and trigger rates.
//!
//! Jobs are `@every 1s` with a repeat count, created round-robin through all replicas. "No tick
//! skipped" means every job got at least its repeat count of deliveries; "duplicates only in
//! flight" means at most one more. Figures are printed (run with `--nocapture`); the assertions
//! use generous bounds.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kairos_proto::scheduler::{
    GetJobRequest, Job, JobMetadata, ScheduleJobRequest, WatchJobsRequestResultStatus,
};
use kairos_testing::etcd::{EtcdCluster, EtcdProcess};
use tokio::time::Instant;

const APP: &str = "cluster-app";
const TTL_SECS: u64 = 2;
const PARTITIONS: &str = "16";

fn metadata() -> JobMetadata {
    common::job_metadata("default", APP)
}

/// One delivery: which job, through which replica, when.
#[derive(Debug, Clone)]
struct Delivery {
    name: String,
    replica: usize,
    at: Instant,
}

type Log = Arc<Mutex<Vec<Delivery>>>;

/// A replica process and its data dir (unused with etcd, but the helper wants one).
struct Replica {
    proc: common::Proc,
    _dir: tempfile::TempDir,
}

fn start_replica_with_ttl(endpoints: &[String], id: &str, ttl_secs: u64) -> Replica {
    let dir = tempfile::tempdir().unwrap();
    let endpoints = endpoints.join(",");
    let ttl = format!("{ttl_secs}s");
    let proc = common::start_scheduler(
        dir.path(),
        &[
            "--etcd-endpoints",
            &endpoints,
            "--replica-id",
            id,
            "--lease-ttl",
            &ttl,
            "--partitions",
            PARTITIONS,
        ],
    );
    Replica { proc, _dir: dir }
}

/// Consumes triggers through `replica`'s WatchJobs stream (as a sidecar does), acknowledging
/// each, until the stream breaks.
async fn consume(address: String, replica: usize, log: Log) {
    let client = common::connect(&address).await;
    kairos_testing::grpc::watch_jobs(client, APP, |trigger| {
        log.lock().unwrap().push(Delivery { name: trigger.name.clone(), replica, at: Instant::now() });
        WatchJobsRequestResultStatus::Success
    })
    .await;
}

/// Creates `count` jobs `@every 1s` with `repeats`, round-robin through `addresses`; returns
/// name → the instant just before its ScheduleJob call (its ticks are due 1 s, 2 s … after).
async fn create_jobs(
    addresses: &[String],
    prefix: &str,
    count: usize,
    repeats: u32,
) -> BTreeMap<String, Instant> {
    let mut clients = Vec::new();
    for address in addresses {
        clients.push(common::connect(address).await);
    }
    let mut created = BTreeMap::new();
    for i in 0..count {
        let name = format!("{prefix}-{i:03}");
        let request = common::repeating_job(&name, "@every 1s", repeats, metadata());
        let at = Instant::now();
        let n = clients.len();
        clients[i % n].schedule_job(request).await.expect("schedule job");
        created.insert(name, at);
    }
    created
}

/// Waits until none of `names` is stored any more (each ran all its ticks).
async fn wait_all_done(address: &str, names: impl Iterator<Item = &String> + Clone, limit: Duration) {
    let mut client = common::connect(address).await;
    let deadline = Instant::now() + limit;
    loop {
        let mut remaining = 0;
        for name in names.clone() {
            let request = GetJobRequest { name: name.clone(), metadata: Some(metadata()) };
            match client.get_job(request).await {
                Ok(_) => remaining += 1,
                Err(status) if status.code() == tonic::Code::NotFound => {}
                // While etcd elects a new leader, reads fail for a moment; count it as pending.
                Err(status) if status.code() == tonic::Code::Unavailable => remaining += 1,
                Err(status) => panic!("GetJob through a live replica failed: {status}"),
            }
        }
        if remaining == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{remaining} jobs still pending after {limit:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Per job, its deliveries in order.
fn by_job(log: &Log) -> BTreeMap<String, Vec<Delivery>> {
    let mut jobs: BTreeMap<String, Vec<Delivery>> = BTreeMap::new();
    for d in log.lock().unwrap().iter() {
        jobs.entry(d.name.clone()).or_default().push(d.clone());
    }
    jobs
}

/// Asserts no tick skipped and at most one duplicate per job; returns how many jobs had one.
fn assert_counts(
    jobs: &BTreeMap<String, Vec<Delivery>>,
    created: &BTreeMap<String, Instant>,
    repeats: u32,
) -> usize {
    let mut duplicated = 0;
    for name in created.keys() {
        let got = jobs.get(name).map_or(0, Vec::len);
        assert!(got >= repeats as usize, "{name}: {got} deliveries of {repeats}: a tick was skipped");
        assert!(
            got <= repeats as usize + 1,
            "{name}: {got} deliveries of {repeats}: more than the in-flight duplicate"
        );
        if got > repeats as usize {
            duplicated += 1;
        }
    }
    duplicated
}

/// Replicas on one etcd, each with a consumer recording into one log; the consumers stop when
/// it is dropped.
struct Fleet {
    replicas: Vec<Replica>,
    log: Log,
    consumers: Vec<tokio::task::JoinHandle<()>>,
    /// The etcd every replica (and every one that joins) uses, and the replicas' lease TTL.
    endpoints: Vec<String>,
    ttl_secs: u64,
}

/// The jobs [`Fleet::load`] created (each name with when it was created) and the ticks each runs.
struct Load {
    created: BTreeMap<String, Instant>,
    repeats: u32,
}

impl Fleet {
    /// [`create_jobs`] through every replica, then waits until each one fires, then `settle`.
    async fn load(&self, prefix: &str, count: usize, repeats: u32, settle: Duration) -> Load {
        let created = create_jobs(&self.addresses(), prefix, count, repeats).await;
        wait_every_replica_fires(&self.log, self.replicas.len()).await;
        tokio::time::sleep(settle).await;
        Load { created, repeats }
    }

    /// Waits (through `address`, up to `limit`) until every job of `load` ran its ticks; its
    /// deliveries by job, checked by [`assert_counts`], and the count of duplicates.
    async fn all_done(
        &self,
        address: &str,
        load: &Load,
        limit: Duration,
    ) -> (BTreeMap<String, Vec<Delivery>>, usize) {
        wait_all_done(address, load.created.keys(), limit).await;
        let jobs = by_job(&self.log);
        let duplicated = assert_counts(&jobs, &load.created, load.repeats);
        (jobs, duplicated)
    }

    /// Replica 0 went away at `gone_at`: waits (through replica 1, up to 40 s) until every job
    /// of `load` ran its ticks, and asserts that replica 0 owned jobs and fired none of them
    /// again. Prints, after `what`, how many jobs moved and how many had one duplicate; returns
    /// the longest any job of replica 0 waited after `gone_at` before another replica fired it.
    async fn resumed_after_losing_the_first(&self, load: &Load, gone_at: Instant, what: &str) -> Duration {
        let survivor = &self.replicas[1].proc.address;
        let (jobs, duplicated) = self.all_done(survivor, load, Duration::from_secs(40)).await;
        let resumes = resumes_after(&jobs, 0, gone_at);
        assert!(resumes.iter().all(|(_, by)| *by != 0), "replica 0 fired again after it went away");
        let worst = resumes.iter().map(|(after, _)| *after).max().expect("replica 0 owned jobs");
        eprintln!(
            "{what}: {} of {} jobs moved, worst resume {worst:?} after it, {duplicated} jobs with one duplicate",
            resumes.len(),
            load.created.len()
        );
        worst
    }

    /// `n` replicas named `{prefix}0`, `{prefix}1`, … with lease `ttl_secs`.
    fn start(endpoints: &[String], n: usize, prefix: &str, ttl_secs: u64) -> Fleet {
        let mut fleet = Fleet {
            replicas: Vec::new(),
            log: Arc::default(),
            consumers: Vec::new(),
            endpoints: endpoints.to_vec(),
            ttl_secs,
        };
        for i in 0..n {
            fleet.join(&format!("{prefix}{i}"));
        }
        fleet
    }

    /// A new single-member etcd and [`Fleet::start`] on it.
    async fn on_new_etcd(n: usize, prefix: &str, ttl_secs: u64) -> (EtcdProcess, Fleet) {
        let etcd = EtcdProcess::start().await.expect("etcd");
        let fleet = Fleet::start(&etcd.endpoints(), n, prefix, ttl_secs);
        (etcd, fleet)
    }

    /// Starts one more replica, with the fleet's etcd and lease TTL, and its consumer.
    fn join(&mut self, id: &str) {
        let replica = start_replica_with_ttl(&self.endpoints, id, self.ttl_secs);
        let consumer = consume(replica.proc.address.clone(), self.replicas.len(), self.log.clone());
        self.consumers.push(tokio::spawn(consumer));
        self.replicas.push(replica);
    }

    fn addresses(&self) -> Vec<String> {
        self.replicas.iter().map(|r| r.proc.address.clone()).collect()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for c in &self.consumers {
            c.abort();
        }
    }
}

/// For each job that replica `gone` fired before `at`: how long after `at` it fired again, and
/// through which replica.
fn resumes_after(jobs: &BTreeMap<String, Vec<Delivery>>, gone: usize, at: Instant) -> Vec<(Duration, usize)> {
    let mut resumes = Vec::new();
    for deliveries in jobs.values() {
        if !deliveries.iter().any(|d| d.replica == gone && d.at < at) {
            continue;
        }
        let next = deliveries.iter().find(|d| d.at >= at).expect("the job fired again");
        resumes.push((next.at - at, next.replica));
    }
    resumes
}

/// Waits until deliveries flow through every one of the first `n` replicas (all joined and
/// claimed partitions).
async fn wait_every_replica_fires(log: &Log, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen: std::collections::BTreeSet<usize> = log.lock().unwrap().iter().map(|d| d.replica).collect();
        if (0..n).all(|i| seen.contains(&i)) {
            return;
        }
        assert!(Instant::now() < deadline, "not every replica fires: {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_replica_partitions_fire_again_on_the_others_within_the_lease_ttl() {
    let (_etcd, mut fleet) = Fleet::on_new_etcd(3, "r", TTL_SECS).await;
    let load = fleet.load("kill", 48, 12, Duration::from_secs(2)).await;

    let killed_at = Instant::now();
    fleet.replicas[0].proc.kill9();
    let what = format!("kill -9 of 1 of 3 replicas (lease ttl {TTL_SECS}s)");
    let worst = fleet.resumed_after_losing_the_first(&load, killed_at, &what).await;
    assert!(worst <= Duration::from_secs(TTL_SECS + 2), "resume took {worst:?} (> ttl + 2 s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_replica_moves_only_its_partitions_and_the_others_keep_firing() {
    let (_etcd, mut fleet) = Fleet::on_new_etcd(3, "r", TTL_SECS).await;
    let load = fleet.load("join", 48, 12, Duration::from_secs(2)).await;

    let joined_at = Instant::now();
    fleet.join("r3");
    let (jobs, duplicated) =
        fleet.all_done(&fleet.replicas[1].proc.address, &load, Duration::from_secs(40)).await;
    // Lateness of a delivery: its arrival minus its tick's due time. Tick k of a job is due
    // k seconds after its first; the job's phase is taken from its most punctual delivery, so
    // lateness is measured against the job's own best (a delivery can only be late, never early).
    let mut stayed_late = Duration::ZERO;
    let mut moved_late = Duration::ZERO;
    let (mut stayed, mut moved) = (0, 0);
    for deliveries in jobs.values() {
        let offset = |k: usize, d: &Delivery| d.at - Duration::from_secs(k as u64);
        let base = deliveries.iter().enumerate().map(|(k, d)| offset(k, d)).min().unwrap();
        let after: Vec<(usize, &Delivery)> =
            deliveries.iter().enumerate().filter(|(_, d)| d.at >= joined_at).collect();
        let Some((_, first_after)) = after.first() else { continue };
        let before_replica = deliveries.iter().rev().find(|d| d.at < joined_at).map(|d| d.replica);
        let job_moved = first_after.replica == 3 || before_replica.is_some_and(|r| r != first_after.replica);
        let window_end = joined_at + Duration::from_secs(4);
        for (k, d) in after.iter().filter(|(_, d)| d.at <= window_end) {
            let late = offset(*k, d) - base;
            if job_moved {
                moved_late = moved_late.max(late);
            } else {
                stayed_late = stayed_late.max(late);
            }
        }
        if job_moved {
            moved += 1;
        } else {
            stayed += 1;
        }
    }
    eprintln!(
        "4th replica joining 3 under load: {moved} jobs moved, {stayed} stayed; max lateness of unmoved jobs during the change {stayed_late:?}, of moved jobs {moved_late:?}; {duplicated} jobs with one duplicate"
    );
    assert!(moved > 0 && stayed > 0, "some jobs moved, others stayed");
    assert!(stayed_late <= Duration::from_secs(1), "unmoved partitions paused: {stayed_late:?} late");
    assert!(moved_late <= Duration::from_millis(2500), "moved partitions resumed late: {moved_late:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_recover_by_themselves_after_etcd_is_killed_and_restarted() {
    let (mut etcd, fleet) = Fleet::on_new_etcd(3, "r", TTL_SECS).await;
    let load = fleet.load("etcd", 30, 10, Duration::from_secs(2)).await;

    etcd.kill9().expect("kill etcd");
    let killed_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    etcd.restart().await.expect("restart etcd");
    let restarted_at = Instant::now();
    let (_, duplicated) =
        fleet.all_done(&fleet.replicas[0].proc.address, &load, Duration::from_secs(60)).await;
    let first_after = fleet.log.lock().unwrap().iter().filter(|d| d.at >= restarted_at).map(|d| d.at).min();
    let first_after = first_after.expect("deliveries after the restart");
    eprintln!(
        "etcd kill -9, restart after {:?}: first delivery {:?} after the restart; {duplicated} jobs with one duplicate",
        restarted_at - killed_at,
        first_after - restarted_at
    );
}

/// The wall-clock time, for an absolute due time.
#[allow(clippy::disallowed_methods)]
fn wall_clock_now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// The index of the member that is the raft leader.
async fn leader_of(etcd: &EtcdCluster) -> usize {
    for i in 0..etcd.len() {
        let mut client = etcd_client::Client::connect([etcd.endpoint(i)], None).await.expect("etcd client");
        let status = client.status().await.expect("etcd status");
        if status.header().map(|h| h.member_id()) == Some(status.leader()) {
            return i;
        }
    }
    panic!("no etcd member is the leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggering_continues_when_a_three_member_etcd_loses_its_leader() {
    let mut etcd = EtcdCluster::start(3).await.expect("3-member etcd");
    let fleet = Fleet::start(&etcd.endpoints(), 3, "r", TTL_SECS);
    let load = fleet.load("leader", 30, 10, Duration::from_secs(2)).await;

    let leader = leader_of(&etcd).await;
    let killed_at = Instant::now();
    etcd.kill9(leader).expect("kill the etcd leader");
    let (jobs, duplicated) =
        fleet.all_done(&fleet.replicas[0].proc.address, &load, Duration::from_secs(45)).await;
    // The longest silence of any job after the kill (ticks are 1 s apart).
    let mut worst_gap = Duration::ZERO;
    for deliveries in jobs.values() {
        for pair in deliveries.windows(2) {
            if pair[1].at >= killed_at {
                worst_gap = worst_gap.max(pair[1].at - pair[0].at);
            }
        }
    }
    eprintln!(
        "etcd leader (member {leader}) killed: worst gap between a job's deliveries {worst_gap:?}; {duplicated} jobs with one duplicate"
    );
    assert!(worst_gap <= Duration::from_secs(TTL_SECS + 4), "triggering stalled for {worst_gap:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_and_trigger_rates_with_three_replicas_on_one_etcd() {
    let (_etcd, fleet) = Fleet::on_new_etcd(3, "r", TTL_SECS).await;
    // Let every replica claim its partitions.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let total = 3000usize;
    let writers = 24usize;
    let mut clients = Vec::new();
    for address in fleet.addresses() {
        clients.push(common::connect(&address).await);
    }
    // Every job is due at one absolute instant after the creation phase, so the triggers come
    // out as fast as the replicas can fire them.
    let due_at = wall_clock_now() + jiff::SignedDuration::from_secs(12);
    let due_in = Instant::now() + Duration::from_secs(12);
    let due_time = due_at.to_string();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let mut client = clients[w % clients.len()].clone();
        let due_time = due_time.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..total).step_by(writers) {
                let request = ScheduleJobRequest {
                    name: format!("rate-{i:05}"),
                    job: Some(Job { due_time: Some(due_time.clone()), ..Default::default() }),
                    metadata: Some(metadata()),
                    overwrite: false,
                };
                client.schedule_job(request).await.expect("schedule job");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let create_secs = started.elapsed().as_secs_f64();
    assert!(Instant::now() < due_in, "creating took longer than the 12 s before the due time");
    let deadline = due_in + Duration::from_secs(30);
    while fleet.log.lock().unwrap().len() < total {
        assert!(
            Instant::now() < deadline,
            "only {} of {total} triggers arrived",
            fleet.log.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A trigger is settled once its answer is recorded: a one-shot job is then deleted.
    let mut lister = clients[0].clone();
    let settled = loop {
        let request = kairos_proto::scheduler::ListJobsRequest { metadata: Some(metadata()) };
        match lister.list_jobs(request).await {
            Ok(response) if response.get_ref().jobs.is_empty() => break Instant::now(),
            _ => {}
        }
        assert!(Instant::now() < deadline, "jobs still stored 30 s after their due time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let deliveries = fleet.log.lock().unwrap().clone();
    let first = deliveries.iter().map(|d| d.at).min().unwrap();
    let last = deliveries.iter().map(|d| d.at).max().unwrap();
    let per_replica: BTreeMap<usize, usize> = deliveries.iter().fold(BTreeMap::new(), |mut m, d| {
        *m.entry(d.replica).or_default() += 1;
        m
    });
    eprintln!(
        "3 replicas, 1 etcd: created {total} jobs in {create_secs:.2}s ({:.0}/s, {writers} concurrent callers); {total} triggers due at one instant delivered within {:.2}s ({:.0}/s; first {:?} after the due time); all answered and deleted {:.2}s after the due time ({:.0}/s); per replica {per_replica:?}; {} deliveries in all",
        total as f64 / create_secs,
        (last - first).as_secs_f64(),
        total as f64 / (last - first).as_secs_f64(),
        first.saturating_duration_since(due_in),
        (settled - due_in).as_secs_f64(),
        total as f64 / (settled - due_in).as_secs_f64(),
        deliveries.len(),
    );
    let names: std::collections::BTreeSet<&String> = deliveries.iter().map(|d| &d.name).collect();
    assert_eq!(names.len(), total, "every job fired");
    assert_eq!(per_replica.len(), 3, "every replica fired a share");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_a_replicas_partitions_over_without_waiting_for_the_lease_ttl() {
    // A long TTL: if the stopped replica's partitions moved only when its lease expired, they
    // would pause for 15 s.
    const LONG_TTL_SECS: u64 = 15;
    let (_etcd, mut fleet) = Fleet::on_new_etcd(2, "t", LONG_TTL_SECS).await;
    let load = fleet.load("term", 32, 10, Duration::from_secs(1)).await;

    let stopped_at = Instant::now();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(fleet.replicas[0].proc.child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::task::block_in_place(|| fleet.replicas[0].proc.child.wait()).unwrap();
    let exited_after = stopped_at.elapsed();
    assert!(status.success(), "the replica exits 0 on SIGTERM: {status}");
    let what =
        format!("SIGTERM of 1 of 2 replicas (lease ttl {LONG_TTL_SECS}s, exited after {exited_after:?})");
    let worst = fleet.resumed_after_losing_the_first(&load, stopped_at, &what).await;
    assert!(
        worst < Duration::from_secs(LONG_TTL_SECS / 2),
        "resume took {worst:?}: the partitions waited for the lease to expire"
    );
}

fn delivered(log: &Log, name: &str) -> usize {
    log.lock().unwrap().iter().filter(|d| d.name == name).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_trigger_through_either_replica_and_the_survivor_of_a_kill_keeps_them() {
    let (_etcd, mut fleet) = Fleet::on_new_etcd(2, "s", TTL_SECS).await;
    let mut client = common::connect(&fleet.replicas[0].proc.address).await;
    client.schedule_job(common::repeating_job("steer", "@every 1s", 1000, metadata())).await.unwrap();
    kairos_testing::wait_until("steer to be delivered twice", 20, || delivered(&fleet.log, "steer") >= 2)
        .await;
    // Triggers go out through the replica that fires the job's partition.
    let owner = fleet.log.lock().unwrap().iter().rev().find(|d| d.name == "steer").unwrap().replica;
    let other = 1 - owner;
    let (owner_address, other_address) =
        (fleet.replicas[owner].proc.address.clone(), fleet.replicas[other].proc.address.clone());

    // Pause through the replica that does not fire it: the owner learns it from the store.
    // (One tick may have been in flight; over 3.5 s a job that kept firing delivers three.)
    common::steer(&other_address, "pause", "steer", APP, &[]);
    let at_pause = delivered(&fleet.log, "steer");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let before = delivered(&fleet.log, "steer");
    assert!(before <= at_pause + 1, "{} delivered while paused through the other replica", before - at_pause);
    assert_eq!(common::job_status(&owner_address, "steer", APP)["state"], "paused");

    // Trigger-now through the non-owner: a durable request the owner takes and delivers.
    common::steer(&other_address, "trigger", "steer", APP, &[]);
    kairos_testing::wait_until("the trigger-now through the non-owner", 15, || {
        delivered(&fleet.log, "steer") == before + 1
    })
    .await;
    kairos_testing::wait_until("the manual record", 15, || {
        common::job_history(&other_address, "steer", APP).last().is_some_and(|r| r["manual"] == true)
    })
    .await;
    let status_before = common::job_status(&other_address, "steer", APP);
    let history_before = common::job_history(&other_address, "steer", APP);

    // kill -9 the owner: the survivor takes its partitions over, and the job stays paused with
    // its status and history.
    fleet.replicas[owner].proc.kill9();
    tokio::time::sleep(Duration::from_secs(TTL_SECS * 2 + 1)).await;
    assert_eq!(delivered(&fleet.log, "steer"), before + 1, "delivered while paused after the owner died");
    let status_after = common::job_status(&other_address, "steer", APP);
    assert_eq!(status_after, status_before, "status kept across the failover");
    assert_eq!(common::job_history(&other_address, "steer", APP), history_before, "history kept");
    assert_eq!(status_after["paused"], true);

    // The survivor fires it now: a trigger-now and a resume both deliver.
    common::steer(&other_address, "trigger", "steer", APP, &[]);
    kairos_testing::wait_until("the trigger-now on the survivor", 15, || {
        delivered(&fleet.log, "steer") == before + 2
    })
    .await;
    let last = fleet.log.lock().unwrap().iter().rev().find(|d| d.name == "steer").unwrap().replica;
    assert_eq!(last, other, "delivered by the survivor");
    common::steer(&other_address, "resume", "steer", APP, &[]);
    kairos_testing::wait_until("ticks again after resume", 15, || {
        delivered(&fleet.log, "steer") >= before + 4
    })
    .await;
}

//! The kairos trigger engine: jobs in, triggers out, at their due time, every time.
//!
//! [`Engine`] validates and stores jobs, runs one trigger loop per owned partition (see
//! `partition.rs`), and routes fired triggers to subscribers by the job's route (see
//! [`router`]). A subscriber answers each trigger by id with an [`Outcome`]; the engine then
//! applies the failure policy or moves the job to its next tick, writes the progress durably,
//! and deletes the job after its last tick. A job whose trigger finds no subscriber of its route
//! is *staged* in the store (not in memory), costs no retry, and goes out as soon as a subscriber
//! for that route appears.
//!
//! Memory is bounded whatever the backlog: each partition keeps at most
//! [`EngineConfig::window`] jobs in memory, and each subscriber holds at most
//! [`EngineConfig::credit`] triggers without an answer.
//!
//! Sits on `kairos-core` and `kairos-store`; the Scheduler gRPC service and the in-process
//! launcher drive it through [`Engine`]. It must never import tonic services or axum.

mod partition;
pub mod router;
mod version;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::SignedDuration;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use kairos_core::key::{NameError, validate_name, validate_name_prefix};
use kairos_core::timeline::{Progress, next_tick};
use kairos_core::{
    Clock, HistoryLimit, JobKey, JobSpec, JobState, JobStatus, Owner, TriggerRecord, ValidationError,
};
use kairos_store::{JobStore, Mutation, OwnerScope, PutMode, StoreError, StoredJob};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use kairos_core::Route;
pub use router::{Outcome, Registration, RouterStats, Trigger};

use crate::partition::{Command, Flags, Partition};
use crate::router::Router;
use crate::version::{Stamp, Versions};

/// The default [`EngineConfig::window`]: 32 jobs per partition with the default 256.
pub const DEFAULT_WINDOW: usize = 8192;

/// The smallest share of the window a partition gets.
pub const MIN_PARTITION_WINDOW: usize = 2;

/// Most trigger-now requests of one job that may wait to be taken by its partition.
pub const MAX_PENDING_TRIGGERS: usize = 16;

/// The default [`EngineConfig::credit`]: as many as a kairos sidecar delivers at once.
pub const DEFAULT_CREDIT: usize = 256;

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Most jobs the engine keeps in memory, whatever their state (waiting, fired, being
    /// written), shared equally by the store's partitions (see
    /// [`EngineConfig::partition_window`]); the rest wait in the store's due and staged indexes.
    pub window: usize,
    /// Most triggers one subscriber (a sidecar's stream) holds without an answer; the next ones
    /// wait for an answer to give a credit back.
    pub credit: usize,
    /// Longest a partition sleeps before re-reading the clock, so wall-clock jumps are noticed.
    pub max_sleep: SignedDuration,
    /// Zone of cron schedules without a `TZ=` prefix (upstream: the scheduler's local zone).
    pub default_tz: TimeZone,
    /// Trigger records kept per job (in the store, not in memory).
    pub history: HistoryLimit,
}

impl EngineConfig {
    /// The jobs one partition keeps in memory when the store has `partitions` partitions:
    /// an equal share of [`EngineConfig::window`], at least [`MIN_PARTITION_WINDOW`].
    pub fn partition_window(&self, partitions: u32) -> usize {
        (self.window / usize::try_from(partitions.max(1)).unwrap_or(usize::MAX)).max(MIN_PARTITION_WINDOW)
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            window: DEFAULT_WINDOW,
            credit: DEFAULT_CREDIT,
            max_sleep: SignedDuration::from_secs(1),
            default_tz: TimeZone::system(),
            history: HistoryLimit::DEFAULT,
        }
    }
}

/// Why an engine call failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The job name breaks the naming rules (spec §7.8).
    #[error(transparent)]
    Name(#[from] NameError),
    /// The job spec breaks a rule of spec §7.3.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// Create-only schedule of a name that exists.
    #[error("job already exists: '{0}'")]
    AlreadyExists(JobKey),
    /// No job under that key (never created, deleted, or finished).
    #[error("job not found: '{0}'")]
    NotFound(JobKey),
    /// The job's partition is fired by another replica: ask that one.
    #[error("job '{0}' is fired by another replica")]
    NotOwned(JobKey),
    /// Too many trigger-now requests of the job are waiting to be delivered.
    #[error("too many trigger-now requests of this job are waiting; try again later")]
    Busy,
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for EngineError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::AlreadyExists(key) => EngineError::AlreadyExists(key),
            other => EngineError::Store(other),
        }
    }
}

/// The engine. Cheap to clone; every clone drives the same engine.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn JobStore>,
    clock: Arc<dyn Clock>,
    config: Arc<EngineConfig>,
    router: Router,
    partitions: Mutex<HashMap<u32, Running>>,
    incarnations: AtomicU64,
    /// Set by [`Engine::follow_store_feed`]: partitions learn of writes only from the feed.
    feed_driven: Arc<AtomicBool>,
    /// The version stamps of this engine's writes (see [`version`]).
    versions: Arc<Versions>,
    /// Set by [`Engine::drain`]: partitions fire nothing new.
    paused: Arc<AtomicBool>,
    /// Serializes the writes to one job (see [`KeyLocks`]).
    keys: KeyLocks,
    /// The last count of paused jobs (see [`Engine::paused_jobs`]).
    paused_count: Arc<Mutex<PausedCount>>,
}

/// Locks by job key (striped: keys share [`KeyLocks::STRIPES`] locks by hash), held by every
/// write to a job from before it reads or writes the store until its partition has been told.
/// So the partition hears of one key's writes in the order the store applied them — two writes
/// racing for a key could otherwise tell it in the opposite order, and it would keep (and fire)
/// a version the store no longer holds, or a job already deleted — and a read-modify-write
/// (pause, resume, trigger-now) never undoes a write that came in between. It also makes the
/// order of one key's version stamps (see [`version`]) the order of its writes.
#[derive(Debug)]
struct KeyLocks(Box<[tokio::sync::Mutex<()>]>);

impl KeyLocks {
    /// Enough that concurrent writes to different keys rarely wait on each other: with 64
    /// creates in flight, one in ≈ 65 shares its stripe with another and waits one more commit.
    /// 160 KiB (40 bytes a lock).
    const STRIPES: usize = 4096;

    fn new() -> Self {
        KeyLocks((0..Self::STRIPES).map(|_| tokio::sync::Mutex::new(())).collect())
    }

    async fn lock(&self, key: &JobKey) -> tokio::sync::MutexGuard<'_, ()> {
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(key, &mut hasher);
        #[allow(clippy::cast_possible_truncation)]
        let stripe = (std::hash::Hasher::finish(&hasher) % Self::STRIPES as u64) as usize;
        self.0[stripe].lock().await
    }
}

/// How often [`Engine::paused_jobs`] counts again.
pub const PAUSED_COUNT_INTERVAL: SignedDuration = SignedDuration::from_secs(60);

#[derive(Debug, Default)]
struct PausedCount {
    value: Option<u64>,
    counted: Option<Timestamp>,
    counting: bool,
}

#[derive(Debug)]
struct Running {
    /// The flags shared with the loop.
    flags: Flags,
    commands: mpsc::Sender<Command>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Engine {
    /// An engine over `store` that owns no partitions yet (see [`Engine::own_all`]).
    pub fn new(store: Arc<dyn JobStore>, clock: Arc<dyn Clock>, config: EngineConfig) -> Self {
        Engine {
            inner: Arc::new(Inner {
                store,
                clock,
                router: Router::new(config.credit),
                config: Arc::new(config),
                partitions: Mutex::new(HashMap::new()),
                incarnations: AtomicU64::new(0),
                feed_driven: Arc::default(),
                versions: Arc::default(),
                paused: Arc::new(AtomicBool::new(false)),
                keys: KeyLocks::new(),
                paused_count: Arc::default(),
            }),
        }
    }

    fn partitions(&self) -> MutexGuard<'_, HashMap<u32, Running>> {
        self.inner.partitions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Most triggers one subscriber holds without an answer ([`EngineConfig::credit`]).
    pub fn credit(&self) -> usize {
        self.inner.config.credit
    }

    /// The store under the engine.
    pub fn store(&self) -> &Arc<dyn JobStore> {
        &self.inner.store
    }

    /// Takes ownership of every partition (a single-node scheduler).
    pub fn own_all(&self) {
        for partition in 0..self.inner.store.partitions() {
            self.own(partition);
        }
    }

    /// Starts firing the jobs of `partition`. Must be called within a tokio runtime.
    pub fn own(&self, partition: u32) {
        let mut partitions = self.partitions();
        if partitions.contains_key(&partition) {
            return;
        }
        let (commands_tx, commands_rx) = mpsc::channel(1024);
        // Unbounded, but bounded by the window: events answer triggers this partition fired (at
        // most one per job in memory), plus one per route that opens.
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        self.inner.router.attach_partition(partition, events_tx);
        let stop = CancellationToken::new();
        let flags = Flags {
            paused: self.inner.paused.clone(),
            feed_driven: self.inner.feed_driven.clone(),
            versions: self.inner.versions.clone(),
            ..Flags::default()
        };
        let runner = Partition::new(
            partition,
            self.inner.store.clone(),
            self.inner.clock.clone(),
            self.inner.router.clone(),
            self.inner.config.clone(),
            flags.clone(),
        );
        let task = tokio::spawn(runner.run(commands_rx, events_rx, stop.clone()));
        partitions.insert(partition, Running { flags, commands: commands_tx, stop, task });
    }

    /// Stops firing the jobs of `partition` and waits until its loop has ended. Its triggers in
    /// flight are forgotten: whoever owns the partition next fires them again from the store.
    pub async fn release(&self, partition: u32) {
        let running = self.partitions().remove(&partition);
        if let Some(running) = running {
            running.stop.cancel();
            let _ = running.task.await;
        }
    }

    /// Partitions this engine fires.
    pub fn owned(&self) -> Vec<u32> {
        let mut owned: Vec<u32> = self.partitions().keys().copied().collect();
        owned.sort_unstable();
        owned
    }

    /// Whether every owned partition's loop is still running (a loop that ended on its own,
    /// e.g. by a panic, fires nothing any more: the process must stop reporting ready).
    pub fn partitions_alive(&self) -> bool {
        self.partitions().values().all(|r| !r.task.is_finished())
    }

    /// Whether every owned partition has loaded its first stretch of due jobs from the store
    /// (and so fires what is due).
    pub fn partitions_loaded(&self) -> bool {
        self.partitions().values().all(|r| r.flags.loaded.load(Ordering::Acquire))
    }

    /// How many jobs the owned partitions hold in memory (at most their share of
    /// [`EngineConfig::window`] each, give or take jobs created while a window was full).
    pub fn resident_jobs(&self) -> usize {
        self.partitions().values().map(|r| r.flags.resident.load(Ordering::Relaxed)).sum()
    }

    /// Whether [`Engine::drain`] has begun.
    pub fn is_draining(&self) -> bool {
        self.inner.paused.load(Ordering::Acquire)
    }

    /// Starts a graceful stop: fires nothing new, and waits up to `grace` for the triggers in
    /// flight to be answered. Returns how many were still unanswered at the deadline (they are
    /// fired again by the next owner, from the store). Call [`Engine::shutdown`] afterwards:
    /// it writes the progress the answered ones decided.
    pub async fn drain(&self, grace: Duration) -> usize {
        self.inner.paused.store(true, Ordering::Release);
        let wait = async {
            // Polling keeps the router free of a notification path used only at shutdown.
            while self.inner.router.stats().in_flight() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let _ = tokio::time::timeout(grace, wait).await;
        self.inner.router.stats().in_flight()
    }

    /// Stops every partition loop (each first writes the progress its answered triggers
    /// decided).
    pub async fn shutdown(&self) {
        for partition in self.owned() {
            self.release(partition).await;
        }
    }

    /// From now on, partitions learn of job writes and deletes only through
    /// [`Engine::upsert_from_store`] and [`Engine::remove`] (the store's change feed), not from
    /// this engine's own calls. With several replicas on one store the feed is the one ordered
    /// source: a local notice arriving after a later remote write could re-arm a deleted job.
    pub fn follow_store_feed(&self) {
        self.inner.feed_driven.store(true, Ordering::Relaxed);
    }

    /// Whether [`Engine::follow_store_feed`] was called: one of several replicas on a shared
    /// store, owning only the partitions its cluster gives it (possibly none).
    pub fn follows_store_feed(&self) -> bool {
        self.inner.feed_driven.load(Ordering::Relaxed)
    }

    /// Tells the job's partition, if this engine owns it, that the store now holds `job`.
    ///
    /// # Contract
    /// `job.version` is the revision of the write. Ignored when the partition already holds
    /// that incarnation (this engine's own progress writes come back through the feed and must
    /// not re-arm a job), or a version at least as new (read by a scan ahead of the feed), or
    /// let go of one (done, deleted, evicted) while the feed was not past it yet; otherwise the
    /// job replaces whatever the partition held for its key, exactly as a local overwrite does.
    pub async fn upsert_from_store(&self, job: StoredJob) {
        let key = job.key.clone();
        self.send(&key, Command::Upsert(Box::new(job))).await;
    }

    /// Tells the job's partition, if this engine owns it, that `key` was deleted from the store
    /// at `revision`.
    pub async fn remove(&self, key: &JobKey, revision: u64) {
        self.send(key, Command::Remove(key.clone(), revision)).await;
    }

    /// Records that every change-feed event up to `revision` has been passed to
    /// [`Engine::upsert_from_store`] or [`Engine::remove`] (after a compaction: that the feed
    /// goes on from `revision`). Partitions keep what they know of keys they let go of until
    /// the feed is past it.
    pub fn feed_queued(&self, revision: u64) {
        self.inner.versions.feed_queued(revision);
    }

    /// Makes every owned partition forget its waiting jobs and read its due index again (after
    /// the change feed lost events, e.g. to compaction). Triggers in flight are kept.
    pub async fn reload(&self) {
        let senders: Vec<_> = self.partitions().values().map(|r| r.commands.clone()).collect();
        for tx in senders {
            let _ = tx.send(Command::Reload).await;
        }
    }

    /// Stops firing new triggers of `partition` and waits, at most `timeout`, until every
    /// trigger of it that a subscriber holds has been answered and its progress written.
    /// Returns whether that happened in time (`true` also when the partition is not owned).
    /// Call [`Engine::release`] next: a drained partition fires nothing more.
    pub async fn drain_partition(&self, partition: u32, timeout: SignedDuration) -> bool {
        let tx = self.partitions().get(&partition).map(|r| r.commands.clone());
        let Some(tx) = tx else { return true };
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        if tx.send(Command::Drain(done_tx)).await.is_err() {
            return true;
        }
        let now = self.inner.clock.now();
        let deadline = now.saturating_add(timeout).unwrap_or(now);
        tokio::select! {
            done = done_rx => done.is_ok(),
            () = self.inner.clock.sleep_until(deadline) => false,
        }
    }

    async fn notify(&self, key: &JobKey, command: Command) {
        if self.inner.feed_driven.load(Ordering::Relaxed) {
            return;
        }
        self.send(key, command).await;
    }

    /// Whether a job just stored under `key`, due at `due`, lies past its owned partition's
    /// window (see [`partition::Horizon`]).
    fn past_window(&self, key: &JobKey, due: Timestamp) -> bool {
        let partition = self.inner.store.partition_of(key);
        self.partitions().get(&partition).is_some_and(|running| running.flags.horizon.is_past(due))
    }

    async fn send(&self, key: &JobKey, command: Command) {
        let partition = self.inner.store.partition_of(key);
        let tx = self.partitions().get(&partition).map(|r| r.commands.clone());
        if let Some(tx) = tx {
            // A closed channel means the partition was released meanwhile; its next owner
            // reads the store.
            let _ = tx.send(command).await;
        }
    }

    /// Validates and stores a job, then arms it.
    ///
    /// The spec is stored as given, with the default failure policy filled in; its timeline
    /// starts now. An overwrite replaces the old job entirely, progress included.
    ///
    /// # Errors
    /// [`EngineError::Name`] / [`EngineError::Invalid`] for bad input (nothing is stored),
    /// [`EngineError::AlreadyExists`] for a create-only schedule of an existing name,
    /// [`EngineError::Store`] when the store fails.
    pub async fn schedule(&self, key: JobKey, spec: JobSpec, mode: PutMode) -> Result<(), EngineError> {
        validate_name(&key.name)?;
        let spec = spec.with_default_policy();
        let _key = self.inner.keys.lock(&key).await;
        let created = self.inner.clock.now();
        let timing = spec.resolve(created, &self.inner.config.default_tz)?;
        let Some(next_due) = next_tick(&timing, &Progress::default()) else {
            // Its first tick is already past its ttl (or the schedule never matches): upstream
            // stores such a job and deletes it at once, before it fires. Do the same in one go.
            if mode == PutMode::CreateOnly && self.inner.store.get(&key).await?.is_some() {
                return Err(EngineError::AlreadyExists(key));
            }
            self.delete_locked(&key).await?;
            return Ok(());
        };
        let mut job = StoredJob::new(key.clone(), spec, created, self.next_incarnation(created), next_due);
        let (old, _stamp, _raised) = self.put_versioned(&mut job, mode).await?;
        metrics::counter!("kairos_jobs_created_total").increment(1);
        // A new job past its partition's window: the partition would only forget it (a later
        // scan of the store reads it in), so the hop is left out. An overwrite always goes, as
        // the old version may be in memory.
        if old.is_none() && self.past_window(&key, next_due) {
            return Ok(());
        }
        self.notify(&key, Command::Upsert(Box::new(job))).await;
        Ok(())
    }

    /// Checks that `job` could be imported: a valid name and a spec that resolves from its
    /// creation time. Nothing is stored.
    ///
    /// # Errors
    /// [`EngineError::Name`] / [`EngineError::Invalid`].
    pub fn check_import(&self, job: &StoredJob) -> Result<(), EngineError> {
        validate_name(&job.key.name)?;
        job.spec.resolve(job.created, &self.inner.config.default_tz)?;
        Ok(())
    }

    /// Stores a job exactly as given (spec, creation time, progress and next due: an import,
    /// which continues the job's timeline rather than starting a new one), then arms it. Only
    /// the incarnation is chosen anew. Returns the job it replaced.
    ///
    /// # Errors
    /// As [`Engine::check_import`]; [`EngineError::AlreadyExists`] for a create-only import of
    /// an existing key; [`EngineError::Store`] when the store fails.
    pub async fn import(&self, job: StoredJob, mode: PutMode) -> Result<Option<StoredJob>, EngineError> {
        self.check_import(&job)?;
        let _key = self.inner.keys.lock(&job.key).await;
        let mut job = StoredJob {
            spec: job.spec.with_default_policy(),
            incarnation: self.next_incarnation(self.inner.clock.now()),
            // Staged again by its partition if its route still has no subscriber.
            staged: false,
            ..job
        };
        let (replaced, _stamp, _raised) = self.put_versioned(&mut job, mode).await?;
        let key = job.key.clone();
        self.notify(&key, Command::Upsert(Box::new(job))).await;
        Ok(replaced)
    }

    /// Puts `job` with a new version stamp (see [`version`]). When the job it replaced carries a
    /// version at least as large (written before a restart by a clock that was ahead), its
    /// version is raised above that one in the store ([`Mutation::Restamp`]), so the versions of
    /// a key only grow. Returns the replaced job and the stamps (the first, and the raised one
    /// its notice then carries), to be dropped once the notice is queued.
    ///
    /// The restamp changes only the version, and only of this incarnation: a tick fired, written
    /// or completed in between is kept, and a job completed in between stays deleted (its
    /// partition also ignores the notice of an incarnation it has let go of). The first put
    /// decides: once it is stored, the call succeeds. Should the restamp fail, the job stays
    /// stored with the lower version until its next write, and its notice still carries the
    /// stamp above the replaced one, so its partition lets go of the replaced version all the
    /// same.
    async fn put_versioned(
        &self,
        job: &mut StoredJob,
        mode: PutMode,
    ) -> Result<(Option<StoredJob>, Stamp<'_>, Option<Stamp<'_>>), StoreError> {
        let stamp = self.inner.versions.stamp(self.inner.clock.now(), 0);
        job.version = stamp.version;
        let old = self.inner.store.put(job.clone(), mode).await?;
        let mut raised_stamp = None;
        if let Some(old) = &old
            && old.version >= job.version
            && !self.follows_store_feed()
        {
            // The first stamp is held until the notice is sent, so that a partition that has
            // let go of the job at that version still knows it when the notice comes.
            let raised = self.inner.versions.stamp(self.inner.clock.now(), old.version);
            job.version = raised.version;
            let restamp = Mutation::Restamp {
                key: job.key.clone(),
                incarnation: job.incarnation,
                version: raised.version,
            };
            if let Err(err) = self.inner.store.apply(vec![restamp]).await {
                tracing::warn!(
                    job = %job.key,
                    error = %err,
                    "the job is stored, but not again above the version it replaced; its next write will be"
                );
            }
            raised_stamp = Some(raised);
        }
        Ok((old, stamp, raised_stamp))
    }

    /// A fresh incarnation: unique per process by the counter, and across processes by the
    /// creation time mixed in.
    fn next_incarnation(&self, created: jiff::Timestamp) -> u64 {
        let count = self.inner.incarnations.fetch_add(1, Ordering::Relaxed);
        #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
        let nanos = created.as_nanosecond() as u64;
        nanos.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ count.rotate_left(40)
    }

    /// The stored job.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn get(&self, key: &JobKey) -> Result<Option<StoredJob>, EngineError> {
        Ok(self.inner.store.get(key).await?)
    }

    /// Deletes a job and cancels its pending retries; deleting an absent job succeeds.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn delete(&self, key: &JobKey) -> Result<bool, EngineError> {
        let _key = self.inner.keys.lock(key).await;
        self.delete_locked(key).await
    }

    /// [`Engine::delete`] under the key's lock, already held.
    async fn delete_locked(&self, key: &JobKey) -> Result<bool, EngineError> {
        let deleted = self.inner.store.delete(key).await?;
        if deleted.is_some() {
            metrics::counter!("kairos_jobs_deleted_total", "reason" => "api").increment(1);
        }
        let above = deleted.as_ref().map_or(0, |job| job.version);
        let stamp = self.inner.versions.stamp(self.inner.clock.now(), above);
        self.notify(key, Command::Remove(key.clone(), stamp.version)).await;
        Ok(deleted.is_some())
    }

    /// Deletes every job in `scope`.
    ///
    /// # Errors
    /// [`EngineError::Name`] when an owner scope's `name_prefix + "a"` is not a valid name; when
    /// the store fails.
    pub async fn delete_by_scope(&self, scope: &OwnerScope) -> Result<usize, EngineError> {
        if let OwnerScope::Owner { name_prefix, .. } = scope {
            validate_name_prefix(name_prefix)?;
        }
        let keys = self.inner.store.delete_by_scope(scope).await?;
        metrics::counter!("kairos_jobs_deleted_total", "reason" => "api").increment(keys.len() as u64);
        if self.follows_store_feed() {
            // The partitions hear of the deletes from the feed.
            return Ok(keys.len());
        }
        for key in &keys {
            // After any write to the key that was under way: its notice goes first.
            let _key = self.inner.keys.lock(key).await;
            // A job created under the key since the delete is what the partition must keep.
            match self.inner.store.get(key).await {
                Ok(Some(job)) => self.notify(key, Command::Upsert(Box::new(job))).await,
                found => {
                    if let Err(err) = found {
                        tracing::warn!(job = %key, error = %err, "reading a deleted job back failed; assuming it is gone");
                    }
                    let stamp = self.inner.versions.stamp(self.inner.clock.now(), 0);
                    self.notify(key, Command::Remove(key.clone(), stamp.version)).await;
                }
            }
        }
        Ok(keys.len())
    }

    /// Registers a subscriber: it receives the triggers of its routes, beginning with any that
    /// were staged for them, until the [`Subscription`] is dropped.
    pub fn subscribe(&self, registration: &Registration) -> Subscription {
        let (id, rx) = self.inner.router.subscribe(registration);
        Subscription {
            rx,
            answers: Answers { guard: Arc::new(SubscriberGuard { id, router: self.inner.router.clone() }) },
        }
    }

    /// Reports the result of a trigger, by id. Returns `false` for an unknown id (already
    /// reported, or the trigger was redelivered elsewhere).
    pub fn complete(&self, trigger_id: u64, outcome: Outcome) -> bool {
        self.inner.router.complete(None, trigger_id, outcome)
    }

    /// Routing counts: subscribers, and triggers sent or queued for a subscriber's credit.
    pub fn router_stats(&self) -> RouterStats {
        self.inner.router.stats()
    }

    /// The job and its status.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn status(&self, key: &JobKey) -> Result<Option<(StoredJob, JobStatus)>, EngineError> {
        Ok(self.inner.store.get(key).await?.map(|job| {
            let status = status_of(&job);
            (job, status)
        }))
    }

    /// The job's newest trigger records, oldest first, at most `limit`.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn history(&self, key: &JobKey, limit: usize) -> Result<Vec<TriggerRecord>, EngineError> {
        Ok(self.inner.store.history(key, limit).await?)
    }

    /// Pauses a job: it fires nothing until resumed, across restarts and hand-overs; its ttl
    /// still ends it. Pausing a paused job changes nothing.
    ///
    /// A trigger of the job in flight is still delivered, but its answer is not recorded: that
    /// tick is delivered again after resume (at least once).
    ///
    /// # Errors
    /// [`EngineError::NotFound`] for an absent (or finished, hence deleted) job; when the store
    /// fails (nothing changed then).
    pub async fn pause(&self, key: &JobKey) -> Result<JobStatus, EngineError> {
        let _key = self.inner.keys.lock(key).await;
        let job = self.inner.store.get(key).await?.ok_or_else(|| EngineError::NotFound(key.clone()))?;
        if job.paused {
            return Ok(status_of(&job));
        }
        let timing = job.spec.resolve(job.created, &self.inner.config.default_tz)?;
        let paused = self
            .put_steered(StoredJob {
                paused: true,
                // Parked at its expiry: only the ttl can end a paused job (or sooner, while
                // trigger-now requests wait to be taken).
                next_due: pulled(timing.expires.unwrap_or(Timestamp::MAX), &job.manual),
                ..job
            })
            .await?;
        metrics::counter!("kairos_jobs_paused_total").increment(1);
        Ok(status_of(&paused))
    }

    /// Resumes a paused job: it continues from where it was, its misfire policy applied to the
    /// ticks it missed while paused (a tick whose retries were under way is retried now).
    /// Resuming a job that is not paused changes nothing. A job whose ttl passed while paused
    /// is finished: it is deleted, and the status says [`JobState::Finished`].
    ///
    /// # Errors
    /// [`EngineError::NotFound`] for an absent job; when the store fails (nothing changed then).
    pub async fn resume(&self, key: &JobKey) -> Result<JobStatus, EngineError> {
        let _key = self.inner.keys.lock(key).await;
        let job = self.inner.store.get(key).await?.ok_or_else(|| EngineError::NotFound(key.clone()))?;
        if !job.paused {
            return Ok(status_of(&job));
        }
        let now = self.inner.clock.now();
        let timing = job.spec.resolve(job.created, &self.inner.config.default_tz)?;
        let expired = timing.expires.is_some_and(|e| e < now);
        let next_due = if job.progress.attempts > 0 { Some(now) } else { next_tick(&timing, &job.progress) };
        let Some(next_due) = next_due.filter(|_| !expired) else {
            self.delete_locked(key).await?;
            return Ok(JobStatus::new(&job.stats, &job.progress, None, false, false));
        };
        let resumed = self
            .put_steered(StoredJob { paused: false, next_due: pulled(next_due, &job.manual), ..job })
            .await?;
        metrics::counter!("kairos_jobs_resumed_total").increment(1);
        Ok(status_of(&resumed))
    }

    /// Delivers the job once more, now, with its data, through the normal delivery path and
    /// its failure policy. It does not count against `repeats` and does not move the schedule;
    /// it is allowed on a paused job.
    ///
    /// The request is durable: it is written to the store with the job (as a new incarnation,
    /// like a pause), so any replica may take it, and whoever fires the job's partition — now,
    /// after a restart or after a hand-over — delivers it. Once the partition has taken it (and
    /// handed out its first attempt), its retries are held in memory: a restart in between
    /// forgets them. A trigger of the job that is in flight when the request lands is delivered
    /// again later (at least once), and a retry of a failed tick that was waiting is brought
    /// forward to now.
    ///
    /// # Errors
    /// [`EngineError::NotFound`] for an absent job, [`EngineError::Busy`] when
    /// [`MAX_PENDING_TRIGGERS`] requests of the job are still waiting to be taken; when the
    /// store fails (nothing was requested then).
    pub async fn trigger_now(&self, key: &JobKey) -> Result<(), EngineError> {
        let _key = self.inner.keys.lock(key).await;
        let job = self.inner.store.get(key).await?.ok_or_else(|| EngineError::NotFound(key.clone()))?;
        if job.manual.len() >= MAX_PENDING_TRIGGERS {
            return Err(EngineError::Busy);
        }
        let now = self.inner.clock.now();
        let mut manual = job.manual.clone();
        manual.push(now);
        self.put_steered(StoredJob { next_due: pulled(job.next_due, &[now]), manual, ..job }).await?;
        metrics::counter!("kairos_jobs_triggered_total").increment(1);
        Ok(())
    }

    /// Stores `job`, read under its key lock and changed by a steering call, as a new
    /// incarnation (not staged: its partition stages it again if its route is still closed),
    /// stamped above the version read, and tells its partition. Returns what was stored.
    async fn put_steered(&self, job: StoredJob) -> Result<StoredJob, EngineError> {
        let now = self.inner.clock.now();
        let stamp = self.inner.versions.stamp(now, job.version);
        let job = StoredJob {
            staged: false,
            incarnation: self.next_incarnation(now),
            version: stamp.version,
            ..job
        };
        self.inner.store.put(job.clone(), PutMode::Overwrite).await?;
        self.notify(&job.key, Command::Upsert(Box::new(job.clone()))).await;
        Ok(job)
    }

    /// One page of an owner's jobs with their status, ascending by name, after `after_name`:
    /// those whose names start with `filter.name_prefix` and, when given, in `filter.state`.
    /// Reads at most `limit` matching jobs (and as many store pages as it takes to find them).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn list_status(
        &self,
        namespace: &str,
        owner: &Owner,
        filter: &ListFilter,
        after_name: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(StoredJob, JobStatus)>, EngineError> {
        let scope = OwnerScope::owner(namespace, owner, &filter.name_prefix);
        let mut after = after_name.map(|name| JobKey {
            namespace: namespace.into(),
            owner: owner.clone(),
            name: name.into(),
        });
        let mut out = Vec::new();
        while out.len() < limit {
            let page = self.inner.store.list(&scope, after.as_ref(), 256).await?;
            let done = page.len() < 256;
            after = page.last().map(|job| job.key.clone());
            for job in page {
                let status = status_of(&job);
                if filter.state.is_none_or(|s| s == status.state) && out.len() < limit {
                    out.push((job, status));
                }
            }
            if done {
                break;
            }
        }
        Ok(out)
    }

    /// How many jobs of the store are paused, as last counted (`None` before the first count
    /// ends). Counting pages through every stored job, so it runs in the background at most
    /// once per [`PAUSED_COUNT_INTERVAL`], started by this call when the last count is older.
    /// Must be called within a tokio runtime.
    pub fn paused_jobs(&self) -> Option<u64> {
        let now = self.inner.clock.now();
        let mut count = self.inner.paused_count.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let stale = count.counted.is_none_or(|at| now.duration_since(at) >= PAUSED_COUNT_INTERVAL);
        if stale && !count.counting {
            count.counting = true;
            let (store, cell, clock) =
                (self.inner.store.clone(), self.inner.paused_count.clone(), self.inner.clock.clone());
            tokio::spawn(async move {
                let counted = count_paused(store.as_ref()).await;
                let mut count = cell.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                count.counting = false;
                match counted {
                    Ok(n) => {
                        count.value = Some(n);
                        count.counted = Some(clock.now());
                    }
                    Err(err) => {
                        tracing::debug!(error = %err, "counting paused jobs failed; retried at the next scrape")
                    }
                }
            });
        }
        count.value
    }

    /// How many jobs are staged in the store (their route had no subscriber when they fell due).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn staged_count(&self) -> Result<u64, EngineError> {
        Ok(self.inner.store.count_staged().await?)
    }
}

/// `due`, or the oldest waiting trigger-now request when it is earlier (see
/// `StoredJob::manual`).
fn pulled(due: Timestamp, manual: &[Timestamp]) -> Timestamp {
    manual.iter().copied().fold(due, Timestamp::min)
}

/// Pages through every stored job, counting the paused ones.
async fn count_paused(store: &dyn JobStore) -> Result<u64, StoreError> {
    const PAGE: usize = 1000;
    let mut after: Option<JobKey> = None;
    let mut paused = 0;
    loop {
        let page = store.scan_all(after.as_ref(), PAGE).await?;
        paused += page.iter().filter(|j| j.paused).count() as u64;
        match page.last() {
            Some(last) if page.len() == PAGE => after = Some(last.key.clone()),
            _ => return Ok(paused),
        }
    }
}

/// Which jobs [`Engine::list_status`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only names starting with this (all when empty).
    pub name_prefix: String,
    /// Only jobs in this state.
    pub state: Option<JobState>,
}

/// The status of a stored job.
pub fn status_of(job: &StoredJob) -> JobStatus {
    JobStatus::new(&job.stats, &job.progress, Some(job.next_due), job.paused, job.staged)
}

/// A registered subscriber's end: triggers come out of [`Subscription::recv`]. Dropping it
/// unsubscribes, and its unanswered triggers are routed again.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::UnboundedReceiver<Trigger>,
    answers: Answers,
}

/// The answering half of a [`Subscription`] (see [`Subscription::split`]): cheap to clone, and
/// never blocked by the trigger side. The subscriber is unregistered once the subscription and
/// every `Answers` of it are dropped.
#[derive(Debug, Clone)]
pub struct Answers {
    guard: Arc<SubscriberGuard>,
}

#[derive(Debug)]
struct SubscriberGuard {
    id: u64,
    router: Router,
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.router.unsubscribe(self.id);
    }
}

impl Subscription {
    /// The next trigger; `None` once the engine is gone.
    pub async fn recv(&mut self) -> Option<Trigger> {
        self.rx.recv().await
    }

    /// A trigger if one is ready now.
    pub fn try_recv(&mut self) -> Option<Trigger> {
        self.rx.try_recv().ok()
    }

    /// Reports the result of a trigger this subscriber received. Returns `false` when this
    /// subscriber does not hold it.
    pub fn complete(&self, trigger_id: u64, outcome: Outcome) -> bool {
        self.answers.complete(trigger_id, outcome)
    }

    /// Splits the subscription into its triggers and its answers, so that a reader of answers
    /// can run on its own task. Each answer gives the subscriber a credit back, so triggers keep
    /// coming only as long as answers do.
    pub fn split(self) -> (Triggers, Answers) {
        (Triggers { rx: self.rx, _answers: self.answers.clone() }, self.answers)
    }
}

impl Answers {
    /// Reports the result of a trigger this subscriber received. Returns `false` when this
    /// subscriber does not hold it (already answered, or routed elsewhere after a reconnect).
    pub fn complete(&self, trigger_id: u64, outcome: Outcome) -> bool {
        self.guard.router.complete(Some(self.guard.id), trigger_id, outcome)
    }
}

/// The trigger half of a [`Subscription`] (see [`Subscription::split`]).
#[derive(Debug)]
pub struct Triggers {
    rx: mpsc::UnboundedReceiver<Trigger>,
    _answers: Answers,
}

impl Triggers {
    /// The next trigger; `None` once the engine is gone.
    pub async fn recv(&mut self) -> Option<Trigger> {
        self.rx.recv().await
    }

    /// Up to `max` triggers that are ready now, appended to `out`; waits for the first one.
    /// Returns how many were added (0 once the engine is gone).
    pub async fn recv_many(&mut self, out: &mut Vec<Trigger>, max: usize) -> usize {
        self.rx.recv_many(out, max).await
    }
}

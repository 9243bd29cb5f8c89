//! One partition's trigger loop.
//!
//! # Contract
//! The loop keeps at most its share of the engine's window of jobs in memory
//! ([`EngineConfig::partition_window`]), whatever state they are in: waiting for their due
//! time, fired and unanswered (sent to a subscriber or queued for one's credit), or having their
//! new progress written. Everything else
//! stays in the store until the window drains, so memory is bounded by the window however many
//! jobs are stored, overdue or staged. (Jobs created or replaced while the window is full of
//! fired jobs may push it over for a moment; the latest waiting ones are evicted again.)
//!
//! Jobs come from two indexes of the store:
//! * the **due index**, read by range scan in due order. A *frontier* says how far: every job of
//!   the due index at or before it is in memory; jobs past it exist only in the store until a
//!   refill reaches them;
//! * the **staged index**, per route: a job whose trigger found no subscriber of its route is
//!   *staged* (a durable move to the staged index, costing no retry) and leaves memory. When the
//!   route gains a subscriber, the loop pages that route's staged jobs back in, at most half the
//!   window at a time, so the due index keeps the other half and one app's backlog cannot starve
//!   the other apps of the partition.
//!
//! One timer is armed for the head of the waiting jobs, capped (1 s by default) so that
//! wall-clock jumps are noticed. Due jobs are handed to the [`Router`]; a job stays out of the
//! waiting set until its result comes back and the resulting progress is durable, so each job
//! has at most one trigger in flight and its next tick is computed only after the previous one
//! is settled.

use std::collections::{BTreeMap, BTreeSet, HashMap, hash_map};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kairos_core::misfire::{CatchUp, catch_up};
use kairos_core::policy::splitmix64;
use kairos_core::timeline::{Step, after_failure_seeded, after_success, next_tick};
use kairos_core::{Backoff, Clock, JobKey, JobTiming, Route, TriggerOutcome, TriggerRecord};
use kairos_store::{DueCursor, JobStore, Mutation, StoreError, StoredJob, Written};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::EngineConfig;
use crate::router::{Outcome, PartitionEvent, Router, Trigger};
use crate::version::Versions;

/// What the rest of the engine tells a partition.
#[derive(Debug)]
pub(crate) enum Command {
    /// A job was stored (created or overwritten): its durable write has returned, or the
    /// store's change feed reports it (maybe written by another replica, maybe this partition's
    /// own progress write). Ignored when the partition holds that incarnation: it has read the
    /// job from the store already (a due-index scan may read a new job before the notice of its
    /// write arrives) and may have fired it or moved it on since, so taking it again would
    /// deliver a tick twice. Also ignored when the partition has held a version of the key at
    /// least as new (see [`crate::version`]).
    Upsert(Box<StoredJob>),
    /// A job was deleted; its durable delete has returned. With the version stamp of the delete
    /// (from the change feed: its revision).
    Remove(JobKey, u64),
    /// Stop firing, and answer once no trigger of this partition is delivered and unanswered
    /// and no progress write is pending (the partition is about to be handed over).
    Drain(oneshot::Sender<()>),
    /// Forget what is waiting and read the due index again (the change feed missed events).
    Reload,
}

/// A trigger-now delivery: outside the job's schedule, retried under its failure policy. The
/// request is durable until the partition takes it (see `StoredJob::manual`); from then on it
/// is held in memory (a restart forgets a trigger-now that is still retrying).
#[derive(Debug)]
struct Manual {
    key: JobKey,
    incarnation: u64,
    /// When it was asked for (its "tick" in the history).
    requested: Timestamp,
    /// Failed attempts so far.
    attempts: u32,
    /// When the current attempt was handed out, while it is in flight.
    fired: Option<Timestamp>,
}

#[derive(Debug)]
enum Frontier {
    /// Everything up to and including this position is in memory; `None`: nothing loaded yet.
    Upto(Option<DueCursor>),
    /// Every job of the partition is in memory.
    All,
}

impl Frontier {
    fn covers(&self, due: Timestamp, key: &JobKey) -> bool {
        match self {
            Frontier::All => true,
            Frontier::Upto(None) => false,
            Frontier::Upto(Some(c)) => (due, key) <= (c.due, &c.key),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for its due time.
    Waiting,
    /// Handed to the router as trigger `id`; waiting for the app's result.
    InFlight(u64),
    /// Its new progress (or its staging) is being written.
    Writing,
}

#[derive(Debug)]
struct Entry {
    job: StoredJob,
    timing: Arc<JobTiming>,
    state: State,
    /// While in flight: when it fired, and the trigger's span (closed when the entry moves on).
    fired: Option<(Timestamp, tracing::Span)>,
}

/// The metrics every trigger updates, each registered with the recorder on its first use and
/// kept, so a trigger does no label lookup in the recorder's registry (a series still appears
/// only once it has a value). Rarer results (failed, dropped, staged) use the macros directly.
#[derive(Debug)]
struct Meters {
    lateness: LazyLock<metrics::Histogram>,
    delivery: LazyLock<metrics::Histogram>,
    /// `kairos_triggers_total` of successful triggers.
    succeeded: LazyLock<metrics::Counter>,
    /// `kairos_jobs_deleted_total` of jobs done after their last tick.
    completed: LazyLock<metrics::Counter>,
}

impl Default for Meters {
    fn default() -> Self {
        Meters {
            lateness: LazyLock::new(|| metrics::histogram!("kairos_trigger_lateness_seconds")),
            delivery: LazyLock::new(|| metrics::histogram!("kairos_trigger_delivery_seconds")),
            succeeded: LazyLock::new(|| metrics::counter!("kairos_triggers_total", "result" => "success")),
            completed: LazyLock::new(
                || metrics::counter!("kairos_jobs_deleted_total", "reason" => "completed"),
            ),
        }
    }
}

/// Most write attempts a stopping partition makes to settle what it has already decided.
const SETTLE_ATTEMPTS: u32 = 3;

#[allow(clippy::cast_precision_loss)]
fn seconds(d: SignedDuration) -> f64 {
    d.as_secs_f64().max(0.0)
}

type WriteResult = (Vec<Mutation>, Result<Written, StoreError>);

/// What a partition loop shares with the engine.
#[derive(Debug, Clone, Default)]
pub(crate) struct Flags {
    /// Set while the engine drains: fire nothing new, settle what is in flight.
    pub paused: Arc<AtomicBool>,
    /// Set by the loop after its first successful due-index scan (readiness).
    pub loaded: Arc<AtomicBool>,
    /// How many jobs the loop holds in memory, published after every step.
    pub resident: Arc<AtomicUsize>,
    /// How far the loop's window reaches into its due index.
    pub horizon: Horizon,
    /// Set when the engine follows the store's change feed: notices then come from it, and
    /// versions are revisions.
    pub feed_driven: Arc<AtomicBool>,
    /// The engine's version stamps and the feed's position, for their watermarks.
    pub versions: Arc<Versions>,
}

/// How far a partition's window reaches into its due index, for the engine to leave out the
/// [`Command::Upsert`] of a new job that the partition would only forget.
///
/// # Contract
/// When [`Horizon::is_past`] is true for a job that was durably stored *before* the call, and
/// no older version of the job is in the partition's memory (a create, not an overwrite), the
/// partition reads that job from the store with a later scan, so it need not be told. The loop
/// publishes "everything" ([`i64::MAX`]) before each due-index scan and the scan's frontier
/// after it, so a scan that may have missed the job is never followed by a "past" answer.
#[derive(Debug, Clone)]
pub(crate) struct Horizon(Arc<AtomicI64>);

impl Default for Horizon {
    /// Covers everything until the loop publishes its first frontier.
    fn default() -> Self {
        Horizon(Arc::new(AtomicI64::new(i64::MAX)))
    }
}

impl Horizon {
    /// Whether a job due at `due` lies past the window (it is later than the frontier's second).
    pub(crate) fn is_past(&self, due: Timestamp) -> bool {
        due.as_second() > self.0.load(Ordering::SeqCst)
    }

    /// Publishes `frontier`: the whole second of its last position, `i64::MIN` before anything
    /// is loaded, `i64::MAX` when the whole partition is in memory.
    fn publish(&self, frontier: &Frontier) {
        let second = match frontier {
            Frontier::All => i64::MAX,
            Frontier::Upto(None) => i64::MIN,
            Frontier::Upto(Some(cursor)) => cursor.due.as_second(),
        };
        self.0.store(second, Ordering::SeqCst);
    }

    /// While a scan is under way: every new job goes through the partition.
    fn cover_all(&self) {
        self.0.store(i64::MAX, Ordering::SeqCst);
    }
}

pub(crate) struct Partition {
    id: u32,
    store: Arc<dyn JobStore>,
    clock: Arc<dyn Clock>,
    router: Router,
    config: Arc<EngineConfig>,
    /// Most jobs this partition keeps in memory: its share of [`EngineConfig::window`].
    window: usize,
    flags: Flags,
    /// Waiting jobs, by `(next_due, key)`.
    waiting: BTreeSet<(Timestamp, JobKey)>,
    /// Every job in memory, whatever its state.
    jobs: HashMap<JobKey, Entry>,
    /// Jobs in memory whose stored copy is staged.
    staged_in_memory: usize,
    frontier: Frontier,
    /// Routes with a subscriber whose staged jobs of this partition may still be in the store,
    /// with where their scan has got to.
    unstaging: BTreeMap<Route, Option<DueCursor>>,
    /// The route after which the next unstaging scan starts (routes take turns).
    last_unstaged: Option<Route>,
    /// Mutations waiting for the next write.
    pending: Vec<Mutation>,
    writing: bool,
    /// After a failed write or scan: not before this instant.
    backoff_until: Option<Timestamp>,
    /// Delays after failed writes or scans: jittered, so that the partitions of every replica
    /// do not all come back to a store at the same instant.
    backoff: Backoff,
    written_tx: mpsc::UnboundedSender<WriteResult>,
    written_rx: mpsc::UnboundedReceiver<WriteResult>,
    /// Set by [`Command::Drain`]: nothing new fires, and the sender hears when all is settled.
    draining: Option<Vec<oneshot::Sender<()>>>,
    /// Trigger-now deliveries by trigger id (in flight) ...
    manual: HashMap<u64, Manual>,
    /// ... and those waiting for a retry, by due time.
    manual_waiting: BTreeMap<(Timestamp, u64), Manual>,
    /// Keys this partition let go of (deleted, done, evicted or moved past the frontier), with
    /// the newest version it held or was told deleted, while a notice of an older version may
    /// still come (see [`Gone`]).
    gone: Gone,
    meters: Meters,
}

impl Partition {
    pub(crate) fn new(
        id: u32,
        store: Arc<dyn JobStore>,
        clock: Arc<dyn Clock>,
        router: Router,
        config: Arc<EngineConfig>,
        flags: Flags,
    ) -> Self {
        let window = config.partition_window(store.partitions());
        // Unbounded: at most one write per partition is outstanding, so this holds at most one.
        let (written_tx, written_rx) = mpsc::unbounded_channel();
        Partition {
            id,
            store,
            clock,
            router,
            config,
            window,
            flags,
            waiting: BTreeSet::new(),
            jobs: HashMap::new(),
            staged_in_memory: 0,
            frontier: Frontier::Upto(None),
            unstaging: BTreeMap::new(),
            last_unstaged: None,
            pending: Vec::new(),
            writing: false,
            backoff_until: None,
            backoff: Backoff::new(Duration::from_millis(50), Duration::from_secs(5)),
            written_tx,
            written_rx,
            draining: None,
            manual: HashMap::new(),
            manual_waiting: BTreeMap::new(),
            gone: Gone::default(),
            meters: Meters::default(),
        }
    }

    /// Runs until `stop` is cancelled or the command channel closes.
    pub(crate) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut events: mpsc::UnboundedReceiver<PartitionEvent>,
        stop: CancellationToken,
    ) {
        // Staged jobs of routes that already have a subscriber can go out at once.
        for route in self.router.open_routes() {
            self.unstaging.insert(route, None);
        }
        loop {
            // Every notice of a version below it is queued already: once the queue is empty,
            // none of them can still come. Read (a lock shared with every writer) only while
            // keys are kept; those let go of meanwhile wait for the next turn.
            let watermark = if self.gone.is_empty() {
                None
            } else if self.local_notices() {
                Some(self.flags.versions.watermark())
            } else {
                Some(self.flags.versions.feed_watermark())
            };
            if let Some(watermark) = watermark
                && commands.is_empty()
            {
                self.gone.forget_below(watermark);
            }
            let now = self.clock.now();
            if self.backoff_until.is_none_or(|t| t <= now) {
                self.backoff_until = None;
                self.refill().await;
                self.flush();
            }
            self.fire_due(now);
            // Staging decided while firing.
            self.flush();
            self.answer_drain(&events);
            self.flags.resident.store(self.jobs.len(), Ordering::Relaxed);

            let mut deadline = now.saturating_add(self.config.max_sleep).unwrap_or(now);
            // A draining or paused partition fires nothing, so an overdue head must not wake
            // it (it would spin).
            if let Some((head, _)) = self.waiting.first()
                && !self.fires_nothing()
            {
                deadline = deadline.min(*head);
            }
            if let Some(((head, _), _)) = self.manual_waiting.first_key_value()
                && !self.fires_nothing()
            {
                deadline = deadline.min(*head);
            }
            if let Some(t) = self.backoff_until {
                deadline = deadline.min(t);
            }
            let sleep = self.clock.sleep_until(deadline);
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                Some(written) = self.written_rx.recv() => self.on_written(written),
                Some(event) = events.recv() => {
                    self.on_event(event);
                    // Take what else is ready in one go, so a burst is one write.
                    while let Ok(more) = events.try_recv() {
                        self.on_event(more);
                    }
                    self.flush();
                }
                command = commands.recv() => match command {
                    Some(command) => {
                        self.on_command(command);
                        // Apply every change already asked for before firing again (a pause
                        // must not lose to a tick that fell due meanwhile).
                        while let Ok(more) = commands.try_recv() {
                            self.on_command(more);
                        }
                        if let Some(watermark) = watermark {
                            self.gone.forget_below(watermark);
                        }
                    }
                    None => break,
                },
                () = sleep => {}
            }
        }
        self.settle(&mut events).await;
        self.router.detach_partition(self.id);
        self.flags.resident.store(0, Ordering::Relaxed);
    }

    /// On stop: applies the results that already came back and writes the progress they
    /// decided, so a graceful stop does not make the next owner fire those ticks again.
    /// Bounded: a store that keeps failing leaves the rest to be fired again (at least once).
    async fn settle(&mut self, events: &mut mpsc::UnboundedReceiver<PartitionEvent>) {
        while let Ok(event) = events.try_recv() {
            self.on_event(event);
        }
        let mut attempts = 0;
        while self.writing || !self.pending.is_empty() {
            if !self.writing {
                if attempts == SETTLE_ATTEMPTS {
                    tracing::warn!(
                        partition = self.id,
                        mutations = self.pending.len(),
                        "stopping with unwritten progress; those ticks fire again"
                    );
                    return;
                }
                attempts += 1;
                self.backoff_until = None;
                self.flush();
            }
            match self.written_rx.recv().await {
                Some(written) => self.on_written(written),
                None => return,
            }
        }
    }

    fn on_event(&mut self, event: PartitionEvent) {
        match event {
            PartitionEvent::Completed { trigger, outcome } if self.manual.contains_key(&trigger.id) => {
                self.on_manual_completion(&trigger, Some(outcome));
            }
            PartitionEvent::Unroutable(trigger) if self.manual.contains_key(&trigger.id) => {
                self.on_manual_completion(&trigger, None);
            }
            PartitionEvent::Completed { trigger, outcome } => self.on_completion(trigger, outcome),
            PartitionEvent::Unroutable(trigger) => {
                if self.holds(&trigger) {
                    self.stage(&trigger.key);
                }
            }
            PartitionEvent::RouteOpened(route) => {
                // From the start: jobs staged while the route was closed may sit before an
                // earlier scan's cursor.
                self.unstaging.insert(route, None);
            }
        }
    }

    /// Whether `trigger` is the one the job's entry is waiting on.
    fn holds(&self, trigger: &Trigger) -> bool {
        self.jobs.get(&trigger.key).is_some_and(|e| {
            e.job.incarnation == trigger.incarnation && e.state == State::InFlight(trigger.id)
        })
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Upsert(job) => {
                if self
                    .jobs
                    .get(&job.key)
                    .is_some_and(|e| e.job.incarnation == job.incarnation || job.version <= e.job.version)
                {
                    return;
                }
                if self.gone.covers(&job.key, job.version) {
                    return;
                }
                // The engine's own notices: only the restamp of an overwrite (see
                // `Engine::put_versioned`) tells of an incarnation again, above the version first
                // stored. A partition that has let go of that incarnation since (fired and
                // completed it, or left it to a later scan) must not take it back.
                if self.local_notices() && self.gone.let_go_of(&job.key, job.incarnation) {
                    return;
                }
                self.forget(&job.key);
                if job.staged {
                    // Paged in from the staged index once its route is open; admitted now when
                    // it already is.
                    if self.router.is_open(&Route::of(&job.key)) {
                        self.admit(*job);
                    }
                } else if self.frontier.covers(job.next_due, &job.key) {
                    self.admit(*job);
                }
            }
            Command::Remove(key, version) => {
                // From the feed, a delete older than what a scan read (the job was created
                // again) changes nothing. Without it, a delete's stamp is above the version it
                // deleted, but a bulk delete's may not be (its read-back decides instead).
                if !self.local_notices() && self.jobs.get(&key).is_some_and(|e| e.job.version > version) {
                    return;
                }
                self.forget(&key);
                self.gone.note(key, version, None, self.window);
            }
            Command::Drain(done) => {
                // Triggers still queued for a subscriber's credit are taken back: the next owner
                // fires them from the store.
                let queued: Vec<(JobKey, u64)> = self
                    .jobs
                    .iter()
                    .filter_map(|(k, e)| match e.state {
                        State::InFlight(id) => Some((k.clone(), id)),
                        _ => None,
                    })
                    .collect();
                for (key, id) in queued {
                    if self.router.recall(&key, id) {
                        self.let_go(&key);
                    }
                }
                self.draining.get_or_insert_with(Vec::new).push(done);
            }
            Command::Reload => {
                // Jobs in flight or being written stay: their results still apply, and a scan
                // skips keys already in memory.
                let waiting: Vec<JobKey> = self.waiting.iter().map(|(_, k)| k.clone()).collect();
                for key in waiting {
                    self.take(&key);
                }
                self.set_frontier(Frontier::Upto(None));
                for route in self.router.open_routes() {
                    self.unstaging.insert(route, None);
                }
            }
        }
    }

    /// Answers drain requests once nothing of this partition is delivered and unanswered and
    /// every result has been written.
    fn answer_drain(&mut self, events: &mpsc::UnboundedReceiver<PartitionEvent>) {
        if self.draining.as_ref().is_none_or(Vec::is_empty) {
            return;
        }
        // The router removes a delivered trigger and queues its completion under one lock, so
        // reading its count first and the queue second misses no result.
        if self.router.sent_of(self.id) > 0 || !events.is_empty() || self.writing || !self.pending.is_empty()
        {
            return;
        }
        for done in self.draining.iter_mut().flat_map(std::mem::take) {
            let _ = done.send(());
        }
    }

    /// Puts `entry` in memory (waiting when its state says so).
    fn insert(&mut self, entry: Entry) {
        let key = entry.job.key.clone();
        if entry.state == State::Waiting {
            self.waiting.insert((entry.job.next_due, key.clone()));
        }
        if entry.job.staged {
            self.staged_in_memory += 1;
        }
        if let Some(old) = self.jobs.insert(key, entry) {
            // Callers take a key out before putting it back; keep the counts right regardless.
            self.uncount(&old);
        }
    }

    /// Takes `key` out of memory. A result for it that arrives later is ignored.
    fn take(&mut self, key: &JobKey) -> Option<Entry> {
        let entry = self.jobs.remove(key)?;
        self.uncount(&entry);
        Some(entry)
    }

    /// [`Partition::take`] for good (until a scan reads the key again): a notice of the version
    /// it held, or an older one, is then ignored (see [`Gone`]).
    fn let_go(&mut self, key: &JobKey) -> Option<Entry> {
        let entry = self.take(key)?;
        self.note_gone(&entry);
        Some(entry)
    }

    fn note_gone(&mut self, entry: &Entry) {
        self.gone.note(entry.job.key.clone(), entry.job.version, Some(entry.job.incarnation), self.window);
    }

    /// Whether notices come from this engine's own writes (stamped by it), not from the
    /// store's change feed (whose versions are revisions).
    fn local_notices(&self) -> bool {
        !self.flags.feed_driven.load(Ordering::Relaxed)
    }

    fn uncount(&mut self, entry: &Entry) {
        if entry.state == State::Waiting {
            self.waiting.remove(&(entry.job.next_due, entry.job.key.clone()));
        }
        if entry.job.staged {
            self.staged_in_memory -= 1;
        }
    }

    /// Drops `key` from memory (it was deleted or replaced); a trigger of it still queued for a
    /// subscriber's credit is taken back.
    fn forget(&mut self, key: &JobKey) {
        if let Some(entry) = self.let_go(key)
            && let State::InFlight(id) = entry.state
        {
            self.router.recall(key, id);
        }
    }

    /// Puts a stored job in memory, waiting (the caller checked the frontier or the route).
    fn admit(&mut self, job: StoredJob) {
        let timing = match job.spec.resolve(job.created, &self.config.default_tz) {
            Ok(timing) => Arc::new(timing),
            Err(err) => {
                // Accepted jobs always resolve; this means the stored data or the time zone
                // database changed under us. Keep the job stored, do not fire it.
                tracing::error!(job = %job.key, error = %err, "stored job no longer resolves; not firing it");
                return;
            }
        };
        self.insert(Entry { job, timing, state: State::Waiting, fired: None });
        self.evict_overflow();
    }

    /// Keeps memory within the window by evicting the latest waiting jobs of the due index
    /// (they are in the store already) and pulling the frontier in. Staged, fired and writing
    /// jobs are never evicted.
    fn evict_overflow(&mut self) {
        let mut evicted = false;
        while self.jobs.len() > self.window {
            let victim =
                self.waiting.iter().rev().find(|(_, k)| self.jobs.get(k).is_some_and(|e| !e.job.staged));
            let Some((_, key)) = victim.cloned() else { break };
            self.let_go(&key);
            evicted = true;
        }
        if evicted {
            let last =
                self.waiting.iter().rev().find(|(_, k)| self.jobs.get(k).is_some_and(|e| !e.job.staged));
            // With no waiting job of the due index left, the next scan starts over and skips
            // what is in memory.
            self.set_frontier(Frontier::Upto(
                last.map(|(due, key)| DueCursor { due: *due, key: key.clone() }),
            ));
        }
    }

    fn set_frontier(&mut self, frontier: Frontier) {
        self.flags.horizon.publish(&frontier);
        self.frontier = frontier;
    }

    /// Pages jobs in from the store when memory has room.
    async fn refill(&mut self) {
        self.unstage().await;
        if self.backoff_until.is_none() {
            self.refill_window().await;
        }
        if self.backoff_until.is_none() {
            self.flags.loaded.store(true, Ordering::Release);
        }
    }

    /// Pages staged jobs of routes with a subscriber back in, up to half the window.
    async fn unstage(&mut self) {
        let cap = (self.window / 2).max(1);
        while self.staged_in_memory < cap && !self.fires_nothing() {
            let next = match &self.last_unstaged {
                Some(last) => self
                    .unstaging
                    .range::<Route, _>((std::ops::Bound::Excluded(last), std::ops::Bound::Unbounded))
                    .next()
                    .or_else(|| self.unstaging.iter().next()),
                None => self.unstaging.iter().next(),
            };
            let Some((route, cursor)) = next.map(|(r, c)| (r.clone(), c.clone())) else { return };
            self.last_unstaged = Some(route.clone());
            if !self.router.is_open(&route) {
                self.unstaging.remove(&route);
                continue;
            }
            let want = cap - self.staged_in_memory;
            let jobs = match self.store.scan_staged(self.id, &route, cursor.as_ref(), want).await {
                Ok(jobs) => jobs,
                Err(err) => {
                    tracing::warn!(partition = self.id, %route, error = %err, "staged index scan failed; retrying");
                    self.back_off();
                    return;
                }
            };
            let last = jobs.last().map(|j| DueCursor { due: j.next_due, key: j.key.clone() });
            let complete = jobs.len() < want;
            for job in jobs {
                // A job in memory is newer there than in this scan.
                if !self.jobs.contains_key(&job.key) {
                    self.admit(job);
                }
            }
            match (complete, last) {
                (false, Some(last)) => {
                    self.unstaging.insert(route, Some(last));
                }
                _ => {
                    self.unstaging.remove(&route);
                }
            }
        }
    }

    /// Loads the next stretch of the due index when memory runs low. The due index gets the
    /// window less the staged jobs in memory (which take at most half of it), so jobs due now
    /// keep coming in while a route's staged backlog pages in.
    async fn refill_window(&mut self) {
        loop {
            let budget = self.window.saturating_sub(self.staged_in_memory).max(1);
            let resident = self.jobs.len() - self.staged_in_memory;
            if resident * 2 >= budget {
                return;
            }
            let after = match &self.frontier {
                Frontier::All => return,
                Frontier::Upto(cursor) => cursor.clone(),
            };
            let want = budget - resident;
            // A job stored while the scan runs may be missed by it and still land before its
            // end: until the new frontier is known, the engine tells this loop of every job.
            self.flags.horizon.cover_all();
            let jobs = match self.store.scan_due(self.id, after.as_ref(), want).await {
                Ok(jobs) => jobs,
                Err(err) => {
                    tracing::warn!(partition = self.id, error = %err, "due index scan failed; retrying");
                    self.flags.horizon.publish(&self.frontier);
                    self.back_off();
                    return;
                }
            };
            self.backoff.reset();
            let last = jobs.last().map(|j| DueCursor { due: j.next_due, key: j.key.clone() });
            let complete = jobs.len() < want;
            // At most `want` jobs come in, so memory cannot overflow (and evict) here.
            for job in jobs {
                // A job already in memory is newer there than in this scan.
                if !self.jobs.contains_key(&job.key) {
                    self.admit(job);
                }
            }
            self.set_frontier(match (complete, last) {
                (false, Some(last)) => Frontier::Upto(Some(last)),
                _ => Frontier::All,
            });
        }
    }

    /// Whether this partition is draining for a hand-over or the engine is draining to stop.
    fn fires_nothing(&self) -> bool {
        self.draining.is_some() || self.flags.paused.load(Ordering::Acquire)
    }

    fn fire_due(&mut self, now: Timestamp) {
        if self.fires_nothing() {
            // The next owner fires these.
            return;
        }
        self.fire_manual(now);
        while let Some((due, _)) = self.waiting.first() {
            if *due > now {
                break;
            }
            let Some((mut due, key)) = self.waiting.pop_first() else { break };
            let Some(entry) = self.jobs.get_mut(&key) else { continue };
            if !entry.job.manual.is_empty() {
                // Trigger-now requests pulled the job forward: take them, then put the job back
                // where its own timeline has it.
                let incarnation = entry.job.incarnation;
                for requested in std::mem::take(&mut entry.job.manual) {
                    let manual =
                        Manual { key: key.clone(), incarnation, requested, attempts: 0, fired: None };
                    let id = self.router.next_trigger_id();
                    self.manual_waiting.insert((requested, id), manual);
                }
                let own_due = if entry.job.paused {
                    Some(entry.timing.expires.unwrap_or(Timestamp::MAX))
                } else if entry.job.progress.attempts > 0 {
                    // A waiting retry's instant was not kept: it goes now.
                    Some(now)
                } else {
                    next_tick(&entry.timing, &entry.job.progress)
                };
                match own_due {
                    Some(own) if own <= now && !entry.job.paused => due = own,
                    // Durably back at its own due (the progress write clears the requests).
                    own => {
                        requeue(entry, &mut self.pending, key, own);
                        continue;
                    }
                }
            }
            if entry.job.paused {
                // A paused job waits at its expiry: its ttl has passed, it is finished.
                entry.state = State::Writing;
                metrics::counter!("kairos_jobs_deleted_total", "reason" => "expired_while_paused")
                    .increment(1);
                self.pending.push(Mutation::Complete { key, incarnation: entry.job.incarnation });
                continue;
            }
            let policy = entry.timing.misfire_policy;
            if entry.job.progress.attempts == 0 && !policy.is_default() {
                let misfire = catch_up(&entry.timing, &entry.job.progress, now, &policy);
                if misfire.skipped || misfire.progress != entry.job.progress {
                    let name = policy.catch_up.as_str();
                    metrics::counter!("kairos_misfires_total", "policy" => name).increment(1);
                    // The missed ticks this leaves undelivered: from the first missed one up to
                    // the one delivered next (coalesced under `once`, dropped under `skip` or
                    // the window).
                    let first = next_tick(&entry.timing, &entry.job.progress);
                    let resume = next_tick(&entry.timing, &misfire.progress);
                    if let Some(first) = first {
                        let dropped = ticks_between(&entry.timing, first, resume.unwrap_or(now));
                        // `once` delivers the newest missed tick for the ones before it.
                        let delivered_now = resume.is_some_and(|r| r <= now);
                        let action = if policy.catch_up == CatchUp::Once && delivered_now {
                            "coalesced"
                        } else {
                            "skipped"
                        };
                        metrics::counter!("kairos_misfire_ticks_total", "policy" => name, "action" => action)
                            .increment(dropped);
                    }
                    entry.job.progress = misfire.progress;
                    match next_tick(&entry.timing, &misfire.progress) {
                        Some(next) if next <= now => due = next,
                        // Nothing to deliver now: wait for the next tick, durably.
                        next => {
                            requeue(entry, &mut self.pending, key, next);
                            continue;
                        }
                    }
                }
            }
            let trigger = Trigger {
                id: self.router.next_trigger_id(),
                key,
                data: entry.job.spec.data.clone(),
                due,
                incarnation: entry.job.incarnation,
                partition: self.id,
            };
            let id = trigger.id;
            let attempt = entry.job.progress.attempts + 1;
            entry.state = State::InFlight(id);
            let key = trigger.key.clone();
            match self.router.dispatch(trigger) {
                Ok(()) => {
                    let lateness = now.duration_since(due);
                    self.meters.lateness.record(seconds(lateness));
                    // Debug level: at the default level no span is kept per trigger in flight.
                    let span = tracing::debug_span!("trigger", job = %key, id, attempt, outcome = tracing::field::Empty);
                    span.in_scope(
                        || tracing::debug!(%due, lateness_ms = lateness.as_millis(), "trigger fired"),
                    );
                    if let Some(entry) = self.jobs.get_mut(&key) {
                        entry.fired = Some((now, span));
                    }
                }
                // No subscriber of its route: the job waits in the store for one.
                Err(_) => self.stage(&key),
            }
        }
        // Trigger-now requests taken above go out at once.
        self.fire_manual(now);
    }

    /// Moves a job whose trigger found no subscriber to the staged index (no retry is spent) and
    /// out of memory once that is durable.
    fn stage(&mut self, key: &JobKey) {
        let Some(entry) = self.jobs.get_mut(key) else { return };
        entry.fired = None;
        if entry.job.staged {
            // Already in the staged index: nothing to write.
            self.let_go(key);
            return;
        }
        if entry.state == State::Waiting {
            self.waiting.remove(&(entry.job.next_due, key.clone()));
        }
        entry.state = State::Writing;
        tracing::debug!(job = %key, due = %entry.job.next_due, "no subscriber for the job's route; staged");
        metrics::counter!("kairos_triggers_total", "result" => "staged").increment(1);
        self.pending.push(Mutation::Stage { key: key.clone(), incarnation: entry.job.incarnation });
        let now = self.clock.now();
        let record = TriggerRecord {
            tick: next_tick(&entry.timing, &entry.job.progress).unwrap_or(entry.job.next_due),
            fired_at: now,
            answered_at: now,
            attempt: entry.job.progress.attempts + 1,
            outcome: TriggerOutcome::Undeliverable,
            manual: false,
        };
        entry.job.stats = entry.job.stats.after(&record);
        self.pending.push(Mutation::Record {
            key: key.clone(),
            incarnation: entry.job.incarnation,
            stats: entry.job.stats,
            record,
            keep: self.config.history,
        });
    }

    fn on_completion(&mut self, trigger: Trigger, outcome: Outcome) {
        if !self.holds(&trigger) {
            return;
        }
        let Some(entry) = self.jobs.get_mut(&trigger.key) else { return };
        let tick = next_tick(&entry.timing, &entry.job.progress).unwrap_or(trigger.due);
        // The jitter of an exponential policy: fixed per job incarnation and tick.
        let seed = splitmix64(entry.job.incarnation ^ u64::from(entry.job.progress.count));
        let Step { progress, due } = match outcome {
            Outcome::Success => after_success(&entry.timing, &entry.job.progress),
            Outcome::Failed => after_failure_seeded(&entry.timing, &entry.job.progress, trigger.due, seed),
        };
        // A failure is retried when it counted one more attempt of the same tick; otherwise
        // the policy gave the tick up.
        let result = match outcome {
            Outcome::Success => TriggerOutcome::Success,
            Outcome::Failed if progress.attempts > entry.job.progress.attempts => TriggerOutcome::Failed,
            Outcome::Failed => TriggerOutcome::Dropped,
        };
        match result {
            TriggerOutcome::Success => self.meters.succeeded.increment(1),
            _ => metrics::counter!("kairos_triggers_total", "result" => result.as_str()).increment(1),
        }
        if result == TriggerOutcome::Failed {
            metrics::counter!("kairos_retries_total", "policy" => entry.timing.failure_policy.kind())
                .increment(1);
        }
        let now = self.clock.now();
        let record = TriggerRecord {
            tick,
            fired_at: entry.fired.as_ref().map_or(now, |(fired, _)| *fired),
            answered_at: now,
            attempt: entry.job.progress.attempts + 1,
            outcome: result,
            manual: false,
        };
        entry.job.stats = entry.job.stats.after(&record);
        if let Some((fired, span)) = entry.fired.take() {
            self.meters.delivery.record(seconds(now.duration_since(fired)));
            span.record("outcome", result.as_str());
            let (job, id, attempt) = (&trigger.key, trigger.id, entry.job.progress.attempts + 1);
            span.in_scope(|| match result {
                TriggerOutcome::Success => tracing::debug!(next_due = ?due, "trigger completed"),
                TriggerOutcome::Failed => tracing::info!(%job, id, attempt, next_attempt = ?due, "trigger failed; will retry"),
                _ => tracing::warn!(%job, id, attempt, next_due = ?due, "trigger failed; no retries left, tick dropped"),
            });
        }
        if due.is_none() {
            self.meters.completed.increment(1);
        }
        entry.job.progress = progress;
        entry.state = State::Writing;
        let key = trigger.key;
        let incarnation = trigger.incarnation;
        match due {
            Some(next_due) => {
                entry.job.next_due = next_due;
                let stats = entry.job.stats;
                self.pending.push(Mutation::Progress { key: key.clone(), incarnation, progress, next_due });
                self.pending.push(Mutation::Record {
                    key,
                    incarnation,
                    stats,
                    record,
                    keep: self.config.history,
                });
            }
            None => self.pending.push(Mutation::Complete { key, incarnation }),
        }
    }

    /// Hands out the trigger-now deliveries that are due.
    fn fire_manual(&mut self, now: Timestamp) {
        while let Some(entry) = self.manual_waiting.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let mut manual = entry.remove();
            let Some(job) = self.jobs.get(&manual.key).filter(|e| e.job.incarnation == manual.incarnation)
            else {
                // Deleted, replaced or paged out meanwhile: the extra delivery is dropped.
                continue;
            };
            let trigger = Trigger {
                id: self.router.next_trigger_id(),
                key: manual.key.clone(),
                data: job.job.spec.data.clone(),
                due: manual.requested,
                incarnation: manual.incarnation,
                partition: self.id,
            };
            let id = trigger.id;
            manual.fired = Some(now);
            self.manual.insert(id, manual);
            if let Err(trigger) = self.router.dispatch(trigger) {
                self.on_manual_completion(&trigger, None);
            }
        }
    }

    /// A trigger-now delivery was answered (`None`: no subscriber): history, stats, and a
    /// retry under the job's failure policy. It never moves the job's schedule or count.
    fn on_manual_completion(&mut self, trigger: &Trigger, outcome: Option<Outcome>) {
        let Some(mut manual) = self.manual.remove(&trigger.id) else { return };
        let now = self.clock.now();
        let Some(entry) = self.jobs.get_mut(&manual.key).filter(|e| e.job.incarnation == manual.incarnation)
        else {
            return;
        };
        let attempt = manual.attempts + 1;
        let retry = match outcome {
            Some(Outcome::Failed) => {
                let seed = splitmix64(entry.job.incarnation ^ manual.requested.as_nanosecond() as u64);
                entry.timing.failure_policy.retry_delay_seeded(attempt, seed)
            }
            _ => None,
        };
        let record = TriggerRecord {
            tick: manual.requested,
            fired_at: manual.fired.unwrap_or(now),
            answered_at: now,
            attempt,
            outcome: match (outcome, retry) {
                (Some(Outcome::Success), _) => TriggerOutcome::Success,
                (Some(Outcome::Failed), Some(_)) => TriggerOutcome::Failed,
                (Some(Outcome::Failed), None) => TriggerOutcome::Dropped,
                (None, _) => TriggerOutcome::Undeliverable,
            },
            manual: true,
        };
        entry.job.stats = entry.job.stats.after(&record);
        self.pending.push(Mutation::Record {
            key: manual.key.clone(),
            incarnation: manual.incarnation,
            stats: entry.job.stats,
            record,
            keep: self.config.history,
        });
        if let Some(delay) = retry {
            metrics::counter!("kairos_retries_total", "policy" => entry.timing.failure_policy.kind())
                .increment(1);
            manual.attempts = attempt;
            manual.fired = None;
            let at = now.saturating_add(delay).unwrap_or(now);
            let id = self.router.next_trigger_id();
            self.manual_waiting.insert((at, id), manual);
        }
    }

    /// Starts writing the pending mutations unless a write is already under way.
    fn flush(&mut self) {
        if self.writing || self.pending.is_empty() || self.backoff_until.is_some() {
            return;
        }
        self.writing = true;
        let batch = std::mem::take(&mut self.pending);
        let store = self.store.clone();
        let done = self.written_tx.clone();
        tokio::spawn(async move {
            let result = store.apply(batch.clone()).await;
            let _ = done.send((batch, result));
        });
    }

    fn on_written(&mut self, (batch, result): WriteResult) {
        self.writing = false;
        let written = match result {
            Ok(written) => written,
            Err(err) => {
                tracing::warn!(partition = self.id, error = %err, mutations = batch.len(), "progress write failed; retrying");
                // Keep the order: the failed batch goes before anything queued since.
                let newer = std::mem::replace(&mut self.pending, batch);
                self.pending.extend(newer);
                self.back_off();
                return;
            }
        };
        self.backoff.reset();
        // With the change feed, each write comes back as an event at the version the store gave
        // it: the job holds (or is let go at) that version, so the echo is known as its own.
        let mut versions = written.into_iter();
        for mutation in batch {
            let version = versions.next().flatten();
            let (key, incarnation) = match &mutation {
                Mutation::Progress { key, incarnation, .. }
                | Mutation::Complete { key, incarnation }
                | Mutation::Stage { key, incarnation } => (key, *incarnation),
                // History rides along with the mutation that moves the job; it moves nothing. A
                // partition never restamps (the engine does, outside any partition).
                Mutation::Record { .. } | Mutation::Restamp { .. } => continue,
            };
            let current = self
                .jobs
                .get(key)
                .is_some_and(|e| e.job.incarnation == incarnation && e.state == State::Writing);
            if !current {
                continue;
            }
            let Some(mut entry) = self.take(key) else { continue };
            entry.job.version = entry.job.version.max(version.unwrap_or(0));
            let stays = match mutation {
                Mutation::Progress { next_due, .. } => {
                    entry.job.staged = false;
                    self.frontier.covers(next_due, &entry.job.key)
                }
                // The route may have gained a subscriber while this was written.
                Mutation::Stage { .. } => {
                    entry.job.staged = true;
                    self.router.is_open(&Route::of(&entry.job.key))
                }
                Mutation::Complete { .. } | Mutation::Record { .. } | Mutation::Restamp { .. } => false,
            };
            if stays {
                entry.state = State::Waiting;
                self.insert(entry);
            } else {
                self.note_gone(&entry);
            }
        }
        self.evict_overflow();
        self.flush();
    }

    /// Nothing is written or read before the next delay has passed: 50 ms, doubling up to 5 s,
    /// each shortened by up to half at random.
    fn back_off(&mut self) {
        let delay = SignedDuration::try_from(self.backoff.next_delay()).unwrap_or(SignedDuration::MAX);
        let now = self.clock.now();
        self.backoff_until = Some(now.saturating_add(delay).unwrap_or(now));
    }
}

/// Keys a partition let go of, with the newest version it held of each (or was told deleted),
/// kept while a notice of that version or an older one may still be on its way: such a notice
/// must not bring the key back (it would fire a done job again, or a stale version). A key is
/// forgotten once the engine's watermark has passed its version and the command queue was
/// empty after reading it (see [`crate::version`]), or, to bound memory, when more than the
/// partition window's worth of keys (at least [`Gone::MIN_CAP`]) are kept: the oldest versions
/// go first, and a notice late by that much may deliver a tick again (at least once).
#[derive(Debug, Default)]
struct Gone {
    /// The version kept for each key, and the incarnation let go of at it (`None` for a delete).
    by_key: HashMap<JobKey, (u64, Option<u64>)>,
    by_version: BTreeSet<(u64, JobKey)>,
}

impl Gone {
    /// The fewest keys kept before the oldest go, whatever the window: 64 (≈ 16 KiB; 4 MiB
    /// over 256 partitions at most, in the rare case that keys outlive the watermark).
    const MIN_CAP: usize = 64;

    /// Keeps `version` for `key` (or the newer one already kept), and the `incarnation` let go
    /// of (`None` for a delete). Version 0 (a record from before versions, or a
    /// change-feed delete) is never compared, so not kept.
    fn note(&mut self, key: JobKey, version: u64, incarnation: Option<u64>, cap: usize) {
        if version == 0 {
            return;
        }
        match self.by_key.entry(key) {
            hash_map::Entry::Occupied(mut kept) => {
                let (kept_version, _) = *kept.get();
                if kept_version >= version {
                    // The newest incarnation let go of is the one a restamp may still tell of.
                    if incarnation.is_some() {
                        kept.get_mut().1 = incarnation;
                    }
                    return;
                }
                self.by_version.remove(&(kept_version, kept.key().clone()));
                *kept.get_mut() = (version, incarnation);
                self.by_version.insert((version, kept.key().clone()));
            }
            hash_map::Entry::Vacant(vacant) => {
                self.by_version.insert((version, vacant.key().clone()));
                vacant.insert((version, incarnation));
            }
        }
        while self.by_key.len() > cap.max(Self::MIN_CAP) {
            let Some((_, key)) = self.by_version.pop_first() else { break };
            self.by_key.remove(&key);
        }
    }

    fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Whether a notice of `version` for `key` is no newer than what was let go.
    fn covers(&self, key: &JobKey, version: u64) -> bool {
        self.by_key.get(key).is_some_and(|&(kept, _)| version <= kept)
    }

    /// Whether `incarnation` of `key` is the one let go of.
    fn let_go_of(&self, key: &JobKey, incarnation: u64) -> bool {
        self.by_key.get(key).is_some_and(|&(_, kept)| kept == Some(incarnation))
    }

    /// Forgets every key kept at a version below `watermark`.
    fn forget_below(&mut self, watermark: u64) {
        while let Some((version, _)) = self.by_version.first()
            && *version < watermark
        {
            let Some((_, key)) = self.by_version.pop_first() else { break };
            self.by_key.remove(&key);
        }
    }
}

/// Puts a job taken off the waiting set back at `next` with its progress, durably, or
/// completes it when it has no tick left (`None`).
fn requeue(entry: &mut Entry, pending: &mut Vec<Mutation>, key: JobKey, next: Option<Timestamp>) {
    entry.state = State::Writing;
    let incarnation = entry.job.incarnation;
    match next {
        Some(next_due) => {
            entry.job.next_due = next_due;
            pending.push(Mutation::Progress { key, incarnation, progress: entry.job.progress, next_due });
        }
        None => pending.push(Mutation::Complete { key, incarnation }),
    }
}

/// Most ticks [`ticks_between`] counts one by one (cron schedules; `@every` is arithmetic).
const MAX_COUNTED_TICKS: u64 = 100_000;

/// How many ticks of `timing`'s schedule fall in `[from, until)`, `from` being one of them.
fn ticks_between(timing: &JobTiming, from: Timestamp, until: Timestamp) -> u64 {
    if until <= from {
        return 0;
    }
    let Some(schedule) = &timing.schedule else { return 1 };
    if let Some(every) = schedule.every() {
        let step = every.as_nanos();
        if step <= 0 {
            return 1;
        }
        let span = until.duration_since(from).as_nanos();
        // Ticks at from, from + step, …, strictly before until.
        return u64::try_from((span + step - 1) / step).unwrap_or(u64::MAX);
    }
    let mut count = 1;
    let mut at = from;
    while count < MAX_COUNTED_TICKS {
        match schedule.next_after(at) {
            Some(next) if next < until => {
                count += 1;
                at = next;
            }
            _ => break,
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use jiff::tz::TimeZone;
    use kairos_core::JobSpec;

    use super::*;

    fn timing(schedule: &str) -> JobTiming {
        let spec = JobSpec { schedule: Some(schedule.into()), ..JobSpec::default() };
        spec.resolve("2026-03-01T10:00:00Z".parse().unwrap(), &TimeZone::UTC).unwrap()
    }

    #[test]
    fn gone_keeps_the_newest_version_until_the_watermark_passes_it() {
        let key = |name: &str| JobKey::app("ns", "app", name);
        let mut gone = Gone::default();
        gone.note(key("a"), 10, None, 0);
        gone.note(key("a"), 5, None, 0);
        gone.note(key("b"), 20, None, 0);
        gone.note(key("c"), 0, None, 0);
        assert!(gone.covers(&key("a"), 10) && gone.covers(&key("a"), 3));
        assert!(!gone.covers(&key("a"), 11), "a newer version is let in");
        assert!(!gone.covers(&key("c"), 1), "version 0 is never kept");
        gone.note(key("a"), 30, None, 0);
        assert!(gone.covers(&key("a"), 25));
        gone.forget_below(21);
        assert!(!gone.covers(&key("b"), 20) && gone.covers(&key("a"), 30));
        gone.forget_below(31);
        assert!(gone.by_key.is_empty() && gone.by_version.is_empty());
    }

    #[test]
    fn gone_knows_the_newest_incarnation_let_go_of_whatever_its_version() {
        let key = JobKey::app("ns", "app", "a");
        let mut gone = Gone::default();
        gone.note(key.clone(), 100, Some(1), 0);
        assert!(gone.let_go_of(&key, 1) && !gone.let_go_of(&key, 2));
        // Let go of a later incarnation at a lower version (a clock gone back): the version kept
        // stays the highest, the incarnation becomes the later one.
        gone.note(key.clone(), 50, Some(2), 0);
        assert!(gone.let_go_of(&key, 2) && !gone.let_go_of(&key, 1));
        assert!(gone.covers(&key, 100));
        // A delete tells of no incarnation and keeps the one known.
        gone.note(key.clone(), 40, None, 0);
        assert!(gone.let_go_of(&key, 2));
        gone.note(key.clone(), 200, None, 0);
        assert!(!gone.let_go_of(&key, 2), "a newer delete: no incarnation is let go of at it");
    }

    #[test]
    fn gone_drops_its_oldest_versions_past_its_cap() {
        let mut gone = Gone::default();
        for i in 1..=1500_u64 {
            gone.note(JobKey::app("ns", "app", format!("j{i}")), i, None, 1000);
        }
        assert_eq!((gone.by_key.len(), gone.by_version.len()), (1000, 1000));
        assert!(!gone.covers(&JobKey::app("ns", "app", "j500"), 500));
        assert!(gone.covers(&JobKey::app("ns", "app", "j501"), 501));
        for i in 1..=100_u64 {
            gone.note(JobKey::app("ns", "app", format!("k{i}")), 10_000 + i, None, 1);
        }
        assert_eq!(gone.by_key.len(), Gone::MIN_CAP, "the floor of the cap");
    }

    #[test]
    fn ticks_between_counts_the_ticks_of_a_half_open_range() {
        let at = |s: &str| -> Timestamp { s.parse().unwrap() };
        let every = timing("@every 10s");
        assert_eq!(ticks_between(&every, at("2026-03-01T10:00:10Z"), at("2026-03-01T10:00:40Z")), 3);
        assert_eq!(ticks_between(&every, at("2026-03-01T10:00:10Z"), at("2026-03-01T10:00:41Z")), 4);
        assert_eq!(ticks_between(&every, at("2026-03-01T10:00:10Z"), at("2026-03-01T10:00:10Z")), 0);
        let cron = timing("0 * * * * *");
        assert_eq!(ticks_between(&cron, at("2026-03-01T10:01:00Z"), at("2026-03-01T10:05:00Z")), 4);
        assert_eq!(ticks_between(&cron, at("2026-03-01T10:01:00Z"), at("2026-03-01T10:05:30Z")), 5);
    }
}

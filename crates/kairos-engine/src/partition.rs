//! One partition's trigger loop.
//!
//! The loop owns a bounded *window* of the partition's soonest due jobs, refilled from the
//! store's due index by range scan, and a *frontier*: every stored job of the partition whose
//! due position is at or before the frontier is in memory (waiting in the window, in flight, or
//! having its progress written). Jobs past the frontier exist only in the store until a refill
//! reaches them, so memory stays bounded however many jobs are stored.
//!
//! One timer is armed for the head of the window, capped (1 s by default) so that wall-clock
//! jumps are noticed. Due jobs are handed to the [`Router`]; a job stays out of the window until
//! its result comes back and the resulting progress is durable, so each job has at most one
//! trigger in flight and its next tick is computed only after the previous one is settled.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use jiff::{SignedDuration, Timestamp};
use kairos_core::timeline::{Step, after_failure, after_success};
use kairos_core::{Clock, JobKey, JobTiming};
use kairos_store::{DueCursor, JobStore, Mutation, StoreError, StoredJob};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::EngineConfig;
use crate::router::{Completion, Outcome, Router, Trigger};

/// What the rest of the engine tells a partition.
#[derive(Debug)]
pub(crate) enum Command {
    /// A job was stored (created or overwritten); its durable write has returned.
    Upsert(Box<StoredJob>),
    /// A job as the store's change feed reports it (maybe written by another replica, maybe
    /// this partition's own progress write): ignored when the partition holds that incarnation.
    Observed(Box<StoredJob>),
    /// A job was deleted; its durable delete has returned.
    Remove(JobKey),
    /// Stop firing, and answer once no trigger of this partition is delivered and unanswered
    /// and no progress write is pending (the partition is about to be handed over).
    Drain(oneshot::Sender<()>),
    /// Forget what is waiting and read the due index again (the change feed missed events).
    Reload,
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
    /// In the window, waiting for its due time.
    Waiting,
    /// Handed to the router; waiting for the app's result.
    InFlight,
    /// Its new progress is being written.
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

/// Most write attempts a stopping partition makes to settle what it has already decided.
const SETTLE_ATTEMPTS: u32 = 3;

#[allow(clippy::cast_precision_loss)]
fn seconds(d: SignedDuration) -> f64 {
    d.as_secs_f64().max(0.0)
}

type WriteResult = (Vec<Mutation>, Result<(), StoreError>);

pub(crate) struct Partition {
    id: u32,
    store: Arc<dyn JobStore>,
    clock: Arc<dyn Clock>,
    router: Router,
    config: Arc<EngineConfig>,
    /// Set while the engine drains: fire nothing new, settle what is in flight.
    paused: Arc<AtomicBool>,
    /// Set after the first successful due-index scan (readiness).
    loaded: Arc<AtomicBool>,
    window: BTreeSet<(Timestamp, JobKey)>,
    jobs: HashMap<JobKey, Entry>,
    frontier: Frontier,
    /// Mutations waiting for the next write.
    pending: Vec<Mutation>,
    writing: bool,
    /// After a failed write or scan: not before this instant.
    backoff_until: Option<Timestamp>,
    backoff: SignedDuration,
    written_tx: mpsc::UnboundedSender<WriteResult>,
    written_rx: mpsc::UnboundedReceiver<WriteResult>,
    /// Set by [`Command::Drain`]: nothing new fires, and the sender hears when all is settled.
    draining: Option<Vec<oneshot::Sender<()>>>,
}

impl Partition {
    pub(crate) fn new(
        id: u32,
        store: Arc<dyn JobStore>,
        clock: Arc<dyn Clock>,
        router: Router,
        config: Arc<EngineConfig>,
        paused: Arc<AtomicBool>,
        loaded: Arc<AtomicBool>,
    ) -> Self {
        // Unbounded: at most one write per partition is outstanding, so this holds at most one.
        let (written_tx, written_rx) = mpsc::unbounded_channel();
        Partition {
            id,
            store,
            clock,
            router,
            config,
            paused,
            loaded,
            window: BTreeSet::new(),
            jobs: HashMap::new(),
            frontier: Frontier::Upto(None),
            pending: Vec::new(),
            writing: false,
            backoff_until: None,
            backoff: SignedDuration::ZERO,
            written_tx,
            written_rx,
            draining: None,
        }
    }

    /// Runs until `stop` is cancelled or the command channel closes.
    pub(crate) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut completions: mpsc::UnboundedReceiver<Completion>,
        stop: CancellationToken,
    ) {
        loop {
            let now = self.clock.now();
            if self.backoff_until.is_none_or(|t| t <= now) {
                self.backoff_until = None;
                self.refill().await;
                self.flush();
            }
            self.fire_due(now);
            self.answer_drain(&completions);

            let mut deadline = now.saturating_add(self.config.max_sleep).unwrap_or(now);
            // A draining or paused partition fires nothing, so an overdue head must not wake
            // it (it would spin).
            if let Some((head, _)) = self.window.first()
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
                Some(completion) = completions.recv() => {
                    self.on_completion(completion);
                    // Take what else is ready in one go, so a burst is one write.
                    while let Ok(more) = completions.try_recv() {
                        self.on_completion(more);
                    }
                }
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => break,
                },
                () = sleep => {}
            }
        }
        self.settle(&mut completions).await;
        self.router.detach_partition(self.id);
    }

    /// On stop: applies the results that already came back and writes the progress they
    /// decided, so a graceful stop does not make the next owner fire those ticks again.
    /// Bounded: a store that keeps failing leaves the rest to be fired again (at least once).
    async fn settle(&mut self, completions: &mut mpsc::UnboundedReceiver<Completion>) {
        while let Ok(completion) = completions.try_recv() {
            self.on_completion(completion);
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

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Upsert(job) => {
                self.router.cancel_staged(&job.key);
                self.forget(&job.key);
                if self.frontier.covers(job.next_due, &job.key) {
                    self.admit(*job);
                }
            }
            Command::Observed(job) => {
                if self.jobs.get(&job.key).is_some_and(|e| e.job.incarnation == job.incarnation) {
                    return;
                }
                self.on_command(Command::Upsert(job));
            }
            Command::Remove(key) => {
                self.router.cancel_staged(&key);
                self.forget(&key);
            }
            Command::Drain(done) => self.draining.get_or_insert_with(Vec::new).push(done),
            Command::Reload => {
                // Jobs in flight or being written stay: their results still apply, and a scan
                // skips keys already in memory.
                let waiting: Vec<JobKey> = self
                    .jobs
                    .iter()
                    .filter(|(_, e)| e.state == State::Waiting)
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in waiting {
                    self.forget(&key);
                }
                self.frontier = Frontier::Upto(None);
            }
        }
    }

    /// Answers drain requests once nothing of this partition is delivered and unanswered and
    /// every result has been written.
    fn answer_drain(&mut self, completions: &mpsc::UnboundedReceiver<Completion>) {
        if self.draining.as_ref().is_none_or(Vec::is_empty) {
            return;
        }
        // The router removes a delivered trigger and queues its completion under one lock, so
        // reading its count first and the queue second misses no result.
        if self.router.delivered_of(self.id) > 0
            || !completions.is_empty()
            || self.writing
            || !self.pending.is_empty()
        {
            return;
        }
        for done in self.draining.iter_mut().flat_map(std::mem::take) {
            let _ = done.send(());
        }
    }

    /// Drops `key` from memory. A result for it that arrives later is ignored.
    fn forget(&mut self, key: &JobKey) {
        if let Some(entry) = self.jobs.remove(key)
            && entry.state == State::Waiting
        {
            self.window.remove(&(entry.job.next_due, key.clone()));
        }
    }

    /// Puts a stored job into the window (the caller checked the frontier).
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
        self.insert_waiting(Entry { job, timing, state: State::Waiting, fired: None });
    }

    fn insert_waiting(&mut self, mut entry: Entry) {
        entry.state = State::Waiting;
        entry.fired = None;
        let key = entry.job.key.clone();
        self.window.insert((entry.job.next_due, key.clone()));
        self.jobs.insert(key, entry);
        self.evict_overflow();
    }

    /// Keeps the window within its capacity by pushing the latest entries back to the store
    /// (where they already are) and pulling the frontier in.
    fn evict_overflow(&mut self) {
        let mut evicted = false;
        while self.window.len() > self.config.window {
            if let Some((_, key)) = self.window.pop_last() {
                self.jobs.remove(&key);
                evicted = true;
            }
        }
        if evicted && let Some((due, key)) = self.window.last() {
            self.frontier = Frontier::Upto(Some(DueCursor { due: *due, key: key.clone() }));
        }
    }

    /// Loads the next stretch of the due index when the window runs low.
    async fn refill(&mut self) {
        self.refill_window().await;
        if self.backoff_until.is_none() {
            self.loaded.store(true, Ordering::Release);
        }
    }

    async fn refill_window(&mut self) {
        while self.window.len() * 2 < self.config.window {
            let after = match &self.frontier {
                Frontier::All => return,
                Frontier::Upto(cursor) => cursor.clone(),
            };
            let want = self.config.window - self.window.len();
            let jobs = match self.store.scan_due(self.id, after.as_ref(), want).await {
                Ok(jobs) => jobs,
                Err(err) => {
                    tracing::warn!(partition = self.id, error = %err, "due index scan failed; retrying");
                    self.back_off();
                    return;
                }
            };
            self.backoff = SignedDuration::ZERO;
            let last = jobs.last().map(|j| DueCursor { due: j.next_due, key: j.key.clone() });
            let complete = jobs.len() < want;
            // At most `want` jobs come in, so the window cannot overflow (and evict) here.
            for job in jobs {
                // A job already in memory is newer there than in this scan.
                if !self.jobs.contains_key(&job.key) {
                    self.admit(job);
                }
            }
            self.frontier = match (complete, last) {
                (false, Some(last)) => Frontier::Upto(Some(last)),
                _ => Frontier::All,
            };
        }
    }

    /// Whether this partition is draining for a hand-over or the engine is draining to stop.
    fn fires_nothing(&self) -> bool {
        self.draining.is_some() || self.paused.load(Ordering::Acquire)
    }

    fn fire_due(&mut self, now: Timestamp) {
        if self.fires_nothing() {
            // The next owner fires these.
            return;
        }
        while let Some((due, _)) = self.window.first() {
            if *due > now {
                break;
            }
            let Some((due, key)) = self.window.pop_first() else { break };
            let Some(entry) = self.jobs.get_mut(&key) else { continue };
            entry.state = State::InFlight;
            let trigger = Trigger {
                id: self.router.next_trigger_id(),
                key,
                data: entry.job.spec.data.clone(),
                due,
                incarnation: entry.job.incarnation,
                partition: self.id,
            };
            let lateness = now.duration_since(due);
            metrics::histogram!("kairos_trigger_lateness_seconds").record(seconds(lateness));
            let span = tracing::info_span!(
                "trigger",
                job = %trigger.key,
                id = trigger.id,
                attempt = entry.job.progress.attempts + 1,
                outcome = tracing::field::Empty,
            );
            span.in_scope(|| tracing::debug!(%due, lateness_ms = lateness.as_millis(), "trigger fired"));
            entry.fired = Some((now, span));
            self.router.dispatch(trigger);
        }
    }

    fn on_completion(&mut self, Completion { trigger, outcome }: Completion) {
        let Some(entry) = self.jobs.get_mut(&trigger.key) else { return };
        if entry.job.incarnation != trigger.incarnation || entry.state != State::InFlight {
            return;
        }
        let Step { progress, due } = match outcome {
            Outcome::Success => after_success(&entry.timing, &entry.job.progress),
            Outcome::Failed => after_failure(&entry.timing, &entry.job.progress, trigger.due),
        };
        // A failure is retried when it counted one more attempt of the same tick; otherwise
        // the policy gave the tick up.
        let result = match outcome {
            Outcome::Success => "success",
            Outcome::Failed if progress.attempts > entry.job.progress.attempts => "failed",
            Outcome::Failed => "dropped",
        };
        metrics::counter!("kairos_triggers_total", "result" => result).increment(1);
        if let Some((fired, span)) = entry.fired.take() {
            let now = self.clock.now();
            metrics::histogram!("kairos_trigger_delivery_seconds").record(seconds(now.duration_since(fired)));
            span.record("outcome", result);
            span.in_scope(|| match result {
                "success" => tracing::debug!(next_due = ?due, "trigger completed"),
                "failed" => tracing::info!(next_attempt = ?due, "trigger failed; will retry"),
                _ => tracing::warn!(next_due = ?due, "trigger failed; no retries left, tick dropped"),
            });
        }
        if due.is_none() {
            metrics::counter!("kairos_jobs_deleted_total", "reason" => "completed").increment(1);
        }
        entry.job.progress = progress;
        entry.state = State::Writing;
        let key = trigger.key;
        let incarnation = trigger.incarnation;
        match due {
            Some(next_due) => {
                entry.job.next_due = next_due;
                self.pending.push(Mutation::Progress { key, incarnation, progress, next_due });
            }
            None => self.pending.push(Mutation::Complete { key, incarnation }),
        }
        self.flush();
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
        if let Err(err) = result {
            tracing::warn!(partition = self.id, error = %err, mutations = batch.len(), "progress write failed; retrying");
            // Keep the order: the failed batch goes before anything queued since.
            let newer = std::mem::replace(&mut self.pending, batch);
            self.pending.extend(newer);
            self.back_off();
            return;
        }
        self.backoff = SignedDuration::ZERO;
        for mutation in batch {
            let (key, incarnation) = match &mutation {
                Mutation::Progress { key, incarnation, .. } | Mutation::Complete { key, incarnation } => {
                    (key, *incarnation)
                }
            };
            let current = self
                .jobs
                .get(key)
                .is_some_and(|e| e.job.incarnation == incarnation && e.state == State::Writing);
            if !current {
                continue;
            }
            let Some(entry) = self.jobs.remove(key) else { continue };
            if let Mutation::Progress { next_due, .. } = mutation
                && self.frontier.covers(next_due, &entry.job.key)
            {
                self.insert_waiting(entry);
            }
        }
        self.flush();
    }

    fn back_off(&mut self) {
        let max = SignedDuration::from_secs(5);
        self.backoff = (self.backoff * 2).clamp(SignedDuration::from_millis(50), max);
        let now = self.clock.now();
        self.backoff_until = Some(now.saturating_add(self.backoff).unwrap_or(now));
    }
}

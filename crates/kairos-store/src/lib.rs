//! Durable storage of kairos jobs.
//!
//! One trait, [`JobStore`], with a written `# Contract` on every method; a conformance suite
//! (`kairos_testing::job_store_conformance!`, in the dev-only `kairos-testing` crate) that
//! every backend runs; an in-memory backend that can inject
//! faults for engine tests ([`memory::MemoryStore`]); and the default single-node backend on redb
//! ([`redb::RedbStore`]); and the distributed backend on etcd ([`etcd::EtcdStore`]), which runs the
//! same suite.
//!
//! Sits between `kairos-core` (whose types it stores) and `kairos-engine` (which drives it).
//! It must never import tonic services, axum or engine internals.
//!
//! # Layout
//! Every job is stored once, under its encoded [`JobKey`] ([`keys`]), with its spec exactly as
//! given, its creation time, an *incarnation* (new on every put, so writes about a replaced job
//! are ignored) and its progress. A due index orders jobs by `(partition, next_due, key)`; each
//! key hashes to one of `P` partitions, `P` fixed when the store is created.

pub mod etcd;
pub mod keys;
pub mod memory;
mod record;
pub mod redb;

use std::fmt;

use async_trait::async_trait;
use jiff::Timestamp;
use kairos_core::timeline::Progress;
use kairos_core::{HistoryLimit, JobKey, JobSpec, JobStats, Owner, Route, TriggerRecord};

/// The partition count a new store gets unless told otherwise.
pub const DEFAULT_PARTITIONS: u32 = 256;

/// A job as stored.
///
/// Two are equal when they hold the same job: [`StoredJob::version`] is left out, as it says
/// when the job was written, and the etcd store reports its own.
#[derive(Debug, Clone, Eq)]
pub struct StoredJob {
    pub key: JobKey,
    /// The spec exactly as the user gave it, with the default failure policy filled in.
    pub spec: JobSpec,
    /// When the job was accepted; its timeline is resolved from this.
    pub created: Timestamp,
    /// Chosen anew on every put (create or overwrite): a [`Mutation`] names the incarnation it is
    /// about and is ignored when the stored job has another one.
    pub incarnation: u64,
    /// The write order of the job: a larger version was written later.
    /// * Memory and redb stores keep what the writer put: the engine stamps every put of a job
    ///   with a version larger than that of the job it replaces and than any it stamped before
    ///   (a hybrid clock: nanoseconds since the epoch, or one more than its last stamp), and a
    ///   [`Mutation`] keeps it. 0 in records written before kairos kept it.
    /// * The etcd store reports the record's `mod_revision` instead (what was put is ignored):
    ///   it orders every write to the key across replicas, the owner's own mutations included.
    ///   [`memory::MemoryStore::with_revisions`] does the same with a revision counter of its
    ///   own.
    pub version: u64,
    /// How far the job has got.
    pub progress: Progress,
    /// Its next attempt: where the job sits in the due index, or in the staged index.
    pub next_due: Timestamp,
    /// Whether the job is *staged*: its trigger at `next_due` found no subscriber of its route,
    /// so it waits in the staged index of its partition and route (not in the due index) until
    /// one connects. Staging costs no retry.
    pub staged: bool,
    /// Whether the job is paused: it fires nothing, and sits in the due index at its expiry
    /// (or [`Timestamp::MAX`] without a ttl), so that only its ttl can end it (a kairos
    /// extension; false in records written before it).
    pub paused: bool,
    /// What the job has done so far (zero in records written before kairos kept it).
    pub stats: JobStats,
    /// Trigger-now requests not yet taken by the job's partition: when each was asked for,
    /// oldest first. While there are any, `next_due` is at most the oldest, so that whoever
    /// fires the partition (after a restart or a hand-over too) finds the job at once. The
    /// partition takes them when it next fires the job and writes a [`Mutation::Progress`],
    /// which clears them (empty in records written before kairos kept them).
    pub manual: Vec<Timestamp>,
}

impl PartialEq for StoredJob {
    fn eq(&self, other: &Self) -> bool {
        // Destructured, so that a new field cannot be left out by mistake.
        let StoredJob {
            key,
            spec,
            created,
            incarnation,
            version: _,
            progress,
            next_due,
            staged,
            paused,
            stats,
            manual,
        } = self;
        (key, spec, created, incarnation, progress, next_due, staged, paused, stats, manual)
            == (
                &other.key,
                &other.spec,
                &other.created,
                &other.incarnation,
                &other.progress,
                &other.next_due,
                &other.staged,
                &other.paused,
                &other.stats,
                &other.manual,
            )
    }
}

impl StoredJob {
    /// A job as first stored: nothing done yet, not staged, not paused, no trigger-now waiting,
    /// in the due index at `next_due`; version 0 (the engine stamps its own).
    #[must_use]
    pub fn new(
        key: JobKey,
        spec: JobSpec,
        created: Timestamp,
        incarnation: u64,
        next_due: Timestamp,
    ) -> Self {
        StoredJob {
            key,
            spec,
            created,
            incarnation,
            version: 0,
            progress: Progress::default(),
            next_due,
            staged: false,
            paused: false,
            stats: JobStats::default(),
            manual: Vec::new(),
        }
    }
}

/// Whether a put may replace an existing job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Fail with [`StoreError::AlreadyExists`] when the key exists.
    CreateOnly,
    /// Replace an existing job (its progress is replaced too).
    Overwrite,
}

/// A position in one partition's due index; scans resume strictly after it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DueCursor {
    pub due: Timestamp,
    pub key: JobKey,
}

/// Which jobs a listing ([`JobStore::list`]) or a bulk delete (the Scheduler's
/// `DeleteByMetadata` and `DeleteByNamePrefix`) covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerScope {
    /// The jobs of one owner whose names start with `name_prefix`: every job of the owner when
    /// it is empty.
    Owner { namespace: String, owner: Owner, name_prefix: String },
    /// Every reminder of actors of `actor_type` whose id starts with `id_prefix`.
    ActorIdPrefix { namespace: String, actor_type: String, id_prefix: String },
}

impl OwnerScope {
    /// The jobs of `owner` in `namespace` whose names start with `name_prefix` (all of them
    /// when it is empty).
    pub fn owner(namespace: &str, owner: &Owner, name_prefix: &str) -> Self {
        OwnerScope::Owner {
            namespace: namespace.to_owned(),
            owner: owner.clone(),
            name_prefix: name_prefix.to_owned(),
        }
    }
}

/// The versions [`JobStore::apply`] gave the jobs it wrote: one per mutation, in order, the
/// version at which the commit wrote that mutation's job (its new state, or its deletion), or
/// `None` where it left the job as it was (absent, or of another incarnation).
///
/// Empty from a store whose versions are the writer's (memory and redb: a mutation keeps the
/// job's [`StoredJob::version`]). A store that gives every write a version of its own (etcd's
/// revisions, [`memory::MemoryStore::with_revisions`]) reports them, because its change feed
/// will report the same writes with those versions: the engine that wrote them knows its own
/// echoes when they come.
pub type Written = Vec<Option<u64>>;

/// A state change the engine makes as jobs fire; applied in batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// Records progress and moves the job in the due index.
    Progress { key: JobKey, incarnation: u64, progress: Progress, next_due: Timestamp },
    /// Deletes a job that has no more ticks.
    Complete { key: JobKey, incarnation: u64 },
    /// Moves a job from the due index to the staged index of its route, at the same `next_due`
    /// (its trigger found no subscriber). A [`Mutation::Progress`] moves it back.
    Stage { key: JobKey, incarnation: u64 },
    /// Replaces the job's stats with `stats` and appends `record` to its history as record
    /// number `stats.records - 1`, keeping the newest `keep` records (a kairos extension).
    Record { key: JobKey, incarnation: u64, stats: JobStats, record: TriggerRecord, keep: HistoryLimit },
    /// Raises the job's version to `version`, changing nothing else: the engine's second write
    /// of an overwrite that a clock gone back stamped below the version it replaced. A store
    /// whose versions are its own (etcd's revisions, [`memory::MemoryStore::with_revisions`])
    /// writes the job again, which gives it a new version of its own.
    Restamp { key: JobKey, incarnation: u64, version: u64 },
}

impl Mutation {
    /// The job this mutation is about.
    pub fn key(&self) -> &JobKey {
        match self {
            Mutation::Progress { key, .. }
            | Mutation::Complete { key, .. }
            | Mutation::Stage { key, .. }
            | Mutation::Record { key, .. }
            | Mutation::Restamp { key, .. } => key,
        }
    }

    /// Plays this mutation on `job`, the state of its key (`None`: absent), as
    /// [`JobStore::apply`] says: a job that is absent or of another incarnation is left as it is.
    /// Every backend replays a batch through this, so they cannot disagree on what it means.
    pub fn apply_to(&self, job: &mut Option<StoredJob>) {
        let Some(current) = job.as_mut().filter(|j| j.incarnation == self.incarnation()) else { return };
        match self {
            Mutation::Progress { progress, next_due, .. } => {
                current.progress = *progress;
                current.next_due = *next_due;
                current.staged = false;
                // Every trigger-now request changes the incarnation, and the partition takes the
                // requests of an incarnation before it writes any progress of it.
                current.manual.clear();
            }
            Mutation::Stage { .. } => current.staged = true,
            Mutation::Complete { .. } => *job = None,
            // The history record itself is stored apart from the job, by each backend.
            Mutation::Record { stats, .. } => current.stats = *stats,
            Mutation::Restamp { version, .. } => current.version = current.version.max(*version),
        }
    }

    /// Whether playing mutations turned `before` into `after` with no change to store: the same
    /// state and the same version (the equality of [`StoredJob`] leaves the version out, and a
    /// [`Mutation::Restamp`] changes nothing else).
    pub fn unchanged(before: Option<&StoredJob>, after: Option<&StoredJob>) -> bool {
        before == after && before.map(|j| j.version) == after.map(|j| j.version)
    }

    /// The incarnation of the job this mutation is about.
    pub fn incarnation(&self) -> u64 {
        match self {
            Mutation::Progress { incarnation, .. }
            | Mutation::Complete { incarnation, .. }
            | Mutation::Stage { incarnation, .. }
            | Mutation::Record { incarnation, .. }
            | Mutation::Restamp { incarnation, .. } => *incarnation,
        }
    }
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A create-only put found the key taken.
    #[error("job already exists: '{0}'")]
    AlreadyExists(JobKey),
    /// The input cannot be stored (e.g. a key component with a NUL byte).
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    /// The store cannot answer now; the same call may succeed later.
    #[error("store unavailable: {reason}")]
    Unavailable {
        reason: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The stored data cannot be read back.
    #[error("store corrupt: {0}")]
    Corrupt(String),
    /// No room for the write: the disk is full, or etcd's space quota is exceeded. Nothing of
    /// the call was written. Not worth retrying at once; writes succeed again once space is
    /// freed (see [`StoreFault::Full`]).
    #[error("store full (no space left on device): {reason}")]
    Full { reason: String },
    /// The store is held by another process (the data dir of a running kairos).
    #[error("job store {path} is locked by another process")]
    InUse { path: String },
    /// This replica no longer owns `partition` (its owner key names another replica, or none):
    /// nothing of the partition was written. Not retryable: the partition is someone else's.
    #[error("partition {partition} is fenced: this replica does not own it")]
    Fenced { partition: u32 },
}

impl StoreError {
    /// Whether retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. } | StoreError::InUse { .. })
    }

    /// An [`StoreError::Unavailable`] with a source.
    pub fn unavailable(
        reason: impl fmt::Display,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Unavailable { reason: reason.to_string(), source: Some(Box::new(source)) }
    }
}

/// What keeps a store from taking writes (or from being trusted) right now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreFault {
    /// No room for writes (disk full, etcd quota exceeded); reads still work, and writes resume
    /// by themselves once space is freed.
    #[error("store full (no space left on device): {0}")]
    Full(String),
    /// Corruption was found; writes are refused until the store is restored.
    #[error("store corrupt: {0}")]
    Corrupt(String),
}

impl From<StoreFault> for StoreError {
    fn from(fault: StoreFault) -> Self {
        match fault {
            StoreFault::Full(reason) => StoreError::Full { reason },
            StoreFault::Corrupt(why) => StoreError::Corrupt(why),
        }
    }
}

/// Storage of jobs, their progress and their due index.
///
/// Every write returns only once it is durable (for a durable backend: fsynced); concurrent
/// writes may be grouped into one commit. Reads see every write that has returned.
#[async_trait]
pub trait JobStore: Send + Sync + fmt::Debug + 'static {
    /// The fixed number of partitions.
    ///
    /// # Contract
    /// Never changes for the life of the store, across reopenings.
    fn partitions(&self) -> u32;

    /// The partition `key` belongs to.
    ///
    /// # Contract
    /// A pure function of the key and [`JobStore::partitions`], the same in every process.
    fn partition_of(&self, key: &JobKey) -> u32 {
        keys::partition_of(key, self.partitions())
    }

    /// Stores `job`, returning the job it replaced.
    ///
    /// # Contract
    /// The key's history ([`JobStore::history`]) is kept when `job.stats.records > 0` (the same
    /// job, paused or resumed) and deleted otherwise (a new job under an old name).
    /// With [`PutMode::CreateOnly`] an existing key fails with [`StoreError::AlreadyExists`] and
    /// changes nothing. With [`PutMode::Overwrite`] the old job (spec, progress, due entry) is
    /// replaced entirely (a staged old job leaves the staged index). The due index, or the
    /// staged index when `job.staged`, then holds exactly one entry for the key, at
    /// `job.next_due`.
    async fn put(&self, job: StoredJob, mode: PutMode) -> Result<Option<StoredJob>, StoreError>;

    /// The job stored under `key`.
    ///
    /// # Contract
    /// `None` when absent; otherwise exactly what the last write stored.
    async fn get(&self, key: &JobKey) -> Result<Option<StoredJob>, StoreError>;

    /// Deletes the job under `key` with its due entry and history, returning it.
    ///
    /// # Contract
    /// Deleting an absent key succeeds with `None`.
    async fn delete(&self, key: &JobKey) -> Result<Option<StoredJob>, StoreError>;

    /// One page of the jobs in `scope`, ascending by key (one owner's jobs: by name), starting
    /// strictly after `after` (from the scope's first job when `None` or before the scope).
    ///
    /// # Contract
    /// At most `limit` jobs; no job outside the scope, ever (also not those of an owner whose id
    /// merely starts with this one's, nor names without the scope's prefix). Paging with the
    /// last key returned visits every job once; an `after` past the scope lists nothing.
    async fn list(
        &self,
        scope: &OwnerScope,
        after: Option<&JobKey>,
        limit: usize,
    ) -> Result<Vec<StoredJob>, StoreError>;

    /// Deletes every job in `scope`, returning their keys.
    ///
    /// # Contract
    /// Atomic: after it returns, no such job exists, nor its history; jobs outside the scope
    /// (other owners, and with [`OwnerScope::Owner`] the owner's other names) are untouched.
    async fn delete_by_scope(&self, scope: &OwnerScope) -> Result<Vec<JobKey>, StoreError>;

    /// The jobs of `partition` in due order, starting strictly after `after` (from the start when
    /// `None`).
    ///
    /// # Contract
    /// At most `limit` jobs, ordered by `(next_due, key)`; only jobs of that partition. A job
    /// appears once, at its current `next_due`.
    async fn scan_due(
        &self,
        partition: u32,
        after: Option<&DueCursor>,
        limit: usize,
    ) -> Result<Vec<StoredJob>, StoreError>;

    /// The staged jobs of `partition` whose triggers take `route`, in due order, starting
    /// strictly after `after` (from the start when `None`).
    ///
    /// # Contract
    /// At most `limit` jobs, ordered by `(next_due, key)`; only staged jobs (`staged == true`) of
    /// that partition and route. A job is in exactly one of the due index ([`JobStore::scan_due`])
    /// and the staged index, never both.
    async fn scan_staged(
        &self,
        partition: u32,
        route: &Route,
        after: Option<&DueCursor>,
        limit: usize,
    ) -> Result<Vec<StoredJob>, StoreError>;

    /// How many jobs are staged, over every partition and route.
    async fn count_staged(&self) -> Result<u64, StoreError>;

    /// Applies engine mutations, all in one commit.
    ///
    /// # Contract
    /// A mutation whose key is absent or stored with another incarnation is skipped silently
    /// (the job was deleted or overwritten meanwhile). `Progress` leaves the job in the due index
    /// (un-staging a staged one), `Stage` in the staged index; staging a staged job changes
    /// nothing. `Complete` deletes the job's history with it. `Record` appends one history
    /// record and drops those older than its `keep` newest. `Restamp` raises the version and
    /// changes nothing else (so it never brings back a job completed meanwhile). Either every
    /// mutation not skipped is applied and durable when this returns `Ok`, or none is.
    ///
    /// Returns what the change feed will report of these writes (see [`Written`]).
    async fn apply(&self, mutations: Vec<Mutation>) -> Result<Written, StoreError>;

    /// Every job of every owner, ordered by key, starting strictly after `after`.
    ///
    /// # Contract
    /// At most `limit` jobs; paging with the last key returned visits every job once.
    async fn scan_all(&self, after: Option<&JobKey>, limit: usize) -> Result<Vec<StoredJob>, StoreError>;

    /// The newest trigger records of the job under `key`, oldest first, at most `limit`.
    ///
    /// # Contract
    /// Empty for an absent job. Records written by `Mutation::Record`, in the order written;
    /// never more than the `keep` of the last such mutation (plus none from an earlier job of
    /// the same name).
    async fn history(&self, key: &JobKey, limit: usize) -> Result<Vec<TriggerRecord>, StoreError>;

    /// How many jobs are stored.
    async fn count(&self) -> Result<u64, StoreError>;

    /// What keeps the store from taking writes now, if anything (for readiness).
    ///
    /// # Contract
    /// `None` while writes can succeed. [`StoreFault::Full`] clears by itself once space is back;
    /// [`StoreFault::Corrupt`] lasts until the store is restored (a restart on a repaired file).
    /// Cheap enough for a readiness probe; never fails (an unreachable store is the probe's
    /// business, not a fault).
    async fn fault(&self) -> Option<StoreFault> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(incarnation: u64, staged: bool) -> Option<StoredJob> {
        let spec = JobSpec { due_time: Some("1s".into()), ..JobSpec::default() };
        let epoch = Timestamp::UNIX_EPOCH;
        Some(StoredJob {
            staged,
            ..StoredJob::new(JobKey::app("ns", "app", "j"), spec, epoch, incarnation, epoch)
        })
    }

    #[test]
    fn apply_to_plays_each_mutation_on_its_incarnation_only() {
        let key = JobKey::app("ns", "app", "j");
        let next_due = Timestamp::from_second(60).unwrap();
        let progress = Progress { count: 1, last_scheduled: Some(Timestamp::UNIX_EPOCH), attempts: 0 };
        let moved = Mutation::Progress { key: key.clone(), incarnation: 1, progress, next_due };
        let mut job = stored(1, true);
        moved.apply_to(&mut job);
        let job = job.unwrap();
        assert_eq!((job.progress, job.next_due, job.staged), (progress, next_due, false));

        let mut staged = stored(1, false);
        Mutation::Stage { key: key.clone(), incarnation: 1 }.apply_to(&mut staged);
        assert!(staged.is_some_and(|j| j.staged));

        let record = kairos_core::TriggerRecord {
            tick: Timestamp::UNIX_EPOCH,
            fired_at: Timestamp::UNIX_EPOCH,
            answered_at: Timestamp::UNIX_EPOCH,
            attempt: 1,
            outcome: kairos_core::TriggerOutcome::Success,
            manual: false,
        };
        let stats = kairos_core::JobStats::default().after(&record);
        let recorded =
            Mutation::Record { key: key.clone(), incarnation: 1, stats, record, keep: Default::default() };
        let mut job = stored(1, false);
        recorded.apply_to(&mut job);
        assert_eq!(job.map(|j| j.stats), Some(stats));
        let mut other = stored(2, false);
        recorded.apply_to(&mut other);
        assert_eq!(other, stored(2, false));

        let mut done = stored(1, false);
        Mutation::Complete { key: key.clone(), incarnation: 1 }.apply_to(&mut done);
        assert_eq!(done, None);

        // Another incarnation, or no job at all: nothing changes.
        for mutation in [
            moved,
            Mutation::Stage { key: key.clone(), incarnation: 1 },
            Mutation::Complete { key, incarnation: 1 },
        ] {
            let mut other = stored(2, false);
            mutation.apply_to(&mut other);
            assert_eq!(other, stored(2, false), "{mutation:?}");
            let mut absent = None;
            mutation.apply_to(&mut absent);
            assert_eq!(absent, None, "{mutation:?}");
        }
    }
}

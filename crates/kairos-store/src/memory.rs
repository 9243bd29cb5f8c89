//! An in-memory [`JobStore`] for tests, with fault injection.
//!
//! Jobs and the due index live in `BTreeMap`s behind one `std::sync::Mutex`, which is never held
//! across an `.await`. Nothing is durable: a write "commits" when it is applied.
//!
//! [`Faults`] lets engine tests make the store misbehave: fail the next `n` writes with
//! [`StoreError::Unavailable`] (changing nothing), fail the next `n` reads, delay every write or
//! only its answer, delay every read or only a due-index scan's answer (with `tokio::time::sleep`,
//! so tests under `tokio::time::pause()` control it), or put the store in a [`StoreFault`] (full
//! or corrupt: every write refused with it, reads go on).
//!
//! [`MemoryStore::with_revisions`] makes it version writes as etcd does (a revision per write),
//! for tests of replicas that follow a change feed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use kairos_core::{JobKey, Route, TriggerRecord};

use crate::keys::{self, Listing, encode_key, prefix_end};
use crate::{DueCursor, JobStore, Mutation, OwnerScope, PutMode, StoreError, StoreFault, StoredJob, Written};

/// An in-memory job store; see the [module docs](self).
#[derive(Debug)]
pub struct MemoryStore {
    partitions: u32,
    /// Whether every write gets a version of its own (see [`MemoryStore::with_revisions`]).
    revisions: bool,
    state: Mutex<State>,
    faults: Faults,
}

/// A handle that injects faults into one [`MemoryStore`]; clones control the same store.
///
/// A "write" is any of `put`, `delete`, `delete_by_scope` and `apply`; a "read" is any other
/// async method. A write first sleeps for the [`Delay::Commit`], then fails if a failure is
/// pending, else applies; then it sleeps for the [`Delay::Reply`] before it returns. A read first
/// sleeps for the [`Delay::Read`], then fails if a failure is pending, else reads; a due-index
/// scan then sleeps for the [`Delay::ScanReply`] before it returns.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    inner: Arc<Mutex<FaultState>>,
}

/// Where [`Faults::set_delay`] makes a call sleep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delay {
    /// Every write, before it applies.
    Commit,
    /// Every write, after it applies, before its caller hears back: the write is visible to every
    /// read meanwhile, as a durable write whose caller is slow to run again.
    Reply,
    /// Every read, before it reads: it sees the writes applied meanwhile, as a slow scan does.
    Read,
    /// Every due-index scan ([`JobStore::scan_due`]), after it read, before its caller hears
    /// back: writes applied meanwhile are missing from its answer, as from a scan whose answer is
    /// slow to arrive (a busy blocking pool, a slow page-in).
    ScanReply,
}

#[derive(Debug, Default)]
struct FaultState {
    failing_commits: u64,
    failing_reads: u64,
    /// The delays set (not zero).
    delays: HashMap<Delay, Duration>,
    commits: u64,
    fault: Option<StoreFault>,
}

impl Faults {
    /// Makes the next `n` writes fail with [`StoreError::Unavailable`], changing nothing.
    pub fn fail_next_commits(&self, n: u64) {
        self.lock().failing_commits = n;
    }

    /// Makes the next `n` reads fail with [`StoreError::Unavailable`].
    pub fn fail_next_reads(&self, n: u64) {
        self.lock().failing_reads = n;
    }

    /// Makes every later call sleep for `delay` (on tokio's clock, so tests under
    /// `tokio::time::pause()` control it) at the point `which` names; [`Duration::ZERO`] turns
    /// that delay off.
    pub fn set_delay(&self, which: Delay, delay: Duration) {
        let mut state = self.lock();
        if delay.is_zero() {
            state.delays.remove(&which);
        } else {
            state.delays.insert(which, delay);
        }
    }

    /// Puts the store in `fault` (every write then fails with it, changing nothing, and
    /// [`JobStore::fault`] reports it), or back to health with `None`.
    pub fn set_fault(&self, fault: Option<StoreFault>) {
        self.lock().fault = fault;
    }

    /// How many writes have been applied (successful or refused by the contract, e.g.
    /// `AlreadyExists`), not counting injected failures.
    pub fn commits(&self) -> u64 {
        self.lock().commits
    }

    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sleeps for the delay set at `which`, if any.
    async fn pause_at(&self, which: Delay) {
        let delay = self.lock().delays.get(&which).copied();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
    }

    fn begin_commit(&self) -> Result<(), StoreError> {
        let mut state = self.lock();
        if let Some(fault) = &state.fault {
            return Err(fault.clone().into());
        }
        if state.failing_commits > 0 {
            state.failing_commits -= 1;
            return Err(injected("write"));
        }
        state.commits += 1;
        Ok(())
    }

    fn begin_read(&self) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state.failing_reads > 0 {
            state.failing_reads -= 1;
            return Err(injected("read"));
        }
        Ok(())
    }
}

fn injected(what: &str) -> StoreError {
    StoreError::Unavailable { reason: format!("injected {what} failure"), source: None }
}

type DueEntry = (u32, Timestamp, Vec<u8>);
type StagedEntry = (u32, Vec<u8>, Timestamp, Vec<u8>);

#[derive(Debug, Default)]
struct State {
    /// Encoded key → job.
    jobs: BTreeMap<Vec<u8>, StoredJob>,
    /// `(partition, next_due, encoded key)` of every job that is not staged.
    due: BTreeSet<DueEntry>,
    /// `(partition, route prefix, next_due, encoded key)` of every staged job.
    staged: BTreeSet<StagedEntry>,
    /// Encoded key → record number → trigger record.
    history: BTreeMap<Vec<u8>, BTreeMap<u64, TriggerRecord>>,
    /// With revisions: the revision of the last write that changed something.
    revision: u64,
}

impl State {
    fn insert(&mut self, partitions: u32, encoded: Vec<u8>, job: StoredJob) -> Option<StoredJob> {
        let old = self.remove(partitions, &encoded);
        let partition = keys::partition_of(&job.key, partitions);
        if job.staged {
            let route = keys::route_prefix_of_encoded(&encoded).to_vec();
            self.staged.insert((partition, route, job.next_due, encoded.clone()));
        } else {
            self.due.insert((partition, job.next_due, encoded.clone()));
        }
        self.jobs.insert(encoded, job);
        old
    }

    fn remove(&mut self, partitions: u32, encoded: &[u8]) -> Option<StoredJob> {
        let old = self.jobs.remove(encoded)?;
        let partition = keys::partition_of(&old.key, partitions);
        if old.staged {
            let route = keys::route_prefix_of_encoded(encoded).to_vec();
            self.staged.remove(&(partition, route, old.next_due, encoded.to_vec()));
        } else {
            self.due.remove(&(partition, old.next_due, encoded.to_vec()));
        }
        Some(old)
    }

    /// Removes a job and its history.
    fn delete(&mut self, partitions: u32, encoded: &[u8]) -> Option<StoredJob> {
        self.history.remove(encoded);
        self.remove(partitions, encoded)
    }

    fn remove_prefix(&mut self, partitions: u32, prefix: &[u8]) -> Vec<JobKey> {
        let (start, end) = prefix_range(prefix);
        let doomed: Vec<Vec<u8>> =
            self.jobs.range::<[u8], _>(bounds(start, &end)).map(|(k, _)| k.clone()).collect();
        doomed.iter().filter_map(|k| self.delete(partitions, k)).map(|job| job.key).collect()
    }
}

/// The range of every key starting with `prefix`.
fn prefix_range(prefix: &[u8]) -> (Bound<&[u8]>, Bound<Vec<u8>>) {
    (Bound::Included(prefix), prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded))
}

fn bounds<'a>(start: Bound<&'a [u8]>, end: &'a Bound<Vec<u8>>) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    (start, end.as_ref().map(Vec::as_slice))
}

impl MemoryStore {
    /// An empty store with `partitions` partitions (0 is treated as 1).
    pub fn new(partitions: u32) -> Self {
        MemoryStore {
            partitions: partitions.max(1),
            revisions: false,
            state: Mutex::default(),
            faults: Faults::default(),
        }
    }

    /// An empty store that versions writes as etcd does: every write that changes something
    /// takes the next revision of a counter (from 1), every job it writes gets it as its
    /// [`StoredJob::version`] (what the writer put is ignored, and a mutation changes it), and
    /// [`JobStore::apply`] reports it. With [`MemoryStore::revision`], a test can play the change
    /// feed of a replica by hand.
    pub fn with_revisions(partitions: u32) -> Self {
        MemoryStore { revisions: true, ..MemoryStore::new(partitions) }
    }

    /// The revision of the last write that changed something (0 before any, and always without
    /// [`MemoryStore::with_revisions`]).
    pub fn revision(&self) -> u64 {
        self.state().revision
    }

    /// With revisions, the next one for a write that changes something.
    fn next_revision(&self, state: &mut State) -> Option<u64> {
        self.revisions.then(|| {
            state.revision += 1;
            state.revision
        })
    }

    /// The handle that injects faults into this store.
    pub fn faults(&self) -> Faults {
        self.faults.clone()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs one write: the injected delay and failure, then `op` under the lock, then the
    /// injected reply delay. `op` must change nothing when it fails.
    async fn write<T>(&self, op: impl FnOnce(&mut State) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.faults.pause_at(Delay::Commit).await;
        self.faults.begin_commit()?;
        let result = op(&mut self.state());
        self.faults.pause_at(Delay::Reply).await;
        result
    }

    async fn read(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        self.faults.pause_at(Delay::Read).await;
        self.faults.begin_read()?;
        Ok(self.state())
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new(crate::DEFAULT_PARTITIONS)
    }
}

#[async_trait]
impl JobStore for MemoryStore {
    fn partitions(&self) -> u32 {
        self.partitions
    }

    async fn put(&self, job: StoredJob, mode: PutMode) -> Result<Option<StoredJob>, StoreError> {
        let encoded = encode_key(&job.key)?;
        self.write(|state| {
            if mode == PutMode::CreateOnly && state.jobs.contains_key(&encoded) {
                return Err(StoreError::AlreadyExists(job.key));
            }
            if job.stats.records == 0 {
                state.history.remove(&encoded);
            }
            let version = self.next_revision(state).unwrap_or(job.version);
            Ok(state.insert(self.partitions, encoded, StoredJob { version, ..job }))
        })
        .await
    }

    async fn get(&self, key: &JobKey) -> Result<Option<StoredJob>, StoreError> {
        let encoded = encode_key(key)?;
        Ok(self.read().await?.jobs.get(&encoded).cloned())
    }

    async fn delete(&self, key: &JobKey) -> Result<Option<StoredJob>, StoreError> {
        let encoded = encode_key(key)?;
        self.write(|state| {
            let deleted = state.delete(self.partitions, &encoded);
            if deleted.is_some() {
                self.next_revision(state);
            }
            Ok(deleted)
        })
        .await
    }

    async fn list(
        &self,
        scope: &OwnerScope,
        after: Option<&JobKey>,
        limit: usize,
    ) -> Result<Vec<StoredJob>, StoreError> {
        let Some(Listing { prefix, after }) = keys::listing(scope, after)? else { return Ok(Vec::new()) };
        let (_, end) = prefix_range(&prefix);
        let start = after.as_deref().map_or(Bound::Included(prefix.as_slice()), Bound::Excluded);
        let state = self.read().await?;
        Ok(state.jobs.range::<[u8], _>(bounds(start, &end)).take(limit).map(|(_, job)| job.clone()).collect())
    }

    async fn delete_by_scope(&self, scope: &OwnerScope) -> Result<Vec<JobKey>, StoreError> {
        let prefix = keys::scope_prefix(scope)?;
        self.write(|state| {
            let deleted = state.remove_prefix(self.partitions, &prefix);
            if !deleted.is_empty() {
                self.next_revision(state);
            }
            Ok(deleted)
        })
        .await
    }

    async fn scan_due(
        &self,
        partition: u32,
        after: Option<&DueCursor>,
        limit: usize,
    ) -> Result<Vec<StoredJob>, StoreError> {
        let start = match after {
            None => Bound::Included((partition, Timestamp::MIN, Vec::new())),
            Some(cursor) => Bound::Excluded((partition, cursor.due, encode_key(&cursor.key)?)),
        };
        let end = match partition.checked_add(1) {
            Some(next) => Bound::Excluded((next, Timestamp::MIN, Vec::new())),
            None => Bound::Unbounded,
        };
        let jobs = {
            let state = self.read().await?;
            state
                .due
                .range((start, end))
                .take(limit)
                .filter_map(|(_, _, key)| state.jobs.get(key).cloned())
                .collect()
        };
        self.faults.pause_at(Delay::ScanReply).await;
        Ok(jobs)
    }

    async fn scan_staged(
        &self,
        partition: u32,
        route: &Route,
        after: Option<&DueCursor>,
        limit: usize,
    ) -> Result<Vec<StoredJob>, StoreError> {
        let route = keys::route_prefix(route)?;
        let start = match after {
            None => Bound::Included((partition, route.clone(), Timestamp::MIN, Vec::new())),
            Some(cursor) => Bound::Excluded((partition, route.clone(), cursor.due, encode_key(&cursor.key)?)),
        };
        let state = self.read().await?;
        Ok(state
            .staged
            .range((start, Bound::Unbounded))
            .take_while(|(p, r, _, _)| *p == partition && *r == route)
            .take(limit)
            .filter_map(|(_, _, _, key)| state.jobs.get(key).cloned())
            .collect())
    }

    async fn count_staged(&self) -> Result<u64, StoreError> {
        Ok(self.read().await?.staged.len() as u64)
    }

    async fn apply(&self, mutations: Vec<Mutation>) -> Result<Written, StoreError> {
        // Encode every key first so that a bad one fails the batch before anything changes.
        let encoded = mutations.iter().map(|m| encode_key(m.key())).collect::<Result<Vec<_>, _>>()?;
        self.write(|state| {
            // One commit, one revision: taken by the first change, given to every job written.
            let mut revision = None;
            let mut written = BTreeSet::new();
            for (mutation, encoded) in mutations.iter().zip(&encoded) {
                let original = state.jobs.get(encoded);
                let mut job = original.cloned();
                mutation.apply_to(&mut job);
                if Mutation::unchanged(original, job.as_ref()) {
                    continue;
                }
                if self.revisions {
                    revision = revision.or_else(|| self.next_revision(state));
                    written.insert(encoded);
                }
                match job {
                    Some(job) => {
                        let version = revision.unwrap_or(job.version);
                        state.insert(self.partitions, encoded.clone(), StoredJob { version, ..job });
                    }
                    None => {
                        state.delete(self.partitions, encoded);
                        continue;
                    }
                }
                if let Mutation::Record { stats, record, keep, .. } = mutation {
                    let history = state.history.entry(encoded.clone()).or_default();
                    history.insert(stats.records.saturating_sub(1), *record);
                    let first_kept = stats.records.saturating_sub(u64::from(keep.get()));
                    *history = history.split_off(&first_kept);
                }
            }
            Ok(match revision {
                Some(_) => encoded.iter().map(|e| revision.filter(|_| written.contains(e))).collect(),
                None => Written::new(),
            })
        })
        .await
    }

    async fn scan_all(&self, after: Option<&JobKey>, limit: usize) -> Result<Vec<StoredJob>, StoreError> {
        let after = after.map(encode_key).transpose()?;
        let start = after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let state = self.read().await?;
        Ok(state
            .jobs
            .range::<[u8], _>((start, Bound::Unbounded))
            .take(limit)
            .map(|(_, job)| job.clone())
            .collect())
    }

    async fn history(&self, key: &JobKey, limit: usize) -> Result<Vec<TriggerRecord>, StoreError> {
        let encoded = encode_key(key)?;
        let state = self.read().await?;
        let Some(history) = state.history.get(&encoded) else { return Ok(Vec::new()) };
        let mut newest: Vec<TriggerRecord> = history.values().rev().take(limit).copied().collect();
        newest.reverse();
        Ok(newest)
    }

    async fn count(&self) -> Result<u64, StoreError> {
        Ok(self.read().await?.jobs.len() as u64)
    }

    async fn fault(&self) -> Option<StoreFault> {
        self.faults.lock().fault.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairos_core::JobSpec;

    fn job(name: &str) -> StoredJob {
        let spec = JobSpec { due_time: Some("1s".into()), ..JobSpec::default() };
        StoredJob::new(JobKey::app("ns", "app", name), spec, Timestamp::UNIX_EPOCH, 1, Timestamp::UNIX_EPOCH)
    }

    #[tokio::test]
    async fn injected_commit_failures_change_nothing_then_stop() {
        let store = MemoryStore::new(4);
        let faults = store.faults();
        faults.fail_next_commits(2);
        for _ in 0..2 {
            let err = store.put(job("a"), PutMode::CreateOnly).await.unwrap_err();
            assert!(err.is_retryable(), "{err}");
        }
        assert_eq!(store.count().await.unwrap(), 0);
        store.put(job("a"), PutMode::CreateOnly).await.unwrap();
        assert_eq!(store.count().await.unwrap(), 1);
        assert_eq!(faults.commits(), 1);
    }

    #[tokio::test]
    async fn injected_read_failures_are_unavailable() {
        let store = MemoryStore::new(4);
        store.faults().fail_next_reads(1);
        assert!(store.count().await.unwrap_err().is_retryable());
        assert_eq!(store.count().await.unwrap(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn commit_delay_runs_on_tokios_clock() {
        let store = Arc::new(MemoryStore::new(4));
        store.faults().set_delay(Delay::Commit, Duration::from_secs(30));
        let start = tokio::time::Instant::now();
        let writer = tokio::spawn({
            let store = store.clone();
            async move { store.put(job("a"), PutMode::CreateOnly).await }
        });
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert_eq!(store.count().await.unwrap(), 0, "not applied before the delay");
        writer.await.unwrap().unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(30));
        assert_eq!(store.count().await.unwrap(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_delayed_scan_answers_late_without_the_writes_made_meanwhile() {
        let store = Arc::new(MemoryStore::new(1));
        store.put(job("a"), PutMode::CreateOnly).await.unwrap();
        store.faults().set_delay(Delay::ScanReply, Duration::from_secs(5));
        let start = tokio::time::Instant::now();
        let scan = tokio::spawn({
            let store = store.clone();
            async move { store.scan_due(0, None, 10).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        store.put(job("b"), PutMode::CreateOnly).await.unwrap();
        let names: Vec<_> = scan.await.unwrap().unwrap().into_iter().map(|j| j.key.name).collect();
        assert_eq!(names, ["a"], "the scan read before b was written");
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert_eq!(store.scan_due(0, None, 10).await.unwrap().len(), 2, "later scans see b");
    }
}

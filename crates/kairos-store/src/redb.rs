//! The durable single-node [`JobStore`] on redb, with group commit.
//!
//! # Layout
//! One redb file with three tables:
//! * `jobs`: encoded key ([`keys::encode_key`]) → job record (a store-private protobuf message);
//! * `due`: [`keys::due_key`] `(partition, next_due, encoded key)` → `()`, for every job that is
//!   not staged;
//! * `staged`: [`keys::staged_key`] `(partition, route, next_due, encoded key)` → `()`, for every
//!   staged job (created on open when missing: files written before it have no staged jobs);
//! * `meta`: `format` → [`FORMAT`], `partitions` → the partition count (u32 big-endian), written
//!   when the file is created and never changed.
//!
//! # Writes
//! One OS thread, the writer, owns every write. Callers send their operation over a bounded
//! channel with a oneshot for the reply. The writer takes everything queued (up to
//! [`MAX_BATCH`] operations), applies them in order in one write transaction (each sees the
//! effect of the earlier ones), commits once with redb's default durability (an fsync), and
//! only then answers every caller. An operation the contract refuses (e.g. `AlreadyExists`)
//! changes nothing and fails alone; if the transaction or the commit fails, every caller of the
//! batch gets [`StoreError::Unavailable`] and nothing of the batch is stored. While one batch
//! commits, the next one queues up, so concurrent writers share fsyncs.
//!
//! # Reads
//! Reads use their own read transactions (MVCC) and see every write that has returned; the
//! range reads run on tokio's blocking pool.
//!
//! # Shutdown
//! [`RedbStore`] is a cheap handle (`Clone`). Dropping the last handle closes the channel; the
//! writer applies and commits whatever was still queued (writes whose callers gave up waiting),
//! then exits, and the drop waits for it, so the file is closed (and can be reopened) when the
//! drop returns. A read still running on the blocking pool keeps the file open until it ends.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use ::redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use async_trait::async_trait;
use kairos_core::{JobKey, Owner, Route};
use tokio::sync::{mpsc, oneshot};

use crate::keys::{self, check_component, decode_due_key, decode_key, due_key, encode_key, prefix_end};
use crate::memory::scope_prefix;
use crate::record::{decode_record, encode_record};
use crate::{DueCursor, JobStore, Mutation, OwnerScope, PutMode, StoreError, StoredJob};

/// The format tag in the meta table.
pub const FORMAT: &[u8] = b"kairos-store/1";

/// The most operations the writer applies in one commit.
pub const MAX_BATCH: usize = 4096;

const JOBS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("jobs");
const DUE: TableDefinition<&[u8], ()> = TableDefinition::new("due");
const STAGED: TableDefinition<&[u8], ()> = TableDefinition::new("staged");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const META_FORMAT: &str = "format";
const META_PARTITIONS: &str = "partitions";

/// The durable job store; see the [module docs](self).
#[derive(Clone)]
pub struct RedbStore {
    shared: Arc<Shared>,
}

struct Shared {
    db: Arc<Database>,
    path: PathBuf,
    partitions: u32,
    counters: Arc<Counters>,
    // Both `Some` until drop.
    writer_tx: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
}

/// What the writer has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Successful commits.
    pub commits: u64,
    /// Operations in successful commits (including those refused by the contract).
    pub ops: u64,
    /// Commits that failed (every caller of the batch got `Unavailable`).
    pub failed_commits: u64,
    /// The most operations in one commit.
    pub largest_batch: u64,
}

#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    ops: AtomicU64,
    failed_commits: AtomicU64,
    largest_batch: AtomicU64,
}

/// One write, with where to send its result.
struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Done, StoreError>>,
}

enum Op {
    Put { job: Box<StoredJob>, encoded: Vec<u8>, mode: PutMode },
    Delete { key: JobKey, encoded: Vec<u8> },
    DeletePrefix { prefix: Vec<u8> },
    Apply { mutations: Vec<(Vec<u8>, Mutation)> },
}

#[derive(Debug)]
enum Done {
    Job(Option<Box<StoredJob>>),
    Keys(Vec<JobKey>),
    Applied,
}

/// Bytes of redb's page cache per store.
pub const CACHE_SIZE: usize = 128 << 20;

impl RedbStore {
    /// Opens the store in the file at `path`, creating it with `partitions_if_new` partitions
    /// when it does not exist (or is empty).
    ///
    /// An existing store keeps the partition count recorded at its creation; a different
    /// `partitions_if_new` is logged and ignored.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for 0 partitions; [`StoreError::Corrupt`] when the file is not a
    /// kairos store (not redb, or its meta table is missing or garbled);
    /// [`StoreError::Unavailable`] when the file cannot be opened (I/O, or already open).
    pub fn open(path: impl AsRef<Path>, partitions_if_new: u32) -> Result<RedbStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        if partitions_if_new == 0 {
            return Err(StoreError::Invalid { what: "partition count", reason: "must be at least 1".into() });
        }
        // redb caches up to 1 GiB of pages by default; with millions of jobs that cache, not
        // the engine, would set the scheduler's memory. The engine keeps its own bounded window
        // of soon-due jobs, so a modest page cache is enough.
        let db = Database::builder().set_cache_size(CACHE_SIZE).create(&path).map_err(|e| {
            let e = ::redb::Error::from(e);
            match e {
                ::redb::Error::Corrupted(why) => {
                    StoreError::Corrupt(format!("{} is not a readable redb file: {why}", path.display()))
                }
                e => StoreError::unavailable(format_args!("cannot open {}", path.display()), e),
            }
        })?;
        let partitions = init_meta(&db, &path, partitions_if_new)?;
        if partitions != partitions_if_new {
            tracing::warn!(
                path = %path.display(),
                recorded = partitions,
                requested = partitions_if_new,
                "store was created with another partition count; keeping the recorded one"
            );
        }
        let db = Arc::new(db);
        let counters = Arc::new(Counters::default());
        // Bounded so that a flood of writers waits for the disk instead of queueing without
        // limit; one full batch can wait while another commits.
        let (writer_tx, writer_rx) = mpsc::channel(MAX_BATCH);
        let writer = std::thread::Builder::new()
            .name("kairos-store-writer".into())
            .spawn({
                let db = db.clone();
                let counters = counters.clone();
                move || run_writer(&db, partitions, writer_rx, &counters)
            })
            .map_err(|e| StoreError::unavailable("cannot start the store writer thread", e))?;
        Ok(RedbStore {
            shared: Arc::new(Shared {
                db,
                path,
                partitions,
                counters,
                writer_tx: Some(writer_tx),
                writer: Some(writer),
            }),
        })
    }

    /// What the writer has done so far (for metrics: `ops / commits` is the mean batch size).
    pub fn stats(&self) -> WriterStats {
        let c = &self.shared.counters;
        WriterStats {
            commits: c.commits.load(Ordering::Relaxed),
            ops: c.ops.load(Ordering::Relaxed),
            failed_commits: c.failed_commits.load(Ordering::Relaxed),
            largest_batch: c.largest_batch.load(Ordering::Relaxed),
        }
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    async fn write(&self, op: Op) -> Result<Done, StoreError> {
        let writer_gone =
            || StoreError::Unavailable { reason: "the store writer has stopped".into(), source: None };
        let tx = self.shared.writer_tx.as_ref().ok_or_else(writer_gone)?;
        let (reply, reply_rx) = oneshot::channel();
        tx.send(Request { op, reply }).await.map_err(|_| writer_gone())?;
        reply_rx.await.map_err(|_| writer_gone())?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.shared.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::unavailable("store read task failed", e))?
    }
}

impl fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.shared.path)
            .field("partitions", &self.shared.partitions)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Closing the channel lets the writer drain what is queued and stop.
        drop(self.writer_tx.take());
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "the store writer thread panicked");
        }
    }
}

/// Checks (or, for a new file, writes) the meta table; returns the partition count.
fn init_meta(db: &Database, path: &Path, partitions_if_new: u32) -> Result<u32, StoreError> {
    let corrupt = |why: &str| StoreError::Corrupt(format!("{} is not a kairos store: {why}", path.display()));
    let txn = db.begin_write().map_err(storage)?;
    let fresh = txn.list_tables().map_err(storage)?.next().is_none();
    let partitions = {
        let mut meta = txn.open_table(META).map_err(storage)?;
        let format = meta.get(META_FORMAT).map_err(storage)?.map(|v| v.value().to_vec());
        let recorded = meta.get(META_PARTITIONS).map_err(storage)?.map(|v| v.value().to_vec());
        match (format, recorded) {
            (None, None) if fresh => {
                meta.insert(META_FORMAT, FORMAT).map_err(storage)?;
                meta.insert(META_PARTITIONS, partitions_if_new.to_be_bytes().as_slice()).map_err(storage)?;
                partitions_if_new
            }
            (None, None) => return Err(corrupt("it has tables but no kairos meta table")),
            (Some(format), _) if format != FORMAT => {
                return Err(corrupt(&format!("unknown format {:?}", String::from_utf8_lossy(&format))));
            }
            (Some(_), Some(recorded)) => {
                match <[u8; 4]>::try_from(recorded.as_slice()).map(u32::from_be_bytes) {
                    Ok(p) if p > 0 => p,
                    _ => return Err(corrupt(&format!("garbled partition count {recorded:?}"))),
                }
            }
            (_, _) => return Err(corrupt("its meta table is incomplete")),
        }
    };
    txn.open_table(JOBS).map_err(storage)?;
    txn.open_table(DUE).map_err(storage)?;
    txn.open_table(STAGED).map_err(storage)?;
    txn.commit().map_err(storage)?;
    Ok(partitions)
}

/// Maps a redb error to a store error.
fn storage(e: impl Into<::redb::Error>) -> StoreError {
    match e.into() {
        ::redb::Error::Corrupted(why) => StoreError::Corrupt(why),
        e => StoreError::unavailable("storage error", e),
    }
}

/// A redb error shared by every caller of a failed batch.
#[derive(Debug, Clone)]
struct SharedError(Arc<::redb::Error>);

impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

fn run_writer(db: &Database, partitions: u32, mut rx: mpsc::Receiver<Request>, counters: &Counters) {
    let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    let mut results = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        results.clear();
        let watch = kairos_core::Stopwatch::start();
        let committed = commit_batch(db, partitions, &batch, &mut results);
        metrics::histogram!("kairos_store_commit_duration_seconds").record(watch.elapsed().as_secs_f64());
        #[allow(clippy::cast_precision_loss)]
        metrics::histogram!("kairos_store_commit_batch_size").record(batch.len() as f64);
        match committed {
            Ok(()) => {
                let n = batch.len() as u64;
                counters.commits.fetch_add(1, Ordering::Relaxed);
                counters.ops.fetch_add(n, Ordering::Relaxed);
                counters.largest_batch.fetch_max(n, Ordering::Relaxed);
                for (request, result) in batch.drain(..).zip(results.drain(..)) {
                    // The caller may have stopped waiting; its write is durable anyway.
                    let _ = request.reply.send(result);
                }
            }
            Err(e) => {
                counters.failed_commits.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("kairos_store_commit_failures_total").increment(1);
                tracing::error!(error = %e, ops = batch.len(), "store commit failed");
                let e = SharedError(Arc::new(e));
                for request in batch.drain(..) {
                    let _ =
                        request.reply.send(Err(StoreError::unavailable("store commit failed", e.clone())));
                }
            }
        }
    }
    tracing::debug!("store writer stopped");
}

/// Applies `batch` in one write transaction and commits it; on `Ok`, `results` holds one result
/// per request. An `Err` means nothing was committed.
fn commit_batch(
    db: &Database,
    partitions: u32,
    batch: &[Request],
    results: &mut Vec<Result<Done, StoreError>>,
) -> Result<(), ::redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut tables = Tables {
            jobs: txn.open_table(JOBS)?,
            due: txn.open_table(DUE)?,
            staged: txn.open_table(STAGED)?,
            partitions,
        };
        for request in batch {
            results.push(tables.execute(&request.op)?);
        }
    }
    txn.commit()?;
    Ok(())
}

/// The outer error is fatal for the batch; the inner one is the operation's own refusal, which
/// changed nothing.
type OpResult<T> = Result<Result<T, StoreError>, ::redb::Error>;

/// Returns the inner error of an [`OpResult`] from the enclosing function.
macro_rules! refuse_on_err {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        }
    };
}

struct Tables<'t> {
    jobs: ::redb::Table<'t, &'static [u8], &'static [u8]>,
    due: ::redb::Table<'t, &'static [u8], ()>,
    staged: ::redb::Table<'t, &'static [u8], ()>,
    partitions: u32,
}

impl Tables<'_> {
    fn execute(&mut self, op: &Op) -> OpResult<Done> {
        Ok(match op {
            Op::Put { job, encoded, mode } => {
                self.put(job, encoded, *mode)?.map(|old| Done::Job(old.map(Box::new)))
            }
            Op::Delete { key, encoded } => self.delete(key, encoded)?.map(|old| Done::Job(old.map(Box::new))),
            Op::DeletePrefix { prefix } => self.delete_prefix(prefix)?.map(Done::Keys),
            Op::Apply { mutations } => self.apply(mutations)?.map(|()| Done::Applied),
        })
    }

    /// Inserts (or removes) the index entry of `job`: in `staged` when it is staged, else in
    /// `due`.
    fn index(&mut self, encoded: &[u8], job: &StoredJob, present: bool) -> Result<(), ::redb::Error> {
        let partition = keys::partition_of_encoded(encoded, self.partitions);
        let (table, key) = if job.staged {
            (&mut self.staged, keys::staged_key(partition, job.next_due, encoded))
        } else {
            (&mut self.due, due_key(partition, job.next_due, encoded))
        };
        if present {
            table.insert(key.as_slice(), ())?;
        } else {
            table.remove(key.as_slice())?;
        }
        Ok(())
    }

    fn load(&self, key: &JobKey, encoded: &[u8]) -> OpResult<Option<StoredJob>> {
        let Some(bytes) = self.jobs.get(encoded)? else { return Ok(Ok(None)) };
        Ok(decode_record(key.clone(), bytes.value()).map(Some))
    }

    fn store(&mut self, encoded: &[u8], job: &StoredJob) -> Result<(), ::redb::Error> {
        self.jobs.insert(encoded, encode_record(job).as_slice())?;
        self.index(encoded, job, true)
    }

    fn unstore(&mut self, encoded: &[u8], old: &StoredJob) -> Result<(), ::redb::Error> {
        self.jobs.remove(encoded)?;
        self.index(encoded, old, false)
    }

    fn put(&mut self, job: &StoredJob, encoded: &[u8], mode: PutMode) -> OpResult<Option<StoredJob>> {
        let old = refuse_on_err!(self.load(&job.key, encoded)?);
        if let Some(old) = &old {
            if mode == PutMode::CreateOnly {
                return Ok(Err(StoreError::AlreadyExists(job.key.clone())));
            }
            self.unstore(encoded, old)?;
        }
        self.store(encoded, job)?;
        Ok(Ok(old))
    }

    fn delete(&mut self, key: &JobKey, encoded: &[u8]) -> OpResult<Option<StoredJob>> {
        let old = refuse_on_err!(self.load(key, encoded)?);
        if let Some(old) = &old {
            self.unstore(encoded, old)?;
        }
        Ok(Ok(old))
    }

    fn delete_prefix(&mut self, prefix: &[u8]) -> OpResult<Vec<JobKey>> {
        let end = prefix_end(prefix);
        let range = (Bound::Included(prefix), end.as_deref().map_or(Bound::Unbounded, Bound::Excluded));
        // Decode everything first, so a corrupt record refuses the whole delete unchanged.
        let mut doomed = Vec::new();
        for entry in self.jobs.range::<&[u8]>(range)? {
            let (k, v) = entry?;
            let key = refuse_on_err!(decode_key(k.value()));
            let job = refuse_on_err!(decode_record(key, v.value()));
            doomed.push((k.value().to_vec(), job));
        }
        for (encoded, job) in &doomed {
            self.unstore(encoded, job)?;
        }
        Ok(Ok(doomed.into_iter().map(|(_, job)| job.key).collect()))
    }

    fn apply(&mut self, mutations: &[(Vec<u8>, Mutation)]) -> OpResult<()> {
        // Play the mutations on an overlay of the touched jobs first (so that a corrupt record
        // refuses the whole batch unchanged), then write each touched job's final state.
        struct Touched {
            original: Option<StoredJob>,
            current: Option<StoredJob>,
        }
        let mut overlay: BTreeMap<&[u8], Touched> = BTreeMap::new();
        for (encoded, mutation) in mutations {
            if !overlay.contains_key(encoded.as_slice()) {
                let original = refuse_on_err!(self.load(mutation.key(), encoded)?);
                overlay.insert(encoded, Touched { current: original.clone(), original });
            }
            let Some(touched) = overlay.get_mut(encoded.as_slice()) else { continue };
            match mutation {
                Mutation::Progress { incarnation, progress, next_due, .. } => {
                    if let Some(job) = touched.current.as_mut().filter(|j| j.incarnation == *incarnation) {
                        job.progress = *progress;
                        job.next_due = *next_due;
                        job.staged = false;
                    }
                }
                Mutation::Stage { incarnation, .. } => {
                    if let Some(job) = touched.current.as_mut().filter(|j| j.incarnation == *incarnation) {
                        job.staged = true;
                    }
                }
                Mutation::Complete { incarnation, .. } => {
                    if touched.current.as_ref().is_some_and(|j| j.incarnation == *incarnation) {
                        touched.current = None;
                    }
                }
            }
        }
        for (encoded, touched) in overlay {
            if touched.original == touched.current {
                continue;
            }
            if let Some(original) = &touched.original {
                self.unstore(encoded, original)?;
            }
            if let Some(current) = &touched.current {
                self.store(encoded, current)?;
            }
        }
        Ok(Ok(()))
    }
}

/// Up to `limit` jobs of the jobs table in `range`, in key order.
fn read_jobs(
    db: &Database,
    range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
    limit: usize,
) -> Result<Vec<StoredJob>, StoreError> {
    let txn = db.begin_read().map_err(storage)?;
    let jobs = txn.open_table(JOBS).map_err(storage)?;
    let range = (range.0.as_ref().map(Vec::as_slice), range.1.as_ref().map(Vec::as_slice));
    let mut out = Vec::new();
    for entry in jobs.range::<&[u8]>(range).map_err(storage)?.take(limit) {
        let (k, v) = entry.map_err(storage)?;
        out.push(decode_record(decode_key(k.value())?, v.value())?);
    }
    Ok(out)
}

/// Up to `limit` jobs of the index `table` (`due`, or `staged` when `staged`) in `range`, in
/// index order.
fn scan_index(
    db: &Database,
    table: TableDefinition<&[u8], ()>,
    range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
    limit: usize,
    staged: bool,
) -> Result<Vec<StoredJob>, StoreError> {
    let txn = db.begin_read().map_err(storage)?;
    let index = txn.open_table(table).map_err(storage)?;
    let jobs = txn.open_table(JOBS).map_err(storage)?;
    let range = (range.0.as_ref().map(Vec::as_slice), range.1.as_ref().map(Vec::as_slice));
    let mut out = Vec::new();
    for entry in index.range::<&[u8]>(range).map_err(storage)? {
        if out.len() >= limit {
            break;
        }
        let (entry, _) = entry.map_err(storage)?;
        let (_, due_at, encoded) =
            if staged { keys::decode_staged_key(entry.value())? } else { decode_due_key(entry.value())? };
        let key = decode_key(encoded)?;
        let job = match jobs.get(encoded).map_err(storage)? {
            Some(bytes) => decode_record(key, bytes.value())?,
            None => {
                // Cannot happen (both tables change in one transaction); a stale entry must not
                // stop the partition.
                tracing::warn!(%key, "index entry without a job; skipped");
                continue;
            }
        };
        if job.next_due != due_at || job.staged != staged {
            tracing::warn!(key = %job.key, "stale index entry; skipped");
            continue;
        }
        out.push(job);
    }
    Ok(out)
}

#[async_trait]
impl JobStore for RedbStore {
    fn partitions(&self) -> u32 {
        self.shared.partitions
    }

    async fn put(&self, job: StoredJob, mode: PutMode) -> Result<Option<StoredJob>, StoreError> {
        let encoded = encode_key(&job.key)?;
        match self.write(Op::Put { job: Box::new(job), encoded, mode }).await? {
            Done::Job(old) => Ok(old.map(|old| *old)),
            other => Err(mismatch(&other)),
        }
    }

    async fn get(&self, key: &JobKey) -> Result<Option<StoredJob>, StoreError> {
        let encoded = encode_key(key)?;
        // One point lookup: cheap enough to run on the caller's thread.
        let txn = self.shared.db.begin_read().map_err(storage)?;
        let jobs = txn.open_table(JOBS).map_err(storage)?;
        let Some(bytes) = jobs.get(encoded.as_slice()).map_err(storage)? else { return Ok(None) };
        decode_record(key.clone(), bytes.value()).map(Some)
    }

    async fn delete(&self, key: &JobKey) -> Result<Option<StoredJob>, StoreError> {
        let encoded = encode_key(key)?;
        match self.write(Op::Delete { key: key.clone(), encoded }).await? {
            Done::Job(old) => Ok(old.map(|old| *old)),
            other => Err(mismatch(&other)),
        }
    }

    async fn list(
        &self,
        namespace: &str,
        owner: &Owner,
        after_name: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredJob>, StoreError> {
        let prefix = keys::owner_prefix(namespace, owner)?;
        let end = prefix_end(&prefix).map_or(Bound::Unbounded, Bound::Excluded);
        let start = match after_name {
            None => Bound::Included(prefix),
            Some(name) => {
                check_component("job name", name)?;
                Bound::Excluded([prefix.as_slice(), name.as_bytes()].concat())
            }
        };
        self.read(move |db| read_jobs(db, (start, end), limit)).await
    }

    async fn delete_by_prefix(
        &self,
        namespace: &str,
        owner: &Owner,
        name_prefix: &str,
    ) -> Result<Vec<JobKey>, StoreError> {
        check_component("job name prefix", name_prefix)?;
        let prefix = [keys::owner_prefix(namespace, owner)?, name_prefix.as_bytes().to_vec()].concat();
        match self.write(Op::DeletePrefix { prefix }).await? {
            Done::Keys(keys) => Ok(keys),
            other => Err(mismatch(&other)),
        }
    }

    async fn delete_by_scope(&self, scope: &OwnerScope) -> Result<Vec<JobKey>, StoreError> {
        let prefix = scope_prefix(scope)?;
        match self.write(Op::DeletePrefix { prefix }).await? {
            Done::Keys(keys) => Ok(keys),
            other => Err(mismatch(&other)),
        }
    }

    async fn scan_due(
        &self,
        partition: u32,
        after: Option<&DueCursor>,
        limit: usize,
    ) -> Result<Vec<StoredJob>, StoreError> {
        let part = keys::due_partition_prefix(partition).to_vec();
        let start = match after {
            None => Bound::Included(part.clone()),
            Some(cursor) => Bound::Excluded(due_key(partition, cursor.due, &encode_key(&cursor.key)?)),
        };
        let end = prefix_end(&part).map_or(Bound::Unbounded, Bound::Excluded);
        self.read(move |db| scan_index(db, DUE, (start, end), limit, false)).await
    }

    async fn scan_staged(
        &self,
        partition: u32,
        route: &Route,
        after: Option<&DueCursor>,
        limit: usize,
    ) -> Result<Vec<StoredJob>, StoreError> {
        let part = keys::staged_route_prefix(partition, &keys::route_prefix(route)?);
        let start = match after {
            None => Bound::Included(part.clone()),
            Some(cursor) => {
                Bound::Excluded(keys::staged_key(partition, cursor.due, &encode_key(&cursor.key)?))
            }
        };
        let end = prefix_end(&part).map_or(Bound::Unbounded, Bound::Excluded);
        self.read(move |db| scan_index(db, STAGED, (start, end), limit, true)).await
    }

    async fn count_staged(&self) -> Result<u64, StoreError> {
        let txn = self.shared.db.begin_read().map_err(storage)?;
        let staged = txn.open_table(STAGED).map_err(storage)?;
        staged.len().map_err(storage)
    }

    async fn apply(&self, mutations: Vec<Mutation>) -> Result<(), StoreError> {
        let mutations = mutations
            .into_iter()
            .map(|m| Ok((encode_key(m.key())?, m)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        if mutations.is_empty() {
            return Ok(());
        }
        match self.write(Op::Apply { mutations }).await? {
            Done::Applied => Ok(()),
            other => Err(mismatch(&other)),
        }
    }

    async fn scan_all(&self, after: Option<&JobKey>, limit: usize) -> Result<Vec<StoredJob>, StoreError> {
        let start = after.map(encode_key).transpose()?.map_or(Bound::Unbounded, Bound::Excluded);
        self.read(move |db| read_jobs(db, (start, Bound::Unbounded), limit)).await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        let txn = self.shared.db.begin_read().map_err(storage)?;
        let jobs = txn.open_table(JOBS).map_err(storage)?;
        jobs.len().map_err(storage)
    }
}

/// The writer answered with the wrong kind of result: a bug, reported rather than panicking.
fn mismatch(done: &Done) -> StoreError {
    StoreError::Unavailable {
        reason: format!("internal error: unexpected writer reply {done:?}"),
        source: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_zero_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let err = RedbStore::open(dir.path().join("s.redb"), 0).unwrap_err();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    }

    #[test]
    fn reopening_keeps_the_recorded_partition_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        assert_eq!(RedbStore::open(&path, 16).unwrap().partitions(), 16);
        assert_eq!(RedbStore::open(&path, 32).unwrap().partitions(), 16);
    }

    #[test]
    fn refuses_a_redb_file_without_kairos_meta() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.redb");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(TableDefinition::<&str, u64>::new("something")).unwrap().insert("x", 1).unwrap();
            txn.commit().unwrap();
        }
        let err = RedbStore::open(&path, 8).unwrap_err();
        assert!(matches!(&err, StoreError::Corrupt(why) if why.contains("no kairos meta")), "{err:?}");
    }

    #[test]
    fn refuses_garbled_meta() {
        let dir = tempfile::tempdir().unwrap();
        for (format, partitions) in
            [(&b"nope"[..], &[0, 0, 0, 8][..]), (FORMAT, &[1, 2][..]), (FORMAT, &[0, 0, 0, 0][..])]
        {
            let path = dir.path().join("garbled.redb");
            drop(RedbStore::open(&path, 8).unwrap());
            {
                let db = Database::create(&path).unwrap();
                let txn = db.begin_write().unwrap();
                let mut meta = txn.open_table(META).unwrap();
                meta.insert(META_FORMAT, format).unwrap();
                meta.insert(META_PARTITIONS, partitions).unwrap();
                drop(meta);
                txn.commit().unwrap();
            }
            let err = RedbStore::open(&path, 8).unwrap_err();
            assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn refuses_a_file_that_is_not_redb() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.redb");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let err = RedbStore::open(&path, 8).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_) | StoreError::Unavailable { .. }), "{err:?}");
    }

    #[test]
    fn a_second_open_of_an_open_file_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let _first = RedbStore::open(&path, 8).unwrap();
        let err = RedbStore::open(&path, 8).unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
    }
}

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
//! batch gets the error ([`StoreError::Full`], [`StoreError::Corrupt`] or
//! [`StoreError::Unavailable`], see *Faults*) and nothing of the batch is stored. While one batch
//! commits, the next one queues up, so concurrent writers share fsyncs.
//!
//! # Reads
//! Reads use their own read transactions (MVCC) and see every write that has returned; the
//! range reads run on tokio's blocking pool.
//!
//! # Faults
//! The file's integrity is checked when it is opened (redb verifies the checksum of every page
//! of the committed trees): a corrupt file fails [`RedbStore::open`] with
//! [`StoreError::Corrupt`] instead of panicking later. After an I/O error redb refuses every
//! later write on that handle ("previous I/O error"), so the writer closes the database and
//! reopens it at once (reads share it: the handle sits in a slot the writer swaps), retrying
//! with backoff while reads still hold the old handle; reads that come meanwhile wait for the
//! new handle. A full disk (`ENOSPC`, `EDQUOT`) fails
//! the batch with [`StoreError::Full`] and puts the store in [`StoreFault::Full`]: writes are
//! refused at once (no queueing) while reads go on, and the writer checks every so often
//! whether space is back (a probe file of [`SPACE_PROBE_BYTES`] next to the store) and then
//! takes writes again by itself. A failed commit is never acknowledged and nothing of it is
//! stored, so no acknowledged job is lost. Corruption found at run time (a redb error saying
//! so, a record that does not decode, or a panic inside redb, which is caught) fails the call
//! and puts the store in [`StoreFault::Corrupt`] for good: every later write is refused,
//! because a write into a damaged tree may not be kept.
//!
//! # Shutdown
//! [`RedbStore`] is a cheap handle (`Clone`). Dropping the last handle closes the channel; the
//! writer applies and commits whatever was still queued (writes whose callers gave up waiting),
//! then exits, and the drop waits for it, so the file is closed (and can be reopened) when the
//! drop returns. A read still running on the blocking pool keeps the file open until it ends.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use ::redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use async_trait::async_trait;
use kairos_core::{Backoff, JobKey, Route, TriggerRecord};
use tokio::sync::{mpsc, oneshot};

use crate::keys::{self, Listing, decode_due_key, decode_key, due_key, encode_key, prefix_end};
use crate::record::{decode_history, decode_record, encode_history, encode_record};
use crate::{DueCursor, JobStore, Mutation, OwnerScope, PutMode, StoreError, StoreFault, StoredJob, Written};

/// The format tag in the meta table.
pub const FORMAT: &[u8] = b"kairos-store/1";

/// The most operations the writer applies in one commit.
pub const MAX_BATCH: usize = 4096;

/// The most jobs one commit writes (an engine `apply` writes one per mutation). redb keeps every
/// page a transaction dirties in memory until it commits: unbounded, a commit of the staging
/// writes of 256 partitions at once touched ≈ 8,000 jobs and most pages of the file, and the
/// allocator kept that memory afterwards.
pub const MAX_BATCH_KEYS: usize = 2048;

const JOBS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("jobs");
const DUE: TableDefinition<&[u8], ()> = TableDefinition::new("due");
const STAGED: TableDefinition<&[u8], ()> = TableDefinition::new("staged");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// [`keys::history_key`] → an encoded trigger record (created on first use: older files lack
/// it and read as empty histories).
const HISTORY: TableDefinition<&[u8], &[u8]> = TableDefinition::new("history");
const META_FORMAT: &str = "format";
const META_PARTITIONS: &str = "partitions";

/// The durable job store; see the [module docs](self).
#[derive(Clone)]
pub struct RedbStore {
    shared: Arc<Shared>,
}

struct Shared {
    db: Arc<DbSlot>,
    health: Arc<Health>,
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
    /// Times the file was closed and opened again after an I/O error.
    pub reopens: u64,
}

#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    ops: AtomicU64,
    failed_commits: AtomicU64,
    largest_batch: AtomicU64,
    reopens: AtomicU64,
}

/// The open database. Reads clone the handle out of it; the writer empties it and puts a new
/// handle in when it reopens the file.
type DbSlot = RwLock<Option<Arc<Database>>>;

/// The store's fault, shared by the handles and the writer.
#[derive(Debug, Default)]
struct Health {
    fault: Mutex<Option<StoreFault>>,
}

impl Health {
    fn fault(&self) -> Option<StoreFault> {
        self.fault.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Records that the disk is full, unless the store is already known to be corrupt.
    fn full(&self, reason: &str) {
        let mut fault = self.fault.lock().unwrap_or_else(PoisonError::into_inner);
        if fault.is_none() {
            metrics::counter!("kairos_store_faults_total", "fault" => "full").increment(1);
            *fault = Some(StoreFault::Full(reason.to_owned()));
        }
    }

    /// Records corruption; it outlives every other fault and is never cleared.
    fn corrupt(&self, path: &Path, why: &str) {
        let mut fault = self.fault.lock().unwrap_or_else(PoisonError::into_inner);
        if !matches!(*fault, Some(StoreFault::Corrupt(_))) {
            tracing::error!(
                path = %path.display(),
                why,
                "job store is corrupt: refusing every write from now on; restore it (see docs/operations.md)"
            );
            metrics::counter!("kairos_store_faults_total", "fault" => "corrupt").increment(1);
            *fault = Some(StoreFault::Corrupt(why.to_owned()));
        }
    }

    /// Clears a [`StoreFault::Full`]; returns whether there was one.
    fn space_is_back(&self) -> bool {
        let mut fault = self.fault.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(*fault, Some(StoreFault::Full(_))) {
            *fault = None;
            return true;
        }
        false
    }

    fn is_full(&self) -> bool {
        matches!(self.fault(), Some(StoreFault::Full(_)))
    }
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

impl Op {
    /// Jobs this operation writes, for [`MAX_BATCH_KEYS`] (a bulk delete counts as one: how many
    /// it matches is known only once it runs).
    fn weight(&self) -> usize {
        match self {
            Op::Apply { mutations } => mutations.len().max(1),
            Op::Put { .. } | Op::Delete { .. } | Op::DeletePrefix { .. } => 1,
        }
    }
}

#[derive(Debug)]
enum Done {
    Job(Option<Box<StoredJob>>),
    Keys(Vec<JobKey>),
    Applied,
}

/// Bytes of redb's page cache per store.
pub const CACHE_SIZE: usize = 128 << 20;

/// Free bytes the writer wants to find (by writing a probe file next to the store) before it
/// takes writes again after the disk was full.
pub const SPACE_PROBE_BYTES: usize = 1 << 20;

/// The longest wait between two attempts to reopen the file or to find space.
const MAX_RECOVERY_BACKOFF: Duration = Duration::from_secs(1);

/// How long a read waits for the file to be reopened before it fails with `Unavailable`.
const REOPEN_WAIT: Duration = Duration::from_secs(10);

impl RedbStore {
    /// Opens the store in the file at `path`, creating it with `partitions_if_new` partitions
    /// when it does not exist (or is empty).
    ///
    /// An existing store keeps the partition count recorded at its creation; a different
    /// `partitions_if_new` is logged and ignored.
    ///
    /// The whole file is checked first (every page checksum of the committed trees), so that a
    /// file damaged outside kairos fails here rather than at some later read.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for 0 partitions; [`StoreError::Corrupt`] when the file is not a
    /// kairos store (not redb, fails its integrity check, or its meta table is missing or
    /// garbled); [`StoreError::InUse`] when another process (or another store in this process)
    /// has it open; [`StoreError::Full`] when a new file cannot be written for lack of space;
    /// [`StoreError::Unavailable`] for other I/O errors.
    pub fn open(path: impl AsRef<Path>, partitions_if_new: u32) -> Result<RedbStore, StoreError> {
        Self::open_with_cache(path, partitions_if_new, CACHE_SIZE)
    }

    /// [`RedbStore::open`] with `cache_bytes` of page cache instead of [`CACHE_SIZE`]. The cache
    /// fills up to the smaller of its size and the file's, and counts in the process's memory.
    ///
    /// # Errors
    /// As [`RedbStore::open`].
    pub fn open_with_cache(
        path: impl AsRef<Path>,
        partitions_if_new: u32,
        cache_bytes: usize,
    ) -> Result<RedbStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        if partitions_if_new == 0 {
            return Err(StoreError::Invalid { what: "partition count", reason: "must be at least 1".into() });
        }
        let db = open_database(&path, cache_bytes)?;
        let partitions = guarded("checking the meta table", || init_meta(&db, &path, partitions_if_new))?;
        if partitions != partitions_if_new {
            tracing::warn!(
                path = %path.display(),
                recorded = partitions,
                requested = partitions_if_new,
                "store was created with another partition count; keeping the recorded one"
            );
        }
        let db = Arc::new(RwLock::new(Some(Arc::new(db))));
        let counters = Arc::new(Counters::default());
        let health = Arc::new(Health::default());
        // Bounded so that a flood of writers waits for the disk instead of queueing without
        // limit; one full batch can wait while another commits.
        let (writer_tx, writer_rx) = mpsc::channel(MAX_BATCH);
        let writer = Writer {
            slot: db.clone(),
            health: health.clone(),
            path: path.clone(),
            cache_bytes,
            partitions,
            counters: counters.clone(),
        };
        let writer = std::thread::Builder::new()
            .name("kairos-store-writer".into())
            .spawn(move || writer.run(writer_rx))
            .map_err(|e| StoreError::unavailable("cannot start the store writer thread", e))?;
        Ok(RedbStore {
            shared: Arc::new(Shared {
                db,
                health,
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
            reopens: c.reopens.load(Ordering::Relaxed),
        }
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    async fn write(&self, op: Op) -> Result<Done, StoreError> {
        // A full or corrupt store answers at once: queueing behind the writer would only delay
        // the same refusal.
        if let Some(fault) = self.shared.health.fault() {
            return Err(fault.into());
        }
        let writer_gone =
            || StoreError::Unavailable { reason: "the store writer has stopped".into(), source: None };
        let tx = self.shared.writer_tx.as_ref().ok_or_else(writer_gone)?;
        let (reply, reply_rx) = oneshot::channel();
        tx.send(Request { op, reply }).await.map_err(|_| writer_gone())?;
        let result = reply_rx.await.map_err(|_| writer_gone())?;
        self.observe(result)
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db().await?;
        let result = tokio::task::spawn_blocking(move || guarded("in a read", || f(&db)))
            .await
            .map_err(|e| StoreError::unavailable("store read task failed", e))
            .and_then(|read| read);
        self.observe(result)
    }

    /// How many entries `table` holds (one read transaction, on the caller's thread: redb keeps
    /// the count, nothing is scanned).
    async fn table_len<V: ::redb::Value + 'static>(
        &self,
        table: TableDefinition<'static, &'static [u8], V>,
    ) -> Result<u64, StoreError> {
        let db = self.db().await?;
        self.observe(guarded("in a count", || {
            let txn = db.begin_read().map_err(storage)?;
            txn.open_table(table).map_err(storage)?.len().map_err(storage)
        }))
    }

    /// The open database; while the writer reopens the file, waits for it (up to
    /// [`REOPEN_WAIT`]), so that reads go on across a reopen.
    async fn db(&self) -> Result<Arc<Database>, StoreError> {
        let waited = kairos_core::Stopwatch::start();
        loop {
            if let Some(db) = self.shared.db.read().unwrap_or_else(PoisonError::into_inner).clone() {
                return Ok(db);
            }
            if let Some(StoreFault::Corrupt(why)) = self.shared.health.fault() {
                return Err(StoreError::Corrupt(why));
            }
            if waited.elapsed() >= REOPEN_WAIT {
                return Err(StoreError::Unavailable {
                    reason: format!(
                        "{} is closed after an I/O error and is being reopened",
                        self.shared.path.display()
                    ),
                    source: None,
                });
            }
            // Rare and short (a reopen), so a poll is simpler than a notification.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Notes corruption that a call ran into, so that later writes are refused.
    fn observe<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Corrupt(why)) = &result {
            self.shared.health.corrupt(&self.shared.path, why);
        }
        result
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

/// Opens (or creates) the redb file at `path` after checking its integrity.
fn open_database(path: &Path, cache_bytes: usize) -> Result<Database, StoreError> {
    let opened = std::panic::catch_unwind(|| {
        // redb caches up to 1 GiB of pages by default; with millions of jobs that cache, not
        // the engine, would set the scheduler's memory. The engine keeps its own bounded window
        // of soon-due jobs, so a modest page cache is enough. The integrity check reads the
        // whole file once (about 0.1 s per 100 MiB when cached); without it redb trusts a file
        // that was closed cleanly and may panic on a damaged page much later.
        Database::builder().set_cache_size(cache_bytes).set_check_integrity_on_open(true).create(path)
    });
    let error = match opened {
        Ok(Ok(db)) => return Ok(db),
        Ok(Err(e)) => ::redb::Error::from(e),
        Err(panic) => {
            return Err(StoreError::Corrupt(format!(
                "{} cannot be opened: redb panicked: {}",
                path.display(),
                panic_message(panic.as_ref())
            )));
        }
    };
    Err(match error {
        ::redb::Error::DatabaseAlreadyOpen | ::redb::Error::LockProtocolMismatch => {
            StoreError::InUse { path: path.display().to_string() }
        }
        ::redb::Error::Corrupted(why) => {
            StoreError::Corrupt(format!("{} failed its integrity check: {why}", path.display()))
        }
        ::redb::Error::Io(io) if is_no_space(&io) => StoreError::Full { reason: full_reason(path) },
        e => StoreError::unavailable(format_args!("cannot open {}", path.display()), e),
    })
}

/// Whether an I/O error means there is no room left (a full disk or an exhausted quota).
fn is_no_space(io: &std::io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    io.kind() == std::io::ErrorKind::StorageFull
        || io.kind() == std::io::ErrorKind::QuotaExceeded
        || matches!(io.raw_os_error(), Some(ENOSPC | EDQUOT))
}

fn full_reason(path: &Path) -> String {
    format!("cannot write {}; writes resume by themselves once space is freed", path.display())
}

/// Runs `f`, turning a panic inside it into [`StoreError::Corrupt`]: redb panics on some pages
/// it cannot make sense of (debug assertions, `unreachable!`), and a damaged file must fail the
/// call, not the thread or the process.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        Err(StoreError::Corrupt(format!("redb panicked {what}: {}", panic_message(panic.as_ref()))))
    })
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(no message)".to_owned())
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
    txn.open_table(HISTORY).map_err(storage)?;
    txn.commit().map_err(storage)?;
    Ok(partitions)
}

/// Maps a redb error to a store error.
fn storage(e: impl Into<::redb::Error>) -> StoreError {
    match e.into() {
        ::redb::Error::Corrupted(why) => StoreError::Corrupt(why),
        ::redb::Error::Io(io) if is_no_space(&io) => {
            StoreError::Full { reason: format!("a write failed: {io}; writes resume once space is freed") }
        }
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

/// The writer thread: owns every write, and reopens the file after an I/O error.
struct Writer {
    slot: Arc<DbSlot>,
    health: Arc<Health>,
    path: PathBuf,
    cache_bytes: usize,
    partitions: u32,
    counters: Arc<Counters>,
}

/// What a failed commit means for the store.
enum Failure {
    /// No space: the callers get [`StoreError::Full`], the file is reopened, and writes wait
    /// for space.
    Full,
    /// Corruption: the callers get [`StoreError::Corrupt`] and the store refuses writes for good.
    Corrupt(String),
    /// Another I/O error: redb refuses every later write on this handle, so it is reopened.
    Io,
    /// Anything else: the batch fails alone.
    Other,
}

impl Writer {
    fn run(self, mut rx: mpsc::Receiver<Request>) {
        let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
        let mut results = Vec::with_capacity(MAX_BATCH);
        // A request taken off the channel that did not fit in the last batch.
        let mut carried: Option<Request> = None;
        while let Some(first) = carried.take().or_else(|| rx.blocking_recv()) {
            let mut weight = first.op.weight();
            batch.push(first);
            while batch.len() < MAX_BATCH && weight < MAX_BATCH_KEYS {
                match rx.try_recv() {
                    Ok(request) if weight + request.op.weight() > MAX_BATCH_KEYS => {
                        carried = Some(request);
                        break;
                    }
                    Ok(request) => {
                        weight += request.op.weight();
                        batch.push(request);
                    }
                    Err(_) => break,
                }
            }
            // Writes that raced past the check in `RedbStore::write` before a fault was noted.
            let db = match (self.health.fault(), self.db()) {
                (None, Some(db)) => db,
                (fault, _) => {
                    for request in batch.drain(..) {
                        let refusal = fault.clone().map_or_else(|| self.reopening(), StoreError::from);
                        let _ = request.reply.send(Err(refusal));
                    }
                    continue;
                }
            };
            results.clear();
            let watch = kairos_core::Stopwatch::start();
            let committed = std::panic::catch_unwind(AssertUnwindSafe(|| {
                commit_batch(&db, self.partitions, &batch, &mut results)
            }))
            .unwrap_or_else(|panic| {
                Err(::redb::Error::Corrupted(format!(
                    "redb panicked in a commit: {}",
                    panic_message(panic.as_ref())
                )))
            });
            drop(db);
            metrics::histogram!("kairos_store_commit_duration_seconds").record(watch.elapsed().as_secs_f64());
            #[allow(clippy::cast_precision_loss)]
            metrics::histogram!("kairos_store_commit_batch_size").record(batch.len() as f64);
            match committed {
                Ok(()) => {
                    let n = batch.len() as u64;
                    self.counters.commits.fetch_add(1, Ordering::Relaxed);
                    self.counters.ops.fetch_add(n, Ordering::Relaxed);
                    self.counters.largest_batch.fetch_max(n, Ordering::Relaxed);
                    for (request, result) in batch.drain(..).zip(results.drain(..)) {
                        // The caller may have stopped waiting; its write is durable anyway.
                        let _ = request.reply.send(result);
                    }
                }
                Err(e) => {
                    self.counters.failed_commits.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("kairos_store_commit_failures_total").increment(1);
                    tracing::error!(error = %e, ops = batch.len(), path = %self.path.display(), "store commit failed");
                    let failure = self.classify(&e);
                    let e = SharedError(Arc::new(e));
                    for request in batch.drain(..) {
                        let error = match &failure {
                            Failure::Full => StoreError::Full { reason: full_reason(&self.path) },
                            Failure::Corrupt(why) => StoreError::Corrupt(why.clone()),
                            Failure::Io | Failure::Other => {
                                StoreError::unavailable("store commit failed", e.clone())
                            }
                        };
                        let _ = request.reply.send(Err(error));
                    }
                    if matches!(failure, Failure::Full | Failure::Io) && !self.recover(&mut rx) {
                        break;
                    }
                }
            }
        }
        tracing::debug!("store writer stopped");
    }

    fn db(&self) -> Option<Arc<Database>> {
        self.slot.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn reopening(&self) -> StoreError {
        StoreError::Unavailable {
            reason: format!("{} is closed after an I/O error and is being reopened", self.path.display()),
            source: None,
        }
    }

    /// Notes what `e` means for the store (its fault) and whether the handle must be reopened.
    fn classify(&self, e: &::redb::Error) -> Failure {
        match e {
            ::redb::Error::Io(io) if is_no_space(io) => {
                self.health.full(&full_reason(&self.path));
                Failure::Full
            }
            // Latched by an earlier I/O error (e.g. a read's): the cause is gone, but the handle
            // is unusable all the same.
            ::redb::Error::Io(_) | ::redb::Error::PreviousIo | ::redb::Error::DatabaseClosed => Failure::Io,
            ::redb::Error::Corrupted(why) => {
                self.health.corrupt(&self.path, why);
                Failure::Corrupt(why.clone())
            }
            ::redb::Error::LockPoisoned(location) => {
                let why = format!("redb found its lock poisoned at {location} after a panic");
                self.health.corrupt(&self.path, &why);
                Failure::Corrupt(why)
            }
            _ => Failure::Other,
        }
    }

    /// After a failed commit: reopens the file (so that reads go on), then, if the disk was
    /// full, waits until there is space again. Queued writes are answered at once meanwhile.
    /// Returns `false` when the store was dropped meanwhile (the writer then stops).
    fn recover(&self, rx: &mut mpsc::Receiver<Request>) -> bool {
        // Drop our handle first: the file closes once reads in flight let go of theirs, and
        // only then can it be opened again.
        *self.slot.write().unwrap_or_else(PoisonError::into_inner) = None;
        // No jitter: one local file, nobody to fall into step with.
        let mut backoff = Backoff::new(Duration::from_millis(10), MAX_RECOVERY_BACKOFF).jitter(0.0);
        loop {
            match open_database(&self.path, self.cache_bytes) {
                Ok(db) => {
                    *self.slot.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(db));
                    self.counters.reopens.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("kairos_store_reopens_total").increment(1);
                    tracing::info!(path = %self.path.display(), "job store reopened after a write error");
                    break;
                }
                Err(StoreError::Corrupt(why)) => {
                    self.health.corrupt(&self.path, &why);
                    return true;
                }
                Err(e) => {
                    // Still held by a read in flight (in use), or the disk is not back yet.
                    tracing::debug!(error = %e, path = %self.path.display(), "job store not reopened yet; retrying");
                }
            }
            if !self.wait(rx, backoff.next_delay()) {
                return false;
            }
        }
        let mut backoff = Backoff::new(Duration::from_millis(50), MAX_RECOVERY_BACKOFF).jitter(0.0);
        let mut logged = false;
        while self.health.is_full() {
            match probe_space(&self.path) {
                Ok(()) => {
                    if self.health.space_is_back() {
                        tracing::info!(path = %self.path.display(), "disk space is back; taking writes again");
                    }
                    break;
                }
                Err(e) if !logged => {
                    tracing::warn!(
                        error = %e,
                        path = %self.path.display(),
                        "job store disk is full: refusing writes until {SPACE_PROBE_BYTES} bytes can be written next to it"
                    );
                    logged = true;
                }
                Err(_) => {}
            }
            if !self.wait(rx, backoff.next_delay()) {
                return false;
            }
        }
        true
    }

    /// Sleeps for `pause`, answering every write that arrives meanwhile with the store's
    /// fault at once. Returns `false` when the channel closed (the store was dropped).
    fn wait(&self, rx: &mut mpsc::Receiver<Request>, pause: Duration) -> bool {
        const SLICE: Duration = Duration::from_millis(10);
        let mut left = pause;
        loop {
            loop {
                match rx.try_recv() {
                    Ok(request) => {
                        let refusal = self.health.fault().map_or_else(|| self.reopening(), StoreError::from);
                        let _ = request.reply.send(Err(refusal));
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return false,
                }
            }
            if left.is_zero() {
                return true;
            }
            let step = left.min(SLICE);
            std::thread::sleep(step);
            left -= step;
        }
    }
}

/// Whether [`SPACE_PROBE_BYTES`] can be written (and synced) in the store's directory; the probe
/// file is removed again either way.
fn probe_space(store: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut name = store.file_name().unwrap_or_default().to_os_string();
    name.push(".space-probe");
    let probe = store.with_file_name(name);
    let written = (|| {
        let mut file = std::fs::File::create(&probe)?;
        let chunk = [0u8; 64 << 10];
        for _ in 0..SPACE_PROBE_BYTES / chunk.len() {
            file.write_all(&chunk)?;
        }
        file.sync_all()
    })();
    let _ = std::fs::remove_file(&probe);
    written
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
            history: txn.open_table(HISTORY)?,
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
    history: ::redb::Table<'t, &'static [u8], &'static [u8]>,
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

    /// Removes the history records starting with `prefix` below `below` (all with `None`).
    fn drop_history(&mut self, prefix: &[u8], below: Option<&[u8]>) -> Result<(), ::redb::Error> {
        let end = match below {
            Some(below) => Some(below.to_vec()),
            None => prefix_end(prefix),
        };
        let range = (Bound::Included(prefix), end.as_deref().map_or(Bound::Unbounded, Bound::Excluded));
        let doomed: Vec<Vec<u8>> = self
            .history
            .range::<&[u8]>(range)?
            .map(|entry| entry.map(|(k, _)| k.value().to_vec()))
            .collect::<Result<_, _>>()?;
        for key in doomed {
            self.history.remove(key.as_slice())?;
        }
        Ok(())
    }

    fn put(&mut self, job: &StoredJob, encoded: &[u8], mode: PutMode) -> OpResult<Option<StoredJob>> {
        let old = refuse_on_err!(self.load(&job.key, encoded)?);
        if let Some(old) = &old {
            if mode == PutMode::CreateOnly {
                return Ok(Err(StoreError::AlreadyExists(job.key.clone())));
            }
            self.unstore(encoded, old)?;
        }
        if job.stats.records == 0 {
            self.drop_history(&keys::history_prefix(encoded), None)?;
        }
        self.store(encoded, job)?;
        Ok(Ok(old))
    }

    fn delete(&mut self, key: &JobKey, encoded: &[u8]) -> OpResult<Option<StoredJob>> {
        let old = refuse_on_err!(self.load(key, encoded)?);
        if let Some(old) = &old {
            self.unstore(encoded, old)?;
            self.drop_history(&keys::history_prefix(encoded), None)?;
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
        // Every job whose name starts with the prefix is gone: so is every history under it.
        self.drop_history(prefix, None)?;
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
        // History records to write: (encoded key, record number, keep, bytes).
        let mut appended: Vec<(&[u8], u64, u64, Vec<u8>)> = Vec::new();
        for (encoded, mutation) in mutations {
            if !overlay.contains_key(encoded.as_slice()) {
                let original = refuse_on_err!(self.load(mutation.key(), encoded)?);
                overlay.insert(encoded, Touched { current: original.clone(), original });
            }
            let Some(touched) = overlay.get_mut(encoded.as_slice()) else { continue };
            if let Mutation::Record { incarnation, stats, record, keep, .. } = mutation
                && touched.current.as_ref().is_some_and(|j| j.incarnation == *incarnation)
            {
                let seq = stats.records.saturating_sub(1);
                appended.push((encoded, seq, u64::from(keep.get()), encode_history(record)));
            }
            mutation.apply_to(&mut touched.current);
        }
        for (encoded, seq, keep, bytes) in appended {
            // A job completed later in the same batch leaves no history behind.
            if overlay.get(encoded).is_some_and(|t| t.current.is_some()) {
                self.history.insert(keys::history_key(encoded, seq).as_slice(), bytes.as_slice())?;
                let first_kept = (seq + 1).saturating_sub(keep);
                self.drop_history(
                    &keys::history_prefix(encoded),
                    Some(&keys::history_key(encoded, first_kept)),
                )?;
            }
        }
        for (encoded, touched) in overlay {
            if Mutation::unchanged(touched.original.as_ref(), touched.current.as_ref()) {
                continue;
            }
            if let Some(original) = &touched.original {
                self.unstore(encoded, original)?;
            }
            match &touched.current {
                Some(current) => self.store(encoded, current)?,
                None => self.drop_history(&keys::history_prefix(encoded), None)?,
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
        let db = self.db().await?;
        self.observe(guarded("in a get", || {
            let txn = db.begin_read().map_err(storage)?;
            let jobs = txn.open_table(JOBS).map_err(storage)?;
            let Some(bytes) = jobs.get(encoded.as_slice()).map_err(storage)? else { return Ok(None) };
            decode_record(key.clone(), bytes.value()).map(Some)
        }))
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
        scope: &OwnerScope,
        after: Option<&JobKey>,
        limit: usize,
    ) -> Result<Vec<StoredJob>, StoreError> {
        let Some(Listing { prefix, after }) = keys::listing(scope, after)? else { return Ok(Vec::new()) };
        let end = prefix_end(&prefix).map_or(Bound::Unbounded, Bound::Excluded);
        let start = after.map_or(Bound::Included(prefix), Bound::Excluded);
        self.read(move |db| read_jobs(db, (start, end), limit)).await
    }

    async fn delete_by_scope(&self, scope: &OwnerScope) -> Result<Vec<JobKey>, StoreError> {
        let prefix = keys::scope_prefix(scope)?;
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
        self.table_len(STAGED).await
    }

    async fn apply(&self, mutations: Vec<Mutation>) -> Result<Written, StoreError> {
        let mutations = keys::encode_mutations(mutations)?;
        if mutations.is_empty() {
            return Ok(Written::new());
        }
        match self.write(Op::Apply { mutations }).await? {
            // The engine stamps versions here, and a mutation keeps them.
            Done::Applied => Ok(Written::new()),
            other => Err(mismatch(&other)),
        }
    }

    async fn scan_all(&self, after: Option<&JobKey>, limit: usize) -> Result<Vec<StoredJob>, StoreError> {
        let start = after.map(encode_key).transpose()?.map_or(Bound::Unbounded, Bound::Excluded);
        self.read(move |db| read_jobs(db, (start, Bound::Unbounded), limit)).await
    }

    async fn history(&self, key: &JobKey, limit: usize) -> Result<Vec<TriggerRecord>, StoreError> {
        let prefix = keys::history_prefix(&encode_key(key)?);
        let key = key.clone();
        self.read(move |db| {
            let txn = db.begin_read().map_err(storage)?;
            let table = match txn.open_table(HISTORY) {
                Ok(table) => table,
                Err(::redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(storage(e)),
            };
            let end = prefix_end(&prefix);
            let range = (
                Bound::Included(prefix.as_slice()),
                end.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
            );
            let mut newest = Vec::new();
            for entry in table.range::<&[u8]>(range).map_err(storage)?.rev().take(limit) {
                let (_, v) = entry.map_err(storage)?;
                newest.push(decode_history(&key, v.value())?);
            }
            newest.reverse();
            Ok(newest)
        })
        .await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.table_len(JOBS).await
    }

    async fn fault(&self) -> Option<StoreFault> {
        self.shared.health.fault()
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
    fn a_second_open_of_an_open_file_is_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let _first = RedbStore::open(&path, 8).unwrap();
        let err = RedbStore::open(&path, 8).unwrap_err();
        assert!(matches!(&err, StoreError::InUse { path: p } if p.ends_with("s.redb")), "{err:?}");
        assert!(err.is_retryable(), "{err:?}");
    }
}

//! The distributed [`JobStore`] on etcd (v3 API, `etcd-client`), with fencing by partition
//! owner and a change feed of job keys.
//!
//! # Layout
//! Every key lives under a configurable prefix (default [`DEFAULT_PREFIX`]); two stores with
//! different prefixes on one etcd never see each other, as long as neither prefix is the other
//! followed by `/` and more (prefixes must not nest).
//! * `{prefix}/meta/format` → [`FORMAT`] and `{prefix}/meta/partitions` → the partition count
//!   (decimal), both created by the first store that connects, in one create-if-absent
//!   transaction; a later store with another count keeps the recorded one (as
//!   [`RedbStore`](crate::redb::RedbStore) does);
//! * `{prefix}/jobs/{encoded key}` → the job record ([`keys::encode_key`], the same store-private
//!   protobuf record as redb's);
//! * `{prefix}/due/{due key}` → empty, where the due key is [`keys::due_key`]
//!   `(partition, next_due, encoded key)`, so [`JobStore::scan_due`] is one range read; for every
//!   job that is not staged;
//! * `{prefix}/staged/{staged key}` → empty, where the staged key is [`keys::staged_key`]
//!   `(partition, route, next_due, encoded key)`, for every staged job
//!   ([`JobStore::scan_staged`] is one range read);
//! * `{prefix}/owners/{partition:05}` → the replica id owning the partition ([`owner_key`]),
//!   and `{prefix}/members/{replica id}` ([`member_key`]): written by the cluster layer under
//!   its leases; this store only reads and compares the owner keys.
//!
//! A job key and its index entry (due or staged) always change in the same transaction.
//!
//! # Writes
//! * `put` goes through one putter task, which takes every call queued meanwhile (at most
//!   [`MAX_GROUP_CALLS`]) and writes them in transactions within the same limits as `apply`
//!   ([`KEYS_PER_TXN`] jobs, 120 operations, about [`MAX_TXN_BYTES`]), sent
//!   together. Each job brings its guard: [`PutMode::CreateOnly`] `create_revision(job) == 0`,
//!   [`PutMode::Overwrite`] `mod_revision(job) ==` what a read just before found (the old job's
//!   due entry goes in the same transaction, and the old job is returned). When a guard fails
//!   nothing of the transaction is written and its other branch reads every job of it: a create
//!   whose key exists is answered [`StoreError::AlreadyExists`], an overwrite that raced goes
//!   again expecting what was read, and the calls whose guards held go again unchanged, in a new
//!   transaction. Two calls of one key never share a transaction (the later one goes in the next
//!   round, so of two racing creates exactly one wins). Each caller is answered once the
//!   transaction holding its job has committed, or with its own error: a transaction etcd refuses
//!   as invalid (a job too large) is retried job by job, so only that job's call fails.
//!   `delete` reads the job first and is guarded by `mod_revision(job) ==` what was read, so a
//!   delete that raced with another write is re-read and retried.
//! * `apply` goes through one writer task, which takes every call queued meanwhile, groups whole
//!   calls into transactions within etcd's limits ([`KEYS_PER_TXN`] jobs, [`PARTITIONS_PER_TXN`]
//!   partitions and about [`MAX_TXN_BYTES`] per transaction; etcd's defaults are 128 operations
//!   per transaction, `--max-txn-ops`, and 1.5 MiB per request), reads the touched jobs, plays the
//!   mutations on them in order and writes each touched job's final state guarded by its
//!   `mod_revision`. The groups of one batch go to etcd together when no job is in two of them
//!   (each engine partition has one call at a time, and a job belongs to one partition), else one
//!   after the other, so a job's mutations always land in call order. A call that fits in one transaction (at most [`KEYS_PER_TXN`] distinct jobs
//!   of modest size) is atomic, as the contract says. **A larger call is split into several
//!   transactions, and is then not atomic**: when one of them fails, the call returns the error
//!   and the transactions before it stay applied. The engine's mutations are absolute (progress
//!   replaces progress, a completed job is gone), so retrying the same call converges on the
//!   same final state; nothing is half-written within one job.
//! * `delete_by_scope` reads the matching jobs at a revision `R` and deletes them in
//!   transactions of at most 127 jobs: a range delete of the job keys from the first to
//!   the last one read plus their due entries, guarded by "no key in that range changed after
//!   `R`" (a compare over the range); a guard that fails is re-read and retried. **Up to 127
//!   jobs this is one atomic transaction, as with redb; beyond that a concurrent reader can see
//!   part of the jobs deleted, and a failure half-way leaves the rest in place** (the call fails
//!   with [`StoreError::Unavailable`]; calling it again finishes the delete). When it returns
//!   `Ok`, no matching job exists.
//!
//! # Fencing
//! With a replica id set ([`EtcdStore::with_fence`], [`EtcdStore::set_fence`]), every `apply`
//! transaction that writes jobs of partition `p` also compares `{prefix}/owners/{p:05} ==`
//! the replica id; when that compare fails nothing of the transaction is written and the calls
//! with mutations of `p` fail with [`StoreError::Fenced`] (calls of other partitions grouped
//! with them are retried without them). An `apply` whose mutations are all skipped still checks
//! the owner keys of its partitions. `put`, `get`, `delete` and `list` are never fenced: any
//! replica may change any job.
//!
//! # Change feed
//! [`EtcdStore::watch_jobs`] streams every put and delete of a job after a revision, with the
//! revision of each; [`EtcdStore::current_revision`] (a linearizable read) and
//! [`EtcdStore::scan_all_at`] (pages at one revision) make a full resync. A watch does not
//! survive an etcd restart or a broken connection ([`JobWatchError::Unavailable`]: watch again
//! from the last revision seen); when the revisions it needs were compacted it fails with
//! [`JobWatchError::Compacted`] (resync, then watch from the resync's revision).
//!
//! # Reads
//! Reads are linearizable (etcd's default). Range reads are paged ([`PAGE`] keys a request) at
//! the revision of their first page, so one call sees one snapshot.
//!
//! # Failures
//! Every request has a timeout ([`EtcdConfig::request_timeout`]). A transport error, a timeout
//! or an etcd-side unavailability is [`StoreError::Unavailable`]; the client reconnects by
//! itself, so the same store works again once etcd is back. A request etcd refuses as invalid
//! (e.g. a job larger than its request limit) is [`StoreError::Invalid`]. A write refused for
//! etcd's space quota ("database space exceeded", the NOSPACE alarm) is [`StoreError::Full`],
//! and [`JobStore::fault`] reports the alarm until an operator frees space and disarms it;
//! reads go on meanwhile.

mod errors;
mod layout;
mod putter;
mod watch;
mod writer;

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    AlarmAction, AlarmType, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, KeyValue,
    KvClient, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse, WatchClient, WatchOptions,
};
use kairos_core::{JobKey, Route, TriggerRecord};
use tokio::sync::{mpsc, oneshot};

use crate::keys::{self, Listing, decode_due_key, decode_key, encode_key};
use crate::record::decode_history;
use crate::{DueCursor, JobStore, Mutation, OwnerScope, PutMode, StoreError, StoreFault, StoredJob, Written};

use errors::{QUOTA_HINT, contention, etcd_error, replicate};
use layout::{Layout, decode_at, end_of, successor};
pub use layout::{member_key, members_prefix, owner_key, owners_prefix};
use putter::{PutCall, Putter};
pub use watch::{JobChange, JobEvent, JobWatch, JobWatchError};
use writer::{ApplyCall, Writer};

/// The format tag under `{prefix}/meta/format`.
pub const FORMAT: &str = "kairos-store/1";

/// The prefix a store uses unless told otherwise.
pub const DEFAULT_PREFIX: &str = "/kairos";

/// Keys a range read asks for at once.
pub const PAGE: usize = 256;

/// Distinct jobs in one `apply` transaction: each needs up to three operations (delete the old
/// due entry, put the job, put the new due entry) within etcd's default 128.
pub const KEYS_PER_TXN: usize = 40;

/// Distinct partitions in one grouped `apply` transaction (one owner compare each when fenced).
pub const PARTITIONS_PER_TXN: usize = 32;

/// Record bytes in one `apply` transaction, below etcd's default 1.5 MiB request limit.
pub const MAX_TXN_BYTES: usize = 1 << 20;

/// Jobs deleted by one transaction of a bulk delete (one range delete of the jobs, one of their
/// histories, plus one due entry each).
pub const DELETE_CHUNK: usize = 126;

/// Operations in one `apply` transaction, within etcd's default 128.
const OPS_PER_TXN: usize = 120;

/// `apply` calls the writer takes at once, and `put` calls the putter takes at once (each also
/// the capacity of its queue).
pub const MAX_GROUP_CALLS: usize = 256;

/// How often a write whose guard failed (a concurrent write to the same job) is retried.
const MAX_CONFLICTS: usize = 32;

/// Gets in one read transaction.
const GETS_PER_TXN: usize = 128;

/// How long [`JobStore::fault`] waits for etcd's alarm list.
const FAULT_PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Where a store connects and how it lays out its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Client URLs, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// The key prefix, without a trailing `/` (one is trimmed); default [`DEFAULT_PREFIX`].
    pub prefix: String,
    /// The partition count recorded when no store exists under the prefix yet.
    pub partitions_if_new: u32,
    /// The timeout of every request.
    pub request_timeout: Duration,
    /// The timeout of establishing a connection.
    pub connect_timeout: Duration,
}

impl EtcdConfig {
    /// The defaults: prefix [`DEFAULT_PREFIX`], [`crate::DEFAULT_PARTITIONS`], 5 s requests, 2 s
    /// connects.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> EtcdConfig {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            prefix: DEFAULT_PREFIX.to_owned(),
            partitions_if_new: crate::DEFAULT_PARTITIONS,
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
        }
    }

    /// Sets the key prefix.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> EtcdConfig {
        self.prefix = prefix.into();
        self
    }

    /// Sets the partition count of a new store.
    #[must_use]
    pub fn with_partitions(mut self, partitions_if_new: u32) -> EtcdConfig {
        self.partitions_if_new = partitions_if_new;
        self
    }
}

/// The replica id the store fences its writes with, shared with the writer task.
type FenceCell = Arc<RwLock<Option<Arc<str>>>>;

fn current_fence(cell: &FenceCell) -> Option<Arc<str>> {
    // A poisoned lock only means a writer of the cell panicked; the value is still whole.
    cell.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
}

/// The etcd job store; see the [module docs](self).
#[derive(Clone)]
pub struct EtcdStore {
    shared: Arc<Shared>,
}

struct Shared {
    client: Client,
    kv: KvClient,
    layout: Layout,
    partitions: u32,
    fence: FenceCell,
    writer_tx: mpsc::Sender<ApplyCall>,
    putter_tx: mpsc::Sender<PutCall>,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("prefix", &self.shared.layout.prefix)
            .field("partitions", &self.shared.partitions)
            .field("fence", &current_fence(&self.shared.fence))
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects and opens the store under `config.prefix`, recording `config.partitions_if_new`
    /// when none is recorded yet. Must be called within a tokio runtime (it spawns the writer).
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for 0 partitions or no endpoint; [`StoreError::Unavailable`] when
    /// etcd does not answer; [`StoreError::Corrupt`] when the prefix holds another format or a
    /// garbled partition count.
    pub async fn connect(config: EtcdConfig) -> Result<EtcdStore, StoreError> {
        if config.partitions_if_new == 0 {
            return Err(StoreError::Invalid { what: "partition count", reason: "must be at least 1".into() });
        }
        if config.endpoints.is_empty() {
            return Err(StoreError::Invalid { what: "etcd endpoints", reason: "none given".into() });
        }
        let options = ConnectOptions::new()
            .with_timeout(config.request_timeout)
            .with_connect_timeout(config.connect_timeout);
        let client =
            Client::connect(&config.endpoints, Some(options)).await.map_err(|e| etcd_error("connect", e))?;
        Self::with_client(client, &config.prefix, config.partitions_if_new).await
    }

    /// Opens the store under `prefix` over an existing client (whose options set the timeouts).
    ///
    /// # Errors
    /// As [`EtcdStore::connect`].
    pub async fn with_client(
        client: Client,
        prefix: &str,
        partitions_if_new: u32,
    ) -> Result<EtcdStore, StoreError> {
        if partitions_if_new == 0 {
            return Err(StoreError::Invalid { what: "partition count", reason: "must be at least 1".into() });
        }
        let layout = Layout::new(prefix);
        // Records can be large; the default 4 MiB decoding limit could refuse a page of them.
        let kv = client.kv_client().max_decoding_message_size(usize::MAX);
        let partitions = init_meta(&mut kv.clone(), &layout, partitions_if_new).await?;
        if partitions != partitions_if_new {
            tracing::warn!(
                prefix = %layout.prefix,
                recorded = partitions,
                requested = partitions_if_new,
                "store was created with another partition count; keeping the recorded one"
            );
        }
        let fence: FenceCell = Arc::new(RwLock::new(None));
        let (writer_tx, writer_rx) = mpsc::channel(MAX_GROUP_CALLS);
        let writer = Writer { kv: kv.clone(), layout: layout.clone(), partitions, fence: fence.clone() };
        tokio::spawn(writer.run(writer_rx));
        let (putter_tx, putter_rx) = mpsc::channel(MAX_GROUP_CALLS);
        let putter = Putter { kv: kv.clone(), layout: layout.clone(), partitions };
        tokio::spawn(putter.run(putter_rx));
        let shared = Shared { client, kv, layout, partitions, fence, writer_tx, putter_tx };
        Ok(EtcdStore { shared: Arc::new(shared) })
    }

    /// Fences every later `apply` with `replica_id`; see the [module docs](self#fencing).
    #[must_use]
    pub fn with_fence(self, replica_id: impl Into<String>) -> EtcdStore {
        self.set_fence(Some(replica_id.into()));
        self
    }

    /// Sets (or, with `None`, clears) the replica id later `apply` calls are fenced with. Every
    /// clone of this store shares it.
    pub fn set_fence(&self, replica_id: Option<String>) {
        let mut cell = self.shared.fence.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        *cell = replica_id.map(Arc::from);
    }

    /// The replica id `apply` is fenced with, if any.
    pub fn fence(&self) -> Option<String> {
        current_fence(&self.shared.fence).map(|id| id.to_string())
    }

    /// The key prefix (without a trailing `/`).
    pub fn prefix(&self) -> &str {
        &self.shared.layout.prefix
    }

    /// The owner key of `partition` under this store's prefix ([`owner_key`]).
    pub fn owner_key(&self, partition: u32) -> String {
        owner_key(&self.shared.layout.prefix, partition)
    }

    /// The etcd client (a cheap clone), for leases and membership under the same connection.
    pub fn client(&self) -> Client {
        self.shared.client.clone()
    }

    fn kv(&self) -> KvClient {
        self.shared.kv.clone()
    }

    /// etcd's current revision, from a linearizable read: every write acknowledged before this
    /// call has a revision at most the one returned.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when etcd does not answer.
    pub async fn current_revision(&self) -> Result<i64, StoreError> {
        let resp = self
            .kv()
            .get(self.shared.layout.meta_partitions.clone(), Some(GetOptions::new().with_count_only()))
            .await
            .map_err(|e| etcd_error("revision read", e))?;
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    /// Every job as of `revision` (0: now), ordered by key, strictly after `after`, at most
    /// `limit`; with the revision read. A full resync reads pages at one revision, then
    /// [`EtcdStore::watch_jobs`] from it.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when etcd does not answer or `revision` was compacted.
    pub async fn scan_all_at(
        &self,
        revision: i64,
        after: Option<&JobKey>,
        limit: usize,
    ) -> Result<(i64, Vec<StoredJob>), StoreError> {
        let layout = &self.shared.layout;
        let start = match after {
            None => layout.jobs.clone(),
            Some(key) => successor(&layout.job(&encode_key(key)?)),
        };
        let (rev, kvs) = self.range(start, end_of(&layout.jobs), limit, false, revision).await?;
        let jobs = kvs.iter().map(|kv| layout.decode_job(kv)).collect::<Result<_, _>>()?;
        Ok((rev, jobs))
    }

    /// Watches every job of this store after `after_revision`: one [`JobEvent`] per put or delete
    /// of a job, in revision order. Re-create the watch from the last revision seen after
    /// [`JobWatchError::Unavailable`]; after [`JobWatchError::Compacted`] the revisions in
    /// between are gone, so resync fully ([`EtcdStore::scan_all_at`]) first.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the watch cannot be created.
    pub async fn watch_jobs(&self, after_revision: i64) -> Result<JobWatch, StoreError> {
        let layout = self.shared.layout.clone();
        let mut watch: WatchClient = self.shared.client.watch_client();
        let options = WatchOptions::new()
            .with_range(end_of(&layout.jobs))
            .with_start_revision(after_revision.saturating_add(1).max(1));
        let stream =
            watch.watch(layout.jobs.clone(), Some(options)).await.map_err(|e| etcd_error("watch", e))?;
        Ok(JobWatch::new(stream, layout))
    }

    /// Up to `limit` key-values in `[start, end)`, paged, all at one revision (`revision`, or the
    /// first page's when 0); with that revision.
    async fn range(
        &self,
        start: Vec<u8>,
        end: Vec<u8>,
        limit: usize,
        keys_only: bool,
        revision: i64,
    ) -> Result<(i64, Vec<KeyValue>), StoreError> {
        let mut kv = self.kv();
        let mut out = Vec::new();
        let mut rev = revision;
        let mut start = start;
        while out.len() < limit {
            let page = (limit - out.len()).min(PAGE);
            let mut options =
                GetOptions::new().with_range(end.clone()).with_limit(i64::try_from(page).unwrap_or(i64::MAX));
            if rev > 0 {
                options = options.with_revision(rev);
            }
            if keys_only {
                options = options.with_keys_only();
            }
            let mut resp =
                kv.get(start.clone(), Some(options)).await.map_err(|e| etcd_error("range read", e))?;
            if rev == 0 {
                rev = resp.header().map_or(0, |h| h.revision());
            }
            let more = resp.more();
            let kvs = resp.take_kvs();
            let Some(last) = kvs.last() else { break };
            start = successor(last.key());
            out.extend(kvs);
            if !more {
                break;
            }
        }
        if rev == 0 {
            rev = self.current_revision().await?;
        }
        Ok((rev, out))
    }

    /// The job under `job_key` with its `mod_revision` (0 when absent).
    async fn load(&self, key: &JobKey, job_key: &[u8]) -> Result<(Option<StoredJob>, i64), StoreError> {
        let resp = self.kv().get(job_key.to_vec(), None).await.map_err(|e| etcd_error("read", e))?;
        match resp.kvs().first() {
            None => Ok((None, 0)),
            Some(kv) => Ok((Some(decode_at(key.clone(), kv.value(), kv.mod_revision())?), kv.mod_revision())),
        }
    }

    fn index_of(&self, encoded: &[u8], job: &StoredJob) -> Vec<u8> {
        let partition = keys::partition_of_encoded(encoded, self.shared.partitions);
        self.shared.layout.index(partition, job, encoded)
    }

    /// How many keys start with `prefix` (etcd counts them; nothing is read).
    async fn count_prefix(&self, prefix: &[u8]) -> Result<u64, StoreError> {
        let options = GetOptions::new().with_range(end_of(prefix)).with_count_only();
        let resp = self.kv().get(prefix.to_vec(), Some(options)).await.map_err(|e| etcd_error("count", e))?;
        Ok(u64::try_from(resp.count()).unwrap_or(0))
    }

    async fn delete_prefix(&self, encoded_prefix: &[u8]) -> Result<Vec<JobKey>, StoreError> {
        let layout = &self.shared.layout;
        let start = layout.job(encoded_prefix);
        let end = end_of(&start);
        let mut deleted = Vec::new();
        let mut conflicts = 0;
        loop {
            let (rev, kvs) = self.range(start.clone(), end.clone(), DELETE_CHUNK, false, 0).await?;
            let (Some(first), Some(last)) = (kvs.first(), kvs.last()) else { return Ok(deleted) };
            let chunk_start = first.key().to_vec();
            let chunk_end = successor(last.key());
            let jobs = kvs.iter().map(|kv| layout.decode_job(kv)).collect::<Result<Vec<_>, _>>()?;
            let mut ops = Vec::with_capacity(jobs.len() + 2);
            ops.push(TxnOp::delete(
                chunk_start.clone(),
                Some(DeleteOptions::new().with_range(chunk_end.clone())),
            ));
            // The histories of the chunk's jobs (and of none after them) sort between the
            // first job's and the end of the last one's.
            let first_history = layout.history_range(layout.encoded_of(first.key())?).0;
            let last_history = layout.history_range(layout.encoded_of(last.key())?).1;
            ops.push(TxnOp::delete(first_history, Some(DeleteOptions::new().with_range(last_history))));
            for (kv, job) in kvs.iter().zip(&jobs) {
                ops.push(TxnOp::delete(self.index_of(layout.encoded_of(kv.key())?, job), None));
            }
            // Nothing in the chunk's range changed (or appeared) since the read.
            let guard = Compare::mod_revision(chunk_start, CompareOp::Less, rev + 1).with_range(chunk_end);
            let resp = self
                .kv()
                .txn(Txn::new().when(vec![guard]).and_then(ops))
                .await
                .map_err(|e| etcd_error("bulk delete", e))?;
            if resp.succeeded() {
                deleted.extend(jobs.into_iter().map(|j| j.key));
                conflicts = 0;
            } else {
                conflicts += 1;
                if conflicts > MAX_CONFLICTS {
                    return Err(contention("bulk delete"));
                }
            }
        }
    }

    /// Up to `limit` jobs of the due index (or, with `staged`, the staged index) from `start` to
    /// `end`, in index order, read at one revision.
    async fn scan_index(
        &self,
        start: Vec<u8>,
        end: Vec<u8>,
        limit: usize,
        staged: bool,
    ) -> Result<Vec<StoredJob>, StoreError> {
        let layout = &self.shared.layout;
        let (rev, entries) = self.range(start, end, limit, true, 0).await?;
        let index_prefix = if staged { layout.staged.as_slice() } else { layout.due.as_slice() };
        let mut due = Vec::with_capacity(entries.len());
        for entry in &entries {
            let bytes = entry.key().strip_prefix(index_prefix).unwrap_or_default();
            let (_, due_at, encoded) =
                if staged { keys::decode_staged_key(bytes)? } else { decode_due_key(bytes)? };
            due.push((due_at, encoded.to_vec()));
        }
        // The jobs, read at the index entries' revision, so both sides are one snapshot.
        let mut out = Vec::with_capacity(due.len());
        let mut kv = self.kv();
        for chunk in due.chunks(GETS_PER_TXN) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|(_, e)| TxnOp::get(layout.job(e), Some(GetOptions::new().with_revision(rev))))
                .collect();
            let resp = kv.txn(Txn::new().and_then(ops)).await.map_err(|e| etcd_error("due read", e))?;
            for ((due_at, encoded), response) in chunk.iter().zip(resp.op_responses()) {
                let key = decode_key(encoded)?;
                let found = match response {
                    TxnOpResponse::Get(get) => {
                        get.kvs().first().map(|kv| decode_at(key.clone(), kv.value(), kv.mod_revision()))
                    }
                    _ => None,
                };
                match found {
                    Some(job) => {
                        let job = job?;
                        if job.next_due != *due_at || job.staged != staged {
                            tracing::warn!(key = %job.key, "stale index entry; skipped");
                            continue;
                        }
                        out.push(job);
                    }
                    // Cannot happen (both change in one transaction); a stale entry must not stop
                    // the partition.
                    None => tracing::warn!(%key, "index entry without a job; skipped"),
                }
            }
        }
        Ok(out)
    }

    async fn write(&self, mutations: Vec<(Vec<u8>, Mutation)>) -> Result<Written, StoreError> {
        ask(&self.shared.writer_tx, |reply| ApplyCall { mutations, reply }).await
    }
}

/// Queues a call for a store task (the writer or the putter) and waits for its answer.
async fn ask<C, R>(
    tx: &mpsc::Sender<C>,
    call: impl FnOnce(oneshot::Sender<Result<R, StoreError>>) -> C,
) -> Result<R, StoreError> {
    let gone =
        || StoreError::Unavailable { reason: "the store's write task has stopped".into(), source: None };
    let (reply, reply_rx) = oneshot::channel();
    tx.send(call(reply)).await.map_err(|_| gone())?;
    reply_rx.await.map_err(|_| gone())?
}

/// Reads (or, for a new prefix, writes) the meta keys; returns the partition count.
async fn init_meta(kv: &mut KvClient, layout: &Layout, partitions_if_new: u32) -> Result<u32, StoreError> {
    let corrupt =
        |why: String| StoreError::Corrupt(format!("{} is not a kairos store: {why}", layout.prefix));
    let txn = Txn::new()
        .when(vec![Compare::create_revision(layout.meta_partitions.clone(), CompareOp::Equal, 0)])
        .and_then(vec![
            TxnOp::put(layout.meta_format.clone(), FORMAT, None),
            TxnOp::put(layout.meta_partitions.clone(), partitions_if_new.to_string(), None),
        ])
        .or_else(vec![
            TxnOp::get(layout.meta_format.clone(), None),
            TxnOp::get(layout.meta_partitions.clone(), None),
        ]);
    let resp = kv.txn(txn).await.map_err(|e| etcd_error("meta init", e))?;
    if resp.succeeded() {
        return Ok(partitions_if_new);
    }
    let values: Vec<Option<Vec<u8>>> = resp
        .op_responses()
        .into_iter()
        .map(|r| match r {
            TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.value().to_vec()),
            _ => None,
        })
        .collect();
    match values.as_slice() {
        [Some(format), Some(count)] => {
            if format != FORMAT.as_bytes() {
                return Err(corrupt(format!("unknown format {:?}", String::from_utf8_lossy(format))));
            }
            match std::str::from_utf8(count).ok().and_then(|s| s.parse::<u32>().ok()) {
                Some(p) if p > 0 => Ok(p),
                _ => Err(corrupt(format!("garbled partition count {:?}", String::from_utf8_lossy(count)))),
            }
        }
        _ => Err(corrupt("its meta keys are incomplete".into())),
    }
}

#[async_trait]
impl JobStore for EtcdStore {
    fn partitions(&self) -> u32 {
        self.shared.partitions
    }

    async fn put(&self, job: StoredJob, mode: PutMode) -> Result<Option<StoredJob>, StoreError> {
        let encoded = encode_key(&job.key)?;
        ask(&self.shared.putter_tx, |reply| PutCall { encoded, job, mode, reply }).await
    }

    async fn get(&self, key: &JobKey) -> Result<Option<StoredJob>, StoreError> {
        let job_key = self.shared.layout.job(&encode_key(key)?);
        Ok(self.load(key, &job_key).await?.0)
    }

    async fn delete(&self, key: &JobKey) -> Result<Option<StoredJob>, StoreError> {
        let encoded = encode_key(key)?;
        let job_key = self.shared.layout.job(&encoded);
        for _ in 0..=MAX_CONFLICTS {
            let (old, mod_revision) = self.load(key, &job_key).await?;
            let Some(old) = old else { return Ok(None) };
            let txn = Txn::new()
                .when(vec![Compare::mod_revision(job_key.clone(), CompareOp::Equal, mod_revision)])
                .and_then(vec![
                    TxnOp::delete(job_key.clone(), None),
                    TxnOp::delete(self.index_of(&encoded, &old), None),
                    self.shared.layout.drop_history(&encoded, None),
                ]);
            let resp = self.kv().txn(txn).await.map_err(|e| etcd_error("delete", e))?;
            if resp.succeeded() {
                return Ok(Some(old));
            }
        }
        Err(contention("delete"))
    }

    async fn list(
        &self,
        scope: &OwnerScope,
        after: Option<&JobKey>,
        limit: usize,
    ) -> Result<Vec<StoredJob>, StoreError> {
        let Some(Listing { prefix, after }) = keys::listing(scope, after)? else { return Ok(Vec::new()) };
        let layout = &self.shared.layout;
        let prefix = layout.job(&prefix);
        let end = end_of(&prefix);
        let start = match after {
            Some(after) => successor(&layout.job(&after)),
            None => prefix,
        };
        let (_, kvs) = self.range(start, end, limit, false, 0).await?;
        kvs.iter().map(|kv| layout.decode_job(kv)).collect()
    }

    async fn delete_by_scope(&self, scope: &OwnerScope) -> Result<Vec<JobKey>, StoreError> {
        let prefix = keys::scope_prefix(scope)?;
        self.delete_prefix(&prefix).await
    }

    async fn scan_due(
        &self,
        partition: u32,
        after: Option<&DueCursor>,
        limit: usize,
    ) -> Result<Vec<StoredJob>, StoreError> {
        let layout = &self.shared.layout;
        let part = [layout.due.as_slice(), &keys::due_partition_prefix(partition)].concat();
        let start = match after {
            None => part.clone(),
            Some(cursor) => successor(&layout.due(partition, cursor.due, &encode_key(&cursor.key)?)),
        };
        self.scan_index(start, end_of(&part), limit, false).await
    }

    async fn scan_staged(
        &self,
        partition: u32,
        route: &Route,
        after: Option<&DueCursor>,
        limit: usize,
    ) -> Result<Vec<StoredJob>, StoreError> {
        let layout = &self.shared.layout;
        let part =
            [layout.staged.as_slice(), &keys::staged_route_prefix(partition, &keys::route_prefix(route)?)]
                .concat();
        let start = match after {
            None => part.clone(),
            Some(cursor) => successor(
                &[
                    layout.staged.as_slice(),
                    &keys::staged_key(partition, cursor.due, &encode_key(&cursor.key)?),
                ]
                .concat(),
            ),
        };
        self.scan_index(start, end_of(&part), limit, true).await
    }

    async fn count_staged(&self) -> Result<u64, StoreError> {
        self.count_prefix(&self.shared.layout.staged).await
    }

    async fn apply(&self, mutations: Vec<Mutation>) -> Result<Written, StoreError> {
        let mutations = keys::encode_mutations(mutations)?;
        if mutations.is_empty() {
            return Ok(Written::new());
        }
        self.write(mutations).await
    }

    async fn scan_all(&self, after: Option<&JobKey>, limit: usize) -> Result<Vec<StoredJob>, StoreError> {
        Ok(self.scan_all_at(0, after, limit).await?.1)
    }

    async fn history(&self, key: &JobKey, limit: usize) -> Result<Vec<TriggerRecord>, StoreError> {
        let (start, end) = self.shared.layout.history_range(&encode_key(key)?);
        let options = GetOptions::new()
            .with_range(end)
            .with_sort(SortTarget::Key, SortOrder::Descend)
            .with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        let resp = self.kv().get(start, Some(options)).await.map_err(|e| etcd_error("history read", e))?;
        let mut newest =
            resp.kvs().iter().map(|kv| decode_history(key, kv.value())).collect::<Result<Vec<_>, _>>()?;
        newest.reverse();
        Ok(newest)
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.count_prefix(&self.shared.layout.jobs).await
    }

    async fn fault(&self) -> Option<StoreFault> {
        // etcd's alarms are its own record of a used-up quota (NOSPACE) and of corruption it found
        // (CORRUPT); both stay raised until an operator disarms them.
        let mut maintenance = self.shared.client.maintenance_client();
        let asked = maintenance.alarm(AlarmAction::Get, AlarmType::None, None);
        let alarms = match tokio::time::timeout(FAULT_PROBE_TIMEOUT, asked).await {
            Ok(Ok(alarms)) => alarms,
            // An etcd that does not answer is the readiness probe's business, not a fault.
            Ok(Err(_)) | Err(_) => return None,
        };
        let raised = |kind: AlarmType| alarms.alarms().iter().filter(|a| a.alarm() == kind).count();
        if raised(AlarmType::Corrupt) > 0 {
            return Some(StoreFault::Corrupt(format!(
                "etcd raised the CORRUPT alarm on {} member(s); restore etcd from a snapshot",
                raised(AlarmType::Corrupt)
            )));
        }
        if raised(AlarmType::Nospace) > 0 {
            return Some(StoreFault::Full(format!(
                "etcd raised the NOSPACE alarm on {} member(s): {QUOTA_HINT}",
                raised(AlarmType::Nospace)
            )));
        }
        None
    }
}

//! The task behind every `put`: it takes the calls queued meanwhile and writes them in as few
//! transactions as etcd's limits allow ([`chunk_writes`], as the writer does). A transaction
//! holds every job's guard (`create_revision == 0` for a create, `mod_revision ==` what was read
//! for an overwrite); when one fails, nothing is written and the other branch reads every job of
//! the transaction, which tells which guards failed: a create over an existing key is answered
//! [`StoreError::AlreadyExists`], an overwrite that raced is retried expecting what was read, and
//! the calls whose guards held go again in the next round.
//!
//! (Nested transactions, one per job, would spare the others a failed guard, but etcd 3.4 does
//! not count the puts of a nested transaction against its space quota, not even under the
//! NOSPACE alarm.)

use std::collections::BTreeSet;

use etcd_client::{Compare, CompareOp, GetOptions, KvClient, Txn, TxnOp, TxnOpResponse};
use tokio::sync::{mpsc, oneshot};

use super::layout::decode_at;
use super::writer::{JobWrite, chunk_writes};
use super::{GETS_PER_TXN, Layout, MAX_CONFLICTS, MAX_GROUP_CALLS, contention, etcd_error, replicate};
use crate::keys;
use crate::record::encode_record;
use crate::{PutMode, StoreError, StoredJob};

/// One `put` call waiting for the putter.
pub(super) struct PutCall {
    pub(super) encoded: Vec<u8>,
    pub(super) job: StoredJob,
    pub(super) mode: PutMode,
    pub(super) reply: oneshot::Sender<Result<Option<StoredJob>, StoreError>>,
}

/// A call on its way through rounds of transactions.
struct Pending {
    call: PutCall,
    record: Vec<u8>,
    /// For an overwrite, the job under its key when last read, with its `mod_revision`
    /// (`Some(None)`: absent); `None` until read.
    seen: Option<Option<(StoredJob, i64)>>,
    conflicts: usize,
    /// Goes in a transaction of its own (etcd refused one it shared).
    alone: bool,
}

impl Pending {
    fn old(&self) -> Option<&(StoredJob, i64)> {
        self.seen.as_ref().and_then(Option::as_ref)
    }
}

/// What a failed transaction read of one job's key: its value and `mod_revision`, if present.
type Read = Option<(Vec<u8>, i64)>;

/// The task that owns every `put`.
pub(super) struct Putter {
    pub(super) kv: KvClient,
    pub(super) layout: Layout,
    pub(super) partitions: u32,
}

impl Putter {
    pub(super) async fn run(self, mut rx: mpsc::Receiver<PutCall>) {
        let mut calls = Vec::with_capacity(MAX_GROUP_CALLS);
        while rx.recv_many(&mut calls, MAX_GROUP_CALLS).await > 0 {
            let mut pending: Vec<Pending> = calls
                .drain(..)
                .map(|call| Pending {
                    record: encode_record(&call.job),
                    call,
                    seen: None,
                    conflicts: 0,
                    alone: false,
                })
                .collect();
            while !pending.is_empty() {
                // A key appears once per round (etcd refuses two puts of one key in a
                // transaction): the first call of each key goes now, the others in the next round.
                let mut keys = BTreeSet::new();
                let (now, later): (Vec<Pending>, Vec<Pending>) =
                    pending.into_iter().partition(|p| keys.insert(p.call.encoded.clone()));
                let now = self.read_unseen(now).await;
                let retries =
                    futures::future::join_all(self.chunk(now).into_iter().map(|c| self.commit(c))).await;
                // Retried calls came before the later calls of their key.
                pending = retries.into_iter().flatten().chain(later).collect();
            }
        }
        tracing::debug!("etcd store putter stopped");
    }

    /// Reads the job under the key of every overwrite that has not read it yet (its old due
    /// entry goes in the same transaction, and the caller gets the old job back). Calls whose
    /// read failed are answered here.
    async fn read_unseen(&self, calls: Vec<Pending>) -> Vec<Pending> {
        let (mut unseen, mut out): (Vec<Pending>, Vec<Pending>) =
            calls.into_iter().partition(|p| p.call.mode == PutMode::Overwrite && p.seen.is_none());
        while !unseen.is_empty() {
            let rest = unseen.split_off(unseen.len().min(GETS_PER_TXN));
            let ops: Vec<TxnOp> =
                unseen.iter().map(|p| TxnOp::get(self.layout.job(&p.call.encoded), None)).collect();
            match self.kv.clone().txn(Txn::new().and_then(ops)).await {
                Ok(resp) => {
                    let reads = reads_of(resp.op_responses());
                    // A read etcd did not answer counts as "absent": the write's guard
                    // (`mod_revision == 0`) then fails if the job is there, and reads it again.
                    for (mut p, read) in
                        unseen.into_iter().zip(reads.into_iter().chain(std::iter::repeat(None)))
                    {
                        match decode_read(&p, read) {
                            Ok(seen) => {
                                p.seen = Some(seen);
                                out.push(p);
                            }
                            Err(e) => drop(p.call.reply.send(Err(e))),
                        }
                    }
                }
                Err(e) => {
                    let e = etcd_error("read", e);
                    for p in unseen {
                        let _ = p.call.reply.send(Err(replicate(&e)));
                    }
                }
            }
            unseen = rest;
        }
        out
    }

    /// Splits calls of distinct keys into transactions within etcd's limits.
    fn chunk(&self, calls: Vec<Pending>) -> Vec<Vec<(Pending, JobWrite)>> {
        let (alone, calls): (Vec<Pending>, Vec<Pending>) = calls.into_iter().partition(|p| p.alone);
        let writes: Vec<JobWrite> = calls.iter().map(|p| self.job_write(p)).collect();
        let mut calls = calls.into_iter();
        let mut chunks: Vec<Vec<(Pending, JobWrite)>> =
            chunk_writes(writes).into_iter().map(|chunk| calls.by_ref().zip(chunk).collect()).collect();
        chunks.extend(alone.into_iter().map(|p| {
            let write = self.job_write(&p);
            vec![(p, write)]
        }));
        chunks
    }

    /// The guard and writes of one call: exactly those of a lone put (the job, its index entry
    /// replacing the old one, and for a job without records the history of any earlier job of
    /// the key dropped).
    fn job_write(&self, p: &Pending) -> JobWrite {
        let encoded = &p.call.encoded;
        let job = &p.call.job;
        let job_key = self.layout.job(encoded);
        let partition = keys::partition_of_encoded(encoded, self.partitions);
        let new_index = self.layout.index(partition, job, encoded);
        let mut ops = vec![TxnOp::put(job_key.clone(), p.record.clone(), None)];
        if job.stats.records == 0 {
            ops.push(self.layout.drop_history(encoded, None));
        }
        let compare = if p.call.mode == PutMode::CreateOnly {
            ops.push(TxnOp::put(new_index, Vec::new(), None));
            Compare::create_revision(job_key, CompareOp::Equal, 0)
        } else {
            let old_index = p.old().map(|(old, _)| self.layout.index(partition, old, encoded));
            // etcd refuses a transaction that deletes and puts the same key.
            if old_index.as_ref() != Some(&new_index) {
                if let Some(old_index) = old_index {
                    ops.push(TxnOp::delete(old_index, None));
                }
                ops.push(TxnOp::put(new_index, Vec::new(), None));
            }
            Compare::mod_revision(job_key, CompareOp::Equal, p.old().map_or(0, |(_, rev)| *rev))
        };
        JobWrite { partition, compare, ops, bytes: p.record.len() + encoded.len() * 4 }
    }

    /// Commits one transaction, answers the calls that are done and hands back those to retry.
    async fn commit(&self, chunk: Vec<(Pending, JobWrite)>) -> Vec<Pending> {
        let (calls, writes): (Vec<Pending>, Vec<JobWrite>) = chunk.into_iter().unzip();
        match self.txn(&calls, writes).await {
            Ok(None) => {
                for p in calls {
                    let old = p.old().map(|(old, _)| old.clone());
                    // The caller may have stopped waiting; the write stands anyway.
                    let _ = p.call.reply.send(Ok(old));
                }
                Vec::new()
            }
            Ok(Some(reads)) => {
                calls.into_iter().zip(reads).filter_map(|(p, read)| self.guard_failed(p, read)).collect()
            }
            // etcd refused the request (a job too large, say): only that job's call should
            // fail, so each goes alone in the next round.
            Err(StoreError::Invalid { .. }) if calls.len() > 1 => {
                calls.into_iter().map(|p| Pending { alone: true, ..p }).collect()
            }
            Err(e) => {
                for p in calls {
                    let _ = p.call.reply.send(Err(replicate(&e)));
                }
                Vec::new()
            }
        }
    }

    /// One transaction of `calls`: `None` when it was written, else what its other branch read
    /// of each call's key.
    async fn txn(&self, calls: &[Pending], writes: Vec<JobWrite>) -> Result<Option<Vec<Read>>, StoreError> {
        let mut compares = Vec::with_capacity(writes.len());
        let mut ops = Vec::new();
        for w in writes {
            compares.push(w.compare);
            ops.extend(w.ops);
        }
        let reads: Vec<TxnOp> = calls
            .iter()
            .map(|p| {
                // A create only needs to know whether the key is there.
                let options =
                    (p.call.mode == PutMode::CreateOnly).then(|| GetOptions::new().with_keys_only());
                TxnOp::get(self.layout.job(&p.call.encoded), options)
            })
            .collect();
        let txn = Txn::new().when(compares).and_then(ops).or_else(reads);
        let resp = self.kv.clone().txn(txn).await.map_err(|e| etcd_error("put", e))?;
        if resp.succeeded() {
            return Ok(None);
        }
        let reads = reads_of(resp.op_responses());
        if reads.len() != calls.len() {
            return Err(StoreError::Unavailable {
                reason: format!("etcd answered {} of {} reads", reads.len(), calls.len()),
                source: None,
            });
        }
        Ok(Some(reads))
    }

    /// Answers a call of a transaction whose guard failed, or hands it back to go again.
    fn guard_failed(&self, mut p: Pending, read: Read) -> Option<Pending> {
        let answer = if p.call.mode == PutMode::CreateOnly {
            match read {
                Some(_) => Err(StoreError::AlreadyExists(p.call.job.key.clone())),
                // Its guard held; another's failed.
                None => return Some(p),
            }
        } else if read.as_ref().map_or(0, |(_, rev)| *rev) == p.old().map_or(0, |(_, rev)| *rev) {
            return Some(p);
        } else if p.conflicts >= MAX_CONFLICTS {
            Err(contention("put"))
        } else {
            match decode_read(&p, read) {
                Ok(seen) => {
                    p.seen = Some(seen);
                    p.conflicts += 1;
                    return Some(p);
                }
                Err(e) => Err(e),
            }
        };
        let _ = p.call.reply.send(answer);
        None
    }
}

/// The value and `mod_revision` each get of a transaction found.
fn reads_of(responses: Vec<TxnOpResponse>) -> Vec<Read> {
    responses
        .into_iter()
        .map(|r| match r {
            TxnOpResponse::Get(get) => get.kvs().first().map(|kv| (kv.value().to_vec(), kv.mod_revision())),
            _ => None,
        })
        .collect()
}

fn decode_read(p: &Pending, read: Read) -> Result<Option<(StoredJob, i64)>, StoreError> {
    read.map(|(value, rev)| Ok((decode_at(p.call.job.key.clone(), &value, rev)?, rev))).transpose()
}

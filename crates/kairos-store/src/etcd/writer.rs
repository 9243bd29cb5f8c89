//! The writer task behind every `apply`: it groups the calls queued meanwhile into
//! transactions within etcd's limits, reads the touched jobs, replays the mutations on them
//! ([`Mutation::apply_to`]) and writes each touched job's final state, guarded by its
//! `mod_revision` and, with a fence, by the owner keys of its partitions.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use etcd_client::{Compare, CompareOp, KvClient, Txn, TxnOp, TxnOpResponse};
use tokio::sync::{mpsc, oneshot};

use super::layout::decode_at;
use super::{
    FenceCell, GETS_PER_TXN, KEYS_PER_TXN, Layout, MAX_CONFLICTS, MAX_GROUP_CALLS, MAX_TXN_BYTES,
    OPS_PER_TXN, PARTITIONS_PER_TXN, contention, current_fence, etcd_error, replicate,
};
use crate::keys;
use crate::record::{encode_history, encode_record};
use crate::{Mutation, StoreError, StoredJob, Written};

/// One `apply` call waiting for the writer.
pub(super) struct ApplyCall {
    pub(super) mutations: Vec<(Vec<u8>, Mutation)>,
    pub(super) reply: oneshot::Sender<Result<Written, StoreError>>,
}

/// Encoded key → the revision of the transaction that wrote the job last.
type Revisions = BTreeMap<Vec<u8>, u64>;

/// How an attempt at committing a group of calls ended.
enum Outcome {
    Done,
    /// A job changed between the read and the write: read again.
    Conflict,
    /// The owner compare of these partitions failed.
    Fenced(BTreeSet<u32>),
    /// The group needs more than one transaction: commit its calls one by one.
    Split,
}

/// The task that owns every `apply`.
pub(super) struct Writer {
    pub(super) kv: KvClient,
    pub(super) layout: Layout,
    pub(super) partitions: u32,
    pub(super) fence: FenceCell,
}

/// Whether no job is touched by two of `groups`.
fn disjoint(groups: &[Vec<ApplyCall>]) -> bool {
    let mut seen: BTreeSet<&[u8]> = BTreeSet::new();
    groups.iter().all(|group| {
        let keys: BTreeSet<&[u8]> =
            group.iter().flat_map(|call| call.mutations.iter().map(|(e, _)| e.as_slice())).collect();
        keys.into_iter().all(|key| seen.insert(key))
    })
}

/// One touched job: what was read, and what the mutations made of it.
struct Touched {
    partition: u32,
    original: Option<(StoredJob, i64)>,
    current: Option<StoredJob>,
    /// History records appended: (record number, keep, bytes).
    appended: Vec<(u64, u64, Vec<u8>)>,
}

/// One job's writes within an `apply` (or `put`) transaction.
pub(super) struct JobWrite {
    pub(super) partition: u32,
    pub(super) compare: Compare,
    pub(super) ops: Vec<TxnOp>,
    pub(super) bytes: usize,
}

impl Writer {
    pub(super) async fn run(self, mut rx: mpsc::Receiver<ApplyCall>) {
        while let Some(first) = rx.recv().await {
            let mut calls = vec![first];
            while calls.len() < MAX_GROUP_CALLS {
                match rx.try_recv() {
                    Ok(call) => calls.push(call),
                    Err(_) => break,
                }
            }
            self.commit_groups(self.pack(calls)).await;
        }
        tracing::debug!("etcd store writer stopped");
    }

    /// Commits the groups of one batch. When no job is in two of them (the usual case: each
    /// partition has one call at a time, and a job belongs to one partition) they go to etcd
    /// together, so one round trip's latency no longer bounds how fast a replica settles
    /// triggers; otherwise one after the other, in order, so that a job's mutations land in
    /// call order. The calls a group hands back to be committed alone follow, one by one, in
    /// their order.
    async fn commit_groups(&self, groups: Vec<Vec<ApplyCall>>) {
        let mut queue: VecDeque<Vec<ApplyCall>> = if groups.len() > 1 && disjoint(&groups) {
            let splits = futures::future::join_all(groups.into_iter().map(|g| self.commit_group(g))).await;
            splits.into_iter().flatten().map(|call| vec![call]).collect()
        } else {
            groups.into()
        };
        while let Some(group) = queue.pop_front() {
            for split in self.commit_group(group).await.into_iter().rev() {
                queue.push_front(vec![split]);
            }
        }
    }

    fn partition(&self, encoded: &[u8]) -> u32 {
        keys::partition_of_encoded(encoded, self.partitions)
    }

    /// Groups whole calls so that each group fits one transaction (a call too large for one
    /// forms its own group).
    fn pack(&self, calls: Vec<ApplyCall>) -> Vec<Vec<ApplyCall>> {
        let mut groups = Vec::new();
        let mut group: Vec<ApplyCall> = Vec::new();
        let mut keys: BTreeSet<&[u8]> = BTreeSet::new();
        let mut parts: BTreeSet<u32> = BTreeSet::new();
        // Sizes first, so the borrow of the calls' keys ends before they move into groups.
        let sizes: Vec<(BTreeSet<Vec<u8>>, BTreeSet<u32>)> = calls
            .iter()
            .map(|c| {
                let k: BTreeSet<Vec<u8>> = c.mutations.iter().map(|(e, _)| e.clone()).collect();
                let p = k.iter().map(|e| self.partition(e)).collect();
                (k, p)
            })
            .collect();
        let mut key_count = 0;
        for (call, (call_keys, call_parts)) in calls.into_iter().zip(&sizes) {
            let new_keys = call_keys.iter().filter(|k| !keys.contains(k.as_slice())).count();
            let new_parts = call_parts.difference(&parts).count();
            if !group.is_empty()
                && (key_count + new_keys > KEYS_PER_TXN || parts.len() + new_parts > PARTITIONS_PER_TXN)
            {
                groups.push(std::mem::take(&mut group));
                keys.clear();
                parts.clear();
                key_count = 0;
            }
            key_count += call_keys.iter().filter(|k| keys.insert(k.as_slice())).count();
            parts.extend(call_parts.iter().copied());
            group.push(call);
        }
        if !group.is_empty() {
            groups.push(group);
        }
        groups
    }

    /// Commits `calls` and answers them, except those it hands back to be committed alone.
    async fn commit_group(&self, calls: Vec<ApplyCall>) -> Vec<ApplyCall> {
        let mut live = calls;
        // Kept across retries: a job written by a transaction before a conflict stays written.
        let mut written = Revisions::new();
        for _ in 0..=MAX_CONFLICTS {
            if live.is_empty() {
                return Vec::new();
            }
            match self.try_commit(&live, &mut written).await {
                Ok(Outcome::Done) => {
                    for call in live {
                        let versions = call.mutations.iter().map(|(e, _)| written.get(e).copied()).collect();
                        // The caller may have stopped waiting; the write stands anyway.
                        let _ = call.reply.send(Ok(versions));
                    }
                    return Vec::new();
                }
                Ok(Outcome::Conflict) => {}
                Ok(Outcome::Fenced(fenced)) => {
                    let (out, keep): (Vec<_>, Vec<_>) = live.into_iter().partition(|call| {
                        call.mutations.iter().any(|(e, _)| fenced.contains(&self.partition(e)))
                    });
                    for call in out {
                        let partition = call
                            .mutations
                            .iter()
                            .map(|(e, _)| self.partition(e))
                            .find(|p| fenced.contains(p))
                            .unwrap_or_default();
                        let _ = call.reply.send(Err(StoreError::Fenced { partition }));
                    }
                    live = keep;
                }
                Ok(Outcome::Split) => return live,
                Err(e)
                    if live.len() > 1 && matches!(e, StoreError::Corrupt(_) | StoreError::Invalid { .. }) =>
                {
                    // Only the calls that touch the bad job should fail: try them one by one.
                    return live;
                }
                Err(e) => {
                    for call in live {
                        let _ = call.reply.send(Err(replicate(&e)));
                    }
                    return Vec::new();
                }
            }
        }
        for call in live {
            let _ = call.reply.send(Err(contention("apply")));
        }
        Vec::new()
    }

    /// Reads the touched jobs, plays the calls' mutations on them and writes the result, noting
    /// in `written` the revision at which each job was written.
    async fn try_commit(&self, calls: &[ApplyCall], written: &mut Revisions) -> Result<Outcome, StoreError> {
        let mut touched = self.read_touched(calls).await?;
        for (encoded, mutation) in calls.iter().flat_map(|c| &c.mutations) {
            if let Some(t) = touched.get_mut(encoded) {
                if let Mutation::Record { incarnation, stats, record, keep, .. } = mutation
                    && t.current.as_ref().is_some_and(|j| j.incarnation == *incarnation)
                {
                    t.appended.push((
                        stats.records.saturating_sub(1),
                        u64::from(keep.get()),
                        encode_history(record),
                    ));
                }
                mutation.apply_to(&mut t.current);
            }
        }
        let all_partitions: BTreeSet<u32> = touched.values().map(|t| t.partition).collect();
        let (keys, writes): (Vec<&Vec<u8>>, Vec<JobWrite>) =
            touched.iter().filter_map(|(encoded, t)| Some((encoded, self.job_write(encoded, t)?))).unzip();
        let fence = current_fence(&self.fence);
        if writes.is_empty() {
            let Some(fence) = fence else { return Ok(Outcome::Done) };
            // Nothing to write, but a fenced-off replica should learn it is.
            for chunk in all_partitions.into_iter().collect::<Vec<_>>().chunks(PARTITIONS_PER_TXN) {
                if let Err(Outcome::Fenced(p)) = self.commit_chunk(Vec::new(), chunk, &fence).await? {
                    return Ok(Outcome::Fenced(p));
                }
            }
            return Ok(Outcome::Done);
        }
        let chunks = chunk_writes(writes);
        if chunks.len() > 1 && calls.len() > 1 {
            return Ok(Outcome::Split);
        }
        // `chunk_writes` keeps the order of the writes, and so of their keys.
        let mut keys = keys.into_iter();
        for chunk in chunks {
            let chunk_keys: Vec<&Vec<u8>> = keys.by_ref().take(chunk.len()).collect();
            let parts: Vec<u32> =
                chunk.iter().map(|w| w.partition).collect::<BTreeSet<_>>().into_iter().collect();
            let committed = match &fence {
                Some(fence) => self.commit_chunk(chunk, &parts, fence).await?,
                None => self.commit_chunk(chunk, &[], "").await?,
            };
            match committed {
                Ok(revision) => written.extend(chunk_keys.into_iter().map(|k| (k.clone(), revision))),
                Err(outcome) => return Ok(outcome),
            }
        }
        Ok(Outcome::Done)
    }

    /// The current state of every job the calls touch, keyed by encoded key.
    async fn read_touched(&self, calls: &[ApplyCall]) -> Result<BTreeMap<Vec<u8>, Touched>, StoreError> {
        let mut keys: BTreeMap<Vec<u8>, &Mutation> = BTreeMap::new();
        for (encoded, mutation) in calls.iter().flat_map(|c| &c.mutations) {
            keys.entry(encoded.clone()).or_insert(mutation);
        }
        let keys: Vec<(Vec<u8>, &Mutation)> = keys.into_iter().collect();
        let mut touched = BTreeMap::new();
        let mut kv = self.kv.clone();
        for chunk in keys.chunks(GETS_PER_TXN) {
            let ops: Vec<TxnOp> = chunk.iter().map(|(e, _)| TxnOp::get(self.layout.job(e), None)).collect();
            let resp = kv.txn(Txn::new().and_then(ops)).await.map_err(|e| etcd_error("read", e))?;
            let responses = resp.op_responses();
            if responses.len() != chunk.len() {
                return Err(StoreError::Unavailable {
                    reason: format!("etcd answered {} of {} reads", responses.len(), chunk.len()),
                    source: None,
                });
            }
            for ((encoded, mutation), response) in chunk.iter().zip(responses) {
                let original = match response {
                    TxnOpResponse::Get(get) => match get.kvs().first() {
                        Some(kv) => Some((
                            decode_at(mutation.key().clone(), kv.value(), kv.mod_revision())?,
                            kv.mod_revision(),
                        )),
                        None => None,
                    },
                    _ => None,
                };
                let current = original.as_ref().map(|(job, _)| job.clone());
                touched.insert(
                    encoded.clone(),
                    Touched { partition: self.partition(encoded), original, current, appended: Vec::new() },
                );
            }
        }
        Ok(touched)
    }

    /// What writing `t`'s final state takes, or `None` when it did not change.
    fn job_write(&self, encoded: &[u8], t: &Touched) -> Option<JobWrite> {
        let (original, mod_revision) = t.original.as_ref()?;
        if Mutation::unchanged(Some(original), t.current.as_ref()) {
            return None;
        }
        let job_key = self.layout.job(encoded);
        let old_due = self.layout.index(t.partition, original, encoded);
        let compare = Compare::mod_revision(job_key.clone(), CompareOp::Equal, *mod_revision);
        let (ops, bytes) = match &t.current {
            None => (
                vec![
                    TxnOp::delete(job_key, None),
                    TxnOp::delete(old_due, None),
                    self.layout.drop_history(encoded, None),
                ],
                0,
            ),
            Some(job) => {
                let record = encode_record(job);
                let mut bytes = record.len();
                let new_due = self.layout.index(t.partition, job, encoded);
                let mut ops = vec![TxnOp::put(job_key, record, None)];
                // etcd refuses a transaction that deletes and puts the same key.
                if new_due != old_due {
                    ops.push(TxnOp::delete(old_due, None));
                    ops.push(TxnOp::put(new_due, Vec::new(), None));
                }
                // Only the newest appended records can survive the trim; one range delete
                // drops everything older than the last record's window.
                let keep_from = t.appended.last().map(|(seq, keep, _)| (seq + 1).saturating_sub(*keep));
                for (seq, _, value) in &t.appended {
                    if keep_from.is_some_and(|from| *seq >= from) {
                        bytes += value.len() + encoded.len() + 16;
                        ops.push(TxnOp::put(self.layout.history_key(encoded, *seq), value.clone(), None));
                    }
                }
                if let Some(from) = keep_from
                    && from > 0
                {
                    ops.push(self.layout.drop_history(encoded, Some(from)));
                }
                (ops, bytes)
            }
        };
        Some(JobWrite { partition: t.partition, compare, ops, bytes: bytes + encoded.len() * 3 })
    }

    /// One transaction: `writes`, guarded by their compares and, with a fence, by the owner keys of
    /// `partitions`. Its revision when it committed, else why not.
    async fn commit_chunk(
        &self,
        writes: Vec<JobWrite>,
        partitions: &[u32],
        fence: &str,
    ) -> Result<Result<u64, Outcome>, StoreError> {
        let mut compares = Vec::with_capacity(writes.len() + partitions.len());
        let mut ops = Vec::new();
        for w in writes {
            compares.push(w.compare);
            ops.extend(w.ops);
        }
        for &p in partitions {
            compares.push(Compare::value(self.layout.owner(p), CompareOp::Equal, fence));
        }
        let otherwise: Vec<TxnOp> =
            partitions.iter().map(|&p| TxnOp::get(self.layout.owner(p), None)).collect();
        let resp = self
            .kv
            .clone()
            .txn(Txn::new().when(compares).and_then(ops).or_else(otherwise))
            .await
            .map_err(|e| etcd_error("apply", e))?;
        if resp.succeeded() {
            let revision = resp.header().map_or(0, |h| h.revision());
            return Ok(Ok(u64::try_from(revision).unwrap_or(0)));
        }
        let fenced: BTreeSet<u32> = partitions
            .iter()
            .zip(resp.op_responses())
            .filter(|(_, r)| match r {
                TxnOpResponse::Get(get) => get.kvs().first().is_none_or(|kv| kv.value() != fence.as_bytes()),
                _ => true,
            })
            .map(|(&p, _)| p)
            .collect();
        Ok(Err(if fenced.is_empty() { Outcome::Conflict } else { Outcome::Fenced(fenced) }))
    }
}

/// Splits writes into transactions within [`KEYS_PER_TXN`], [`OPS_PER_TXN`] and
/// [`MAX_TXN_BYTES`].
pub(super) fn chunk_writes(writes: Vec<JobWrite>) -> Vec<Vec<JobWrite>> {
    let mut chunks = Vec::new();
    let mut chunk: Vec<JobWrite> = Vec::new();
    let mut bytes = 0;
    let mut ops = 0;
    for w in writes {
        if !chunk.is_empty()
            && (chunk.len() >= KEYS_PER_TXN
                || bytes + w.bytes > MAX_TXN_BYTES
                || ops + w.ops.len() > OPS_PER_TXN)
        {
            chunks.push(std::mem::take(&mut chunk));
            bytes = 0;
            ops = 0;
        }
        bytes += w.bytes;
        ops += w.ops.len();
        chunk.push(w);
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_chunk_within_the_key_and_byte_limits() {
        let write = |bytes| JobWrite {
            partition: 0,
            compare: Compare::mod_revision("k", CompareOp::Equal, 1),
            ops: Vec::new(),
            bytes,
        };
        let chunks = chunk_writes((0..100).map(|_| write(10)).collect());
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), vec![40, 40, 20]);
        let chunks = chunk_writes((0..3).map(|_| write(MAX_TXN_BYTES / 2 + 1)).collect());
        assert_eq!(chunks.len(), 3);
        // A single oversized write still goes (etcd then refuses it as invalid).
        assert_eq!(chunk_writes(vec![write(MAX_TXN_BYTES * 2)]).len(), 1);
    }

    #[test]
    fn groups_are_disjoint_only_when_no_job_is_in_two_of_them() {
        let call = |keys: &[&str]| ApplyCall {
            mutations: keys
                .iter()
                .map(|k| {
                    (
                        k.as_bytes().to_vec(),
                        Mutation::Complete { key: kairos_core::JobKey::app("ns", "a", *k), incarnation: 1 },
                    )
                })
                .collect(),
            reply: oneshot::channel().0,
        };
        // One job twice within a group is that group's own business.
        assert!(disjoint(&[vec![call(&["a", "b"]), call(&["a"])], vec![call(&["c"])]]));
        assert!(!disjoint(&[vec![call(&["a", "b"])], vec![call(&["c"])], vec![call(&["b"])]]));
        assert!(disjoint(&[]));
    }
}

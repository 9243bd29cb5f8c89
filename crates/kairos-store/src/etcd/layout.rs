//! Where everything lives in etcd: the keys of one prefix (see the module docs of
//! [`etcd`](super)).

use etcd_client::{DeleteOptions, KeyValue, TxnOp};
use jiff::Timestamp;

use crate::keys::{self, decode_key, due_key, prefix_end};
use crate::record::decode_record;
use crate::{JobKey, StoreError, StoredJob};

fn normalize_prefix(prefix: &str) -> &str {
    prefix.trim_end_matches('/')
}

/// The owner key of `partition` under `prefix`: `{prefix}/owners/{partition:05}`; its value is
/// the owning replica's id.
pub fn owner_key(prefix: &str, partition: u32) -> String {
    format!("{}/owners/{partition:05}", normalize_prefix(prefix))
}

/// The prefix of every owner key under `prefix`.
pub fn owners_prefix(prefix: &str) -> String {
    format!("{}/owners/", normalize_prefix(prefix))
}

/// The member key of replica `id` under `prefix`: `{prefix}/members/{id}`.
pub fn member_key(prefix: &str, id: &str) -> String {
    format!("{}/members/{id}", normalize_prefix(prefix))
}

/// The prefix of every member key under `prefix`.
pub fn members_prefix(prefix: &str) -> String {
    format!("{}/members/", normalize_prefix(prefix))
}

/// The byte keys of one prefix.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    pub(super) prefix: String,
    pub(super) jobs: Vec<u8>,
    pub(super) due: Vec<u8>,
    pub(super) staged: Vec<u8>,
    pub(super) history: Vec<u8>,
    pub(super) meta_format: Vec<u8>,
    pub(super) meta_partitions: Vec<u8>,
}

impl Layout {
    pub(super) fn new(prefix: &str) -> Layout {
        let prefix = normalize_prefix(prefix).to_owned();
        Layout {
            jobs: format!("{prefix}/jobs/").into_bytes(),
            due: format!("{prefix}/due/").into_bytes(),
            staged: format!("{prefix}/staged/").into_bytes(),
            history: format!("{prefix}/history/").into_bytes(),
            meta_format: format!("{prefix}/meta/format").into_bytes(),
            meta_partitions: format!("{prefix}/meta/partitions").into_bytes(),
            prefix,
        }
    }

    pub(super) fn job(&self, encoded: &[u8]) -> Vec<u8> {
        [self.jobs.as_slice(), encoded].concat()
    }

    pub(super) fn due(&self, partition: u32, due: Timestamp, encoded: &[u8]) -> Vec<u8> {
        [self.due.as_slice(), &due_key(partition, due, encoded)].concat()
    }

    /// The index entry of `job`: its staged key when it is staged, else its due key.
    pub(super) fn index(&self, partition: u32, job: &StoredJob, encoded: &[u8]) -> Vec<u8> {
        if job.staged {
            [self.staged.as_slice(), &keys::staged_key(partition, job.next_due, encoded)].concat()
        } else {
            self.due(partition, job.next_due, encoded)
        }
    }

    /// Every history record of the job `encoded` (as a range: start, end).
    pub(super) fn history_range(&self, encoded: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let start = [self.history.as_slice(), &keys::history_prefix(encoded)].concat();
        let end = end_of(&start);
        (start, end)
    }

    pub(super) fn history_key(&self, encoded: &[u8], seq: u64) -> Vec<u8> {
        [self.history.as_slice(), &keys::history_key(encoded, seq)].concat()
    }

    /// Deletes the history records of `encoded` (those numbered below `below`, or all).
    pub(super) fn drop_history(&self, encoded: &[u8], below: Option<u64>) -> TxnOp {
        let (start, end) = self.history_range(encoded);
        let end = below.map_or(end, |seq| self.history_key(encoded, seq));
        TxnOp::delete(start, Some(DeleteOptions::new().with_range(end)))
    }

    pub(super) fn owner(&self, partition: u32) -> Vec<u8> {
        owner_key(&self.prefix, partition).into_bytes()
    }

    /// The encoded job key of a `{prefix}/jobs/…` key.
    pub(super) fn encoded_of<'k>(&self, key: &'k [u8]) -> Result<&'k [u8], StoreError> {
        key.strip_prefix(self.jobs.as_slice()).ok_or_else(|| {
            StoreError::Corrupt(format!("key {:?} outside the jobs prefix", String::from_utf8_lossy(key)))
        })
    }

    pub(super) fn decode_job(&self, kv: &KeyValue) -> Result<StoredJob, StoreError> {
        let key = decode_key(self.encoded_of(kv.key())?)?;
        decode_at(key, kv.value(), kv.mod_revision())
    }
}

/// A job record as read from etcd: its version is the record's `mod_revision`, which orders
/// every write to the key across replicas, not the stamp the writer stored in it (see
/// [`StoredJob::version`]).
pub(super) fn decode_at(key: JobKey, value: &[u8], mod_revision: i64) -> Result<StoredJob, StoreError> {
    let mut job = decode_record(key, value)?;
    job.version = u64::try_from(mod_revision).unwrap_or(0);
    Ok(job)
}

/// The smallest key after `key`.
pub(super) fn successor(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

/// The exclusive end of the range of keys starting with `prefix` (every prefix here ends with
/// `/`, so it has one).
pub(super) fn end_of(prefix: &[u8]) -> Vec<u8> {
    prefix_end(prefix).unwrap_or_else(|| vec![0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_and_member_keys_have_the_documented_names() {
        assert_eq!(owner_key("/kairos", 7), "/kairos/owners/00007");
        assert_eq!(owner_key("/kairos/", 255), "/kairos/owners/00255");
        assert_eq!(member_key("/k", "replica-1"), "/k/members/replica-1");
        assert!(owner_key("/k", 1).starts_with(&owners_prefix("/k")));
        assert!(member_key("/k", "a").starts_with(&members_prefix("/k")));
    }

    #[test]
    fn prefixes_separate_stores() {
        let a = Layout::new("/a");
        let ab = Layout::new("/ab");
        assert!(!ab.job(b"x").starts_with(&a.jobs));
        assert!(!a.due(0, Timestamp::UNIX_EPOCH, b"x").starts_with(&ab.due));
    }
}

//! The change feed: every put and delete of a job after a revision
//! ([`EtcdStore::watch_jobs`](super::EtcdStore::watch_jobs)).

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;

use etcd_client::{EventType, KeyValue};
use futures::Stream;
use kairos_core::JobKey;

use super::{Layout, etcd_error};
use crate::keys::decode_key;
use crate::{StoreError, StoredJob};

/// A change to one job, from [`EtcdStore::watch_jobs`](super::EtcdStore::watch_jobs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobChange {
    /// The job was created or written (any write: put, overwrite, progress).
    Put(Box<StoredJob>),
    /// The job was deleted (also by completion or a bulk delete).
    Deleted(JobKey),
}

/// One [`JobChange`] with the etcd revision that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEvent {
    pub revision: i64,
    pub change: JobChange,
}

/// Why a job watch ended.
#[derive(Debug, thiserror::Error)]
pub enum JobWatchError {
    /// The revisions after the requested one were compacted: resync fully, then watch from the
    /// resync's revision.
    #[error("etcd compacted the revisions up to {compact_revision}; resync")]
    Compacted { compact_revision: i64 },
    /// The watch broke (etcd down, restarted, or it canceled the watch): watch again from the
    /// last revision seen.
    #[error(transparent)]
    Unavailable(StoreError),
    /// A changed key or record cannot be decoded.
    #[error(transparent)]
    Corrupt(StoreError),
}

/// A watch of every job of one store; see [`EtcdStore::watch_jobs`](super::EtcdStore::watch_jobs). It ends (yields `None`)
/// only after it has yielded an error.
pub struct JobWatch {
    stream: etcd_client::WatchStream,
    layout: Layout,
    pending: VecDeque<JobEvent>,
    done: bool,
}

impl fmt::Debug for JobWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobWatch").field("prefix", &self.layout.prefix).field("done", &self.done).finish()
    }
}

impl JobWatch {
    pub(super) fn new(stream: etcd_client::WatchStream, layout: Layout) -> Self {
        JobWatch { stream, layout, pending: VecDeque::new(), done: false }
    }

    /// The next change, an error (after which it ends), or `None` once it has ended.
    pub async fn next(&mut self) -> Option<Result<JobEvent, JobWatchError>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            let message = self.stream.message().await;
            let response = match message {
                Ok(Some(response)) => response,
                Ok(None) => {
                    return self.fail(JobWatchError::Unavailable(StoreError::Unavailable {
                        reason: "etcd closed the watch stream".into(),
                        source: None,
                    }));
                }
                Err(e) => return self.fail(JobWatchError::Unavailable(etcd_error("watch", e))),
            };
            if response.compact_revision() > 0 {
                return self.fail(JobWatchError::Compacted { compact_revision: response.compact_revision() });
            }
            if response.canceled() {
                let reason = format!("etcd canceled the watch: {}", response.cancel_reason());
                return self
                    .fail(JobWatchError::Unavailable(StoreError::Unavailable { reason, source: None }));
            }
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                match self.decode(event.event_type(), kv) {
                    Ok(event) => self.pending.push_back(event),
                    Err(e) => return self.fail(JobWatchError::Corrupt(e)),
                }
            }
        }
    }

    fn decode(&self, kind: EventType, kv: &KeyValue) -> Result<JobEvent, StoreError> {
        let revision = kv.mod_revision();
        let change = match kind {
            EventType::Put => JobChange::Put(Box::new(self.layout.decode_job(kv)?)),
            EventType::Delete => JobChange::Deleted(decode_key(self.layout.encoded_of(kv.key())?)?),
        };
        Ok(JobEvent { revision, change })
    }

    fn fail(&mut self, e: JobWatchError) -> Option<Result<JobEvent, JobWatchError>> {
        self.done = true;
        Some(Err(e))
    }

    /// The watch as a [`Stream`].
    pub fn into_stream(self) -> Pin<Box<dyn Stream<Item = Result<JobEvent, JobWatchError>> + Send>> {
        Box::pin(futures::stream::unfold(self, |mut watch| async move {
            let item = watch.next().await?;
            Some((item, watch))
        }))
    }
}

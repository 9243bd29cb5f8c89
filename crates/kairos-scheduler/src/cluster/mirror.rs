//! What a replica follows in etcd: the member and owner prefixes mirrored into a
//! [`watch`] channel ([`mirror`]), and every job change fed to the engine ([`feed`]). Each
//! stream is re-created after an error from the last revision seen, with a full re-read when
//! that revision was compacted.

use std::collections::BTreeMap;

use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use kairos_engine::Engine;
use kairos_store::etcd::{EtcdStore, JobChange, JobWatchError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{pause, retry_backoff};

/// One key of a mirrored prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) value: String,
    pub(super) lease: i64,
    pub(super) mod_revision: i64,
}

/// What a replica knows of one etcd prefix.
#[derive(Debug, Clone, Default)]
pub(super) struct Snapshot {
    /// Key (with the prefix stripped) → entry.
    pub(super) entries: BTreeMap<String, Entry>,
    /// Every change up to this revision is reflected.
    pub(super) revision: i64,
    /// Whether a first full read has happened.
    pub(super) synced: bool,
}

/// Keeps `tx` equal to the contents of `prefix`: a full read, then a watch from the next
/// revision, re-created from the last revision seen after any stream error, and preceded by a
/// full re-read when that revision has been compacted.
pub(super) async fn mirror(
    client: Client,
    prefix: String,
    tx: watch::Sender<Snapshot>,
    stop: CancellationToken,
) {
    let mut snapshot: Option<Snapshot> = None;
    let mut backoff = retry_backoff();
    while !stop.is_cancelled() {
        let current = match snapshot.take() {
            Some(current) => current,
            None => match read_prefix(&client, &prefix).await {
                Ok(read) => {
                    tx.send_replace(read.clone());
                    read
                }
                Err(err) => {
                    tracing::debug!(prefix, error = %err, "etcd read failed; retrying");
                    pause(&stop, backoff.next_delay()).await;
                    continue;
                }
            },
        };
        let options = WatchOptions::new().with_prefix().with_start_revision(current.revision + 1);
        let mut stream = match client.clone().watch(prefix.clone(), Some(options)).await {
            Ok(stream) => {
                backoff.reset();
                stream
            }
            Err(err) => {
                tracing::debug!(prefix, error = %err, "etcd watch failed; retrying");
                snapshot = Some(current);
                pause(&stop, backoff.next_delay()).await;
                continue;
            }
        };
        let mut current = current;
        let compacted = loop {
            let Some(message) = stop.run_until_cancelled(stream.message()).await else { return };
            let response = match message {
                Ok(Some(response)) => response,
                Ok(None) => break false,
                Err(err) => {
                    tracing::debug!(prefix, error = %err, "etcd watch stream broke; re-creating it");
                    break false;
                }
            };
            if response.compact_revision() > 0 {
                break true;
            }
            if response.canceled() {
                break false;
            }
            if response.events().is_empty() {
                continue;
            }
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key()).trim_start_matches(prefix.as_str()).to_owned();
                current.revision = current.revision.max(kv.mod_revision());
                match event.event_type() {
                    EventType::Put => {
                        let entry = Entry {
                            value: String::from_utf8_lossy(kv.value()).into_owned(),
                            lease: kv.lease(),
                            mod_revision: kv.mod_revision(),
                        };
                        current.entries.insert(key, entry);
                    }
                    EventType::Delete => {
                        current.entries.remove(&key);
                    }
                }
            }
            tx.send_replace(current.clone());
        };
        if compacted {
            tracing::warn!(prefix, "etcd history compacted past the last revision seen; re-reading");
        } else {
            snapshot = Some(current);
            pause(&stop, backoff.next_delay()).await;
        }
    }
}

async fn read_prefix(client: &Client, prefix: &str) -> Result<Snapshot, etcd_client::Error> {
    let response = client.clone().get(prefix, Some(GetOptions::new().with_prefix())).await?;
    let revision = response.header().map_or(0, etcd_client::ResponseHeader::revision);
    let entries = response
        .kvs()
        .iter()
        .map(|kv| {
            let key = String::from_utf8_lossy(kv.key()).trim_start_matches(prefix).to_owned();
            let entry = Entry {
                value: String::from_utf8_lossy(kv.value()).into_owned(),
                lease: kv.lease(),
                mod_revision: kv.mod_revision(),
            };
            (key, entry)
        })
        .collect();
    Ok(Snapshot { entries, revision, synced: true })
}

/// Carries every job write and delete of the store (by any replica) to the engine's owned
/// partitions, from the revision at which it starts. The watch is re-created from the last
/// revision seen after an error; after compaction every owned partition re-reads its due index.
pub(super) async fn feed(
    store: EtcdStore,
    engine: Engine,
    started: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let mut backoff = retry_backoff();
    let mut last = loop {
        match store.current_revision().await {
            Ok(revision) => break revision,
            Err(err) => {
                tracing::debug!(error = %err, "cannot read etcd's revision; retrying");
                pause(&stop, backoff.next_delay()).await;
                if stop.is_cancelled() {
                    return;
                }
            }
        }
    };
    while !stop.is_cancelled() {
        let mut watch = match store.watch_jobs(last).await {
            Ok(watch) => {
                backoff.reset();
                watch
            }
            Err(err) => {
                tracing::debug!(error = %err, "job watch failed; retrying");
                pause(&stop, backoff.next_delay()).await;
                continue;
            }
        };
        started.send_replace(true);
        loop {
            let Some(next) = stop.run_until_cancelled(watch.next()).await else { return };
            match next {
                Some(Ok(event)) => {
                    last = event.revision;
                    let revision = u64::try_from(event.revision).unwrap_or(0);
                    match event.change {
                        JobChange::Put(job) => engine.upsert_from_store(*job).await,
                        JobChange::Deleted(key) => engine.remove(&key, revision).await,
                    }
                    engine.feed_queued(revision);
                }
                Some(Err(JobWatchError::Compacted { compact_revision })) => {
                    tracing::warn!(
                        compact_revision,
                        "job history compacted past the feed; reloading owned partitions"
                    );
                    match store.current_revision().await {
                        // Reading the revision first: every change after it comes on the new watch.
                        Ok(revision) => {
                            last = revision;
                            engine.reload().await;
                            engine.feed_queued(u64::try_from(revision).unwrap_or(0));
                        }
                        Err(err) => tracing::debug!(error = %err, "cannot read etcd's revision"),
                    }
                    break;
                }
                Some(Err(err)) => {
                    tracing::debug!(error = %err, "job watch broke; re-creating it");
                    break;
                }
                None => break,
            }
        }
        pause(&stop, backoff.next_delay()).await;
    }
}

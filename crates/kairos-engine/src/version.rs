//! Write versions: the order of one process's writes to a job, for its partition to tell an old
//! notice from a new one.
//!
//! # Why
//! A partition learns of the engine's writes from notices ([`crate::partition::Command`]) sent
//! after each durable write, and also reads jobs from the store by its own scans. Under the key
//! lock the notices of one key are sent in the order of the writes, but a scan may read a newer
//! version than the notices still on their way: a create answered by its scan can be fired,
//! answered and deleted before its own notice arrives, and a scan can read a pause while the
//! notice of the create before it still waits. Taking such a notice would fire the job again,
//! or fire a version the store no longer holds.
//!
//! # Contract
//! [`Versions::stamp`] hands out versions that increase strictly in this process (a hybrid
//! clock: the clock's nanoseconds since the epoch, or one more than the last stamp). The engine
//! stamps each put of a job above the version of the job it replaces (see
//! [`kairos_store::StoredJob::version`]), so the versions one store holds for a key only ever
//! grow. A stamp stays *outstanding* until its [`Stamp`] is dropped, which the engine does once
//! the notice of that write has been queued to its partition (or left out). The
//! [`Versions::watermark`] is below every outstanding stamp: every notice of a lower version has
//! already been queued. A partition uses it to forget what it keeps of keys it let go: once the
//! watermark has passed that version and its command queue is empty, no older notice of the
//! key can still come.
//!
//! A store written before a restart by a clock that was ahead holds versions above today's
//! stamps. An overwrite of such a job is put at a lower stamp first, then raised above the
//! replaced version ([`kairos_store::Mutation::Restamp`]), and its notice carries the raised
//! stamp. A scan may read, fire and complete the job between the two: the restamp then finds it
//! gone and changes nothing, and the partition ignores the notice of an incarnation it has let
//! go of. The first stamp stays outstanding until the notice is queued, so the partition still
//! remembers that incarnation when the notice comes.
//!
//! Replicas on etcd learn of writes from the store's change feed instead, in revision order,
//! and versions there are revisions (the etcd store reports each record's `mod_revision`). A
//! scan can still read a job ahead of the feed's events about it, so partitions compare
//! versions the same way, and the feed's position ([`Versions::feed_queued`]) is their
//! watermark. A partition's own progress writes come back through the feed too: the store
//! reports the revision of each ([`kairos_store::Written`]), and the partition holds the job at
//! it, or lets it go at it, so the echo is never newer than what it knows.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use jiff::Timestamp;

/// The version stamps of one engine (see the module doc), and how far the store's change feed
/// has got.
#[derive(Debug, Default)]
pub(crate) struct Versions {
    state: Mutex<State>,
    /// The revision of the last change-feed event queued to the partitions.
    feed: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// The last stamp handed out.
    last: u64,
    /// Stamps whose notices are not queued yet.
    outstanding: BTreeSet<u64>,
}

impl Versions {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new stamp, larger than every stamp before it and than `above`, taken at `now`. It is
    /// outstanding until dropped.
    pub(crate) fn stamp(&self, now: Timestamp, above: u64) -> Stamp<'_> {
        let mut state = self.state();
        // Before the epoch (never on a sane clock) counts as 0: the stamps still grow by one.
        let nanos = u64::try_from(now.as_nanosecond()).unwrap_or(0);
        let version = nanos.max(state.last.saturating_add(1)).max(above.saturating_add(1));
        state.last = version;
        state.outstanding.insert(version);
        Stamp { version, versions: self }
    }

    /// A version below every outstanding stamp and above every stamp no longer outstanding.
    pub(crate) fn watermark(&self) -> u64 {
        let state = self.state();
        state.outstanding.first().copied().unwrap_or_else(|| state.last.saturating_add(1))
    }

    /// Records that every change-feed event up to `revision` has been queued to its partition.
    pub(crate) fn feed_queued(&self, revision: u64) {
        self.feed.fetch_max(revision, Ordering::AcqRel);
    }

    /// With the change feed: a revision above every feed event queued so far (each event's
    /// version is its revision, see [`kairos_store::StoredJob::version`]).
    pub(crate) fn feed_watermark(&self) -> u64 {
        self.feed.load(Ordering::Acquire).saturating_add(1)
    }
}

/// An outstanding version stamp (see [`Versions::stamp`]); dropping it marks its write's notice
/// as queued.
#[derive(Debug)]
pub(crate) struct Stamp<'a> {
    pub(crate) version: u64,
    versions: &'a Versions,
}

impl Drop for Stamp<'_> {
    fn drop(&mut self) {
        self.versions.state().outstanding.remove(&self.version);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(nanos: i128) -> Timestamp {
        Timestamp::from_nanosecond(nanos).unwrap()
    }

    #[test]
    fn stamps_follow_the_clock_and_never_repeat_or_go_back() {
        let versions = Versions::default();
        let a = versions.stamp(at(1_000), 0).version;
        assert_eq!(a, 1_000);
        // A clock standing still, or going back, still moves the stamps on.
        let b = versions.stamp(at(1_000), 0).version;
        let c = versions.stamp(at(10), 0).version;
        assert_eq!((b, c), (1_001, 1_002));
        assert_eq!(versions.stamp(at(5_000), 0).version, 5_000);
        // Above a stored version written by a clock that was ahead.
        assert_eq!(versions.stamp(at(6_000), 9_000).version, 9_001);
        assert_eq!(versions.stamp(at(6_000), 0).version, 9_002);
        assert_eq!(versions.stamp(at(-5), 0).version, 9_003, "before the epoch");
    }

    #[test]
    fn the_watermark_stays_below_every_outstanding_stamp() {
        let versions = Versions::default();
        assert_eq!(versions.watermark(), 1);
        let a = versions.stamp(at(100), 0);
        let b = versions.stamp(at(200), 0);
        assert_eq!(versions.watermark(), 100);
        drop(a);
        assert_eq!(versions.watermark(), 200);
        let c = versions.stamp(at(300), 0);
        drop(b);
        assert_eq!(versions.watermark(), 300);
        drop(c);
        assert_eq!(versions.watermark(), 301, "above every stamp once none is outstanding");
    }
}

//! Several scheduler replicas on one etcd: membership, partition ownership and hand-over.
//!
//! Each replica holds one etcd lease and registers a *member key* under it whose value is its
//! advertised address. The `P` partitions are spread over the live members by rendezvous
//! hashing ([`crate::rendezvous`]). A replica claims a partition it should own with a
//! create-if-absent *owner key* bound to its lease (value: its replica id), and only then starts
//! firing it; the store compares that owner key on every progress write (fencing), so a replica
//! whose lease is gone cannot advance a job. A partition it should no longer own is drained
//! (nothing new fires; delivered triggers get their answers and their progress written, within
//! a bound), released, and its owner key deleted, which wakes the new owner at once.
//!
//! Only the partitions that move pause: the others keep firing through any membership change.
//! If the lease cannot be kept alive for a whole TTL, every partition is released at once (the
//! owner keys may be gone, so nothing this replica would write can land anyway) and the replica
//! registers again with a new lease.
//!
//! etcd watches and lease keep-alive streams do not survive an etcd restart: every stream here
//! is re-created after an error, from the last revision seen, with a full re-read when that
//! revision was compacted.
//!
//! Uses etcd-client directly; the engine and core know nothing of etcd.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use jiff::SignedDuration;
use kairos_core::{Backoff, Clock};
use kairos_engine::Engine;
use kairos_store::etcd::{EtcdStore, member_key, members_prefix, owner_key, owners_prefix};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::rendezvous;

mod endpoints;
mod lease;
mod mirror;

pub use endpoints::keep_endpoints_healthy;
use lease::{LeaseState, keep_alive};
use mirror::{Snapshot, feed, mirror};

/// How long a stream or request failure first waits before the next try, and at most (the wait
/// doubles while failures go on, with jitter: see [`retry_backoff`]).
const RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(1);
/// How often ownership is recomputed even without a change (a safety net for missed wakeups).
const RECONCILE_EVERY: Duration = Duration::from_millis(500);

/// How a replica joins the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Root of kairos' keys in etcd (no trailing slash), e.g. `/kairos`.
    pub prefix: String,
    /// Unique among live replicas; the value of the owner keys this replica holds.
    pub replica_id: String,
    /// Where sidecars reach this replica (reported by WatchHosts).
    pub advertise: String,
    /// Lease TTL: how soon a crashed replica's partitions move (etcd rounds to whole seconds).
    pub lease_ttl: Duration,
    /// Longest wait for delivered triggers of a partition that moves away.
    pub drain_timeout: Duration,
    /// The store's partition count.
    pub partitions: u32,
}

/// The waits of one retry loop against etcd: jittered, so that replicas that lost etcd together
/// do not all come back at the same instant.
fn retry_backoff() -> Backoff {
    Backoff::new(RETRY, MAX_RETRY)
}

async fn pause(stop: &CancellationToken, how_long: Duration) {
    stop.run_until_cancelled(tokio::time::sleep(how_long)).await;
}

/// A replica's membership and ownership task.
#[derive(Debug)]
pub struct Cluster {
    hosts: watch::Receiver<Vec<String>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Cluster {
    /// Joins the cluster: follows the store's change feed, registers this replica and starts
    /// claiming, firing and handing over partitions of `engine` (which must run over `store`,
    /// fenced with `config.replica_id`). Must be called within a tokio runtime.
    pub fn start(store: EtcdStore, engine: Engine, clock: Arc<dyn Clock>, config: ClusterConfig) -> Cluster {
        let stop = CancellationToken::new();
        let client = store.client();
        engine.follow_store_feed();
        let (feed_tx, feed_started) = watch::channel(false);
        tokio::spawn(feed(store, engine.clone(), feed_tx, stop.clone()));
        let (hosts_tx, hosts) = watch::channel(vec![config.advertise.clone()]);
        let (members_tx, members_rx) = watch::channel(Snapshot::default());
        let (owners_tx, owners_rx) = watch::channel(Snapshot::default());
        tokio::spawn(mirror(client.clone(), members_prefix(&config.prefix), members_tx, stop.clone()));
        tokio::spawn(mirror(client.clone(), owners_prefix(&config.prefix), owners_tx, stop.clone()));
        let controller = Controller {
            client,
            engine,
            clock,
            config,
            members: members_rx,
            owners: owners_rx,
            hosts: hosts_tx,
            lease: None,
            old_leases: Vec::new(),
            claimed: HashMap::new(),
            feed_started,
            stop: stop.clone(),
        };
        let task = tokio::spawn(controller.run());
        Cluster { hosts, stop, task }
    }

    /// The advertised addresses of the live replicas, sorted (for WatchHosts).
    pub fn hosts(&self) -> watch::Receiver<Vec<String>> {
        self.hosts.clone()
    }

    /// Leaves the cluster: drains and hands over every owned partition, then revokes the lease
    /// (which removes the member key), so the others take over at once rather than after a TTL.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

struct Lease {
    id: i64,
    state: watch::Receiver<LeaseState>,
    keeper: CancellationToken,
}

struct Controller {
    client: Client,
    engine: Engine,
    clock: Arc<dyn Clock>,
    config: ClusterConfig,
    members: watch::Receiver<Snapshot>,
    owners: watch::Receiver<Snapshot>,
    hosts: watch::Sender<Vec<String>>,
    lease: Option<Lease>,
    /// Leases this process held before: owner keys still bound to them are ours to delete.
    old_leases: Vec<i64>,
    /// Owned partitions (claimed in etcd and running in the engine) → revision of the claim.
    claimed: HashMap<u32, i64>,
    /// Partitions are claimed only once the change feed runs, so none misses a write.
    feed_started: watch::Receiver<bool>,
    stop: CancellationToken,
}

impl Controller {
    async fn run(mut self) {
        loop {
            if self.lease.is_none() && !self.register().await {
                break;
            }
            self.publish_hosts();
            self.reconcile().await;
            let lease_state = self.lease.as_ref().map(|l| l.state.clone());
            let Some(mut lease_state) = lease_state else { continue };
            tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                _ = self.members.changed() => {}
                _ = self.owners.changed() => {}
                _ = lease_state.changed() => {}
                _ = self.feed_started.changed() => {}
                () = tokio::time::sleep(RECONCILE_EVERY) => {}
            }
            if *lease_state.borrow() == LeaseState::Lost {
                self.lose_lease().await;
            }
        }
        self.leave().await;
    }

    fn me(&self) -> &str {
        &self.config.replica_id
    }

    /// Grants a lease and writes the member key under it; retries until it works or the
    /// replica stops. Returns `false` when stopping.
    async fn register(&mut self) -> bool {
        let ttl_secs = i64::try_from(self.config.lease_ttl.as_secs().max(1)).unwrap_or(5);
        let mut backoff = retry_backoff();
        loop {
            if self.stop.is_cancelled() {
                return false;
            }
            // Another live process with this replica id would make fencing useless: wait for
            // its lease to expire (a crashed predecessor's goes within a TTL).
            let foreign = self
                .members
                .borrow()
                .entries
                .get(self.me())
                .is_some_and(|e| !self.old_leases.contains(&e.lease));
            if foreign && self.members.borrow().synced {
                tracing::warn!(
                    replica_id = self.me(),
                    "another process holds a live member key with this replica id; waiting for it to expire"
                );
                tokio::select! {
                    () = self.stop.cancelled() => return false,
                    _ = self.members.changed() => {}
                    () = tokio::time::sleep(RECONCILE_EVERY) => {}
                }
                continue;
            }
            if !self.members.borrow().synced {
                pause(&self.stop, Duration::from_millis(20)).await;
                continue;
            }
            match self.try_register(ttl_secs).await {
                Ok(id) => {
                    let (state_tx, state) = watch::channel(LeaseState::Alive);
                    let keeper = self.stop.child_token();
                    tokio::spawn(keep_alive(
                        self.client.clone(),
                        id,
                        self.config.lease_ttl.max(Duration::from_secs(1)),
                        self.clock.clone(),
                        state_tx,
                        keeper.clone(),
                    ));
                    tracing::info!(replica_id = self.me(), lease = id, "registered as a cluster member");
                    self.lease = Some(Lease { id, state, keeper });
                    // A previous lease of ours still binds owner keys: revoking it frees them
                    // now rather than after its TTL (failure is fine; they expire anyway).
                    for old in std::mem::take(&mut self.old_leases).iter().copied() {
                        let _ = self.client.clone().lease_revoke(old).await;
                        self.old_leases.push(old);
                    }
                    return true;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot register with etcd; retrying");
                    pause(&self.stop, backoff.next_delay()).await;
                }
            }
        }
    }

    async fn try_register(&self, ttl_secs: i64) -> Result<i64, etcd_client::Error> {
        let mut client = self.client.clone();
        let id = client.lease_grant(ttl_secs, None).await?.id();
        let put = client
            .put(
                member_key(&self.config.prefix, self.me()),
                self.config.advertise.clone(),
                Some(PutOptions::new().with_lease(id)),
            )
            .await;
        if let Err(err) = put {
            let _ = client.lease_revoke(id).await;
            return Err(err);
        }
        Ok(id)
    }

    fn publish_hosts(&self) {
        let snapshot = self.members.borrow();
        let mut hosts: BTreeSet<String> = snapshot.entries.values().map(|e| e.value.clone()).collect();
        hosts.insert(self.config.advertise.clone());
        let hosts: Vec<String> = hosts.into_iter().collect();
        self.hosts.send_if_modified(|current| {
            if *current == hosts {
                false
            } else {
                *current = hosts;
                true
            }
        });
    }

    /// Partitions this replica should own now.
    fn desired(&self) -> BTreeSet<u32> {
        let snapshot = self.members.borrow();
        let members: Vec<&str> = snapshot.entries.keys().map(String::as_str).collect();
        rendezvous::owned_by(self.me(), members.iter().copied(), self.config.partitions).into_iter().collect()
    }

    async fn reconcile(&mut self) {
        let Some(lease) = self.lease.as_ref().map(|l| l.id) else { return };
        if !self.members.borrow().synced || !self.owners.borrow().synced || !*self.feed_started.borrow() {
            return;
        }
        let desired = self.desired();
        let owners = self.owners.borrow().clone();

        // Partitions whose owner key is no longer ours (seen after our claim): stop at once.
        let lost: Vec<u32> = self
            .claimed
            .iter()
            .filter(|&(&p, &claimed_at)| {
                owners.revision >= claimed_at
                    && owners
                        .entries
                        .get(&format!("{p:05}"))
                        .is_none_or(|e| e.value != self.config.replica_id || e.lease != lease)
            })
            .map(|(&p, _)| p)
            .collect();
        for p in lost {
            tracing::warn!(partition = p, "owner key lost; releasing the partition");
            self.engine.release(p).await;
            self.claimed.remove(&p);
        }

        // Hand over what should move away: drain them together, then release and delete.
        let leaving: Vec<u32> = self.claimed.keys().copied().filter(|p| !desired.contains(p)).collect();
        if !leaving.is_empty() {
            self.hand_over(&leaving).await;
        }

        // Claim what should be ours and is free (or still bound to an old lease of ours).
        for p in desired {
            if self.claimed.contains_key(&p) || self.stop.is_cancelled() {
                continue;
            }
            match owners.entries.get(&format!("{p:05}")) {
                None => {}
                Some(e) if e.value == self.config.replica_id && e.lease == lease => {}
                Some(e) if e.value == self.config.replica_id && self.old_leases.contains(&e.lease) => {
                    let _ = self.delete_owner_key(p, Some(e.lease)).await;
                    continue;
                }
                // Another replica still holds it: its deletion wakes us up.
                Some(_) => continue,
            }
            match self.claim(p, lease).await {
                Ok(Some(revision)) => {
                    self.engine.own(p);
                    self.claimed.insert(p, revision);
                    tracing::debug!(partition = p, "partition claimed");
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::debug!(partition = p, error = %err, "claim failed; retrying later");
                    break;
                }
            }
        }
    }

    /// Creates the owner key of `p` under `lease` unless it exists (or is already ours under
    /// this lease). Returns the revision of our owner key when we hold it.
    async fn claim(&self, p: u32, lease: i64) -> Result<Option<i64>, etcd_client::Error> {
        let key = owner_key(&self.config.prefix, p);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                self.config.replica_id.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key, None)]);
        let response = self.client.clone().txn(txn).await?;
        let revision = response.header().map_or(0, etcd_client::ResponseHeader::revision);
        if response.succeeded() {
            return Ok(Some(revision));
        }
        for op in response.op_responses() {
            if let etcd_client::TxnOpResponse::Get(get) = op
                && let Some(kv) = get.kvs().first()
                && kv.value() == self.config.replica_id.as_bytes()
                && kv.lease() == lease
            {
                return Ok(Some(kv.mod_revision()));
            }
        }
        Ok(None)
    }

    /// Deletes the owner key of `p` if it is ours (bound to `lease` when given).
    async fn delete_owner_key(&self, p: u32, lease: Option<i64>) -> Result<(), etcd_client::Error> {
        let key = owner_key(&self.config.prefix, p);
        let mut compares =
            vec![Compare::value(key.clone(), CompareOp::Equal, self.config.replica_id.clone())];
        if let Some(lease) = lease {
            compares.push(Compare::lease(key.clone(), CompareOp::Equal, lease));
        }
        let txn = Txn::new().when(compares).and_then([TxnOp::delete(key, None)]);
        self.client.clone().txn(txn).await.map(|_| ())
    }

    async fn hand_over(&mut self, partitions: &[u32]) {
        let timeout =
            SignedDuration::try_from(self.config.drain_timeout).unwrap_or(SignedDuration::from_secs(1));
        let drains = partitions.iter().map(|&p| {
            let engine = self.engine.clone();
            async move { (p, engine.drain_partition(p, timeout).await) }
        });
        for (p, drained) in futures::future::join_all(drains).await {
            if !drained {
                tracing::warn!(
                    partition = p,
                    "drain timed out; unanswered triggers will be fired again by the next owner"
                );
            }
        }
        let lease = self.lease.as_ref().map(|l| l.id);
        for &p in partitions {
            self.engine.release(p).await;
            self.claimed.remove(&p);
            if let Err(err) = self.delete_owner_key(p, lease).await {
                // The key goes with our lease at the latest; the next owner waits until then.
                tracing::warn!(partition = p, error = %err, "cannot delete the owner key");
            }
        }
        tracing::info!(partitions = partitions.len(), "partitions handed over");
    }

    async fn lose_lease(&mut self) {
        let Some(lease) = self.lease.take() else { return };
        lease.keeper.cancel();
        tracing::warn!(lease = lease.id, owned = self.claimed.len(), "lease lost; releasing every partition");
        let owned: Vec<u32> = self.claimed.drain().map(|(p, _)| p).collect();
        // No drain: the owner keys may already be gone, so fencing rejects our writes anyway.
        futures::future::join_all(owned.iter().map(|&p| self.engine.release(p))).await;
        self.old_leases.push(lease.id);
    }

    async fn leave(&mut self) {
        let owned: Vec<u32> = self.claimed.keys().copied().collect();
        if !owned.is_empty() {
            self.hand_over(&owned).await;
        }
        if let Some(lease) = self.lease.take() {
            lease.keeper.cancel();
            let _ = self.client.clone().lease_revoke(lease.id).await;
        }
        tracing::info!(replica_id = self.me(), "left the cluster");
    }
}

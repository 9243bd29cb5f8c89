//! The conformance suite every [`JobStore`] backend runs, one test per contract case.
//!
//! A backend's test file invokes [`job_store_conformance!`](crate::job_store_conformance) with a
//! module name and an expression that, called with no arguments, gives a future of a fresh
//! store — either the store itself or a `(store, guard)` pair whose guard (e.g. a temporary
//! directory) lives until the test ends:
//!
//! ```ignore
//! kairos_testing::job_store_conformance!(memory, || async { MemoryStore::new(8) });
//! kairos_testing::job_store_conformance!(redb, || async {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = RedbStore::open(dir.path().join("jobs.redb"), 8).unwrap();
//!     (store, dir)
//! });
//! ```
//!
//! The cases are the `pub async fn`s below; each takes an empty store and panics (it is a test)
//! when the backend breaks the contract.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use jiff::{SignedDuration, Timestamp};
use kairos_core::timeline::Progress;
use kairos_core::{
    CatchUp, Exponential, FailurePolicy, HistoryLimit, JobKey, JobSpec, JobStats, MisfirePolicy, Owner,
    Payload, Ratio, Route, TriggerOutcome, TriggerRecord,
};

use kairos_store::{DueCursor, JobStore, Mutation, OwnerScope, PutMode, StoreError, StoredJob};

/// What a backend's factory may return: a store, or a store with a guard to keep alive.
pub trait Fixture {
    type Store: JobStore;
    type Guard;
    fn into_parts(self) -> (Self::Store, Self::Guard);
}

/// A store with nothing to keep alive. One impl per backend: a blanket impl over every
/// [`JobStore`] would overlap the pair's (`JobStore` is foreign here).
macro_rules! bare_fixture {
    ($($store:ty),*) => {$(
        impl Fixture for $store {
            type Store = $store;
            type Guard = ();
            fn into_parts(self) -> ($store, ()) {
                (self, ())
            }
        }
    )*};
}

bare_fixture!(
    kairos_store::memory::MemoryStore,
    kairos_store::redb::RedbStore,
    kairos_store::etcd::EtcdStore
);

impl<S: JobStore, G> Fixture for (S, G) {
    type Store = S;
    type Guard = G;
    fn into_parts(self) -> (S, G) {
        self
    }
}

/// Generates one `#[tokio::test]` per conformance case in a module named `$modname`.
///
/// `$make` is called with no arguments and must give a future of a fresh store, or of a
/// `(store, guard)` pair; see [`conformance`](crate::conformance).
#[macro_export]
macro_rules! job_store_conformance {
    ($modname:ident, $make:expr) => {
        mod $modname {
            #[allow(unused_imports)]
            use super::*;

            $crate::__job_store_cases!(
                $make;
                put_create_only_stores_the_job_exactly,
                create_only_refuses_existing_key_and_leaves_old_job_unchanged,
                overwrite_replaces_spec_progress_and_due_entry,
                get_absent_key_is_none,
                delete_absent_key_succeeds_with_none,
                delete_returns_the_job_and_removes_its_due_entry,
                keys_with_nul_bytes_are_refused_and_change_nothing,
                list_pages_ascending_by_name_visit_every_job_once,
                list_never_shows_another_owners_jobs,
                list_by_name_prefix_starts_at_the_prefix_and_stops_past_it,
                delete_by_prefix_removes_only_matching_names_of_the_owner,
                delete_by_prefix_with_empty_prefix_removes_all_of_the_owner_only,
                delete_by_scope_owner_removes_every_job_of_the_owner_only,
                delete_by_scope_actor_id_prefix_removes_matching_reminders_only,
                scan_due_orders_by_due_then_key_within_one_partition,
                scan_due_resumes_strictly_after_the_cursor_and_respects_the_limit,
                scan_due_partitions_together_list_every_job_once,
                apply_progress_records_progress_and_moves_the_due_entry,
                apply_complete_deletes_the_job,
                apply_skips_stale_incarnations_and_absent_keys,
                apply_batch_applies_in_order,
                apply_batch_with_an_invalid_key_changes_nothing,
                scan_all_pages_in_key_order_visit_every_job_once,
                count_counts_stored_jobs,
                partitions_are_fixed_and_partition_of_is_stable,
                specs_payloads_and_timestamps_round_trip_exactly,
                concurrent_puts_from_spawned_tasks_all_land,
                concurrent_creates_upserts_and_deletes_each_get_their_own_answer,
                racing_upserts_of_one_key_each_return_the_job_they_replaced,
                a_thousand_concurrent_creates_all_land_in_the_due_index,
                apply_stage_moves_the_job_to_its_routes_staged_index,
                scan_staged_sees_one_route_of_one_partition_in_due_order_and_pages,
                progress_unstages_and_delete_overwrite_remove_the_staged_entry,
                staging_a_stale_incarnation_or_an_absent_job_changes_nothing,
                paused_flag_and_stats_round_trip_with_the_job,
                record_appends_history_in_order_and_keeps_the_newest,
                history_is_removed_with_the_job_and_by_a_new_job_of_the_name,
                history_of_neighbours_is_untouched_by_a_bulk_delete,
                record_of_a_stale_incarnation_changes_nothing,
                every_read_reports_one_version_and_a_later_write_a_larger_one,
                apply_reports_the_version_it_wrote_each_job_at_or_nothing,
                restamp_raises_only_the_version_of_its_own_incarnation,
            );
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __job_store_cases {
    ($make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $crate::conformance::Fixture::into_parts(($make)().await);
                $crate::conformance::$case(::std::sync::Arc::new(store)).await;
            }
        )+
    };
}

type Store = Arc<dyn JobStore>;

static INCARNATION: AtomicU64 = AtomicU64::new(1);

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn base() -> Timestamp {
    t("2026-03-01T10:00:00Z")
}

fn secs(n: i64) -> Timestamp {
    base() + SignedDuration::from_secs(n)
}

fn actor_key(ns: &str, actor_type: &str, actor_id: &str, name: &str) -> JobKey {
    JobKey { namespace: ns.into(), owner: Owner::actor(actor_type, actor_id), name: name.into() }
}

/// A fresh job under `key`, due at `due`, with a new incarnation.
pub fn job(key: JobKey, due: Timestamp) -> StoredJob {
    StoredJob {
        key,
        spec: JobSpec { schedule: Some("@every 1s".into()), ..JobSpec::default() }.with_default_policy(),
        created: base(),
        incarnation: INCARNATION.fetch_add(1, Ordering::Relaxed),
        version: 42,
        progress: Progress::default(),
        next_due: due,
        staged: false,
        paused: false,
        stats: JobStats::default(),
        manual: Vec::new(),
    }
}

/// The progress write of `j`'s incarnation: `progress` recorded, due next at `next_due`.
pub fn progress_of(j: &StoredJob, progress: Progress, next_due: Timestamp) -> Mutation {
    Mutation::Progress { key: j.key.clone(), incarnation: j.incarnation, progress, next_due }
}

async fn put_new(store: &Store, job: &StoredJob) {
    let old = store.put(job.clone(), PutMode::CreateOnly).await.unwrap();
    assert_eq!(old, None, "a create-only put of a new key replaced {old:?}");
}

/// New jobs of app "app" in namespace "ns" named `names`, each due at 1 s, put one by one.
async fn put_app_jobs<const N: usize>(store: &Store, names: [&str; N]) -> [StoredJob; N] {
    let jobs = names.map(|name| job(JobKey::app("ns", "app", name), secs(1)));
    for j in &jobs {
        put_new(store, j).await;
    }
    jobs
}

/// Every job of `partition`, scanned in pages of `page`.
async fn scan_partition(store: &Store, partition: u32, page: usize) -> Vec<StoredJob> {
    let mut out: Vec<StoredJob> = Vec::new();
    loop {
        let cursor = out.last().map(|j| DueCursor { due: j.next_due, key: j.key.clone() });
        let batch = store.scan_due(partition, cursor.as_ref(), page).await.unwrap();
        assert!(batch.len() <= page, "scan_due returned {} > limit {page}", batch.len());
        let done = batch.len() < page;
        out.extend(batch);
        if done {
            return out;
        }
    }
}

/// Every due entry of every partition, as `(due, key)`.
async fn due_entries(store: &Store) -> Vec<(Timestamp, JobKey)> {
    let mut out = Vec::new();
    for p in 0..store.partitions() {
        for j in scan_partition(store, p, 1000).await {
            assert_eq!(store.partition_of(&j.key), p, "{} listed in partition {p}", j.key);
            out.push((j.next_due, j.key));
        }
    }
    out.sort();
    out
}

async fn all_jobs(store: &Store) -> Vec<StoredJob> {
    store.scan_all(None, usize::MAX).await.unwrap()
}

/// Every job of `owner` in `ns`.
fn all_of(ns: &str, owner: &Owner) -> OwnerScope {
    OwnerScope::owner(ns, owner, "")
}

async fn names(store: &Store, ns: &str, owner: &Owner) -> Vec<String> {
    store.list(&all_of(ns, owner), None, usize::MAX).await.unwrap().into_iter().map(|j| j.key.name).collect()
}

fn sorted_keys(keys: impl IntoIterator<Item = JobKey>) -> Vec<JobKey> {
    let mut keys: Vec<JobKey> = keys.into_iter().collect();
    keys.sort();
    keys
}

/// A set of jobs of different owners that look alike: `app1` vs `app10`, an app vs an actor
/// type of the same name, actor `T/1` vs `T/10`, and two namespaces.
fn neighbours() -> Vec<JobKey> {
    vec![
        JobKey::app("ns", "app1", "a"),
        JobKey::app("ns", "app1", "b"),
        JobKey::app("ns", "app10", "a"),
        JobKey::app("ns", "app", "1"),
        JobKey::app("ns2", "app1", "a"),
        JobKey::app("ns", "T", "1"),
        actor_key("ns", "T", "1", "a"),
        actor_key("ns", "T", "1", "b"),
        actor_key("ns", "T", "10", "a"),
        actor_key("ns", "T", "2", "a"),
        actor_key("ns", "TT", "1", "a"),
        actor_key("ns2", "T", "1", "a"),
    ]
}

async fn put_all(store: &Store, keys: &[JobKey]) {
    for (i, key) in keys.iter().enumerate() {
        put_new(store, &job(key.clone(), secs(i64::try_from(i).unwrap()))).await;
    }
}

/// [`StoredJob::version`]: memory and redb report what was put, etcd each record's
/// `mod_revision`; either way one version per write, growing (the writer's stamps grow here).
pub async fn every_read_reports_one_version_and_a_later_write_a_larger_one(store: Store) {
    let j = StoredJob { version: 42, ..job(JobKey::app("ns", "app", "v"), secs(5)) };
    put_new(&store, &j).await;
    let versions = |jobs: Vec<StoredJob>| jobs.into_iter().map(|j| j.version).collect::<Vec<_>>();
    let first = store.get(&j.key).await.unwrap().unwrap().version;
    assert!(first > 0, "a version is reported");
    let partition = store.partition_of(&j.key);
    assert_eq!(versions(store.list(&all_of("ns", &Owner::app("app")), None, 10).await.unwrap()), [first]);
    assert_eq!(versions(store.scan_due(partition, None, 10).await.unwrap()), [first]);
    assert_eq!(versions(store.scan_all(None, 10).await.unwrap()), [first]);
    let replaced = store.put(StoredJob { version: 43, ..j.clone() }, PutMode::Overwrite).await.unwrap();
    assert_eq!(replaced.map(|old| old.version), Some(first), "the replaced job as it was read");
    let second = store.get(&j.key).await.unwrap().unwrap().version;
    assert!(second > first, "{second} after {first}");
    let progress = Progress { count: 1, last_scheduled: Some(secs(5)), attempts: 0 };
    let moved =
        Mutation::Progress { key: j.key.clone(), incarnation: j.incarnation, progress, next_due: secs(6) };
    store.apply(vec![moved]).await.unwrap();
    let third = store.get(&j.key).await.unwrap().unwrap().version;
    assert!(third >= second, "a mutation never makes it smaller: {third} after {second}");
    let staged = Mutation::Stage { key: j.key.clone(), incarnation: j.incarnation };
    store.apply(vec![staged]).await.unwrap();
    let route = kairos_core::Route::of(&j.key);
    let in_staged = store.scan_staged(partition, &route, None, 10).await.unwrap();
    assert_eq!(versions(in_staged), [store.get(&j.key).await.unwrap().unwrap().version]);
}

/// [`kairos_store::Written`]: a store that gives each write a version of its own (etcd, memory
/// with revisions) reports, per mutation, the version the commit wrote its job at (the one reads
/// then report) or `None`; one whose versions are the writer's reports nothing and keeps them.
pub async fn apply_reports_the_version_it_wrote_each_job_at_or_nothing(store: Store) {
    let [a, b] = put_app_jobs(&store, ["a", "b"]).await;
    let before = store.get(&a.key).await.unwrap().unwrap().version;
    let progress = Progress { count: 1, last_scheduled: Some(secs(1)), attempts: 0 };
    let stale = Mutation::Progress {
        key: b.key.clone(),
        incarnation: b.incarnation + 1,
        progress,
        next_due: secs(9),
    };
    let absent = Mutation::Complete { key: JobKey::app("ns", "app", "absent"), incarnation: 1 };
    let written = store.apply(vec![progress_of(&a, progress, secs(2)), stale, absent]).await.unwrap();
    let after = store.get(&a.key).await.unwrap().unwrap().version;
    if written.is_empty() {
        assert_eq!(after, before, "a mutation keeps the writer's version");
        return;
    }
    assert_eq!(written, [Some(after), None, None], "only the job it changed, at the version read next");
    assert!(after > before, "{after} after {before}");
    let complete = Mutation::Complete { key: a.key.clone(), incarnation: a.incarnation };
    let deleted = store.apply(vec![complete]).await.unwrap();
    assert!(matches!(deleted[..], [Some(v)] if v > after), "the delete's own version: {deleted:?}");
}

/// [`Mutation::Restamp`]: the version goes up (to the one asked for, where the versions are the
/// writer's; to a new one of the store's own, otherwise), nothing else changes, and a job of
/// another incarnation, or absent, is left as it is: a restamp never brings a job back.
pub async fn restamp_raises_only_the_version_of_its_own_incarnation(store: Store) {
    let [a, b] = put_app_jobs(&store, ["a", "b"]).await;
    let progress = Progress { count: 1, last_scheduled: Some(secs(1)), attempts: 0 };
    store.apply(vec![progress_of(&a, progress, secs(2))]).await.unwrap();
    let before = store.get(&a.key).await.unwrap().unwrap();
    let wanted = before.version + 1_000_000;
    let restamp = |j: &StoredJob, incarnation: u64| Mutation::Restamp {
        key: j.key.clone(),
        incarnation,
        version: wanted,
    };
    let written = store.apply(vec![restamp(&a, a.incarnation)]).await.unwrap();
    let after = store.get(&a.key).await.unwrap().unwrap();
    assert_eq!(after, before, "only the version changes");
    if written.is_empty() {
        assert_eq!(after.version, wanted, "the writer's version, as asked");
    } else {
        assert_eq!(written, [Some(after.version)]);
        assert!(after.version > before.version, "{} after {}", after.version, before.version);
    }

    let b_before = store.get(&b.key).await.unwrap().unwrap();
    let written = store.apply(vec![restamp(&b, b.incarnation + 1)]).await.unwrap();
    assert!(written.iter().all(Option::is_none), "another incarnation is not written: {written:?}");
    let b_after = store.get(&b.key).await.unwrap().unwrap();
    assert_eq!((&b_after, b_after.version), (&b_before, b_before.version), "another incarnation");

    let complete = Mutation::Complete { key: a.key.clone(), incarnation: a.incarnation };
    store.apply(vec![complete]).await.unwrap();
    let written = store.apply(vec![restamp(&a, a.incarnation)]).await.unwrap();
    assert!(written.iter().all(Option::is_none), "an absent job is not written: {written:?}");
    assert_eq!(store.get(&a.key).await.unwrap(), None, "a completed job stays deleted");
}

pub async fn put_create_only_stores_the_job_exactly(store: Store) {
    let j = job(JobKey::app("ns", "app", "job"), secs(5));
    put_new(&store, &j).await;
    assert_eq!(store.get(&j.key).await.unwrap(), Some(j.clone()));
    assert_eq!(due_entries(&store).await, vec![(secs(5), j.key.clone())]);
}

pub async fn create_only_refuses_existing_key_and_leaves_old_job_unchanged(store: Store) {
    let old = job(JobKey::app("ns", "app", "job"), secs(5));
    put_new(&store, &old).await;
    let mut new = job(old.key.clone(), secs(9));
    new.spec.schedule = Some("@every 2s".into());
    let err = store.put(new, PutMode::CreateOnly).await.unwrap_err();
    assert!(matches!(&err, StoreError::AlreadyExists(k) if *k == old.key), "{err:?}");
    assert_eq!(store.get(&old.key).await.unwrap(), Some(old.clone()));
    assert_eq!(due_entries(&store).await, vec![(secs(5), old.key.clone())]);
    assert_eq!(store.count().await.unwrap(), 1);
}

pub async fn overwrite_replaces_spec_progress_and_due_entry(store: Store) {
    let key = JobKey::app("ns", "app", "job");
    let mut old = job(key.clone(), secs(5));
    old.progress = Progress { count: 3, last_scheduled: Some(secs(4)), attempts: 2 };
    put_new(&store, &old).await;
    let mut new = job(key.clone(), secs(60));
    new.spec = JobSpec { due_time: Some("1m".into()), ..JobSpec::default() };
    let replaced = store.put(new.clone(), PutMode::Overwrite).await.unwrap();
    assert_eq!(replaced, Some(old));
    let stored = store.get(&key).await.unwrap().unwrap();
    assert_eq!(stored, new);
    assert_eq!(stored.progress, Progress::default(), "overwrite resets progress");
    assert_eq!(
        due_entries(&store).await,
        vec![(secs(60), key.clone())],
        "exactly one due entry, at the new due time"
    );
    // Overwrite of an absent key creates it.
    let other = job(JobKey::app("ns", "app", "other"), secs(1));
    assert_eq!(store.put(other.clone(), PutMode::Overwrite).await.unwrap(), None);
    assert_eq!(store.get(&other.key).await.unwrap(), Some(other));
}

pub async fn get_absent_key_is_none(store: Store) {
    assert_eq!(store.get(&JobKey::app("ns", "app", "nope")).await.unwrap(), None);
    put_new(&store, &job(JobKey::app("ns", "app", "job"), secs(1))).await;
    assert_eq!(store.get(&JobKey::app("ns", "app", "jo")).await.unwrap(), None);
    assert_eq!(store.get(&JobKey::app("ns", "app", "job2")).await.unwrap(), None);
}

pub async fn delete_absent_key_succeeds_with_none(store: Store) {
    assert_eq!(store.delete(&JobKey::app("ns", "app", "nope")).await.unwrap(), None);
    let j = job(JobKey::app("ns", "app", "job"), secs(1));
    put_new(&store, &j).await;
    assert_eq!(store.delete(&JobKey::app("ns", "app", "jo")).await.unwrap(), None);
    assert_eq!(store.get(&j.key).await.unwrap(), Some(j));
}

pub async fn delete_returns_the_job_and_removes_its_due_entry(store: Store) {
    let j = job(JobKey::app("ns", "app", "job"), secs(1));
    let keep = job(JobKey::app("ns", "app", "keep"), secs(1));
    put_new(&store, &j).await;
    put_new(&store, &keep).await;
    assert_eq!(store.delete(&j.key).await.unwrap(), Some(j.clone()));
    assert_eq!(store.get(&j.key).await.unwrap(), None);
    assert_eq!(due_entries(&store).await, vec![(secs(1), keep.key.clone())]);
    assert_eq!(store.delete(&j.key).await.unwrap(), None, "a second delete finds nothing");
    assert_eq!(store.count().await.unwrap(), 1);
}

pub async fn keys_with_nul_bytes_are_refused_and_change_nothing(store: Store) {
    let good = job(JobKey::app("ns", "app", "job"), secs(1));
    put_new(&store, &good).await;
    let bad_keys = [
        JobKey::app("ns", "app", "jo\0b"),
        JobKey::app("ns", "ap\0p", "job"),
        JobKey::app("n\0s", "app", "job"),
        actor_key("ns", "T\0", "1", "job"),
        actor_key("ns", "T", "1\0", "job"),
    ];
    let invalid = |r: Result<_, StoreError>| matches!(r, Err(StoreError::Invalid { .. }));
    for key in bad_keys {
        assert!(
            invalid(store.put(job(key.clone(), secs(1)), PutMode::Overwrite).await.map(|_| ())),
            "{key:?}"
        );
        assert!(invalid(store.get(&key).await.map(|_| ())), "{key:?}");
        assert!(invalid(store.delete(&key).await.map(|_| ())), "{key:?}");
    }
    assert!(invalid(store.list(&all_of("ns", &Owner::app("a\0")), None, 10).await.map(|_| ())));
    let bad_after = JobKey::app("ns", "app", "x\0");
    assert!(invalid(store.list(&all_of("ns", &Owner::app("app")), Some(&bad_after), 10).await.map(|_| ())));
    let names = OwnerScope::owner("ns", &Owner::app("app"), "j\0");
    assert!(invalid(store.list(&names, None, 10).await.map(|_| ())));
    assert!(invalid(store.delete_by_scope(&names).await.map(|_| ())));
    let scope =
        OwnerScope::ActorIdPrefix { namespace: "ns".into(), actor_type: "T".into(), id_prefix: "\0".into() };
    assert!(invalid(store.delete_by_scope(&scope).await.map(|_| ())));
    assert_eq!(all_jobs(&store).await, vec![good]);
}

pub async fn list_pages_ascending_by_name_visit_every_job_once(store: Store) {
    let owner = Owner::app("app");
    let mut expected: Vec<String> =
        ["b", "a", "c", "a-1", "A", "a.b", "ab", "z", "é", "0", "a||b", "名前"].map(String::from).to_vec();
    for (i, name) in expected.iter().enumerate() {
        put_new(&store, &job(JobKey::app("ns", "app", name.as_str()), secs(100 - i64::try_from(i).unwrap())))
            .await;
    }
    expected.sort();
    assert_eq!(names(&store, "ns", &owner).await, expected);
    let scope = all_of("ns", &owner);
    for page in [1, 2, 5, 100] {
        let mut seen = Vec::new();
        let mut after: Option<JobKey> = None;
        loop {
            let batch = store.list(&scope, after.as_ref(), page).await.unwrap();
            assert!(batch.len() <= page);
            if batch.is_empty() {
                break;
            }
            after = batch.last().map(|j| j.key.clone());
            seen.extend(batch.into_iter().map(|j| j.key.name));
        }
        assert_eq!(seen, expected, "pages of {page}");
    }
    assert!(store.list(&scope, None, 0).await.unwrap().is_empty());
    // `after` need not be stored: the page starts at the next name.
    let after_a = store.list(&scope, Some(&JobKey::app("ns", "app", "a-")), 2).await.unwrap();
    assert_eq!(after_a.iter().map(|j| j.key.name.as_str()).collect::<Vec<_>>(), ["a-1", "a.b"]);
    assert!(store.list(&scope, Some(&JobKey::app("ns", "app", "名前")), 10).await.unwrap().is_empty());
}

pub async fn list_by_name_prefix_starts_at_the_prefix_and_stops_past_it(store: Store) {
    let owner = Owner::app("app");
    for name in ["a", "ab", "abc", "abd", "ab\u{7f}", "ab\u{ff}", "ac", "b"] {
        put_new(&store, &job(JobKey::app("ns", "app", name), secs(1))).await;
    }
    put_new(&store, &job(JobKey::app("ns", "app1", "ab"), secs(1))).await;
    let scope = OwnerScope::owner("ns", &owner, "ab");
    let listed = |jobs: Vec<StoredJob>| jobs.into_iter().map(|j| j.key.name).collect::<Vec<_>>();
    let at = |name: &str| JobKey::app("ns", "app", name);
    let all = ["ab", "abc", "abd", "ab\u{7f}", "ab\u{ff}"].map(String::from).to_vec();
    assert_eq!(listed(store.list(&scope, None, 100).await.unwrap()), all);
    // A cursor before the prefix starts at it; one inside resumes after it; one past it ends.
    assert_eq!(listed(store.list(&scope, Some(&at("a")), 2).await.unwrap()), all[..2]);
    assert_eq!(listed(store.list(&scope, Some(&at("abc")), 2).await.unwrap()), all[2..4]);
    assert_eq!(listed(store.list(&scope, Some(&at("abz")), 2).await.unwrap()), all[3..]);
    assert!(store.list(&scope, Some(&at("ac")), 10).await.unwrap().is_empty());
    assert!(store.list(&scope, Some(&JobKey::app("ns", "app1", "a")), 10).await.unwrap().is_empty());
    assert_eq!(listed(store.list(&scope, Some(&JobKey::app("ns", "aaa", "zz")), 10).await.unwrap()), all);
    assert!(store.list(&OwnerScope::owner("ns", &owner, "abz"), None, 10).await.unwrap().is_empty());
    // Actors: every reminder of the actors whose id starts with the prefix, by key.
    put_all(&store, &neighbours()).await;
    let actors =
        OwnerScope::ActorIdPrefix { namespace: "ns".into(), actor_type: "T".into(), id_prefix: "1".into() };
    let keys: Vec<JobKey> =
        store.list(&actors, None, 100).await.unwrap().into_iter().map(|j| j.key).collect();
    let expected =
        [actor_key("ns", "T", "1", "a"), actor_key("ns", "T", "1", "b"), actor_key("ns", "T", "10", "a")];
    assert_eq!(keys, expected);
    let rest = store.list(&actors, Some(&actor_key("ns", "T", "1", "b")), 100).await.unwrap();
    assert_eq!(rest.into_iter().map(|j| j.key).collect::<Vec<_>>(), expected[2..]);
}

pub async fn list_never_shows_another_owners_jobs(store: Store) {
    let keys = neighbours();
    put_all(&store, &keys).await;
    let owners = [
        ("ns", Owner::app("app1")),
        ("ns", Owner::app("app10")),
        ("ns", Owner::app("app")),
        ("ns2", Owner::app("app1")),
        ("ns", Owner::app("T")),
        ("ns", Owner::actor("T", "1")),
        ("ns", Owner::actor("T", "10")),
        ("ns", Owner::actor("TT", "1")),
        ("ns2", Owner::actor("T", "1")),
        ("ns", Owner::app("ap")),
        ("ns", Owner::actor("T", "")),
        ("n", Owner::app("app1")),
    ];
    for (ns, owner) in owners {
        let listed: Vec<JobKey> =
            store.list(&all_of(ns, &owner), None, 100).await.unwrap().into_iter().map(|j| j.key).collect();
        let expected: Vec<JobKey> =
            sorted_keys(keys.iter().filter(|k| k.namespace == ns && k.owner == owner).cloned());
        assert_eq!(listed, expected, "list of {ns} {owner:?}");
    }
}

pub async fn delete_by_prefix_removes_only_matching_names_of_the_owner(store: Store) {
    let owner = Owner::app("app1");
    let mut keys = neighbours();
    for name in ["pre", "pre-1", "pre-2", "prf", "pr", "xpre"] {
        keys.push(JobKey::app("ns", "app1", name));
        keys.push(JobKey::app("ns", "app10", name));
    }
    put_all(&store, &keys).await;
    let deleted = store.delete_by_scope(&OwnerScope::owner("ns", &owner, "pre")).await.unwrap();
    let expected = sorted_keys(["pre", "pre-1", "pre-2"].map(|n| JobKey::app("ns", "app1", n)));
    assert_eq!(sorted_keys(deleted), expected);
    let left: Vec<JobKey> = sorted_keys(keys.iter().filter(|k| !expected.contains(k)).cloned());
    assert_eq!(all_jobs(&store).await.into_iter().map(|j| j.key).collect::<Vec<_>>(), left);
    assert_eq!(due_entries(&store).await.len(), left.len(), "due entries of deleted jobs are gone");
    assert!(store.delete_by_scope(&OwnerScope::owner("ns", &owner, "pre")).await.unwrap().is_empty());
    let nobody = OwnerScope::owner("ns", &Owner::app("nobody"), "");
    assert!(store.delete_by_scope(&nobody).await.unwrap().is_empty());
}

pub async fn delete_by_prefix_with_empty_prefix_removes_all_of_the_owner_only(store: Store) {
    let keys = neighbours();
    put_all(&store, &keys).await;
    for (ns, owner) in [("ns", Owner::app("app1")), ("ns", Owner::actor("T", "1"))] {
        let expected = sorted_keys(keys.iter().filter(|k| k.namespace == ns && k.owner == owner).cloned());
        let scope = OwnerScope::owner(ns, &owner, "");
        assert_eq!(sorted_keys(store.delete_by_scope(&scope).await.unwrap()), expected);
        assert!(names(&store, ns, &owner).await.is_empty());
    }
    let left = sorted_keys(
        keys.iter()
            .filter(|k| {
                !(k.namespace == "ns" && (k.owner == Owner::app("app1") || k.owner == Owner::actor("T", "1")))
            })
            .cloned(),
    );
    assert_eq!(all_jobs(&store).await.into_iter().map(|j| j.key).collect::<Vec<_>>(), left);
    assert_eq!(due_entries(&store).await.len(), left.len());
}

pub async fn delete_by_scope_owner_removes_every_job_of_the_owner_only(store: Store) {
    let keys = neighbours();
    put_all(&store, &keys).await;
    let scope = OwnerScope::owner("ns", &Owner::actor("T", "1"), "");
    let expected = sorted_keys([actor_key("ns", "T", "1", "a"), actor_key("ns", "T", "1", "b")]);
    assert_eq!(sorted_keys(store.delete_by_scope(&scope).await.unwrap()), expected);
    let left = sorted_keys(keys.iter().filter(|k| !expected.contains(k)).cloned());
    assert_eq!(all_jobs(&store).await.into_iter().map(|j| j.key).collect::<Vec<_>>(), left);
    assert_eq!(due_entries(&store).await.len(), left.len());
}

pub async fn delete_by_scope_actor_id_prefix_removes_matching_reminders_only(store: Store) {
    let mut keys = neighbours();
    keys.extend([
        actor_key("ns", "T", "12", "x"),
        actor_key("ns", "T", "", "x"),
        JobKey::app("ns", "T", "1x"),
    ]);
    put_all(&store, &keys).await;
    let scope = |id_prefix: &str| OwnerScope::ActorIdPrefix {
        namespace: "ns".into(),
        actor_type: "T".into(),
        id_prefix: id_prefix.into(),
    };
    let expected = sorted_keys([
        actor_key("ns", "T", "1", "a"),
        actor_key("ns", "T", "1", "b"),
        actor_key("ns", "T", "10", "a"),
        actor_key("ns", "T", "12", "x"),
    ]);
    assert_eq!(sorted_keys(store.delete_by_scope(&scope("1")).await.unwrap()), expected);
    let left = sorted_keys(keys.iter().filter(|k| !expected.contains(k)).cloned());
    assert_eq!(all_jobs(&store).await.into_iter().map(|j| j.key).collect::<Vec<_>>(), left);
    // An empty id prefix takes every actor of the type in the namespace, and nothing else.
    let expected = sorted_keys([actor_key("ns", "T", "2", "a"), actor_key("ns", "T", "", "x")]);
    assert_eq!(sorted_keys(store.delete_by_scope(&scope("")).await.unwrap()), expected);
    let left = sorted_keys(left.into_iter().filter(|k| !expected.contains(k)));
    assert_eq!(all_jobs(&store).await.into_iter().map(|j| j.key).collect::<Vec<_>>(), left);
    assert_eq!(due_entries(&store).await.len(), left.len());
    assert!(
        left.contains(&actor_key("ns", "TT", "1", "a")) && left.contains(&actor_key("ns2", "T", "1", "a"))
    );
}

/// `n` keys that all fall into one partition, and that partition.
fn keys_in_one_partition(store: &Store, n: usize) -> (u32, Vec<JobKey>) {
    let target = store.partition_of(&JobKey::app("ns", "app", "seed"));
    let keys: Vec<JobKey> = (0..)
        .map(|i| {
            if i % 2 == 0 {
                JobKey::app("ns", "app", format!("j{i}"))
            } else {
                actor_key("ns", "T", "1", &format!("r{i}"))
            }
        })
        .filter(|k| store.partition_of(k) == target)
        .take(n)
        .collect();
    (target, keys)
}

pub async fn scan_due_orders_by_due_then_key_within_one_partition(store: Store) {
    let (p, keys) = keys_in_one_partition(&store, 8);
    // Due times with ties and out of insertion order, including one before the epoch.
    let dues =
        [secs(30), secs(10), secs(10), t("1969-07-20T20:17:40Z"), secs(10), secs(20), secs(30), secs(0)];
    let mut expected = Vec::new();
    for (key, due) in keys.iter().zip(dues) {
        put_new(&store, &job(key.clone(), due)).await;
        expected.push(DueCursor { due, key: key.clone() });
    }
    expected.sort();
    let scanned: Vec<DueCursor> = store
        .scan_due(p, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|j| DueCursor { due: j.next_due, key: j.key })
        .collect();
    assert_eq!(scanned, expected);
}

pub async fn scan_due_resumes_strictly_after_the_cursor_and_respects_the_limit(store: Store) {
    let (p, keys) = keys_in_one_partition(&store, 6);
    let dues = [secs(5), secs(5), secs(5), secs(1), secs(9), secs(9)];
    let mut expected = Vec::new();
    for (key, due) in keys.iter().zip(dues) {
        put_new(&store, &job(key.clone(), due)).await;
        expected.push(DueCursor { due, key: key.clone() });
    }
    expected.sort();
    let cursors = |jobs: Vec<StoredJob>| {
        jobs.into_iter().map(|j| DueCursor { due: j.next_due, key: j.key }).collect::<Vec<_>>()
    };
    assert_eq!(cursors(store.scan_due(p, None, 2).await.unwrap()), expected[..2]);
    assert!(store.scan_due(p, None, 0).await.unwrap().is_empty());
    for (i, cursor) in expected.iter().enumerate() {
        assert_eq!(
            cursors(store.scan_due(p, Some(cursor), 100).await.unwrap()),
            expected[i + 1..],
            "after {i}"
        );
        assert_eq!(
            cursors(store.scan_due(p, Some(cursor), 1).await.unwrap()),
            expected[i + 1..(i + 2).min(expected.len())]
        );
    }
    // A cursor that is not a stored entry: same due as a tie group, a key between its keys.
    let between = DueCursor { due: expected[1].due, key: expected[1].key.clone() };
    let mut between_key = between.key.clone();
    between_key.name.push('\u{1}');
    let resumed =
        cursors(store.scan_due(p, Some(&DueCursor { key: between_key, ..between }), 100).await.unwrap());
    assert_eq!(resumed, expected[2..]);
    // A cursor before everything and one after everything.
    let first = DueCursor { due: Timestamp::MIN, key: JobKey::app("", "", "") };
    assert_eq!(cursors(store.scan_due(p, Some(&first), 100).await.unwrap()), expected);
    let last = DueCursor { due: Timestamp::MAX, key: JobKey::app("ns", "app", "zzz") };
    assert!(store.scan_due(p, Some(&last), 100).await.unwrap().is_empty());
}

pub async fn scan_due_partitions_together_list_every_job_once(store: Store) {
    let mut keys = neighbours();
    keys.extend((0..60).map(|i| JobKey::app("ns", "bulk", format!("job-{i}"))));
    for (i, key) in keys.iter().enumerate() {
        put_new(&store, &job(key.clone(), secs(i64::try_from(i % 7).unwrap()))).await;
    }
    let mut seen = Vec::new();
    for p in 0..store.partitions() {
        let jobs = scan_partition(&store, p, 3).await;
        let order: Vec<DueCursor> =
            jobs.iter().map(|j| DueCursor { due: j.next_due, key: j.key.clone() }).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "partition {p} out of order: {order:?}");
        for j in jobs {
            assert_eq!(store.partition_of(&j.key), p, "{} listed in partition {p}", j.key);
            seen.push(j.key);
        }
    }
    assert!(
        store.scan_due(store.partitions(), None, 100).await.unwrap().is_empty(),
        "no jobs past the last partition"
    );
    assert!(store.scan_due(u32::MAX, None, 100).await.unwrap().is_empty());
    assert_eq!(sorted_keys(seen), sorted_keys(keys));
}

pub async fn apply_progress_records_progress_and_moves_the_due_entry(store: Store) {
    let j = job(JobKey::app("ns", "app", "job"), secs(1));
    put_new(&store, &j).await;
    let progress = Progress { count: 1, last_scheduled: Some(secs(1)), attempts: 0 };
    store.apply(vec![progress_of(&j, progress, secs(2))]).await.unwrap();
    let stored = store.get(&j.key).await.unwrap().unwrap();
    assert_eq!(
        stored,
        StoredJob { progress, next_due: secs(2), ..j.clone() },
        "only progress and next_due change"
    );
    assert_eq!(due_entries(&store).await, vec![(secs(2), j.key.clone())]);
    // Moving backwards in time works too (a retry sooner than the next tick).
    let retry = Progress { attempts: 1, ..progress };
    store.apply(vec![progress_of(&j, retry, secs(-5))]).await.unwrap();
    assert_eq!(due_entries(&store).await, vec![(secs(-5), j.key.clone())]);
    assert_eq!(store.get(&j.key).await.unwrap().unwrap().progress, retry);
}

pub async fn apply_complete_deletes_the_job(store: Store) {
    let j = job(JobKey::app("ns", "app", "job"), secs(1));
    let keep = job(JobKey::app("ns", "app", "keep"), secs(1));
    put_new(&store, &j).await;
    put_new(&store, &keep).await;
    store.apply(vec![Mutation::Complete { key: j.key.clone(), incarnation: j.incarnation }]).await.unwrap();
    assert_eq!(store.get(&j.key).await.unwrap(), None);
    assert_eq!(due_entries(&store).await, vec![(secs(1), keep.key.clone())]);
    assert_eq!(store.count().await.unwrap(), 1);
    store.apply(Vec::new()).await.unwrap();
}

pub async fn apply_skips_stale_incarnations_and_absent_keys(store: Store) {
    let old = job(JobKey::app("ns", "app", "job"), secs(1));
    put_new(&store, &old).await;
    let new = job(old.key.clone(), secs(7));
    store.put(new.clone(), PutMode::Overwrite).await.unwrap();
    let progress = Progress { count: 5, last_scheduled: Some(secs(1)), attempts: 0 };
    let absent = JobKey::app("ns", "app", "gone");
    store
        .apply(vec![
            progress_of(&old, progress, secs(99)),
            Mutation::Complete { key: old.key.clone(), incarnation: old.incarnation },
            Mutation::Progress { key: absent.clone(), incarnation: 1, progress, next_due: secs(99) },
            Mutation::Complete { key: absent.clone(), incarnation: 1 },
        ])
        .await
        .unwrap();
    assert_eq!(store.get(&old.key).await.unwrap(), Some(new.clone()));
    assert_eq!(store.get(&absent).await.unwrap(), None, "a skipped mutation never creates a job");
    assert_eq!(due_entries(&store).await, vec![(secs(7), new.key.clone())]);
}

pub async fn apply_batch_applies_in_order(store: Store) {
    let a = job(JobKey::app("ns", "app", "a"), secs(1));
    let b = job(JobKey::app("ns", "app", "b"), secs(1));
    let c = job(actor_key("ns", "T", "1", "c"), secs(1));
    for j in [&a, &b, &c] {
        put_new(&store, j).await;
    }
    let p = |count| Progress { count, last_scheduled: Some(secs(1)), attempts: 0 };
    store
        .apply(vec![
            progress_of(&a, p(1), secs(2)),
            progress_of(&a, p(2), secs(3)),
            progress_of(&b, p(1), secs(4)),
            Mutation::Complete { key: b.key.clone(), incarnation: b.incarnation },
            Mutation::Complete { key: c.key.clone(), incarnation: c.incarnation },
            progress_of(&c, p(1), secs(5)),
        ])
        .await
        .unwrap();
    let stored = store.get(&a.key).await.unwrap().unwrap();
    assert_eq!((stored.progress, stored.next_due), (p(2), secs(3)), "the later mutation wins");
    assert_eq!(store.get(&b.key).await.unwrap(), None, "progress then complete deletes");
    assert_eq!(store.get(&c.key).await.unwrap(), None, "progress after complete is skipped");
    assert_eq!(due_entries(&store).await, vec![(secs(3), a.key.clone())]);
}

pub async fn apply_batch_with_an_invalid_key_changes_nothing(store: Store) {
    let [a, b] = put_app_jobs(&store, ["a", "b"]).await;
    let progress = Progress { count: 1, last_scheduled: Some(secs(1)), attempts: 0 };
    let err = store
        .apply(vec![
            progress_of(&a, progress, secs(2)),
            Mutation::Complete { key: b.key.clone(), incarnation: b.incarnation },
            Mutation::Complete { key: JobKey::app("ns", "app", "bad\0"), incarnation: 1 },
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    assert_eq!(all_jobs(&store).await, vec![a.clone(), b.clone()], "nothing of the batch applied");
    assert_eq!(due_entries(&store).await, vec![(secs(1), a.key.clone()), (secs(1), b.key.clone())]);
}

pub async fn scan_all_pages_in_key_order_visit_every_job_once(store: Store) {
    let mut keys = neighbours();
    keys.extend((0..25).map(|i| JobKey::app("ns", "bulk", format!("job-{i}"))));
    put_all(&store, &keys).await;
    let expected = sorted_keys(keys);
    for page in [1, 3, 7, 1000] {
        let mut seen: Vec<JobKey> = Vec::new();
        loop {
            let batch = store.scan_all(seen.last(), page).await.unwrap();
            assert!(batch.len() <= page);
            if batch.is_empty() {
                break;
            }
            seen.extend(batch.into_iter().map(|j| j.key));
        }
        assert_eq!(seen, expected, "pages of {page}");
    }
    assert!(store.scan_all(None, 0).await.unwrap().is_empty());
    // Resuming after a key that is not stored starts at the next stored key.
    let after = JobKey::app("ns", "app1", "a0");
    let next = store.scan_all(Some(&after), 1).await.unwrap();
    assert_eq!(next[0].key, JobKey::app("ns", "app1", "b"));
}

pub async fn count_counts_stored_jobs(store: Store) {
    assert_eq!(store.count().await.unwrap(), 0);
    let keys = neighbours();
    put_all(&store, &keys).await;
    assert_eq!(store.count().await.unwrap(), keys.len() as u64);
    store.put(job(keys[0].clone(), secs(1)), PutMode::Overwrite).await.unwrap();
    assert_eq!(store.count().await.unwrap(), keys.len() as u64, "overwrite does not add");
    store.delete(&keys[0]).await.unwrap();
    store.delete_by_scope(&OwnerScope::owner("ns", &Owner::app("app1"), "")).await.unwrap();
    assert_eq!(store.count().await.unwrap(), keys.len() as u64 - 2);
}

pub async fn partitions_are_fixed_and_partition_of_is_stable(store: Store) {
    let p = store.partitions();
    assert!(p >= 1);
    let keys = neighbours();
    put_all(&store, &keys).await;
    assert_eq!(store.partitions(), p, "writes do not change the partition count");
    for key in &keys {
        let part = store.partition_of(key);
        assert!(part < p);
        assert_eq!(part, kairos_store::keys::partition_of(key, p), "partition_of is the documented hash");
        assert_eq!(part, store.partition_of(&key.clone()));
    }
}

pub async fn specs_payloads_and_timestamps_round_trip_exactly(store: Store) {
    let specs = [
        JobSpec::default(),
        JobSpec {
            schedule: Some(String::new()),
            repeats: Some(0),
            due_time: Some(String::new()),
            ttl: Some(String::new()),
            data: Some(Payload::default()),
            failure_policy: Some(FailurePolicy::Drop),
            misfire_policy: None,
        },
        JobSpec {
            schedule: Some("TZ=Europe/Paris 0 30 9 * * MON-FRI".into()),
            repeats: Some(u32::MAX),
            due_time: Some("2026-03-01T10:00:00.123456789+01:00".into()),
            ttl: Some("P1Y2M3DT4H5M6.5S".into()),
            data: Some(Payload {
                type_url: "type.googleapis.com/google.protobuf.BytesValue".into(),
                value: (0..=255u8).chain([0, 0, 0xff]).collect(),
            }),
            failure_policy: Some(FailurePolicy::Constant { interval: None, max_retries: None }),
            misfire_policy: Some(MisfirePolicy { catch_up: CatchUp::Skip, window: None }),
        },
        JobSpec {
            schedule: Some("@every 1h30m".into()),
            repeats: None,
            due_time: None,
            ttl: Some("1h".into()),
            data: Some(Payload { type_url: String::new(), value: vec![0] }),
            failure_policy: Some(FailurePolicy::Constant {
                interval: Some(SignedDuration::new(-3, -500)),
                max_retries: Some(0),
            }),
            misfire_policy: Some(MisfirePolicy::DEFAULT),
        },
        JobSpec {
            schedule: Some("@every 10s".into()),
            failure_policy: Some(FailurePolicy::Exponential(Exponential {
                initial_interval: SignedDuration::new(0, 250_000_000),
                multiplier: Ratio::from_millionths(1_500_000),
                max_interval: Some(SignedDuration::from_secs(60)),
                max_retries: None,
                jitter: Ratio::from_millionths(100_000),
            })),
            misfire_policy: Some(MisfirePolicy {
                catch_up: CatchUp::Once,
                window: Some(SignedDuration::new(90, 5)),
            }),
            ..JobSpec::default()
        },
        JobSpec {
            failure_policy: Some(FailurePolicy::Constant {
                interval: Some(SignedDuration::new(86_400 * 365, 999_999_999)),
                max_retries: Some(u32::MAX),
            }),
            ..JobSpec::default()
        },
    ];
    let instants = [
        Timestamp::UNIX_EPOCH,
        t("1969-12-31T23:59:59.999999999Z"),
        t("2026-03-01T10:00:00.000000001Z"),
        Timestamp::MIN,
        Timestamp::MAX,
    ];
    let mut stored = Vec::new();
    for (i, spec) in specs.into_iter().enumerate() {
        let mut j = job(JobKey::app("ns", "app", format!("job-{i}")), instants[(i + 1) % instants.len()]);
        j.spec = spec;
        j.created = instants[i % instants.len()];
        j.incarnation = if i == 0 { 0 } else { u64::MAX - i as u64 };
        j.progress = Progress {
            count: u32::try_from(i).unwrap() * 1000,
            last_scheduled: (i % 2 == 1).then(|| instants[(i + 2) % instants.len()]),
            attempts: if i == 2 { u32::MAX } else { 0 },
        };
        put_new(&store, &j).await;
        stored.push(j);
    }
    for j in &stored {
        assert_eq!(store.get(&j.key).await.unwrap().as_ref(), Some(j));
    }
    assert_eq!(store.list(&all_of("ns", &Owner::app("app")), None, 100).await.unwrap(), stored);
    assert_eq!(all_jobs(&store).await, stored);
    let mut by_due = Vec::new();
    for p in 0..store.partitions() {
        by_due.extend(scan_partition(&store, p, 2).await);
    }
    by_due.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(by_due, stored, "scan_due returns whole jobs too");
}

pub async fn concurrent_puts_from_spawned_tasks_all_land(store: Store) {
    const TASKS: usize = 64;
    const PER_TASK: usize = 8;
    let mut tasks = Vec::new();
    for task_no in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut jobs = Vec::new();
            for i in 0..PER_TASK {
                let j = job(
                    JobKey::app("ns", format!("app-{task_no}"), format!("job-{i}")),
                    secs(i64::try_from(i).unwrap()),
                );
                store.put(j.clone(), PutMode::CreateOnly).await.unwrap();
                jobs.push(j);
            }
            jobs
        }));
    }
    let mut expected = Vec::new();
    for task in tasks {
        expected.extend(task.await.unwrap());
    }
    expected.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(store.count().await.unwrap(), (TASKS * PER_TASK) as u64);
    assert_eq!(all_jobs(&store).await, expected);
    assert_eq!(due_entries(&store).await.len(), TASKS * PER_TASK);
    // Racing create-only puts of one key: exactly one wins.
    let key = JobKey::app("ns", "race", "job");
    let racers: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            let j = job(key.clone(), secs(1));
            tokio::spawn(async move { store.put(j, PutMode::CreateOnly).await })
        })
        .collect();
    let mut won = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Ok(None) => won += 1,
            Err(StoreError::AlreadyExists(k)) => assert_eq!(k, key),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1);
}

/// Runs every put at once, each from its own task; the answers in the order given.
pub async fn put_concurrently(
    store: &Arc<dyn JobStore>,
    puts: Vec<(StoredJob, PutMode)>,
) -> Vec<Result<Option<StoredJob>, StoreError>> {
    let tasks: Vec<_> = puts
        .into_iter()
        .map(|(j, mode)| {
            let store = store.clone();
            tokio::spawn(async move { store.put(j, mode).await })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

pub async fn concurrent_creates_upserts_and_deletes_each_get_their_own_answer(store: Store) {
    let key = |name: String| JobKey::app("ns", "mixed", name);
    let existing: Vec<StoredJob> = (0..30).map(|i| job(key(format!("existing-{i:02}")), secs(i))).collect();
    for j in &existing {
        put_new(&store, j).await;
    }
    let fresh: Vec<StoredJob> = (0..150).map(|i| job(key(format!("new-{i:03}")), secs(100 + i))).collect();
    // Three creates of each of these keys race: exactly one per key wins.
    let dups: Vec<StoredJob> =
        (0..60).map(|i| job(key(format!("dup-{:02}", i / 3)), secs(300 + i))).collect();
    let over: Vec<StoredJob> = existing[..10].iter().map(|e| job(e.key.clone(), secs(999))).collect();
    let upserts: Vec<StoredJob> = existing[10..20].iter().map(|e| job(e.key.clone(), secs(500))).collect();
    let upserts_new: Vec<StoredJob> =
        (0..20).map(|i| job(key(format!("upsert-{i:02}")), secs(600 + i))).collect();
    let creates = fresh.iter().chain(&dups).chain(&over).map(|j| (j.clone(), PutMode::CreateOnly));
    let overwrites = upserts.iter().chain(&upserts_new).map(|j| (j.clone(), PutMode::Overwrite));
    let deletes: Vec<_> = existing[20..]
        .iter()
        .map(|e| {
            let store = store.clone();
            let key = e.key.clone();
            tokio::spawn(async move { store.delete(&key).await })
        })
        .collect();
    let answers = put_concurrently(&store, creates.chain(overwrites).collect()).await;
    for (d, e) in deletes.into_iter().zip(&existing[20..]) {
        assert_eq!(d.await.unwrap().unwrap().as_ref(), Some(e), "a delete returns the job it removed");
    }
    let (fresh_a, rest) = answers.split_at(fresh.len());
    let (dups_a, rest) = rest.split_at(dups.len());
    let (over_a, rest) = rest.split_at(over.len());
    let (upserts_a, upserts_new_a) = rest.split_at(upserts.len());
    for a in fresh_a.iter().chain(upserts_new_a) {
        assert!(matches!(a, Ok(None)), "a put of a new key: {a:?}");
    }
    for (a, j) in over_a.iter().zip(&over) {
        assert!(
            matches!(a, Err(StoreError::AlreadyExists(k)) if *k == j.key),
            "a create over an existing job: {a:?}"
        );
    }
    for (a, old) in upserts_a.iter().zip(&existing[10..20]) {
        assert_eq!(a.as_ref().unwrap().as_ref(), Some(old), "an overwrite returns the job it replaced");
    }
    let mut expected: Vec<StoredJob> = fresh.clone();
    for (trio, answers) in dups.chunks(3).zip(dups_a.chunks(3)) {
        let won: Vec<&StoredJob> =
            trio.iter().zip(answers).filter(|(_, a)| matches!(a, Ok(None))).map(|(j, _)| j).collect();
        assert_eq!(won.len(), 1, "exactly one of three creates of {} wins: {answers:?}", trio[0].key);
        for a in answers.iter().filter(|a| a.is_err()) {
            assert!(matches!(a, Err(StoreError::AlreadyExists(k)) if *k == trio[0].key), "{a:?}");
        }
        expected.push(won[0].clone());
    }
    expected.extend(existing[..10].iter().cloned());
    expected.extend(upserts.iter().cloned());
    expected.extend(upserts_new.iter().cloned());
    expected.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(all_jobs(&store).await, expected);
    let mut due: Vec<(Timestamp, JobKey)> = expected.iter().map(|j| (j.next_due, j.key.clone())).collect();
    due.sort();
    assert_eq!(due_entries(&store).await, due, "the due index holds exactly the stored jobs");
}

pub async fn racing_upserts_of_one_key_each_return_the_job_they_replaced(store: Store) {
    let key = JobKey::app("ns", "race", "hot");
    let jobs: Vec<StoredJob> = (0..12).map(|i| job(key.clone(), secs(i))).collect();
    let answers =
        put_concurrently(&store, jobs.iter().map(|j| (j.clone(), PutMode::Overwrite)).collect()).await;
    let stored = store.get(&key).await.unwrap().expect("one of them is stored");
    // Each write replaced exactly one other (the first replaced nothing): the replaced jobs and
    // the stored one are every job written, once each.
    let mut seen: Vec<u64> =
        answers.into_iter().map(|a| a.unwrap().map_or(0, |old| old.incarnation)).collect();
    seen.push(stored.incarnation);
    seen.sort_unstable();
    let mut all: Vec<u64> = jobs.iter().map(|j| j.incarnation).chain([0]).collect();
    all.sort_unstable();
    assert_eq!(seen, all);
    assert_eq!(due_entries(&store).await, vec![(stored.next_due, key)], "one due entry, the stored job's");
}

pub async fn a_thousand_concurrent_creates_all_land_in_the_due_index(store: Store) {
    let jobs: Vec<StoredJob> = (0..1000)
        .map(|i| job(JobKey::app("ns", format!("app-{}", i % 7), format!("job-{i:04}")), secs(i)))
        .collect();
    let answers =
        put_concurrently(&store, jobs.iter().map(|j| (j.clone(), PutMode::CreateOnly)).collect()).await;
    assert!(answers.iter().all(|a| matches!(a, Ok(None))), "{:?}", answers.iter().find(|a| a.is_err()));
    let again =
        put_concurrently(&store, jobs.iter().step_by(10).map(|j| (j.clone(), PutMode::CreateOnly)).collect())
            .await;
    assert!(again.iter().all(|a| matches!(a, Err(StoreError::AlreadyExists(_)))), "{again:?}");
    let mut expected: Vec<(Timestamp, JobKey)> = jobs.iter().map(|j| (j.next_due, j.key.clone())).collect();
    expected.sort();
    assert_eq!(due_entries(&store).await, expected);
    assert_eq!(store.count().await.unwrap(), 1000);
}

fn stage(j: &StoredJob) -> Mutation {
    Mutation::Stage { key: j.key.clone(), incarnation: j.incarnation }
}

/// Every staged job of `route` in `partition`, scanned in pages of `page`.
async fn scan_route(store: &Store, partition: u32, route: &Route, page: usize) -> Vec<StoredJob> {
    let mut out: Vec<StoredJob> = Vec::new();
    loop {
        let cursor = out.last().map(|j| DueCursor { due: j.next_due, key: j.key.clone() });
        let batch = store.scan_staged(partition, route, cursor.as_ref(), page).await.unwrap();
        assert!(batch.len() <= page, "scan_staged returned {} > limit {page}", batch.len());
        let done = batch.len() < page;
        out.extend(batch);
        if done {
            return out;
        }
    }
}

pub async fn apply_stage_moves_the_job_to_its_routes_staged_index(store: Store) {
    let j = job(JobKey::app("ns", "app", "job"), secs(1));
    let other = job(JobKey::app("ns", "app", "other"), secs(2));
    put_new(&store, &j).await;
    put_new(&store, &other).await;
    store.apply(vec![stage(&j)]).await.unwrap();
    let stored = store.get(&j.key).await.unwrap().unwrap();
    assert_eq!(stored, StoredJob { staged: true, ..j.clone() }, "only the staged flag changes");
    assert_eq!(due_entries(&store).await, vec![(secs(2), other.key.clone())], "it left the due index");
    let route = Route::of(&j.key);
    let partition = store.partition_of(&j.key);
    assert_eq!(scan_route(&store, partition, &route, 10).await, vec![stored.clone()]);
    assert_eq!(store.count_staged().await.unwrap(), 1);
    assert_eq!(store.count().await.unwrap(), 2, "a staged job is still a stored job");
    // Staging it again changes nothing.
    store.apply(vec![stage(&j)]).await.unwrap();
    assert_eq!(store.get(&j.key).await.unwrap().unwrap(), stored);
    assert_eq!(store.count_staged().await.unwrap(), 1);
    let listed = store.list(&all_of("ns", &Owner::app("app")), None, 10).await.unwrap();
    assert_eq!(listed.len(), 2);
}

pub async fn scan_staged_sees_one_route_of_one_partition_in_due_order_and_pages(store: Store) {
    let keys = neighbours();
    let mut jobs = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        // Later keys are due earlier, so due order is not key order.
        let j = job(key.clone(), secs(100 - i64::try_from(i).unwrap()));
        put_new(&store, &j).await;
        jobs.push(j);
    }
    // Three more of one route, so a route spans several jobs of a partition.
    for n in 0..3 {
        let j = job(JobKey::app("ns", "app1", format!("more{n}")), secs(50));
        put_new(&store, &j).await;
        jobs.push(j);
    }
    store.apply(jobs.iter().map(stage).collect()).await.unwrap();
    assert!(due_entries(&store).await.is_empty());
    assert_eq!(store.count_staged().await.unwrap(), jobs.len() as u64);
    let mut seen = Vec::new();
    let routes: std::collections::BTreeSet<Route> = keys.iter().map(Route::of).collect();
    for route in &routes {
        for p in 0..store.partitions() {
            for page in [1, 2, 100] {
                let got = scan_route(&store, p, route, page).await;
                let mut expected: Vec<StoredJob> = jobs
                    .iter()
                    .filter(|j| Route::of(&j.key) == *route && store.partition_of(&j.key) == p)
                    .map(|j| StoredJob { staged: true, ..j.clone() })
                    .collect();
                expected.sort_by(|a, b| (a.next_due, &a.key).cmp(&(b.next_due, &b.key)));
                assert_eq!(got, expected, "route {route} partition {p} page {page}");
                if page == 100 {
                    seen.extend(got.into_iter().map(|j| j.key));
                }
            }
        }
    }
    assert_eq!(sorted_keys(seen), sorted_keys(jobs.iter().map(|j| j.key.clone())), "every job once");
    // A route that has none, and one that merely starts like another (`app1` vs `app10`).
    let none = Route::App { namespace: "ns".into(), app_id: "ap".into() };
    for p in 0..store.partitions() {
        assert!(store.scan_staged(p, &none, None, 100).await.unwrap().is_empty());
    }
    let bad = Route::App { namespace: "n\0s".into(), app_id: "a".into() };
    assert!(matches!(store.scan_staged(0, &bad, None, 10).await, Err(StoreError::Invalid { .. })));
}

pub async fn progress_unstages_and_delete_overwrite_remove_the_staged_entry(store: Store) {
    let [a, b, c] = put_app_jobs(&store, ["a", "b", "c"]).await;
    store.apply(vec![stage(&a), stage(&b), stage(&c)]).await.unwrap();
    assert_eq!(store.count_staged().await.unwrap(), 3);
    // Progress: back to the due index at the new time.
    let progress = Progress { count: 1, last_scheduled: Some(secs(1)), attempts: 0 };
    store.apply(vec![progress_of(&a, progress, secs(2))]).await.unwrap();
    let stored = store.get(&a.key).await.unwrap().unwrap();
    assert_eq!(stored, StoredJob { progress, next_due: secs(2), ..a.clone() });
    assert!(!stored.staged);
    assert_eq!(due_entries(&store).await, vec![(secs(2), a.key.clone())]);
    // Delete and overwrite take the staged entry with them.
    assert!(store.delete(&b.key).await.unwrap().is_some_and(|old| old.staged));
    let c2 = job(c.key.clone(), secs(7));
    let old = store.put(c2.clone(), PutMode::Overwrite).await.unwrap();
    assert!(old.is_some_and(|old| old.staged));
    assert_eq!(store.count_staged().await.unwrap(), 0);
    let route = Route::of(&a.key);
    for p in 0..store.partitions() {
        assert!(store.scan_staged(p, &route, None, 100).await.unwrap().is_empty());
    }
    assert_eq!(due_entries(&store).await, vec![(secs(2), a.key.clone()), (secs(7), c.key.clone())]);
    // Complete of a staged job deletes it too, and a bulk delete takes staged jobs.
    store.apply(vec![stage(&c2)]).await.unwrap();
    store.apply(vec![Mutation::Complete { key: c.key.clone(), incarnation: c2.incarnation }]).await.unwrap();
    assert_eq!(store.get(&c.key).await.unwrap(), None);
    store.apply(vec![Mutation::Stage { key: a.key.clone(), incarnation: a.incarnation }]).await.unwrap();
    assert_eq!(store.count_staged().await.unwrap(), 1);
    let deleted = store.delete_by_scope(&OwnerScope::owner("ns", &Owner::app("app"), "")).await.unwrap();
    assert_eq!(deleted, vec![a.key.clone()]);
    assert_eq!(store.count_staged().await.unwrap(), 0);
    assert_eq!(store.count().await.unwrap(), 0);
}

pub async fn staging_a_stale_incarnation_or_an_absent_job_changes_nothing(store: Store) {
    let old = job(JobKey::app("ns", "app", "job"), secs(1));
    put_new(&store, &old).await;
    let new = job(old.key.clone(), secs(3));
    store.put(new.clone(), PutMode::Overwrite).await.unwrap();
    store
        .apply(vec![stage(&old), Mutation::Stage { key: JobKey::app("ns", "app", "absent"), incarnation: 1 }])
        .await
        .unwrap();
    assert_eq!(store.get(&new.key).await.unwrap().unwrap(), new);
    assert_eq!(store.count_staged().await.unwrap(), 0);
    assert_eq!(due_entries(&store).await, vec![(secs(3), new.key.clone())]);
}

fn trigger(n: i64, outcome: TriggerOutcome) -> TriggerRecord {
    TriggerRecord {
        tick: secs(n),
        fired_at: secs(n) + SignedDuration::from_millis(250),
        answered_at: secs(n) + SignedDuration::new(1, 7),
        attempt: u32::try_from(n.rem_euclid(4)).unwrap() + 1,
        outcome,
        manual: n % 3 == 0,
    }
}

/// Appends `n` records to `j`'s history (keeping `keep`), returning them and the stats after.
async fn append(store: &Store, j: &StoredJob, n: i64, keep: u32) -> (Vec<TriggerRecord>, JobStats) {
    let mut stats = store.get(&j.key).await.unwrap().map_or(j.stats, |s| s.stats);
    let mut written = Vec::new();
    let outcomes = [
        TriggerOutcome::Success,
        TriggerOutcome::Failed,
        TriggerOutcome::Dropped,
        TriggerOutcome::Undeliverable,
    ];
    for i in 0..n {
        let record = trigger(i, outcomes[usize::try_from(i).unwrap() % 4]);
        stats = stats.after(&record);
        store
            .apply(vec![Mutation::Record {
                key: j.key.clone(),
                incarnation: j.incarnation,
                stats,
                record,
                keep: HistoryLimit::new(u64::from(keep)).unwrap(),
            }])
            .await
            .unwrap();
        written.push(record);
    }
    (written, stats)
}

pub async fn paused_flag_and_stats_round_trip_with_the_job(store: Store) {
    let stats = JobStats {
        last_fired: Some(t("2026-03-01T10:00:00.123456789Z")),
        last_outcome: Some(TriggerOutcome::Dropped),
        fired: u64::MAX,
        successes: 3,
        failures: 0,
        records: 7,
    };
    let j = StoredJob {
        paused: true,
        stats,
        next_due: Timestamp::MAX,
        ..job(JobKey::app("ns", "app", "p"), secs(1))
    };
    put_new(&store, &j).await;
    assert_eq!(store.get(&j.key).await.unwrap(), Some(j.clone()));
    assert_eq!(
        due_entries(&store).await,
        vec![(Timestamp::MAX, j.key.clone())],
        "a paused job waits at its expiry"
    );
    // Progress keeps the flag and the stats; Record replaces only the stats.
    let progress = Progress { count: 2, last_scheduled: Some(secs(2)), attempts: 0 };
    let next = StoredJob { progress, next_due: secs(3), ..j.clone() };
    store.apply(vec![progress_of(&j, progress, secs(3))]).await.unwrap();
    assert_eq!(store.get(&j.key).await.unwrap(), Some(next.clone()));
    let record = trigger(1, TriggerOutcome::Success);
    let after = stats.after(&record);
    store
        .apply(vec![Mutation::Record {
            key: j.key.clone(),
            incarnation: j.incarnation,
            stats: after,
            record,
            keep: HistoryLimit::DEFAULT,
        }])
        .await
        .unwrap();
    assert_eq!(store.get(&j.key).await.unwrap(), Some(StoredJob { stats: after, ..next }));
    assert_eq!(store.history(&j.key, 100).await.unwrap(), vec![record]);
}

pub async fn record_appends_history_in_order_and_keeps_the_newest(store: Store) {
    let j = job(JobKey::app("ns", "app", "h"), secs(1));
    put_new(&store, &j).await;
    assert_eq!(store.history(&j.key, 50).await.unwrap(), Vec::new());
    let (written, stats) = append(&store, &j, 7, 5).await;
    assert_eq!(stats.records, 7);
    assert_eq!(store.history(&j.key, 50).await.unwrap(), written[2..].to_vec(), "the newest 5, oldest first");
    assert_eq!(store.history(&j.key, 2).await.unwrap(), written[5..].to_vec(), "a limit takes the newest");
    assert_eq!(store.get(&j.key).await.unwrap().unwrap().stats, stats);
    // A batch of several records of one job trims the same way.
    let mut stats = stats;
    let mut batch = Vec::new();
    let mut more = Vec::new();
    for i in 10..16 {
        let record = trigger(i, TriggerOutcome::Success);
        stats = stats.after(&record);
        more.push(record);
        batch.push(Mutation::Record {
            key: j.key.clone(),
            incarnation: j.incarnation,
            stats,
            record,
            keep: HistoryLimit::new(3).unwrap(),
        });
    }
    store.apply(batch).await.unwrap();
    assert_eq!(store.history(&j.key, 50).await.unwrap(), more[3..].to_vec());
    // A put of the same job (stats carried over) keeps the history.
    let paused = StoredJob { paused: true, stats, ..j.clone() };
    store.put(paused, PutMode::Overwrite).await.unwrap();
    assert_eq!(store.history(&j.key, 50).await.unwrap().len(), 3);
}

pub async fn history_is_removed_with_the_job_and_by_a_new_job_of_the_name(store: Store) {
    let [a, b, c] = put_app_jobs(&store, ["a", "b", "c"]).await;
    for j in [&a, &b, &c] {
        append(&store, j, 3, 50).await;
    }
    store.delete(&a.key).await.unwrap();
    store.apply(vec![Mutation::Complete { key: b.key.clone(), incarnation: b.incarnation }]).await.unwrap();
    store.put(job(c.key.clone(), secs(2)), PutMode::Overwrite).await.unwrap();
    for j in [&a, &b, &c] {
        assert_eq!(store.history(&j.key, 50).await.unwrap(), Vec::new(), "{}", j.key);
    }
    // A new job of a deleted name starts with an empty history.
    put_new(&store, &job(a.key.clone(), secs(1))).await;
    assert_eq!(store.history(&a.key, 50).await.unwrap(), Vec::new());
}

pub async fn history_of_neighbours_is_untouched_by_a_bulk_delete(store: Store) {
    let keys = neighbours();
    let mut jobs = Vec::new();
    for key in &keys {
        let j = job(key.clone(), secs(1));
        put_new(&store, &j).await;
        append(&store, &j, 2, 50).await;
        jobs.push(j);
    }
    store.delete_by_scope(&OwnerScope::owner("ns", &Owner::app("app1"), "")).await.unwrap();
    store
        .delete_by_scope(&OwnerScope::ActorIdPrefix {
            namespace: "ns".into(),
            actor_type: "T".into(),
            id_prefix: "1".into(),
        })
        .await
        .unwrap();
    for key in &keys {
        let actor_t1 = matches!(&key.owner, Owner::Actor { actor_type, actor_id } if actor_type == "T" && actor_id.starts_with('1'));
        let gone = key.namespace == "ns" && (key.owner == Owner::app("app1") || actor_t1);
        let len = store.history(key, 50).await.unwrap().len();
        assert_eq!(len, if gone { 0 } else { 2 }, "{key}");
    }
}

pub async fn record_of_a_stale_incarnation_changes_nothing(store: Store) {
    let old = job(JobKey::app("ns", "app", "job"), secs(1));
    put_new(&store, &old).await;
    let new = job(old.key.clone(), secs(7));
    store.put(new.clone(), PutMode::Overwrite).await.unwrap();
    let record = trigger(1, TriggerOutcome::Success);
    let stale = Mutation::Record {
        key: old.key.clone(),
        incarnation: old.incarnation,
        stats: JobStats::default().after(&record),
        record,
        keep: HistoryLimit::DEFAULT,
    };
    let absent = Mutation::Record {
        key: JobKey::app("ns", "app", "absent"),
        incarnation: 1,
        stats: JobStats::default().after(&record),
        record,
        keep: HistoryLimit::DEFAULT,
    };
    store.apply(vec![stale, absent]).await.unwrap();
    assert_eq!(store.get(&old.key).await.unwrap(), Some(new));
    assert_eq!(store.history(&old.key, 50).await.unwrap(), Vec::new());
    assert_eq!(store.get(&JobKey::app("ns", "app", "absent")).await.unwrap(), None);
}

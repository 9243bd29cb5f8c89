//! One page of jobs for the jobs page, read from the store's indexes, never the whole store.
//!
//! * By next fire ([`Sort::Next`]): a merge of the partitions' due indexes. Each partition is
//!   read a few jobs at a time (its share of the page, at least [`FIRST_CHUNK`], then
//!   [`REFILL_CHUNK`] for the partitions the page keeps drawing from), so a page costs one read
//!   per partition and about `partitions × FIRST_CHUNK` decoded jobs
//!   whatever the store holds. Staged jobs sit in the staged index, not the due index: they are
//!   listed by name only.
//! * By name ([`Sort::Name`]): one owner's jobs from the name index (seeking to the prefix) when
//!   namespace and app are given, else every job in key order.
//!
//! Filters are applied while reading; a page reads at most [`Budget::jobs`] jobs, for at most
//! [`Budget::time`], and then stops with a cursor to continue from, so a filter that matches
//! little never turns one request into a scan of the store.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use futures::StreamExt;
use jiff::SignedDuration;
use jiff::Timestamp;
use kairos_core::{Clock, JobKey, JobState, JobStatus, Owner};
use kairos_engine::status_of;
use kairos_store::keys::{decode_key, encode_key};
use kairos_store::{DueCursor, JobStore, OwnerScope, StoreError, StoredJob};

use crate::html::{hex, unhex};

/// Jobs read from each partition's due index to start a page.
pub const FIRST_CHUNK: usize = 2;
/// Jobs read from a partition whose first ones the page used up.
pub const REFILL_CHUNK: usize = 32;
/// Partitions read at once.
const PARALLEL_READS: usize = 16;
/// Jobs read per store call when listing by name.
const NAME_CHUNK: usize = 256;

/// How much one page may read before it stops with a cursor.
#[derive(Debug, Clone, Copy)]
pub struct Budget<'a> {
    /// Most jobs read.
    pub jobs: usize,
    /// Longest time spent reading (checked every `CHECK_EVERY` jobs).
    pub time: SignedDuration,
    pub clock: &'a dyn Clock,
}

/// Jobs read between two looks at the clock.
const CHECK_EVERY: usize = 128;

struct Spending<'a> {
    budget: Budget<'a>,
    until: Timestamp,
}

impl Spending<'_> {
    fn new(budget: Budget<'_>) -> Spending<'_> {
        let now = budget.clock.now();
        Spending { budget, until: now.checked_add(budget.time).unwrap_or(now) }
    }

    /// Whether a page that has read `scanned` jobs must stop.
    fn spent(&self, scanned: usize) -> bool {
        scanned >= self.budget.jobs
            || (scanned.is_multiple_of(CHECK_EVERY) && self.budget.clock.now() >= self.until)
    }
}

/// Which jobs a page shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this namespace (any when `None`).
    pub namespace: Option<String>,
    /// Only jobs of this app id, or reminders of this actor type (any when `None`).
    pub app: Option<String>,
    /// Only names starting with this.
    pub prefix: String,
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only jobs due before this instant (late ones: due and not fired yet). By next fire, the
    /// page ends at the first job due later.
    pub due_before: Option<Timestamp>,
}

impl Filter {
    fn matches_key(&self, key: &JobKey) -> bool {
        let app_ok = match (&self.app, &key.owner) {
            (None, _) => true,
            (Some(app), Owner::App { app_id }) => app == app_id,
            (Some(app), Owner::Actor { actor_type, .. }) => app == actor_type,
        };
        app_ok
            && self.namespace.as_ref().is_none_or(|ns| *ns == key.namespace)
            && key.name.starts_with(self.prefix.as_str())
    }

    fn matches(&self, job: &StoredJob, status: &JobStatus) -> bool {
        self.matches_key(&job.key)
            && self.state.is_none_or(|s| s == status.state)
            && self.due_before.is_none_or(|before| job.next_due < before)
    }
}

/// How a page is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// By next fire time, soonest first (paused jobs last).
    #[default]
    Next,
    /// By namespace, owner and name.
    Name,
}

/// A listed job with its status.
#[derive(Debug, Clone)]
pub struct Listed {
    pub job: StoredJob,
    pub status: JobStatus,
}

/// One page.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub rows: Vec<Listed>,
    /// Where the next page starts, when there may be one.
    pub next: Option<String>,
    /// Jobs read to build the page.
    pub scanned: usize,
    /// Whether the page stopped at its read budget before it was full.
    pub budget_hit: bool,
}

/// Why a page could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("invalid page cursor {0:?}")]
    Cursor(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One page of at most `limit` jobs matching `filter`, in `sort` order, after `cursor` (from a
/// previous [`Page::next`]), reading within `budget`.
///
/// # Errors
/// [`ListError::Cursor`] for a cursor this module did not write; when the store fails.
pub async fn page(
    store: &Arc<dyn JobStore>,
    filter: &Filter,
    sort: Sort,
    cursor: Option<&str>,
    limit: usize,
    budget: Budget<'_>,
) -> Result<Page, ListError> {
    let limit = limit.max(1);
    let reading = Reading {
        store,
        filter,
        limit,
        budget: Spending::new(Budget { jobs: budget.jobs.max(limit), ..budget }),
    };
    match sort {
        Sort::Next => {
            let after =
                cursor.map(|c| due_cursor(c).ok_or_else(|| ListError::Cursor(c.to_owned()))).transpose()?;
            reading.by_next_fire(after).await
        }
        Sort::Name => {
            let after =
                cursor.map(|c| name_cursor(c).ok_or_else(|| ListError::Cursor(c.to_owned()))).transpose()?;
            reading.by_name(after).await
        }
    }
}

/// What one page reads from, keeps and stops at.
struct Reading<'a> {
    store: &'a Arc<dyn JobStore>,
    filter: &'a Filter,
    limit: usize,
    budget: Spending<'a>,
}

fn due_cursor(s: &str) -> Option<DueCursor> {
    let (nanos, key) = s.split_once('.')?;
    let due = Timestamp::from_nanosecond(nanos.parse().ok()?).ok()?;
    Some(DueCursor { due, key: decode_key(&unhex(key)?).ok()? })
}

fn write_due_cursor(due: Timestamp, encoded: &[u8]) -> String {
    format!("{}.{}", due.as_nanosecond(), hex(encoded))
}

fn name_cursor(s: &str) -> Option<JobKey> {
    decode_key(&unhex(s)?).ok()
}

/// One partition's stretch of its due index.
struct Lane {
    jobs: VecDeque<(Vec<u8>, StoredJob)>,
    /// Where the next read of this partition starts.
    after: Option<DueCursor>,
    /// Whether the partition has nothing past `after`.
    done: bool,
}

async fn read_lane(
    store: &Arc<dyn JobStore>,
    partition: u32,
    after: Option<DueCursor>,
    chunk: usize,
) -> Result<Lane, StoreError> {
    let jobs = store.scan_due(partition, after.as_ref(), chunk).await?;
    let done = jobs.len() < chunk;
    let after = jobs.last().map(|j| DueCursor { due: j.next_due, key: j.key.clone() }).or(after);
    let jobs = jobs.into_iter().map(|j| Ok((encode_key(&j.key)?, j))).collect::<Result<_, StoreError>>()?;
    Ok(Lane { jobs, after, done })
}

impl Reading<'_> {
    /// Counts `job` as read and keeps it when it matches; whether the page stops after it (full,
    /// or its budget spent).
    fn take(&self, page: &mut Page, job: StoredJob) -> bool {
        page.scanned += 1;
        let status = status_of(&job);
        if self.filter.matches(&job, &status) {
            page.rows.push(Listed { job, status });
        }
        let stop = page.rows.len() == self.limit || self.budget.spent(page.scanned);
        if stop {
            page.budget_hit = page.rows.len() < self.limit;
        }
        stop
    }

    /// [`Reading::take`] in key order: a page that stops continues after `job`'s key.
    fn take_by_key(&self, page: &mut Page, job: StoredJob) -> Result<bool, StoreError> {
        let key = job.key.clone();
        let stop = self.take(page, job);
        if stop {
            page.next = Some(hex(&encode_key(&key)?));
        }
        Ok(stop)
    }

    async fn by_next_fire(&self, after: Option<DueCursor>) -> Result<Page, ListError> {
        let (store, filter, limit) = (self.store, self.filter, self.limit);
        let partitions = store.partitions();
        // Twice a partition's fair share of the page: few partitions need a second read.
        let share = limit.saturating_mul(2) / usize::try_from(partitions.max(1)).unwrap_or(1);
        let first = share.saturating_add(1).max(FIRST_CHUNK);
        let reads = futures::stream::iter(0..partitions)
            .map(|p| {
                let after = after.clone();
                async move { (p, read_lane(store, p, after, first).await) }
            })
            .buffer_unordered(PARALLEL_READS)
            .collect::<Vec<_>>()
            .await;
        let mut lanes = Vec::with_capacity(reads.len());
        lanes.resize_with(usize::try_from(partitions).unwrap_or(0), || None);
        // Heads of the lanes, soonest first; the partition breaks no tie (keys are unique).
        let mut heads = BinaryHeap::new();
        for (p, lane) in reads {
            let lane = lane?;
            if let Some((enc, job)) = lane.jobs.front() {
                heads.push(Reverse((job.next_due, enc.clone(), p)));
            }
            lanes[p as usize] = Some(lane);
        }
        let mut page = Page::default();
        while let Some(Reverse((due, enc, p))) = heads.pop() {
            let Some(lane) = lanes[p as usize].as_mut() else { continue };
            let Some((_, job)) = lane.jobs.pop_front() else { continue };
            if filter.due_before.is_some_and(|before| job.next_due >= before) {
                // Due order: nothing after this one is due before either.
                break;
            }
            if lane.jobs.is_empty() && !lane.done {
                *lane = read_lane(store, p, lane.after.take(), REFILL_CHUNK).await?;
            }
            if let Some((next_enc, next)) = lane.jobs.front() {
                heads.push(Reverse((next.next_due, next_enc.clone(), p)));
            }
            if self.take(&mut page, job) {
                page.next = (!heads.is_empty()).then(|| write_due_cursor(due, &enc));
                break;
            }
        }
        Ok(page)
    }

    async fn by_name(&self, after: Option<JobKey>) -> Result<Page, ListError> {
        let (store, filter) = (self.store, self.filter);
        let mut page = Page::default();
        // One namespace and app: that app's jobs with the prefix, then the reminders of actors
        // of that type (after them in key order). Else every key.
        let scopes = match (&filter.namespace, &filter.app) {
            (Some(ns), Some(app)) => vec![
                Some(OwnerScope::owner(ns, &Owner::app(app.as_str()), &filter.prefix)),
                Some(OwnerScope::ActorIdPrefix {
                    namespace: ns.clone(),
                    actor_type: app.clone(),
                    id_prefix: String::new(),
                }),
            ],
            _ => vec![None],
        };
        let mut after = after;
        for scope in &scopes {
            loop {
                let chunk = match scope {
                    Some(scope) => store.list(scope, after.as_ref(), NAME_CHUNK).await?,
                    None => store.scan_all(after.as_ref(), NAME_CHUNK).await?,
                };
                let done = chunk.len() < NAME_CHUNK;
                let last = chunk.last().map(|j| j.key.clone());
                for job in chunk {
                    if self.take_by_key(&mut page, job)? {
                        return Ok(page);
                    }
                }
                after = last.or(after);
                if done {
                    break;
                }
            }
        }
        Ok(page)
    }
}

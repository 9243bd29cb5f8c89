//! Where fired triggers go: connected subscribers (sidecar streams), chosen by the job's owner.
//!
//! A subscriber registers the routes it serves (one app in one namespace, and/or actor types).
//! A trigger for a route with no subscriber is *staged*: it waits in memory, costs no retry, and
//! goes out as soon as a subscriber for that route registers. Several subscribers of one route
//! share its triggers round-robin. Every trigger sent is *in flight* until its result comes back
//! by id; when a subscriber goes away, its in-flight triggers are routed again (to a sibling, or
//! staged), so they are redelivered.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use jiff::Timestamp;
use kairos_core::{JobKey, Owner, Payload};
use tokio::sync::mpsc;

/// The owner-level address of a trigger.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Route {
    /// Jobs of one app.
    App { namespace: String, app_id: String },
    /// Reminders of one actor type.
    Actor { namespace: String, actor_type: String },
}

impl Route {
    /// The route of a job.
    pub fn of(key: &JobKey) -> Route {
        match &key.owner {
            Owner::App { app_id } => Route::App { namespace: key.namespace.clone(), app_id: app_id.clone() },
            Owner::Actor { actor_type, .. } => {
                Route::Actor { namespace: key.namespace.clone(), actor_type: actor_type.clone() }
            }
        }
    }
}

/// One fired tick (or retry) of a job, on its way to the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// Unique for the life of the engine; the result names it.
    pub id: u64,
    pub key: JobKey,
    /// The job's payload, as stored.
    pub data: Option<Payload>,
    /// The scheduled time of this attempt.
    pub due: Timestamp,
    pub(crate) incarnation: u64,
    pub(crate) partition: u32,
}

/// What the app said about a trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered and accepted (Dapr: OK/2xx, or NotFound/404).
    Success,
    /// Delivered and refused, or not deliverable to the app: the failure policy applies.
    Failed,
}

/// What a subscriber serves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registration {
    pub namespace: String,
    /// The app whose jobs this subscriber receives; `None` for none.
    pub app_id: Option<String>,
    /// Actor types whose reminders this subscriber receives.
    pub actor_types: Vec<String>,
}

impl Registration {
    fn routes(&self) -> Vec<Route> {
        let mut routes = Vec::new();
        if let Some(app_id) = &self.app_id {
            routes.push(Route::App { namespace: self.namespace.clone(), app_id: app_id.clone() });
        }
        for actor_type in &self.actor_types {
            routes.push(Route::Actor { namespace: self.namespace.clone(), actor_type: actor_type.clone() });
        }
        routes
    }
}

/// A result travelling back to the partition that fired the trigger.
#[derive(Debug)]
pub(crate) struct Completion {
    pub trigger: Trigger,
    pub outcome: Outcome,
}

/// Shared routing state. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Router {
    inner: Arc<Mutex<RouterState>>,
}

#[derive(Debug, Default)]
struct RouterState {
    next_trigger_id: u64,
    next_subscriber_id: u64,
    subscribers: HashMap<u64, Subscriber>,
    /// Per route: subscriber ids, rotated for round-robin.
    routes: HashMap<Route, VecDeque<u64>>,
    staged: HashMap<Route, VecDeque<Trigger>>,
    in_flight: HashMap<u64, (u64, Trigger)>,
    /// Per partition, where completions go.
    partitions: HashMap<u32, mpsc::UnboundedSender<Completion>>,
}

#[derive(Debug)]
struct Subscriber {
    routes: Vec<Route>,
    // Unbounded on purpose: a job has at most one trigger outstanding, so what waits here is
    // bounded by the number of jobs routed to this subscriber.
    tx: mpsc::UnboundedSender<Trigger>,
}

/// Counts for metrics and readiness.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouterStats {
    pub subscribers: usize,
    pub staged: usize,
    pub in_flight: usize,
}

impl Router {
    pub(crate) fn new() -> Self {
        Router { inner: Arc::new(Mutex::new(RouterState::default())) }
    }

    fn lock(&self) -> MutexGuard<'_, RouterState> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Where completions of `partition`'s triggers are sent.
    pub(crate) fn attach_partition(&self, partition: u32, tx: mpsc::UnboundedSender<Completion>) {
        self.lock().partitions.insert(partition, tx);
    }

    /// Stops routing completions to `partition`; its staged and in-flight triggers are
    /// forgotten (whoever loads the partition next fires them again from the store).
    pub(crate) fn detach_partition(&self, partition: u32) {
        let mut state = self.lock();
        state.partitions.remove(&partition);
        state.in_flight.retain(|_, (_, t)| t.partition != partition);
        for queue in state.staged.values_mut() {
            queue.retain(|t| t.partition != partition);
        }
    }

    /// How many triggers of `partition` a subscriber holds unanswered (staged ones excluded).
    pub(crate) fn delivered_of(&self, partition: u32) -> usize {
        self.lock().in_flight.values().filter(|(_, t)| t.partition == partition).count()
    }

    pub(crate) fn next_trigger_id(&self) -> u64 {
        let mut state = self.lock();
        state.next_trigger_id += 1;
        state.next_trigger_id
    }

    /// Sends `trigger` to a subscriber of its route, or stages it.
    pub(crate) fn dispatch(&self, trigger: Trigger) {
        self.lock().dispatch(trigger);
    }

    /// Registers a subscriber and sends it every trigger staged for its routes.
    pub(crate) fn subscribe(&self, registration: &Registration) -> (u64, mpsc::UnboundedReceiver<Trigger>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut state = self.lock();
        state.next_subscriber_id += 1;
        let id = state.next_subscriber_id;
        let routes = registration.routes();
        for route in &routes {
            state.routes.entry(route.clone()).or_default().push_back(id);
        }
        state.subscribers.insert(id, Subscriber { routes: routes.clone(), tx });
        for route in routes {
            if let Some(staged) = state.staged.remove(&route) {
                for trigger in staged {
                    state.dispatch(trigger);
                }
            }
        }
        (id, rx)
    }

    /// Removes a subscriber; its in-flight triggers are routed again.
    pub(crate) fn unsubscribe(&self, subscriber: u64) {
        let mut state = self.lock();
        let Some(sub) = state.subscribers.remove(&subscriber) else { return };
        for route in &sub.routes {
            if let Some(ids) = state.routes.get_mut(route) {
                ids.retain(|id| *id != subscriber);
                if ids.is_empty() {
                    state.routes.remove(route);
                }
            }
        }
        let orphans: Vec<u64> =
            state.in_flight.iter().filter(|(_, (sub, _))| *sub == subscriber).map(|(id, _)| *id).collect();
        for id in orphans {
            if let Some((_, trigger)) = state.in_flight.remove(&id) {
                state.dispatch(trigger);
            }
        }
    }

    /// Hands a result to the partition that fired the trigger. Unknown ids (already completed,
    /// or sent by a subscriber that no longer holds them) are ignored and reported as `false`.
    pub(crate) fn complete(&self, subscriber: Option<u64>, trigger_id: u64, outcome: Outcome) -> bool {
        let mut state = self.lock();
        match state.in_flight.get(&trigger_id) {
            Some((holder, _)) if subscriber.is_none_or(|s| s == *holder) => {}
            _ => return false,
        }
        let Some((_, trigger)) = state.in_flight.remove(&trigger_id) else { return false };
        match state.partitions.get(&trigger.partition) {
            Some(tx) => tx.send(Completion { trigger, outcome }).is_ok(),
            None => false,
        }
    }

    /// Forgets a staged trigger of `key` (the job was deleted or replaced). A trigger already
    /// in flight cannot be recalled; its result is ignored by the partition.
    pub(crate) fn cancel_staged(&self, key: &JobKey) {
        let mut state = self.lock();
        let route = Route::of(key);
        if let Some(queue) = state.staged.get_mut(&route) {
            queue.retain(|t| t.key != *key);
            if queue.is_empty() {
                state.staged.remove(&route);
            }
        }
    }

    pub(crate) fn stats(&self) -> RouterStats {
        let state = self.lock();
        RouterStats {
            subscribers: state.subscribers.len(),
            staged: state.staged.values().map(VecDeque::len).sum(),
            in_flight: state.in_flight.len(),
        }
    }
}

impl RouterState {
    fn dispatch(&mut self, trigger: Trigger) {
        let route = Route::of(&trigger.key);
        if let Some(ids) = self.routes.get_mut(&route) {
            // Try each subscriber once, starting with the next in rotation.
            for _ in 0..ids.len() {
                let Some(id) = ids.pop_front() else { break };
                ids.push_back(id);
                let Some(sub) = self.subscribers.get(&id) else { continue };
                if sub.tx.send(trigger.clone()).is_ok() {
                    self.in_flight.insert(trigger.id, (id, trigger));
                    return;
                }
            }
        }
        metrics::counter!("kairos_triggers_total", "result" => "staged").increment(1);
        self.staged.entry(route).or_default().push_back(trigger);
    }
}

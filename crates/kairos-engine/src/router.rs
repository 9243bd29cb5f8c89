//! Where fired triggers go: connected subscribers (sidecar streams), chosen by the job's route.
//!
//! A subscriber registers the routes it serves (one app in one namespace, and/or actor types).
//! Several subscribers of one route share its triggers round-robin.
//!
//! # Flow control
//! Each subscriber holds at most `credit` triggers without an answer. A trigger whose route has
//! subscribers but none with credit waits in the route's queue (in memory: the partitions'
//! windows bound how many triggers exist at all) and goes out as soon as an answer gives a
//! credit back. Answers are taken under one short lock that nothing on the trigger side holds
//! across an `.await`, so a burst of triggers can never hold up the results.
//!
//! A trigger whose route has no subscriber at all is *unroutable*: `Router::dispatch` hands it
//! back to the partition, which stages the job in the store. When a subscriber goes away, its
//! unanswered triggers are routed again (to a sibling, or queued); when the last subscriber of a
//! route goes away, every queued and unanswered trigger of that route goes back to its partition
//! as unroutable. When a route gains its first subscriber, every partition hears of it and pages
//! its staged jobs back in.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use jiff::Timestamp;
use kairos_core::{JobKey, Payload, Route};
use tokio::sync::mpsc;

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
            let route = Route::Actor { namespace: self.namespace.clone(), actor_type: actor_type.clone() };
            if !routes.contains(&route) {
                routes.push(route);
            }
        }
        routes
    }
}

/// What the router tells a partition.
#[derive(Debug)]
pub(crate) enum PartitionEvent {
    /// The answer to a trigger the partition fired.
    Completed { trigger: Trigger, outcome: Outcome },
    /// A trigger the partition fired that no subscriber can take any more (its route lost its
    /// last subscriber before answering): the job is to be staged.
    Unroutable(Trigger),
    /// `route` gained its first subscriber: its staged jobs can go out.
    RouteOpened(Route),
}

/// Shared routing state. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Router {
    inner: Arc<Mutex<RouterState>>,
}

#[derive(Debug)]
struct RouterState {
    /// Most triggers one subscriber holds without an answer.
    credit: usize,
    next_trigger_id: u64,
    next_subscriber_id: u64,
    subscribers: HashMap<u64, Subscriber>,
    routes: HashMap<Route, RouteState>,
    /// Triggers a subscriber holds, by trigger id, with the subscriber's id.
    sent: HashMap<u64, (u64, Trigger)>,
    /// Per partition, where its events go.
    partitions: HashMap<u32, mpsc::UnboundedSender<PartitionEvent>>,
}

#[derive(Debug, Default)]
struct RouteState {
    /// Subscriber ids, rotated for round-robin.
    subscribers: VecDeque<u64>,
    /// Triggers waiting for a subscriber's credit, by trigger id (ids grow, so this is FIFO).
    queued: BTreeMap<u64, Trigger>,
}

#[derive(Debug)]
struct Subscriber {
    routes: Vec<Route>,
    /// Unbounded, but never holds more than `credit` triggers: each one sent counts against the
    /// subscriber's credit until its answer comes back.
    tx: mpsc::UnboundedSender<Trigger>,
    /// Triggers sent and not answered.
    outstanding: usize,
    /// Which route's queue to serve next when a credit comes back.
    next_route: usize,
}

/// Counts for metrics and readiness.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// Subscribers connected.
    pub subscribers: usize,
    /// Triggers a subscriber holds without an answer.
    pub sent: usize,
    /// Triggers waiting for a subscriber's credit.
    pub queued: usize,
}

impl RouterStats {
    /// Triggers fired and not answered: sent plus queued.
    pub fn in_flight(&self) -> usize {
        self.sent + self.queued
    }
}

impl Router {
    pub(crate) fn new(credit: usize) -> Self {
        Router {
            inner: Arc::new(Mutex::new(RouterState {
                credit: credit.max(1),
                next_trigger_id: 0,
                next_subscriber_id: 0,
                subscribers: HashMap::new(),
                routes: HashMap::new(),
                sent: HashMap::new(),
                partitions: HashMap::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, RouterState> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Where events of `partition` are sent.
    pub(crate) fn attach_partition(&self, partition: u32, tx: mpsc::UnboundedSender<PartitionEvent>) {
        self.lock().partitions.insert(partition, tx);
    }

    /// Stops sending events to `partition` and forgets its queued triggers (whoever loads the
    /// partition next fires them again from the store). Its triggers a subscriber holds stay
    /// counted against that subscriber's credit until answered; the answers are then dropped.
    pub(crate) fn detach_partition(&self, partition: u32) {
        let mut state = self.lock();
        state.partitions.remove(&partition);
        for route in state.routes.values_mut() {
            route.queued.retain(|_, t| t.partition != partition);
        }
    }

    /// How many triggers of `partition` a subscriber holds unanswered (queued ones excluded).
    pub(crate) fn sent_of(&self, partition: u32) -> usize {
        self.lock().sent.values().filter(|(_, t)| t.partition == partition).count()
    }

    pub(crate) fn next_trigger_id(&self) -> u64 {
        let mut state = self.lock();
        state.next_trigger_id += 1;
        state.next_trigger_id
    }

    /// Whether `route` has a subscriber.
    pub(crate) fn is_open(&self, route: &Route) -> bool {
        self.lock().routes.contains_key(route)
    }

    /// Every route with a subscriber.
    pub(crate) fn open_routes(&self) -> Vec<Route> {
        self.lock().routes.keys().cloned().collect()
    }

    /// Sends `trigger` to a subscriber of its route with credit, or queues it for the next
    /// credit. Returns it when its route has no subscriber (the caller stages the job).
    pub(crate) fn dispatch(&self, trigger: Trigger) -> Result<(), Box<Trigger>> {
        self.lock().dispatch(trigger)
    }

    /// Takes `trigger` back if it is still queued (its job was deleted, replaced or handed
    /// over); a trigger already sent cannot be recalled.
    pub(crate) fn recall(&self, key: &JobKey, trigger_id: u64) -> bool {
        let mut state = self.lock();
        let route = Route::of(key);
        state.routes.get_mut(&route).is_some_and(|r| r.queued.remove(&trigger_id).is_some())
    }

    /// Registers a subscriber: it receives queued triggers of its routes at once (up to its
    /// credit), and every partition hears of each route that had no subscriber before.
    pub(crate) fn subscribe(&self, registration: &Registration) -> (u64, mpsc::UnboundedReceiver<Trigger>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut state = self.lock();
        state.next_subscriber_id += 1;
        let id = state.next_subscriber_id;
        let routes = registration.routes();
        let mut opened = Vec::new();
        for route in &routes {
            let entry = state.routes.entry(route.clone()).or_insert_with(|| {
                opened.push(route.clone());
                RouteState::default()
            });
            entry.subscribers.push_back(id);
        }
        state.subscribers.insert(id, Subscriber { routes, tx, outstanding: 0, next_route: 0 });
        state.feed(id);
        for route in opened {
            for tx in state.partitions.values() {
                let _ = tx.send(PartitionEvent::RouteOpened(route.clone()));
            }
        }
        (id, rx)
    }

    /// Removes a subscriber; its unanswered triggers are routed again.
    pub(crate) fn unsubscribe(&self, subscriber: u64) {
        let mut state = self.lock();
        let Some(sub) = state.subscribers.remove(&subscriber) else { return };
        let mut closed = Vec::new();
        for route in &sub.routes {
            if let Some(r) = state.routes.get_mut(route) {
                r.subscribers.retain(|id| *id != subscriber);
                if r.subscribers.is_empty()
                    && let Some(r) = state.routes.remove(route)
                {
                    closed.push(r);
                }
            }
        }
        // Queued triggers of routes that lost their last subscriber go back to be staged.
        for route in closed {
            for trigger in route.queued.into_values() {
                state.unroutable(trigger);
            }
        }
        let orphans: Vec<u64> =
            state.sent.iter().filter(|(_, (holder, _))| *holder == subscriber).map(|(id, _)| *id).collect();
        for id in orphans {
            if let Some((_, trigger)) = state.sent.remove(&id) {
                if !state.partitions.contains_key(&trigger.partition) {
                    continue;
                }
                if let Err(trigger) = state.dispatch(trigger) {
                    state.unroutable(*trigger);
                }
            }
        }
    }

    /// Hands a result to the partition that fired the trigger and gives the subscriber its
    /// credit back. Unknown ids (already answered, or held by another subscriber) are ignored
    /// and reported as `false`.
    pub(crate) fn complete(&self, subscriber: Option<u64>, trigger_id: u64, outcome: Outcome) -> bool {
        let mut state = self.lock();
        let holder = match state.sent.get(&trigger_id) {
            Some((holder, _)) if subscriber.is_none_or(|s| s == *holder) => *holder,
            _ => return false,
        };
        let Some((_, trigger)) = state.sent.remove(&trigger_id) else { return false };
        if let Some(sub) = state.subscribers.get_mut(&holder) {
            sub.outstanding = sub.outstanding.saturating_sub(1);
        }
        state.feed(holder);
        match state.partitions.get(&trigger.partition) {
            Some(tx) => tx.send(PartitionEvent::Completed { trigger, outcome }).is_ok(),
            None => false,
        }
    }

    pub(crate) fn stats(&self) -> RouterStats {
        let state = self.lock();
        RouterStats {
            subscribers: state.subscribers.len(),
            sent: state.sent.len(),
            queued: state.routes.values().map(|r| r.queued.len()).sum(),
        }
    }
}

impl RouterState {
    fn dispatch(&mut self, trigger: Trigger) -> Result<(), Box<Trigger>> {
        let route = Route::of(&trigger.key);
        let Some(r) = self.routes.get_mut(&route) else { return Err(Box::new(trigger)) };
        // Try each subscriber once, starting with the next in rotation.
        for _ in 0..r.subscribers.len() {
            let Some(id) = r.subscribers.pop_front() else { break };
            r.subscribers.push_back(id);
            let Some(sub) = self.subscribers.get_mut(&id) else { continue };
            if sub.outstanding >= self.credit {
                continue;
            }
            if sub.tx.send(trigger.clone()).is_ok() {
                sub.outstanding += 1;
                self.sent.insert(trigger.id, (id, trigger));
                return Ok(());
            }
        }
        r.queued.insert(trigger.id, trigger);
        Ok(())
    }

    /// Sends queued triggers of `subscriber`'s routes to it while it has credit, taking its
    /// routes in turn.
    fn feed(&mut self, subscriber: u64) {
        let Some(sub) = self.subscribers.get_mut(&subscriber) else { return };
        let n = sub.routes.len();
        let mut idle = 0;
        while sub.outstanding < self.credit && idle < n {
            let route = &sub.routes[sub.next_route % n];
            sub.next_route = sub.next_route.wrapping_add(1);
            let Some((_, trigger)) = self.routes.get_mut(route).and_then(|r| r.queued.pop_first()) else {
                idle += 1;
                continue;
            };
            idle = 0;
            if sub.tx.send(trigger.clone()).is_err() {
                // The subscriber is going away; put it back for its siblings.
                if let Some(r) = self.routes.get_mut(route) {
                    r.queued.insert(trigger.id, trigger);
                }
                return;
            }
            sub.outstanding += 1;
            self.sent.insert(trigger.id, (subscriber, trigger));
        }
    }

    fn unroutable(&self, trigger: Trigger) {
        if let Some(tx) = self.partitions.get(&trigger.partition) {
            let _ = tx.send(PartitionEvent::Unroutable(trigger));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_reg(app: &str) -> Registration {
        Registration { namespace: "ns".into(), app_id: Some(app.into()), actor_types: vec![] }
    }

    fn trigger(router: &Router, app: &str, name: &str, partition: u32) -> Trigger {
        Trigger {
            id: router.next_trigger_id(),
            key: JobKey::app("ns", app, name),
            data: None,
            due: Timestamp::UNIX_EPOCH,
            incarnation: 1,
            partition,
        }
    }

    fn drain<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> Vec<T> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    /// Attaches `partition` to `router`; its events arrive on the returned receiver.
    fn attach(router: &Router, partition: u32) -> mpsc::UnboundedReceiver<PartitionEvent> {
        let (events_tx, events) = mpsc::unbounded_channel();
        router.attach_partition(partition, events_tx);
        events
    }

    /// A router with partition 0 attached and one subscriber of app "app".
    struct OneSubscriber {
        router: Router,
        /// Partition 0's events.
        events: mpsc::UnboundedReceiver<PartitionEvent>,
        sub: u64,
        /// What the subscriber receives.
        rx: mpsc::UnboundedReceiver<Trigger>,
    }

    fn one_subscriber(credit: usize) -> OneSubscriber {
        let router = Router::new(credit);
        let events = attach(&router, 0);
        let (sub, rx) = router.subscribe(&route_reg("app"));
        OneSubscriber { router, events, sub, rx }
    }

    #[test]
    fn a_subscriber_holds_at_most_its_credit_and_each_answer_releases_one_more() {
        let OneSubscriber { router, mut events, sub, mut rx } = one_subscriber(3);
        assert!(matches!(drain(&mut events).as_slice(), [PartitionEvent::RouteOpened(_)]));
        let triggers: Vec<Trigger> = (0..10).map(|i| trigger(&router, "app", &format!("j{i}"), 0)).collect();
        for t in &triggers {
            router.dispatch(t.clone()).unwrap();
        }
        let first = drain(&mut rx);
        assert_eq!(first, triggers[..3].to_vec(), "the first three, in order");
        assert_eq!(router.stats(), RouterStats { subscribers: 1, sent: 3, queued: 7 });
        assert!(router.complete(Some(sub), first[1].id, Outcome::Success));
        assert_eq!(drain(&mut rx), vec![triggers[3].clone()], "one answer, one more trigger");
        assert!(!router.complete(Some(sub), first[1].id, Outcome::Success), "answered twice");
        assert!(!router.complete(Some(sub + 1), first[0].id, Outcome::Success), "not its holder");
        let completed: Vec<u64> = drain(&mut events)
            .into_iter()
            .map(|e| match e {
                PartitionEvent::Completed { trigger, .. } => trigger.id,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(completed, vec![first[1].id]);
        // Answer everything as it comes: all ten go out, never more than three at once.
        let mut delivered = 4;
        loop {
            let stats = router.stats();
            assert!(stats.sent <= 3, "{stats:?}");
            let ids: Vec<u64> = router.lock().sent.keys().copied().collect();
            if ids.is_empty() {
                break;
            }
            for id in ids {
                assert!(router.complete(None, id, Outcome::Success));
            }
            delivered += drain(&mut rx).len();
        }
        assert_eq!(delivered, 10);
        assert_eq!(router.stats(), RouterStats { subscribers: 1, sent: 0, queued: 0 });
    }

    #[test]
    fn a_route_without_subscribers_hands_the_trigger_back() {
        let router = Router::new(4);
        let t = trigger(&router, "app", "j", 0);
        assert_eq!(router.dispatch(t.clone()), Err(Box::new(t)));
        let (_sub, _rx) = router.subscribe(&route_reg("other"));
        let t = trigger(&router, "app", "j", 0);
        assert_eq!(router.dispatch(t.clone()), Err(Box::new(t)), "another app's subscriber does not take it");
    }

    #[test]
    fn the_first_subscriber_of_a_route_opens_it_for_every_partition() {
        let router = Router::new(4);
        let mut ev0 = attach(&router, 0);
        let mut ev1 = attach(&router, 1);
        let (_a, _rx) = router.subscribe(&route_reg("app"));
        let (_b, _rx2) = router.subscribe(&route_reg("app"));
        for events in [&mut ev0, &mut ev1] {
            let got = drain(events);
            assert_eq!(got.len(), 1, "{got:?}");
            assert!(
                matches!(&got[0], PartitionEvent::RouteOpened(Route::App { app_id, .. }) if app_id == "app")
            );
        }
        assert!(router.is_open(&Route::App { namespace: "ns".into(), app_id: "app".into() }));
    }

    #[test]
    fn a_leaving_subscriber_s_triggers_go_to_its_sibling_or_back_to_their_partition() {
        let router = Router::new(2);
        let mut events = attach(&router, 7);
        let (a, mut rx_a) = router.subscribe(&route_reg("app"));
        let (b, mut rx_b) = router.subscribe(&route_reg("app"));
        drain(&mut events);
        let triggers: Vec<Trigger> = (0..6).map(|i| trigger(&router, "app", &format!("j{i}"), 7)).collect();
        for t in &triggers {
            router.dispatch(t.clone()).unwrap();
        }
        assert_eq!(drain(&mut rx_a).len() + drain(&mut rx_b).len(), 4);
        assert_eq!(router.stats().queued, 2);
        // b leaves: its two go to a's queue (a has no credit left), nothing is lost.
        router.unsubscribe(b);
        assert_eq!(router.stats(), RouterStats { subscribers: 1, sent: 2, queued: 4 });
        assert!(drain(&mut events).is_empty());
        // a leaves too: everything goes back to partition 7 as unroutable.
        router.unsubscribe(a);
        let mut back: Vec<u64> = drain(&mut events)
            .into_iter()
            .map(|e| match e {
                PartitionEvent::Unroutable(t) => t.id,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        back.sort_unstable();
        assert_eq!(back, triggers.iter().map(|t| t.id).collect::<Vec<_>>());
        assert_eq!(router.stats(), RouterStats::default());
        let t = trigger(&router, "app", "late", 7);
        assert!(router.dispatch(t).is_err());
    }

    #[test]
    fn a_queued_trigger_can_be_recalled_and_a_sent_one_cannot() {
        let OneSubscriber { router, events: _events, mut rx, .. } = one_subscriber(1);
        let sent = trigger(&router, "app", "a", 0);
        let queued = trigger(&router, "app", "b", 0);
        router.dispatch(sent.clone()).unwrap();
        router.dispatch(queued.clone()).unwrap();
        assert!(!router.recall(&sent.key, sent.id));
        assert!(router.recall(&queued.key, queued.id));
        assert!(router.complete(None, sent.id, Outcome::Success));
        assert_eq!(drain(&mut rx), vec![sent], "the recalled one never goes out");
    }

    #[test]
    fn a_detached_partition_s_answers_still_give_credit_back() {
        let OneSubscriber { router, events: _events, mut rx, .. } = one_subscriber(1);
        let old = trigger(&router, "app", "a", 0);
        router.dispatch(old.clone()).unwrap();
        router.detach_partition(0);
        let _events = attach(&router, 1);
        let next = trigger(&router, "app", "b", 1);
        router.dispatch(next.clone()).unwrap();
        assert_eq!(drain(&mut rx), vec![old.clone()]);
        assert!(!router.complete(None, old.id, Outcome::Success), "nobody takes the answer");
        assert_eq!(drain(&mut rx), vec![next], "but the credit came back");
    }

    #[test]
    fn a_subscriber_of_several_routes_is_fed_from_each_in_turn() {
        let router = Router::new(2);
        let _events = attach(&router, 0);
        let reg = Registration {
            namespace: "ns".into(),
            app_id: Some("app".into()),
            actor_types: vec!["T".into()],
        };
        let (sub, mut rx) = router.subscribe(&reg);
        let apps: Vec<Trigger> = (0..3).map(|i| trigger(&router, "app", &format!("a{i}"), 0)).collect();
        for t in &apps {
            router.dispatch(t.clone()).unwrap();
        }
        let reminder = Trigger {
            id: router.next_trigger_id(),
            key: JobKey {
                namespace: "ns".into(),
                owner: kairos_core::Owner::actor("T", "1"),
                name: "r".into(),
            },
            data: None,
            due: Timestamp::UNIX_EPOCH,
            incarnation: 1,
            partition: 0,
        };
        router.dispatch(reminder.clone()).unwrap();
        assert_eq!(drain(&mut rx).len(), 2);
        for id in [apps[0].id, apps[1].id] {
            assert!(router.complete(Some(sub), id, Outcome::Success));
        }
        let next: Vec<Trigger> = drain(&mut rx);
        assert_eq!(next.len(), 2);
        assert!(next.contains(&reminder), "the reminder is not starved by the app's queue: {next:?}");
    }
}

//! Shared informers: one watch per kind for every controller of the controller manager, as
//! client-go's SharedInformerFactory gives kube-controller-manager.
//!
//! Without them each controller opened its own watch of all pods (seven of them) and of all
//! nodes (four), so every pod change was sent and parsed seven times over. An informer
//! parses each event once, keeps the objects in one store that its subscribers read
//! ([`Informers::pod_store`]), and hands every subscriber the event in the `watcher::Event`
//! stream shape, so the `touched_objects` triggers and `Controller::*_stream` calls built on
//! it are unchanged. The store is updated before any subscriber is handed the event, so a
//! reconcile an event triggers reads a store that already shows it (client-go's order).
//!
//! Each subscriber has its own unbounded queue of `Arc`s to the store's objects, as each
//! client-go listener has its own growing buffer: an event is held only until every
//! subscriber has taken it, and the object is deep-copied into an owned event only as a
//! subscriber takes it. (A shared ring buffer kept the last 16,384 events of every kind
//! alive whether or not anyone still needed them: about 220 MB with 10,000 pods.)
//!
//! A subscriber that joins late starts with a replay of the informer's state (`Init`,
//! `InitApply` for each object, `InitDone`), taken under the same lock that publishes
//! events, so it sees every later event exactly once and no earlier one after its replay:
//! the relist semantics a watcher's consumers already handle.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::stream::BoxStream;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::reflector::{self, Lookup, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Resource;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};

/// An event as the informer fans it out: the objects shared with the store.
enum Shared<K> {
    Init,
    InitApply(Arc<K>),
    InitDone,
    Apply(Arc<K>),
    Delete(Arc<K>),
}

impl<K> Clone for Shared<K> {
    fn clone(&self) -> Self {
        match self {
            Shared::Init => Shared::Init,
            Shared::InitApply(o) => Shared::InitApply(o.clone()),
            Shared::InitDone => Shared::InitDone,
            Shared::Apply(o) => Shared::Apply(o.clone()),
            Shared::Delete(o) => Shared::Delete(o.clone()),
        }
    }
}

impl<K: Clone> Shared<K> {
    /// The owned event a subscriber's stream yields.
    fn to_event(&self) -> Event<K> {
        match self {
            Shared::Init => Event::Init,
            Shared::InitApply(o) => Event::InitApply((**o).clone()),
            Shared::InitDone => Event::InitDone,
            Shared::Apply(o) => Event::Apply((**o).clone()),
            Shared::Delete(o) => Event::Delete((**o).clone()),
        }
    }
}

/// What one informer knows, and its subscribers' queues; one lock for both.
struct State<K: Lookup + Clone + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    writer: reflector::store::Writer<K>,
    store: Store<K>,
    /// The objects of a (re)list in progress, since its `Init`.
    listing: Option<Vec<Arc<K>>>,
    /// True from the first `InitDone` on. A watch channel, not the store's own readiness:
    /// kube-runtime's `Store::wait_until_ready` keeps one waker, so of several tasks
    /// waiting on one shared store only the last to poll would ever wake.
    synced: watch::Sender<bool>,
    subscribers: Vec<mpsc::UnboundedSender<Shared<K>>>,
}

impl<K> State<K>
where
    K: Lookup + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    fn new() -> Self {
        let writer = reflector::store::Writer::default();
        State {
            store: writer.as_reader(),
            writer,
            listing: None,
            synced: watch::channel(false).0,
            subscribers: Vec::new(),
        }
    }

    /// Applies `event` to the store, then queues it for every subscriber still listening.
    fn apply(&mut self, event: Event<K>) {
        self.writer.apply_watcher_event(&event);
        let shared = match event {
            Event::Init => {
                self.listing = Some(Vec::new());
                Shared::Init
            }
            Event::InitApply(obj) => {
                let obj = Arc::new(obj);
                self.listing.get_or_insert_with(Vec::new).push(obj.clone());
                Shared::InitApply(obj)
            }
            Event::InitDone => {
                self.listing = None;
                // After the store's own readiness, which a waiter on this then finds set.
                self.synced.send_replace(true);
                Shared::InitDone
            }
            // The store's own Arc, so the queues hold no second copy.
            Event::Apply(obj) => {
                let stored = self.store.get(&obj.to_object_ref(Default::default()));
                Shared::Apply(stored.unwrap_or_else(|| Arc::new(obj)))
            }
            Event::Delete(obj) => Shared::Delete(Arc::new(obj)),
        };
        self.subscribers
            .retain(|tx| tx.send(shared.clone()).is_ok());
    }

    /// What a subscriber joining now must see first to be where the others are.
    fn replay(&self) -> Vec<Shared<K>> {
        match (&self.listing, *self.synced.borrow()) {
            // A list in progress: its start, then the rest arrives live.
            (Some(listed), _) => std::iter::once(Shared::Init)
                .chain(listed.iter().cloned().map(Shared::InitApply))
                .collect(),
            (None, true) => std::iter::once(Shared::Init)
                .chain(self.store.state().into_iter().map(Shared::InitApply))
                .chain(std::iter::once(Shared::InitDone))
                .collect(),
            // Nothing listed yet: the first list arrives live.
            (None, false) => Vec::new(),
        }
    }
}

/// The store of `state` once its first list is in.
async fn synced_store<K>(state: &Mutex<State<K>>) -> Option<Store<K>>
where
    K: Lookup + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    let (mut synced, store) = {
        let state = state.lock().ok()?;
        (state.synced.subscribe(), state.store.clone())
    };
    synced.wait_for(|s| *s).await.ok()?;
    Some(store)
}

/// One watch of one kind, shared by its subscribers.
pub struct SharedInformer<K: Lookup + Clone + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    state: Arc<Mutex<State<K>>>,
    pump: tokio::task::JoinHandle<()>,
}

impl<K: Lookup + Clone + 'static> Drop for SharedInformer<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    fn drop(&mut self) {
        self.pump.abort();
    }
}

impl<K> SharedInformer<K>
where
    K: Resource + Lookup + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    <K as Resource>::DynamicType: Default,
    <K as Lookup>::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
{
    /// Starts watching every object of `api` (with back-off on errors).
    pub fn start(api: Api<K>) -> Self {
        let state = Arc::new(Mutex::new(State::new()));
        let pumped = state.clone();
        let pump = tokio::spawn(async move {
            let mut events =
                std::pin::pin!(watcher::watcher(api, watcher::Config::default()).default_backoff());
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => {
                        let Ok(mut state) = pumped.lock() else { return };
                        // No subscriber yet is fine: they replay the state when they come.
                        state.apply(event);
                    }
                    Err(e) => tracing::debug!(error = %e, "shared informer watch"),
                }
            }
        });
        SharedInformer { state, pump }
    }

    /// A stream of this kind's watch events, from a replay of what is known so far.
    pub fn subscribe(&self) -> BoxStream<'static, Result<Event<K>, watcher::Error>> {
        let Ok(mut state) = self.state.lock() else {
            return futures::stream::empty().boxed();
        };
        let replay = state.replay();
        let (tx, rx) = mpsc::unbounded_channel();
        state.subscribers.push(tx);
        drop(state);
        let live = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|shared| (shared, rx))
        });
        futures::stream::iter(replay)
            .chain(live)
            .map(|shared| Ok(shared.to_event()))
            .boxed()
    }

    /// The objects as the informer knows them, once its first list is in (so that no
    /// caller ever waits on the store's own readiness; see [`State::synced`]). An informer
    /// that stopped first (a panic while publishing) never yields one: its readers wait
    /// rather than act on an empty view.
    pub async fn store(&self) -> Store<K> {
        match synced_store(&self.state).await {
            Some(store) => store,
            None => std::future::pending().await,
        }
    }
}

/// The informers of one controller manager term, started on first use.
#[derive(Clone)]
pub struct Informers {
    client: kube::Client,
    pods: Arc<std::sync::OnceLock<SharedInformer<Pod>>>,
    nodes: Arc<std::sync::OnceLock<SharedInformer<Node>>>,
}

impl Informers {
    pub fn new(client: kube::Client) -> Self {
        Informers {
            client,
            pods: Arc::default(),
            nodes: Arc::default(),
        }
    }

    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    fn pod_informer(&self) -> &SharedInformer<Pod> {
        self.pods
            .get_or_init(|| SharedInformer::start(Api::all(self.client.clone())))
    }

    fn node_informer(&self) -> &SharedInformer<Node> {
        self.nodes
            .get_or_init(|| SharedInformer::start(Api::all(self.client.clone())))
    }

    /// Watch events of every pod.
    pub fn pods(&self) -> BoxStream<'static, Result<Event<Pod>, watcher::Error>> {
        self.pod_informer().subscribe()
    }

    /// Watch events of every node.
    pub fn nodes(&self) -> BoxStream<'static, Result<Event<Node>, watcher::Error>> {
        self.node_informer().subscribe()
    }

    /// Every pod, in the one store the pod subscribers share (instead of a copy each),
    /// once it has its first list.
    pub async fn pod_store(&self) -> Store<Pod> {
        self.pod_informer().store().await
    }

    /// Every node, in the one store the node subscribers share, once it has its first list.
    pub async fn node_store(&self) -> Store<Node> {
        self.node_informer().store().await
    }
}

impl Debug for Informers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Informers").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use kube::api::ObjectMeta;
    use kube::ResourceExt;

    fn pod(name: &str, rv: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn names(events: &[Shared<Pod>]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e.to_event() {
                Event::Init => "Init".to_string(),
                Event::InitDone => "InitDone".to_string(),
                Event::InitApply(p) => format!("InitApply {}", p.name_any()),
                Event::Apply(p) => format!("Apply {}", p.name_any()),
                Event::Delete(p) => format!("Delete {}", p.name_any()),
            })
            .collect()
    }

    fn state() -> State<Pod> {
        State::new()
    }

    #[test]
    fn the_store_shows_an_event_before_its_subscribers_get_it_and_shares_its_object() {
        let mut s = state();
        let (tx, mut rx) = mpsc::unbounded_channel();
        s.subscribers.push(tx);
        for e in [
            Event::Init,
            Event::InitApply(pod("a", "1")),
            Event::InitDone,
            Event::Apply(pod("a", "2")),
        ] {
            s.apply(e);
        }
        let mut got = Vec::new();
        while let Ok(e) = rx.try_recv() {
            got.push(e);
        }
        assert_eq!(names(&got), ["Init", "InitApply a", "InitDone", "Apply a"]);
        let stored = s
            .store
            .get(&kube::runtime::reflector::ObjectRef::new("a").within("ns"))
            .unwrap();
        assert_eq!(stored.metadata.resource_version.as_deref(), Some("2"));
        let Shared::Apply(queued) = &got[3] else {
            panic!("not an Apply")
        };
        assert!(
            Arc::ptr_eq(queued, &stored),
            "the queue holds the store's object"
        );
        // A subscriber that went away is dropped at the next event.
        drop(rx);
        s.apply(Event::Delete(pod("a", "2")));
        assert!(s.subscribers.is_empty());
        assert!(s.store.state().is_empty());
    }

    #[tokio::test]
    async fn every_task_waiting_for_the_shared_store_wakes_when_it_is_listed() {
        let state = Arc::new(Mutex::new(state()));
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let state = state.clone();
                tokio::spawn(async move {
                    let store = synced_store(&state).await.expect("a store");
                    // Already ready: the store's own readiness is never waited on.
                    tokio::time::timeout(Duration::from_secs(5), store.wait_until_ready())
                        .await
                        .is_ok_and(|r| r.is_ok())
                })
            })
            .collect();
        tokio::task::yield_now().await;
        for e in [
            Event::Init,
            Event::InitApply(pod("a", "1")),
            Event::InitDone,
        ] {
            state.lock().unwrap().apply(e);
        }
        for w in waiters {
            let woke = tokio::time::timeout(Duration::from_secs(5), w).await;
            assert!(
                matches!(woke, Ok(Ok(true))),
                "a waiter never woke: {woke:?}"
            );
        }
    }

    #[test]
    fn nothing_is_replayed_before_the_first_list_starts() {
        assert!(state().replay().is_empty());
    }

    #[test]
    fn a_list_in_progress_is_replayed_from_its_start_without_its_end() {
        let mut s = state();
        s.apply(Event::Init);
        s.apply(Event::InitApply(pod("a", "1")));
        assert_eq!(names(&s.replay()), ["Init", "InitApply a"]);
    }

    #[test]
    fn a_synced_state_is_replayed_as_a_whole_list() {
        let mut s = state();
        for e in [
            Event::Init,
            Event::InitApply(pod("a", "1")),
            Event::InitApply(pod("b", "2")),
            Event::InitDone,
            Event::Apply(pod("c", "3")),
            Event::Apply(pod("a", "4")),
            Event::Delete(pod("b", "2")),
        ] {
            s.apply(e);
        }
        let replay = s.replay();
        let mut listed = names(&replay);
        listed.sort();
        assert_eq!(listed, ["Init", "InitApply a", "InitApply c", "InitDone"]);
        assert_eq!(names(&replay[..1]), ["Init"]);
        assert_eq!(names(&replay[3..]), ["InitDone"]);
        let a = replay.iter().find_map(|e| match e {
            Shared::InitApply(p) if p.name_any() == "a" => p.metadata.resource_version.clone(),
            _ => None,
        });
        assert_eq!(a.as_deref(), Some("4"), "the latest version of a");
    }

    #[test]
    fn a_relist_replaces_the_state_when_it_is_done() {
        let mut s = state();
        for e in [
            Event::Init,
            Event::InitApply(pod("a", "1")),
            Event::InitDone,
            Event::Init,
            Event::InitApply(pod("b", "2")),
        ] {
            s.apply(e);
        }
        // Mid-relist, a newcomer follows the relist, not the old state.
        assert_eq!(names(&s.replay()), ["Init", "InitApply b"]);
        s.apply(Event::InitDone);
        assert_eq!(names(&s.replay()), ["Init", "InitApply b", "InitDone"]);
    }
}

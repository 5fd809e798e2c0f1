//! Shared informers: one watch per kind for every controller of the controller manager, as
//! client-go's SharedInformerFactory gives kube-controller-manager.
//!
//! Without them each controller opened its own watch of all pods (seven of them) and of all
//! nodes (four), so every pod change was sent and parsed seven times over. An informer
//! parses each event once and hands every subscriber the decoded event; each subscriber keeps the `watcher::Event` stream shape, so the reflectors,
//! `touched_objects` triggers and `Controller::*_stream` calls built on it are unchanged.
//!
//! A subscriber that joins late, or falls more than [`BUFFER`] events behind, starts with a
//! replay of the informer's state (`Init`, `InitApply` for each object, `InitDone`), taken
//! under the same lock that publishes events, so it sees every later event exactly once and
//! no earlier one after its replay: the relist semantics a watcher's consumers already
//! handle.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::stream::BoxStream;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Resource;
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;

/// Events a subscriber may fall behind by before it is resynchronised from the state.
pub const BUFFER: usize = 16_384;

/// What one informer knows, and the channel it publishes on; one lock for both.
struct State<K> {
    /// The synced objects, by namespace/name.
    objects: HashMap<String, Arc<K>>,
    /// The objects of a (re)list in progress, since its `Init`.
    listing: Option<Vec<Arc<K>>>,
    synced: bool,
    tx: broadcast::Sender<Arc<Event<K>>>,
}

fn key<K: Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or(""),
        obj.meta().name.as_deref().unwrap_or("")
    )
}

impl<K: Resource + Clone> State<K> {
    fn apply(&mut self, event: &Event<K>) {
        match event {
            Event::Init => self.listing = Some(Vec::new()),
            Event::InitApply(obj) => self
                .listing
                .get_or_insert_with(Vec::new)
                .push(Arc::new(obj.clone())),
            Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                self.objects = listed.into_iter().map(|o| (key(&*o), o)).collect();
                self.synced = true;
            }
            Event::Apply(obj) => {
                self.objects.insert(key(obj), Arc::new(obj.clone()));
            }
            Event::Delete(obj) => {
                self.objects.remove(&key(obj));
            }
        }
    }

    /// What a subscriber joining now must see first to be where the others are.
    fn replay(&self) -> Vec<Event<K>> {
        match (&self.listing, self.synced) {
            // A list in progress: its start, then the rest arrives live.
            (Some(listed), _) => std::iter::once(Event::Init)
                .chain(listed.iter().map(|o| Event::InitApply((**o).clone())))
                .collect(),
            (None, true) => std::iter::once(Event::Init)
                .chain(
                    self.objects
                        .values()
                        .map(|o| Event::InitApply((**o).clone())),
                )
                .chain(std::iter::once(Event::InitDone))
                .collect(),
            // Nothing listed yet: the first list arrives live.
            (None, false) => Vec::new(),
        }
    }
}

/// One watch of one kind, shared by its subscribers.
pub struct SharedInformer<K: Resource + Clone> {
    state: Arc<Mutex<State<K>>>,
    pump: tokio::task::JoinHandle<()>,
}

impl<K: Resource + Clone> Drop for SharedInformer<K> {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

impl<K> SharedInformer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    /// Starts watching every object of `api` (with back-off on errors).
    pub fn start(api: Api<K>) -> Self {
        let (tx, _) = broadcast::channel(BUFFER);
        let state = Arc::new(Mutex::new(State {
            objects: HashMap::new(),
            listing: None,
            synced: false,
            tx,
        }));
        let pumped = state.clone();
        let pump = tokio::spawn(async move {
            let mut events =
                std::pin::pin!(watcher::watcher(api, watcher::Config::default()).default_backoff());
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => {
                        let Ok(mut state) = pumped.lock() else { return };
                        state.apply(&event);
                        // No subscriber yet is fine: they replay the state when they come.
                        let _ = state.tx.send(Arc::new(event));
                    }
                    Err(e) => tracing::debug!(error = %e, "shared informer watch"),
                }
            }
        });
        SharedInformer { state, pump }
    }

    /// A stream of this kind's watch events, from a replay of what is known so far.
    pub fn subscribe(&self) -> BoxStream<'static, Result<Event<K>, watcher::Error>> {
        let state = self.state.clone();
        let Some((replay, rx)) = Self::join(&state) else {
            return futures::stream::empty().boxed();
        };
        futures::stream::unfold(
            (state, replay.into_iter(), rx),
            |(state, mut replay, mut rx)| async move {
                loop {
                    if let Some(event) = replay.next() {
                        return Some((Ok(event), (state, replay, rx)));
                    }
                    match rx.recv().await {
                        Ok(event) => return Some((Ok((*event).clone()), (state, replay, rx))),
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            tracing::warn!(
                                missed,
                                "a shared informer subscriber fell behind; replaying"
                            );
                            let (again, fresh) = Self::join(&state)?;
                            replay = again.into_iter();
                            rx = fresh;
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            },
        )
        .boxed()
    }

    /// The replay and a receiver of everything after it, atomically.
    #[allow(clippy::type_complexity)]
    fn join(
        state: &Mutex<State<K>>,
    ) -> Option<(Vec<Event<K>>, broadcast::Receiver<Arc<Event<K>>>)> {
        let state = state.lock().ok()?;
        Some((state.replay(), state.tx.subscribe()))
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

    /// Watch events of every pod.
    pub fn pods(&self) -> BoxStream<'static, Result<Event<Pod>, watcher::Error>> {
        self.pods
            .get_or_init(|| SharedInformer::start(Api::all(self.client.clone())))
            .subscribe()
    }

    /// Watch events of every node.
    pub fn nodes(&self) -> BoxStream<'static, Result<Event<Node>, watcher::Error>> {
        self.nodes
            .get_or_init(|| SharedInformer::start(Api::all(self.client.clone())))
            .subscribe()
    }
}

impl Debug for Informers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Informers").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
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

    fn names(events: &[Event<Pod>]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                Event::Init => "Init".to_string(),
                Event::InitDone => "InitDone".to_string(),
                Event::InitApply(p) => format!("InitApply {}", p.name_any()),
                Event::Apply(p) => format!("Apply {}", p.name_any()),
                Event::Delete(p) => format!("Delete {}", p.name_any()),
            })
            .collect()
    }

    fn state() -> State<Pod> {
        State {
            objects: HashMap::new(),
            listing: None,
            synced: false,
            tx: broadcast::channel(4).0,
        }
    }

    #[test]
    fn nothing_is_replayed_before_the_first_list_starts() {
        assert!(state().replay().is_empty());
    }

    #[test]
    fn a_list_in_progress_is_replayed_from_its_start_without_its_end() {
        let mut s = state();
        s.apply(&Event::Init);
        s.apply(&Event::InitApply(pod("a", "1")));
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
            s.apply(&e);
        }
        let replay = s.replay();
        let mut listed = names(&replay);
        listed.sort();
        assert_eq!(listed, ["Init", "InitApply a", "InitApply c", "InitDone"]);
        assert_eq!(names(&replay[..1]), ["Init"]);
        assert_eq!(names(&replay[3..]), ["InitDone"]);
        let a = replay.iter().find_map(|e| match e {
            Event::InitApply(p) if p.name_any() == "a" => p.metadata.resource_version.clone(),
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
            s.apply(&e);
        }
        // Mid-relist, a newcomer follows the relist, not the old state.
        assert_eq!(names(&s.replay()), ["Init", "InitApply b"]);
        s.apply(&Event::InitDone);
        assert_eq!(names(&s.replay()), ["Init", "InitApply b", "InitDone"]);
    }
}

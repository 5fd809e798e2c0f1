//! The cache of one resource: current objects by key, a window of recent events, and the
//! task that feeds both from a single store watch.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use store::{EventKind, KeyRange, ListOptions, Revision, Store, StoreError};
use tokio::sync::{broadcast, watch};
use tracing::{debug, warn};

use super::event::{CacheMessage, CachedObject, EventType, WatchEvent};
use super::WatchCacheConfig;
use crate::registry::meta;

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Arc<CachedObject>>,
    window: VecDeque<Arc<WatchEvent>>,
    /// The revision the cache is current to.
    revision: Revision,
    /// Every event with a revision above this is in `window`.
    window_start: Revision,
}

/// The resourceVersion a watcher asked for is older than the window: it must be served
/// from the store (which answers 410 if that history is compacted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooOld {
    pub oldest: Revision,
}

/// A watcher's start: the events it must replay, then the live channel.
pub struct Subscription {
    /// Synthetic ADDED events (for a watch without resourceVersion) or the window events
    /// after the requested revision, in order.
    pub initial: Vec<Arc<WatchEvent>>,
    pub live: broadcast::Receiver<CacheMessage>,
    /// Live events at or below this were already covered by `initial`.
    pub revision: Revision,
}

pub struct Cacher {
    prefix: String,
    config: WatchCacheConfig,
    state: RwLock<State>,
    tx: broadcast::Sender<CacheMessage>,
    /// The revision the cache is current to; -1 until the first list completes.
    revision_tx: watch::Sender<Revision>,
    stopped: AtomicBool,
}

impl Cacher {
    pub(super) fn start(
        store: Arc<dyn Store>,
        prefix: String,
        config: WatchCacheConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        let (tx, _) = broadcast::channel(config.watcher_buffer.max(16));
        let cacher = Arc::new(Self {
            prefix,
            config,
            state: RwLock::new(State::default()),
            tx,
            revision_tx: watch::channel(-1).0,
            stopped: AtomicBool::new(false),
        });
        tokio::spawn(cacher.clone().run(store, shutdown));
        cacher
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// Waits until the first list has loaded; false if the cache stopped first.
    pub async fn ready(&self) -> bool {
        let mut rx = self.revision_tx.subscribe();
        let ready = rx.wait_for(|r| *r >= 0).await.is_ok();
        ready
    }

    pub fn revision(&self) -> Revision {
        *self.revision_tx.borrow()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The object stored at `key` as of the cache's revision (None if absent or not loaded
    /// yet). It may lag the store: use it only where a compare-and-swap on its
    /// resourceVersion catches a stale copy.
    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        self.read().objects.get(key).cloned()
    }

    /// Objects whose key starts with `prefix`, in key order, and the cache revision.
    pub fn snapshot(&self, prefix: &str) -> (Vec<Arc<CachedObject>>, Revision) {
        let st = self.read();
        let objs = st
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, o)| o.clone())
            .collect();
        (objs, st.revision)
    }

    /// Subscribes a watcher for keys under `prefix`, from `after` (None: synthetic ADDED
    /// events for every current object first).
    pub fn subscribe(&self, prefix: &str, after: Option<Revision>) -> Result<Subscription, TooOld> {
        // The lock orders the snapshot against the live channel: events applied after it
        // is taken are exactly those the receiver will see.
        let st = self.read();
        let live = self.tx.subscribe();
        let initial = match after {
            None => st
                .objects
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, o)| {
                    Arc::new(WatchEvent {
                        kind: EventType::Added,
                        key: k.clone(),
                        revision: st.revision,
                        object: o.clone(),
                        prev: None,
                    })
                })
                .collect(),
            Some(rev) => {
                if rev < st.window_start {
                    return Err(TooOld {
                        oldest: st.window_start,
                    });
                }
                st.window
                    .iter()
                    .filter(|e| e.revision > rev && e.key.starts_with(prefix))
                    .cloned()
                    .collect()
            }
        };
        Ok(Subscription {
            initial,
            live,
            revision: st.revision.max(after.unwrap_or(0)),
        })
    }

    async fn run(self: Arc<Self>, store: Arc<dyn Store>, mut shutdown: watch::Receiver<bool>) {
        let mut first = true;
        loop {
            let fed = tokio::select! {
                r = self.feed(&*store, first) => r,
                _ = shutdown.wait_for(|s| *s) => break,
            };
            first = false;
            match fed {
                Err(e) => {
                    warn!(prefix = %self.prefix, error = %e, "watch cache lost its store watch; re-listing")
                }
                Ok(()) => debug!(prefix = %self.prefix, "store watch ended; re-listing"),
            }
            // Back off a little so a store that is down is not hammered.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Lists the prefix, then applies the store watch until it fails.
    async fn feed(&self, store: &dyn Store, first: bool) -> Result<(), StoreError> {
        let list = store
            .list(ListOptions {
                prefix: self.prefix.clone(),
                ..ListOptions::default()
            })
            .await?;
        let mut objects = BTreeMap::new();
        for kv in &list.kvs {
            match meta::decode_kv(kv) {
                Ok(v) => {
                    objects.insert(kv.key.clone(), CachedObject::new(v));
                }
                Err(e) => warn!(key = %kv.key, error = %e, "skipping undecodable object"),
            }
        }
        {
            let mut st = self.write();
            st.objects = objects;
            st.window.clear();
            st.revision = list.revision;
            st.window_start = list.revision;
            if !first {
                let _ = self.tx.send(CacheMessage::Reset);
            }
        }
        self.revision_tx.send_replace(list.revision);
        let mut stream = store
            .watch(
                KeyRange::Prefix(self.prefix.clone()),
                Some(list.revision + 1),
            )
            .await?;
        while let Some(event) = stream.next().await {
            self.apply(event?);
        }
        Ok(())
    }

    fn apply(&self, event: store::Event) {
        let rev = event.revision();
        let mut st = self.write();
        let old = st.objects.get(&event.kv.key).cloned();
        // The cache already holds the previous state of every key it has seen: decoding
        // the store's copy of it again cost a full JSON parse per write.
        let prev = match &old {
            Some(_) => None,
            None => event.prev.as_ref().and_then(|kv| meta::decode_kv(kv).ok()),
        };
        let (kind, object) = match event.kind {
            EventKind::Put => match meta::decode_kv(&event.kv) {
                Ok(v) => {
                    let obj = CachedObject::new(v);
                    st.objects.insert(event.kv.key.clone(), obj.clone());
                    let kind = if old.is_some() || prev.is_some() {
                        EventType::Modified
                    } else {
                        EventType::Added
                    };
                    (kind, obj)
                }
                Err(e) => {
                    warn!(key = %event.kv.key, error = %e, "skipping undecodable object");
                    return;
                }
            },
            EventKind::Delete => {
                st.objects.remove(&event.kv.key);
                let last: Option<Value> = prev.clone().or_else(|| old.as_ref().map(|o| o.value()));
                let Some(mut last) = last else {
                    return;
                };
                meta::set_resource_version(&mut last, rev);
                (EventType::Deleted, CachedObject::new(last))
            }
        };
        let prev = old.or_else(|| prev.map(CachedObject::new));
        let ev = Arc::new(WatchEvent {
            kind,
            key: event.kv.key.clone(),
            revision: rev,
            object,
            prev,
        });
        st.window.push_back(ev.clone());
        while st.window.len() > self.config.window {
            if let Some(dropped) = st.window.pop_front() {
                st.window_start = dropped.revision;
            }
        }
        st.revision = rev;
        // Sent under the lock so a subscriber never sees an event twice or misses one.
        let _ = self.tx.send(CacheMessage::Event(ev));
        drop(st);
        self.revision_tx.send_replace(rev);
    }
}
